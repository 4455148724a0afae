"""The loading entry points: read a source, then clean, split and standardise it."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data._typing import IndexArray, Int64Array, LengthPolicy, ValSplit
from trainers.data.cleaning import _clean_series, _standardise
from trainers.data.containers import AlignmentSplits, TimeSeriesSplits, _Raw
from trainers.data.errors import DataError
from trainers.data.labels import UNLABELED, _encode_labels, _LabelRule
from trainers.data.readers import _read_npz
from trainers.data.sources import _read_source, subject_ids
from trainers.data.splits import _random_split, stratified_split, subject_split
from trainers.data.validation import _as_embeddings, _as_series

logger = logging.getLogger(__name__)


def load_dataset(
    name: str,
    *,
    data_dir: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    length: int | None = None,
    length_policy: LengthPolicy = "resample",
    load_test: bool = True,
    synthetic: Mapping[str, Any] | None = None,
    allow_unlabeled: bool = False,
    unlabeled_label: int | str | None = None,
    val_split: ValSplit = "stratified",
) -> TimeSeriesSplits:
    """Load, clean, split and standardise a classification dataset.

    ``name`` is ``"synthetic_har"`` (kwargs in ``synthetic``), ``"uci_har"`` (folder in
    ``data_dir``), a dataset aeon bundles (see :func:`bundled_datasets`; never downloads),
    or a path (absolute, or relative to ``data_dir``) to a ``.npz``, a ``*_TRAIN.ts`` file,
    a folder holding ``<Name>_TRAIN.ts``/``_TEST.ts``, or a UCI HAR folder.

    Series are NaN-filled, brought to one length (``length`` or the longest train series)
    by ``length_policy``, split into train/val (seeded; stratified by class, or by subject
    with ``val_split="subject"``) and standardised per channel with train statistics. The
    test split is ``None`` unless ``load_test`` and the source has one.

    ``allow_unlabeled`` (self-supervised pretraining) accepts an ``.npz`` without ``y``
    and labels that are NaN or equal ``unlabeled_label``: such series get the code
    :data:`UNLABELED` and are split like a class of their own. Otherwise every series
    needs a label.
    """
    _check_options(val_fraction, length, length_policy)
    if val_split not in ("stratified", "subject"):
        raise DataError(
            "options", f"val_split must be 'stratified' or 'subject', got {val_split!r}"
        )
    raw = _read_source(name, data_dir, load_test, synthetic)
    if val_split == "subject":  # read only when used: a malformed file stops no other run
        raw.subjects_train = subject_ids(raw, name, data_dir)
    labels = _LabelRule(allow_unlabeled, unlabeled_label)
    return _prepare(raw, val_fraction, seed, length, length_policy, load_test, labels, val_split)


def load_alignment_npz(
    path: str | os.PathLike[str],
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    length: int | None = None,
    length_policy: LengthPolicy = "resample",
) -> AlignmentSplits:
    """Series ``X`` ``(n, C, T)`` with target embeddings ``Z`` ``(n, D)`` for alignment training.

    ``X`` gets the same cleaning as :func:`load_dataset`; ``Z`` is kept as is (float32).
    Optional ``X_test``/``Z_test`` are loaded too. The validation split is random, seeded.
    """
    _check_options(val_fraction, length, length_policy)
    source = str(path)
    arrays = _read_npz(Path(path), required=("X", "Z"), optional=("X_test", "Z_test"))
    x = _as_series(arrays["X"], source, "X")
    z = _as_embeddings(arrays["Z"], source, "Z", len(x))
    x_test = z_test = None
    if "X_test" in arrays or "Z_test" in arrays:
        _require_pair(arrays, source, "X_test", "Z_test")
        x_test = _as_series(arrays["X_test"], source, "X_test")
        z_test = _as_embeddings(arrays["Z_test"], source, "Z_test", len(x_test))
        if z_test.shape[1] != z.shape[1]:
            raise DataError(source, f"Z_test has {z_test.shape[1]} columns but Z has {z.shape[1]}")
    x_all, x_te = _clean_series(x, x_test, source, None, length, length_policy)
    train_idx, val_idx = _random_split(len(x_all), val_fraction, seed)
    x_tr, x_val, x_te = _standardise(x_all[train_idx], x_all[val_idx], x_te)
    return AlignmentSplits(
        x_train=x_tr,
        z_train=z[train_idx],
        x_val=x_val,
        z_val=z[val_idx],
        x_test=x_te,
        z_test=z_test,
    )


def _split_by_subject(
    raw: _Raw, y: Int64Array, class_names: list[str], val_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """The subject split; refused where validation holds a class that training lacks.

    Such a class gets a classifier output that never trains, which caps every trial's
    validation F1: a fault of the split, not of any configuration.
    """
    assert raw.subjects_train is not None
    try:
        train_idx, val_idx = subject_split(raw.subjects_train, val_fraction, seed)
    except ValueError as exc:
        raise DataError(raw.source, f"val_split 'subject': {exc}") from None
    unseen = sorted(set(y[val_idx].tolist()) - set(y[train_idx].tolist()) - {UNLABELED})
    if unseen:
        names = ", ".join(class_names[c] for c in unseen)
        raise DataError(
            raw.source,
            f"val_split 'subject' (split_seed {seed}) leaves class {names} out of training: "
            "only subjects sent to validation recorded it; try another split_seed or "
            "val_split: stratified",
        )
    share = len(val_idx) / max(len(y), 1)
    if abs(share - val_fraction) > val_fraction / 2:
        logger.warning(
            "val_split 'subject': %d subjects give a validation share of %.2f, not "
            "val_fraction %.2f",
            len(np.unique(raw.subjects_train)),
            share,
            val_fraction,
        )
    return train_idx, val_idx


def _check_options(val_fraction: float, length: int | None, length_policy: str) -> None:
    """Reject bad arguments before touching any file."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError("options", f"val_fraction must be in [0, 1), got {val_fraction}")
    if length is not None and length < 1:
        raise DataError("options", f"length must be >= 1, got {length}")
    if length_policy not in ("resample", "pad"):
        raise DataError(
            "options", f"length_policy must be 'resample' or 'pad', got {length_policy!r}"
        )


