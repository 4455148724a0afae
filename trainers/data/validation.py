"""Shape and dtype checks on arrays as read, so a bad file fails with its name, not deep in numpy."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainers.data._typing import Float32Array, IndexArray, SeriesArray
from trainers.data.errors import DataError


def series_dtype(dtype: np.dtype[Any]) -> type[np.float32] | type[np.float64]:
    """float32 where it holds every value of ``dtype`` exactly, else float64.

    Standardising subtracts the mean first: a small signal on a large offset (a timestamp
    in seconds, a latitude to 1e-5) survives that in float64 and not in float32, whose
    7 digits would have rounded it away before the mean was taken.
    """
    return np.float32 if np.can_cast(dtype, np.float32, casting="safe") else np.float64


def _as_series(x: Any, source: object, key: str) -> SeriesArray:
    """A numeric 3-D ``(n, channels, length)`` array, or a DataError saying what it is instead."""
    array = np.asarray(x)
    if array.dtype == object or not np.issubdtype(array.dtype, np.number):
        raise DataError(source, f"{key} must be numeric, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(source, f"{key} must hold real numbers, got dtype {array.dtype}")
    if array.ndim != 3:
        raise DataError(source, f"{key} must be 3-D (n, channels, length), got shape {array.shape}")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise DataError(
            source, f"{key} has shape {array.shape}: no channels or no time steps per series"
        )
    return array.astype(series_dtype(array.dtype), copy=False)


def _as_embeddings(z: Any, source: object, key: str, n_rows: int) -> Float32Array:
    """Finite 2-D ``(n, D)`` embeddings with one row per series."""
    array = np.asarray(z)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DataError(
            source, f"{key} must be a numeric 2-D (n, dim) array, got shape {array.shape}"
        )
    if array.shape[0] != n_rows:
        raise DataError(source, f"{key} has {array.shape[0]} rows but X has {n_rows} series")
    if not np.all(np.isfinite(array)):
        raise DataError(source, f"{key} contains NaN or infinite values")
    return array.astype(np.float32, copy=False)


def _as_labels(
    y: Any, source: object, key: str, n_series: int, *, allow_nan: bool = False
) -> np.ndarray:
    """1-D labels, one per series (a column vector is flattened); NaN only if allowed."""
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(source, f"{key} must be 1-D, got shape {labels.shape}")
    if len(labels) != n_series:
        raise DataError(source, f"{len(labels)} {key} for {n_series} series")
    if labels.dtype == object or np.issubdtype(labels.dtype, np.number):
        bad = [
            v
            for v in labels.tolist()
            if isinstance(v, float) and not math.isfinite(v) and not (allow_nan and math.isnan(v))
        ]
        if bad:
            hint = (
                "; only mode: pretrain takes series without a label" if math.isnan(bad[0]) else ""
            )
            raise DataError(source, f"{key} contain {bad[0]} ({len(bad)} of {len(labels)}){hint}")
    if np.issubdtype(labels.dtype, np.complexfloating):
        raise DataError(source, f"{key} must be integers or strings, got dtype {labels.dtype}")
    return labels


def _to_padded(x: Any, source: object, key: str) -> tuple[SeriesArray, IndexArray]:
    """Series as ``(n, C, T_max)`` (NaN past each end) plus each series' length; float32
    unless the values need float64 (:func:`series_dtype`).

    Accepts a 3-D array or a list of ``(C, T_i)`` arrays (aeon's unequal-length form).
    In an array, time steps that are NaN in every channel at a series' end are padding
    (tslearn's convention for unequal lengths): the series ends before them.
    """
    if not isinstance(x, list):
        array = _as_series(x, source, key)
        if len(array) == 0:
            raise DataError(source, f"{key} is empty (no series)")
        return array, _lengths_before_nan_tails(array)
    if not x:
        raise DataError(source, f"{key} is empty (no series)")
    arrays = [np.asarray(s) for s in x]
    wide = any(
        np.issubdtype(a.dtype, np.number) and series_dtype(a.dtype) is np.float64 for a in arrays
    )
    dtype = np.float64 if wide else np.float32
    series = [a.astype(dtype, copy=False) for a in arrays]
    bad = next((i for i, s in enumerate(series) if s.ndim != 2 or s.shape[1] == 0), None)
    if bad is not None:
        raise DataError(source, f"{key} series {bad} has shape {series[bad].shape}, not (C, T)")
    n_channels = {s.shape[0] for s in series}
    if len(n_channels) != 1:
        raise DataError(source, f"{key} series have different channel counts {sorted(n_channels)}")
    lengths = np.array([s.shape[1] for s in series], dtype=np.intp)
    out = np.full((len(series), series[0].shape[0], int(lengths.max())), np.nan, dtype)
    for i, s in enumerate(series):  # one copy per series; the math after this is vectorised
        out[i, :, : s.shape[1]] = s
    return out, lengths


def _lengths_before_nan_tails(array: SeriesArray) -> IndexArray:
    """Each series' length without its trailing all-NaN steps (all NaN: full length)."""
    steps = array.shape[2]
    observed = np.any(~np.isnan(array), axis=1)  # (n, T): a step some channel observed
    tail = np.argmax(observed[:, ::-1], axis=1)  # NaN steps after the last observed one
    lengths = np.where(observed.any(axis=1), steps - tail, steps)
    return lengths.astype(np.intp)
