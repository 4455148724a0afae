"""Labels of any type to class codes, with series that may lack a label kept apart.

The classes (and so a model's class count) come from the train split alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from trainers.data._typing import Int64Array
from trainers.data.containers import _Raw
from trainers.data.errors import DataError
from trainers.data.validation import _as_labels

UNLABELED = -1
"""Label code of a series without a label, where :func:`load_dataset` allows them."""


@dataclass(frozen=True)
class _LabelRule:
    """Whether series may lack a label, and which label value says so (NaN always does)."""

    allow_unlabeled: bool = False
    unlabeled_label: int | str | None = None

    def unlabeled(self, labels: np.ndarray) -> npt.NDArray[np.bool_]:
        """Mask of the series without a label (all False unless unlabelled are allowed)."""
        mask = np.zeros(len(labels), dtype=bool)
        if not self.allow_unlabeled:
            return mask
        unique, inverse = np.unique(labels, return_inverse=True)
        marks = np.array([self._marks(_key(v)) for v in unique], dtype=bool)
        return marks[inverse.reshape(-1)] if len(unique) else mask

    def _marks(self, value: Any) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return True
        if self.unlabeled_label is None or isinstance(value, bool):
            return False
        return bool(value == self.unlabeled_label)


def _encode_labels(
    raw: _Raw, with_test: bool, rule: _LabelRule
) -> tuple[Int64Array, Int64Array | None, list[str]]:
    """Map labels of any type to ``0..K-1`` by sorted train labels; test must be a subset.

    Where the rule allows series without a label, they get :data:`UNLABELED`, an absent
    ``y`` or ``y_test`` means all of them, and a test label train never has is one more
    unlabelled test series (with a warning): the classes, and the model's class count,
    come from the train split alone.
    """
    n_train, n_test = _count(raw.x_train), _count(raw.x_test) if with_test else 0
    if n_train == 0:
        raise DataError(raw.source, "train split is empty (no series)")
    if not rule.allow_unlabeled:
        if raw.y_train is None:
            raise DataError(
                raw.source,
                "has no labels (no array y); only mode: pretrain trains without labels",
            )
        if with_test and raw.y_test is None:
            raise DataError(raw.source, "has X_test but no y_test")
    y_train = _optional_labels(raw.y_train, raw.source, "train labels", n_train, rule)
    unlabeled = rule.unlabeled(y_train)
    if rule.unlabeled_label is not None and raw.y_train is not None and not unlabeled.any():
        warnings.warn(
            f"{raw.source}: unlabeled_label {rule.unlabeled_label!r} marks no train series "
            "(a value of another type, '-1' for -1?)",
            stacklevel=2,
        )
    known = y_train[~unlabeled]
    classes = _sorted_labels(np.unique(known)) if len(known) else []
    if len(classes) < 2 and not rule.allow_unlabeled:
        raise DataError(raw.source, f"train labels have a single class {classes[0]!r}; need >= 2")
    lookup = {c: i for i, c in enumerate(classes)}
    names = [str((raw.label_names or {}).get(c, c)) for c in classes]
    encoded = _encode_masked(y_train, unlabeled, lookup)
    if not with_test:
        return encoded, None, names
    y_test = _optional_labels(raw.y_test, raw.source, "test labels", n_test, rule)
    test_unlabeled = rule.unlabeled(y_test)
    unseen_values = [v for v in np.unique(y_test[~test_unlabeled]) if _key(v) not in lookup]
    unseen = sorted(str(_key(v)) for v in unseen_values)
    if unseen:
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        if not rule.allow_unlabeled:
            raise DataError(raw.source, f"test labels {unseen[:5]}{more} never occur in train")
        warnings.warn(
            f"{raw.source}: test labels {unseen[:5]}{more} never occur in train; "
            "their series are left out of the test probe",
            stacklevel=2,
        )
        test_unlabeled = test_unlabeled | np.isin(y_test, np.array(unseen_values, dtype=object))
    return encoded, _encode_masked(y_test, test_unlabeled, lookup), names


def _optional_labels(
    y: np.ndarray | None, source: str, key: str, n_series: int, rule: _LabelRule
) -> np.ndarray:
    """:func:`_as_labels`, or NaN for every series where an array of labels is absent."""
    if y is None:
        return np.full(n_series, np.nan)
    return _as_labels(y, source, key, n_series, allow_nan=rule.allow_unlabeled)


def _encode_masked(
    labels: np.ndarray, unlabeled: npt.NDArray[np.bool_], lookup: Mapping[Any, int]
) -> Int64Array:
    """:func:`_encode` of the labelled series; :data:`UNLABELED` for the others."""
    if not unlabeled.any():
        return _encode(labels, lookup)
    out = np.full(len(labels), UNLABELED, dtype=np.int64)
    out[~unlabeled] = _encode(labels[~unlabeled], lookup)
    return out


def _encode(labels: np.ndarray, lookup: Mapping[Any, int]) -> Int64Array:
    """Codes for ``labels``; the dict lookup runs once per distinct value, not per sample."""
    unique, inverse = np.unique(labels, return_inverse=True)
    codes = np.array([lookup[_key(v)] for v in unique], dtype=np.int64)
    return codes[inverse.reshape(-1)]


def _count(x: Any) -> int:
    """Number of series in a 3-D array or a list."""
    return len(x) if x is not None else 0


def _key(value: Any) -> Any:
    """Hashable, type-stable lookup key for a label (numpy scalars -> Python values)."""
    return value.item() if isinstance(value, np.generic) else value


def _sorted_labels(unique: np.ndarray) -> list[Any]:
    """Sort labels numerically when they all look like numbers ('2' before '10')."""
    values = [_key(v) for v in unique]
    try:
        numeric = [float(v) for v in values]
    except (TypeError, ValueError):
        return sorted(values, key=str)
    return [v for _, v in sorted(zip(numeric, values, strict=True), key=lambda p: p[0])]