def _require_pair(arrays: Mapping[str, np.ndarray], source: object, a: str, b: str) -> None:
    """Test arrays come in pairs."""
    if (a in arrays) != (b in arrays):
        present, absent = (a, b) if a in arrays else (b, a)
        raise DataError(source, f"has {present} but no {absent}")


def _prepare(
    raw: _Raw,
    val_fraction: float,
    seed: int,
    length: int | None,
    length_policy: LengthPolicy,
    load_test: bool,
    labels: _LabelRule,
    val_split: ValSplit = "stratified",
) -> TimeSeriesSplits:
    """Raw arrays -> encoded labels, equal-length NaN-free series, split and standardised."""
    x_test = raw.x_test if load_test else None
    y_train, y_test, class_names = _encode_labels(raw, x_test is not None, labels)
    x_all, x_te = _clean_series(
        raw.x_train, x_test, raw.source, raw.channel_names, length, length_policy
    )
    if len(x_all) != len(y_train):
        raise DataError(raw.source, f"{len(x_all)} series but {len(y_train)} labels")
    if val_split == "subject":
        train_idx, val_idx = _split_by_subject(raw, y_train, class_names, val_fraction, seed)
    else:  # unlabelled series (code -1) are one more stratum: both splits get their share
        train_idx, val_idx = stratified_split(y_train, val_fraction, seed)
    x_tr, x_val, x_te = _standardise(x_all[train_idx], x_all[val_idx], x_te)
    return TimeSeriesSplits(
        x_train=x_tr,
        y_train=y_train[train_idx],
        x_val=x_val,
        y_val=y_train[val_idx],
        class_names=class_names,
        x_test=x_te,
        y_test=y_test,
    )
