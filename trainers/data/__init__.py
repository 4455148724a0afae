"""Load time-series classification data into standardised, GPU-ready splits.

One entry point, :func:`load_dataset`, accepts every format a study names (synthetic HAR,
aeon's bundled UEA/UCR copies, ``.ts`` pairs, ``.npz`` files, the UCI HAR folder), so trainers
never care where data came from. Every problem surfaces as a one-line :class:`DataError`
naming the file or dataset, because a trial that dies on bad data should say why in the
study log rather than in a stack trace. Heavy imports (aeon, torch) happen lazily: importing
this package loads numpy only, so ``hpo`` can check a study's data without a GPU stack.

The names below are the public surface; the modules behind them (``sources``, ``readers``,
``validation``, ``labels``, ``cleaning``, ``splits``, ``containers``) hold one concept each.
"""

from trainers.data._typing import LengthPolicy, ValSplit
from trainers.data.containers import (
    AlignmentSplits,
    DeviceAlignmentSplits,
    DeviceSplits,
    TimeSeriesSplits,
)
from trainers.data.errors import DataError
from trainers.data.labels import UNLABELED
from trainers.data.loading import load_alignment_npz, load_dataset
from trainers.data.sources import (
    NpzLabels,
    bundled_datasets,
    dataset_layout_problem,
    dataset_problem,
    npz_labels,
    npz_shapes,
    source_fingerprint,
    subjects_problem,
)
from trainers.data.splits import stratified_split, subject_split

__all__ = [
    "UNLABELED",
    "AlignmentSplits",
    "DataError",
    "DeviceAlignmentSplits",
    "DeviceSplits",
    "LengthPolicy",
    "NpzLabels",
    "TimeSeriesSplits",
    "ValSplit",
    "bundled_datasets",
    "dataset_layout_problem",
    "dataset_problem",
    "load_alignment_npz",
    "load_dataset",
    "npz_labels",
    "npz_shapes",
    "source_fingerprint",
    "stratified_split",
    "subject_split",
    "subjects_problem",
]
