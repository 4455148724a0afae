"""Seeded train/validation index splits, so the same seed always gives the same trial data."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from trainers.data._typing import IndexArray

_TIE_STREAM = 0x7135
"""Second seed word of the generator that orders equal remainders (see below)."""


def stratified_split(
    y: npt.ArrayLike, val_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """Seeded stratified ``(train_idx, val_idx)``, both sorted.

    The validation size is ``round(val_fraction * n)`` shared across classes by largest
    remainder, but every class keeps at least one training sample, so a singleton class
    stays in train instead of crashing the split.
    """
    labels = np.asarray(y)
    n = len(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    n_val = _per_class_val_counts(counts, val_fraction, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    # Rank of each sample within its class, following the random order.
    by_class = order[np.argsort(inverse[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.intp)
    rank[by_class] = np.arange(n) - np.repeat(starts, counts)
    is_val = rank < n_val[inverse]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _per_class_val_counts(
    counts: npt.NDArray[np.int_], val_fraction: float, seed: int
) -> IndexArray:
    """How many of each class go to validation (largest remainder, >= 1 left in train).

    Equal remainders (classes of one size) are ordered by ``seed``: in class order, the
    classes that get the extra validation series were the same at every seed, and the
    others never had a say in validation F1 on a small dataset. The tie order comes from
    its own stream, so the split's draw of series stays what it was.
    """
    capacity = np.maximum(counts - 1, 0)
    total = min(math.floor(val_fraction * int(counts.sum()) + 0.5), int(capacity.sum()))
    if val_fraction > 0 and total == 0 and capacity.sum() > 0:
        total = 1  # a non-zero fraction should never yield an empty validation set
    ideal = val_fraction * counts
    n_val = np.minimum(np.floor(ideal).astype(np.intp), capacity)
    remainder = ideal - n_val
    tie_order = np.random.default_rng([seed, _TIE_STREAM]).permutation(len(counts))
    for c in np.lexsort((tie_order, -remainder)):
        if n_val.sum() >= total:
            break
        if n_val[c] < capacity[c]:
            n_val[c] += 1
    while n_val.sum() < total:  # rare: remainders exhausted before the total was met
        c = int(np.argmax(capacity - n_val))
        n_val[c] += 1
    return n_val


def _random_split(n: int, val_fraction: float, seed: int) -> tuple[IndexArray, IndexArray]:
    """Seeded unstratified split (no labels to stratify on), both index arrays sorted."""
    n_val = min(math.floor(val_fraction * n + 0.5), max(n - 1, 0))
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def subject_split(
    subjects: npt.ArrayLike, val_fraction: float, seed: int
) -> tuple[IndexArray, IndexArray]:
    """Seeded ``(train_idx, val_idx)`` with every subject's series on one side, both sorted.

    Windows of one person (overlapping ones above all) look alike, so a per-window split
    scores validation on people the model trained on and overrates every trial. Subjects
    go to validation in a seeded order until their series come closest to
    ``round(val_fraction * n)``; at least one subject lands on each side.
    """
    ids = np.asarray(subjects)
    if val_fraction == 0:  # as the stratified split: no validation asked for
        return np.arange(len(ids)), np.zeros(0, dtype=np.intp)
    people, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if len(people) < 2:
        raise ValueError(f"a subject split needs >= 2 subjects, got {len(people)}")
    order = np.random.default_rng(seed).permutation(len(people))
    taken = np.cumsum(counts[order])[:-1]  # series in validation after 1..S-1 subjects
    target = math.floor(val_fraction * len(ids) + 0.5)
    n_val_subjects = int(np.argmin(np.abs(taken - target))) + 1
    is_val = np.isin(inverse, order[:n_val_subjects])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
