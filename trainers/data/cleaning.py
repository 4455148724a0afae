"""Series cleaning: NaN fill, one common length, and per-channel standardisation.

Statistics come from the train split only, so validation and test never leak into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trainers.data._typing import (
    Float32Array,
    Float64Array,
    IndexArray,
    LengthPolicy,
    SeriesArray,
)
from trainers.data.errors import DataError
from trainers.data.validation import _to_padded


def _clean_series(
    x_train: Any,
    x_test: Any,
    source: str,
    channel_names: Sequence[str] | None,
    length: int | None,
    length_policy: LengthPolicy,
) -> tuple[SeriesArray, SeriesArray | None]:
    """Fill NaNs, reject dead channels and bring train/test to a common length (float64
    kept where the values need it; test as train, whose statistics it is scaled by)."""
    padded, lengths = _to_padded(x_train, source, "train")
    _check_values(padded, source, channel_names)
    target = length or int(lengths.max())
    out_train = _equalise(_fill_nan(padded, lengths), lengths, target, length_policy)
    if x_test is None:
        return out_train, None
    padded_te, lengths_te = _to_padded(x_test, source, "test")
    if padded_te.dtype != padded.dtype:
        padded_te = padded_te.astype(np.float64)
        out_train = out_train.astype(np.float64)
    if _beyond_float32(padded_te):
        raise DataError(source, f"test series contain infinite values{_RANGE}")
    if padded_te.shape[1] != padded.shape[1]:
        raise DataError(
            source, f"test has {padded_te.shape[1]} channels but train has {padded.shape[1]}"
        )
    out_test = _equalise(_fill_nan(padded_te, lengths_te), lengths_te, target, length_policy)
    return out_train, out_test


_RANGE = " (or beyond float32's +-3.4e38, the model's input)"


def _beyond_float32(x: SeriesArray) -> bool:
    """Infinite values, or (float64 series) values no float32 input could hold."""
    if x.dtype == np.float32:
        return bool(np.isinf(x).any())
    with np.errstate(invalid="ignore"):
        return bool((np.abs(x) > np.finfo(np.float32).max).any())


def _check_values(x: SeriesArray, source: str, channel_names: Sequence[str] | None) -> None:
    """Infinite values or a channel that is NaN in every train series cannot be repaired."""
    if _beyond_float32(x):
        raise DataError(source, f"train series contain infinite values{_RANGE}")
    dead = np.flatnonzero(np.isnan(x).all(axis=(0, 2)))
    if dead.size:
        c = int(dead[0])
        label = f"channel {c}" + (f" ({channel_names[c]})" if channel_names else "")
        raise DataError(source, f"{label} is NaN in every train series")


def _fill_nan(x: SeriesArray, lengths: IndexArray) -> SeriesArray:
    """Forward- then backward-fill NaNs along time within each series' own length.

    A channel that is NaN throughout one series stays NaN here and becomes the train mean
    (0 after standardisation). Positions past a series' length stay NaN (padding).
    """
    ragged = bool(np.any(lengths != x.shape[-1]))
    if not ragged and not np.isnan(x).any():
        return x  # the common case: nothing to fill
    valid_time = np.arange(x.shape[-1])[None, None, :] < lengths[:, None, None]
    filled = _forward_fill(x)
    filled = _forward_fill(filled[..., ::-1])[..., ::-1]
    return np.where(valid_time, filled, np.nan).astype(x.dtype, copy=False)


def _forward_fill(x: SeriesArray) -> SeriesArray:
    """Carry the last non-NaN value forward along the last axis (vectorised)."""
    positions = np.arange(x.shape[-1])
    last_valid = np.where(np.isnan(x), 0, positions)
    np.maximum.accumulate(last_valid, axis=-1, out=last_valid)
    return np.take_along_axis(x, last_valid, axis=-1)


def _equalise(
    x: SeriesArray, lengths: IndexArray, target: int, policy: LengthPolicy
) -> SeriesArray:
    """Resample each series to ``target`` steps, or pad (NaN, zeroed later) / crop at the end."""
    if policy == "resample":
        if np.all(lengths == target) and x.shape[-1] == target:
            return x
        return _resample(x, lengths, target)
    if x.shape[-1] >= target:
        return np.ascontiguousarray(x[..., :target])
    pad = np.full((*x.shape[:2], target - x.shape[-1]), np.nan, dtype=x.dtype)
    return np.concatenate([x, pad], axis=-1)


def _resample(x: SeriesArray, lengths: IndexArray, target: int) -> SeriesArray:
    """Linear interpolation of series of different lengths onto ``target`` points at once."""
    scale = (lengths - 1) / max(target - 1, 1)  # (n,)
    pos = np.arange(target)[None, :] * scale[:, None]  # (n, target) in source coordinates
    left = np.floor(pos).astype(np.intp)
    right = np.minimum(left + 1, (lengths - 1)[:, None])
    frac = (pos - left).astype(x.dtype)[:, None, :]
    idx_left = np.broadcast_to(left[:, None, :], (*x.shape[:2], target))
    idx_right = np.broadcast_to(right[:, None, :], (*x.shape[:2], target))
    lo = np.take_along_axis(x, idx_left, axis=-1)
    hi = np.take_along_axis(x, idx_right, axis=-1)
    # Where frac is 0 avoid 0 * NaN from a padded right neighbour.
    return np.where(frac > 0, lo + frac * (hi - lo), lo).astype(x.dtype, copy=False)


def _standardise(
    x_train: SeriesArray, x_val: SeriesArray, x_test: SeriesArray | None
) -> tuple[Float32Array, Float32Array, Float32Array | None]:
    """Per-channel z-score with train-only statistics; leftover NaNs (padding) become 0.

    In the series' own precision, then float32: the model's input.
    """
    mean, std = _channel_stats(x_train)

    def apply(x: SeriesArray) -> Float32Array:
        z = (x - mean.astype(x.dtype)) / std.astype(x.dtype)
        return np.nan_to_num(z, nan=0.0).astype(np.float32, copy=False)

    return apply(x_train), apply(x_val), None if x_test is None else apply(x_test)


def _channel_stats(x: SeriesArray) -> tuple[Float64Array, Float64Array]:
    """Mean and std per channel over series and time, ignoring NaN, in float64.

    A channel constant in training gets a scale of 1 (as scikit-learn's StandardScaler):
    dividing by a floored std would blow validation's slightest deviation up by 1e8. A
    channel never observed in training gets a NaN mean, so it is 0 in every split: the
    model never learnt what its raw values mean.
    """
    x64 = x.astype(np.float64, copy=False)  # float64 series: no second copy
    observed = (~np.isnan(x64)).sum(axis=(0, 2), keepdims=True)
    count = np.maximum(observed, 1)
    mean = np.nansum(x64, axis=(0, 2), keepdims=True) / count
    var = np.nansum((x64 - mean) ** 2, axis=(0, 2), keepdims=True) / count
    std = np.sqrt(var)
    # Only a spread at float64 rounding level is "none" (a sum of many equal values): a
    # small spread on a large offset (1013 hPa +- 0.001, a timestamp) is still scaled, and
    # so is a channel whose unit makes every value tiny (tesla, amperes: 1e-12 +- 1e-13).
    constant = std <= 1e3 * np.finfo(np.float64).eps * np.abs(mean)
    std[constant] = 1.0
    mean[observed == 0] = np.nan
    return mean, std
