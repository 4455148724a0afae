"""Load time-series classification data into standardised, GPU-ready splits.

One entry point, :func:`load_dataset`, accepts every format a study names (synthetic HAR,
aeon's bundled UEA/UCR copies, ``.ts`` pairs, ``.npz`` files, the UCI HAR folder), so trainers
never care where data came from. Every problem surfaces as a one-line :class:`DataError`
naming the file or dataset, because a trial that dies on bad data should say why in the
study log rather than in a stack trace. Heavy imports (aeon, torch) happen lazily.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from trainers.reporter import TrainingFailed, one_line
from trainers.synthetic import HAR_CHANNELS, HAR_CLASSES, make_synthetic_har

if TYPE_CHECKING:
    import torch

__all__ = [
    "UNLABELED",
    "AlignmentSplits",
    "DataError",
    "DeviceAlignmentSplits",
    "DeviceSplits",
    "LengthPolicy",
    "NpzLabels",
    "TimeSeriesSplits",
    "bundled_datasets",
    "load_alignment_npz",
    "load_dataset",
    "npz_labels",
    "source_fingerprint",
    "stratified_split",
]

LengthPolicy = Literal["resample", "pad"]
Float32Array = npt.NDArray[np.float32]
Int64Array = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]

STD_FLOOR = 1e-8
UNLABELED = -1
"""Label code of a series without a label, where :func:`load_dataset` allows them."""
_UCI_HAR_LABEL_FILE = "y_{split}.txt"


class DataError(TrainingFailed, ValueError):
    """Data that cannot be used; the message names the file or dataset and the problem.

    A :class:`~trainers.reporter.TrainingFailed` with reason ``data``, so a trial that hits
    it is recorded with ``fail_reason: data`` and ``hpo train`` exits 2 with one line; still
    a ``ValueError`` for callers that catch that.
    """

    def __init__(self, source: object, problem: str | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        text = self.source if problem is None else f"{source}: {problem}"
        text = " ".join(text.split())  # always one line, for study logs
        super().__init__("data", one_line(text))  # a NUL or escape from a path or a file

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataError, (self.source, self.problem))


# --------------------------------------------------------------------------- containers


@dataclass
class TimeSeriesSplits:
    """Standardised numpy splits: x float32 ``(n, C, T)``, y int64 in ``0..n_classes-1``.

    Loaded with ``allow_unlabeled``, y is :data:`UNLABELED` for a series without a label.
    """

    x_train: Float32Array
    y_train: Int64Array
    x_val: Float32Array
    y_val: Int64Array
    class_names: list[str]
    x_test: Float32Array | None = None
    y_test: Int64Array | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series (all splits share it)."""
        return int(self.x_train.shape[2])

    @property
    def n_classes(self) -> int:
        """Classes seen in train; labels index :attr:`class_names`."""
        return len(self.class_names)

    def to_tensors(self, device: str | torch.device = "cpu") -> DeviceSplits:
        """Move everything to ``device`` once; callers batch by index slicing, no DataLoader."""
        return DeviceSplits(
            x_train=_tensor(self.x_train, device),
            y_train=_tensor(self.y_train, device),
            x_val=_tensor(self.x_val, device),
            y_val=_tensor(self.y_val, device),
            class_names=list(self.class_names),
            x_test=_optional_tensor(self.x_test, device),
            y_test=_optional_tensor(self.y_test, device),
        )


@dataclass
class DeviceSplits:
    """:class:`TimeSeriesSplits` as torch tensors resident on one device."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    class_names: list[str]
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.x_train.device


@dataclass
class AlignmentSplits:
    """Series ``x`` (standardised as in :class:`TimeSeriesSplits`) with target embeddings ``z``."""

    x_train: Float32Array
    z_train: Float32Array
    x_val: Float32Array
    z_val: Float32Array
    x_test: Float32Array | None = None
    z_test: Float32Array | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def embed_dim(self) -> int:
        """Dimension of the target embeddings."""
        return int(self.z_train.shape[1])

    def to_tensors(self, device: str | torch.device = "cpu") -> DeviceAlignmentSplits:
        """Move everything to ``device`` once."""
        return DeviceAlignmentSplits(
            x_train=_tensor(self.x_train, device),
            z_train=_tensor(self.z_train, device),
            x_val=_tensor(self.x_val, device),
            z_val=_tensor(self.z_val, device),
            x_test=_optional_tensor(self.x_test, device),
            z_test=_optional_tensor(self.z_test, device),
        )


@dataclass
class DeviceAlignmentSplits:
    """:class:`AlignmentSplits` as torch tensors resident on one device."""

    x_train: torch.Tensor
    z_train: torch.Tensor
    x_val: torch.Tensor
    z_val: torch.Tensor
    x_test: torch.Tensor | None = None
    z_test: torch.Tensor | None = None

    @property
    def n_channels(self) -> int:
        """Channels per series."""
        return int(self.x_train.shape[1])

    @property
    def length(self) -> int:
        """Time steps per series."""
        return int(self.x_train.shape[2])

    @property
    def embed_dim(self) -> int:
        """Dimension of the target embeddings."""
        return int(self.z_train.shape[1])


def _tensor(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """Copy a numpy array to ``device`` (torch imported only when tensors are wanted)."""
    import torch

    return torch.as_tensor(np.ascontiguousarray(array), device=device)


def _optional_tensor(array: np.ndarray | None, device: str | torch.device) -> torch.Tensor | None:
    """:func:`_tensor`, passing ``None`` through."""
    return None if array is None else _tensor(array, device)


@dataclass
class _Raw:
    """Data as read from disk, before any cleaning: x is 3-D or a list of 2-D ``(C, T_i)``."""

    source: str
    x_train: Any
    y_train: np.ndarray | None  # None: the source has no labels at all
    x_test: Any = None
    y_test: np.ndarray | None = None
    label_names: Mapping[Any, str] | None = None
    channel_names: Sequence[str] | None = None


# --------------------------------------------------------------------------- public entry


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
) -> TimeSeriesSplits:
    """Load, clean, split and standardise a classification dataset.

    ``name`` is ``"synthetic_har"`` (kwargs in ``synthetic``), ``"uci_har"`` (folder in
    ``data_dir``), a dataset aeon bundles (see :func:`bundled_datasets`; never downloads),
    or a path (absolute, or relative to ``data_dir``) to a ``.npz``, a ``*_TRAIN.ts`` file,
    a folder holding ``<Name>_TRAIN.ts``/``_TEST.ts``, or a UCI HAR folder.

    Series are NaN-filled, brought to one length (``length`` or the longest train series)
    by ``length_policy``, split into train/val (stratified, seeded) and standardised per
    channel with train statistics. The test split is ``None`` unless ``load_test`` and the
    source has one.

    ``allow_unlabeled`` (self-supervised pretraining) accepts an ``.npz`` without ``y``
    and labels that are NaN or equal ``unlabeled_label``: such series get the code
    :data:`UNLABELED` and are split like a class of their own. Otherwise every series
    needs a label.
    """
    _check_options(val_fraction, length, length_policy)
    raw = _read_source(name, data_dir, load_test, synthetic)
    labels = _LabelRule(allow_unlabeled, unlabeled_label)
    return _prepare(raw, val_fraction, seed, length, length_policy, load_test, labels)


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


def bundled_datasets() -> list[str]:
    """Classification datasets shipped inside the installed aeon package (usable offline)."""
    root = _aeon_data_dir()
    if root is None:
        return []
    names = []
    for entry in sorted(root.iterdir()):
        train, test = entry / f"{entry.name}_TRAIN.ts", entry / f"{entry.name}_TEST.ts"
        if train.is_file() and test.is_file() and _is_classification_ts(train):
            names.append(entry.name)
    return names


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
    n_val = _per_class_val_counts(counts, val_fraction)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    # Rank of each sample within its class, following the random order.
    by_class = order[np.argsort(inverse[order], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(n, dtype=np.intp)
    rank[by_class] = np.arange(n) - np.repeat(starts, counts)
    is_val = rank < n_val[inverse]
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# --------------------------------------------------------------------------- option checks


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


# --------------------------------------------------------------------------- source dispatch


def _read_source(
    name: str, data_dir: str | None, load_test: bool, synthetic: Mapping[str, Any] | None
) -> _Raw:
    """Pick the reader for ``name``; unknown names list what is available offline."""
    if name == "synthetic_har":
        return _read_synthetic(synthetic or {})
    if name == "uci_har":
        if data_dir is None:
            raise DataError("uci_har", "data_dir must point to the 'UCI HAR Dataset' folder")
        return _read_uci_har(_uci_har_root(Path(data_dir)), load_test)
    path = _resolve_path(name, data_dir)
    if path is not None:
        return _read_path(path, load_test)
    bundled = {n.lower(): n for n in bundled_datasets()}
    if name.lower() in bundled:
        return _read_bundled(bundled[name.lower()], load_test)
    shipped = ", ".join(bundled.values()) or "none (aeon not installed)"
    raise DataError(
        name,
        "unknown dataset: not a file or folder, not 'synthetic_har' or 'uci_har', and not "
        f"bundled with aeon (no downloads are attempted); bundled: {shipped}",
    )


def dataset_problem(name: str, data_dir: str | None) -> str | None:
    """Why ``name`` cannot be read here, without reading it; None when it can be found.

    The same look-up as :func:`load_dataset` (and its words), for checks that run before
    a study exists: a missing file would otherwise fail every trial of the budget.
    """
    if name == "synthetic_har":
        return None
    if name == "uci_har":
        if data_dir is None:
            return "uci_har needs data_dir, the 'UCI HAR Dataset' folder"
        return None if Path(data_dir).expanduser().exists() else f"no folder {data_dir}"
    if _resolve_path(name, data_dir) is not None:
        return None
    if name.lower() in {n.lower() for n in bundled_datasets()}:
        return None
    where = f" (nor in data_dir {data_dir})" if data_dir else ""
    return (
        f"no file or folder {name}{where}, and not a dataset bundled with aeon "
        "(no downloads are attempted)"
    )


@dataclass(frozen=True)
class NpzLabels:
    """The labels an ``.npz`` holds, read without its series, for checks before a study."""

    has_y: bool
    n_unlabeled: int  # NaN, or the unlabelled label, in y
    n_labels: int
    n_classes: int  # distinct labels among the labelled series of y
    has_test: bool  # X_test
    has_test_labels: bool  # y_test, with at least one label


def npz_labels(
    name: str, data_dir: str | None, unlabeled_label: int | str | None = None
) -> NpzLabels | None:
    """What :class:`NpzLabels` says of ``name``; None where it is no readable ``.npz``.

    Only ``y`` and ``y_test`` are read (the series stay on disk), so ``hpo validate`` can
    refuse a classifier on unlabelled data, or a probe with nothing to probe, before a
    study fails every trial.
    """
    path = _resolve_path(name, data_dir)
    if path is None or not path.is_file() or path.suffix.lower() != ".npz":
        return None
    rule = _LabelRule(True, unlabeled_label)
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            y = np.asarray(archive["y"]).reshape(-1) if "y" in keys else None
            y_test = np.asarray(archive["y_test"]).reshape(-1) if "y_test" in keys else None
        unlabeled = rule.unlabeled(y) if y is not None else np.zeros(0, dtype=bool)
        n_classes = len(np.unique(y[~unlabeled])) if y is not None else 0
        test_labels = y_test is not None and not rule.unlabeled(y_test).all()
    except Exception:  # unreadable, pickled, odd shapes: the reader says what is wrong
        return None
    return NpzLabels(
        has_y=y is not None,
        n_unlabeled=int(unlabeled.sum()),
        n_labels=0 if y is None else len(y),
        n_classes=n_classes,
        has_test="X_test" in keys,
        has_test_labels=bool(test_labels),
    )


def source_fingerprint(name: str, data_dir: str | None) -> tuple[Any, ...]:
    """What identifies the files behind ``name`` now: their paths, sizes and mtimes.

    A worker trains trial after trial in one process and caches the data it read; this goes
    in the cache key, so a file rewritten between trials is read again. Exactly the files
    the reader opens are looked at (a few ``stat`` calls a trial, whatever else the folder
    holds). Generated and bundled datasets have no files of their own here and give ``()``.
    """
    try:
        files = _source_files(name, data_dir)
    except DataError:
        return ()  # the reader reports it; a key that never matches an old one is enough
    stamp: list[tuple[str, int, int]] = []
    for file in files:
        try:
            st = file.stat()
        except OSError:  # missing (an optional test split), or replaced right now
            stamp.append((str(file), -1, -1))
            continue
        stamp.append((str(file), st.st_size, st.st_mtime_ns))
    return tuple(stamp)


def _source_files(name: str, data_dir: str | None) -> list[Path]:
    """The files :func:`load_dataset` reads for ``name``, without reading them."""
    if name == "synthetic_har":
        return []
    if name == "uci_har":
        root = _uci_har_root(Path(data_dir).expanduser()) if data_dir else None
        return (
            [] if root is None else [*_uci_har_files(root, "train"), *_uci_har_files(root, "test")]
        )
    path = _resolve_path(name, data_dir)
    if path is None:
        return []
    if path.is_dir():
        train_file = _folder_train_file(path)
        if train_file is None:
            root = _uci_har_root(path)
            return [*_uci_har_files(root, "train"), *_uci_har_files(root, "test")]
        path = train_file
    partner = _ts_test_partner(path) if path.suffix.lower() == ".ts" else None
    return [path, partner] if partner is not None else [path]


def _resolve_path(name: str, data_dir: str | None) -> Path | None:
    """``name`` as an existing path, tried as given, then inside ``data_dir``."""
    candidates = [Path(name).expanduser()]
    if data_dir is not None:
        base = Path(data_dir).expanduser()
        candidates += [base / name, base / f"{name}_TRAIN.ts"]
    return next((p for p in candidates if p.exists()), None)


def _read_path(path: Path, load_test: bool) -> _Raw:
    """Dispatch a file or folder by its suffix or contents."""
    if path.is_dir():
        return _read_directory(path, load_test)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_classification_npz(path, load_test)
    if suffix == ".ts":
        return _read_ts_pair(path, load_test)
    raise DataError(path, f"unsupported file type {suffix or '(none)'!r}; expected .ts or .npz")


def _read_directory(path: Path, load_test: bool) -> _Raw:
    """A folder is a UEA pair (``<Name>_TRAIN.ts``) or the UCI HAR layout."""
    train_file = _folder_train_file(path)
    if train_file is not None:
        return _read_ts_pair(train_file, load_test)
    return _read_uci_har(_uci_har_root(path), load_test)


def _folder_train_file(path: Path) -> Path | None:
    """The ``*_TRAIN.ts`` a folder stands for; None: no pair here (the UCI HAR layout)."""
    preferred = path / f"{path.name}_TRAIN.ts"
    if preferred.is_file():
        return preferred
    train_files = sorted(path.glob("*_TRAIN.ts"))
    if len(train_files) > 1:
        names = ", ".join(p.name for p in train_files)
        raise DataError(path, f"several *_TRAIN.ts files ({names}); pass one of them")
    return train_files[0] if train_files else None


# --------------------------------------------------------------------------- readers


def _read_synthetic(kwargs: Mapping[str, Any]) -> _Raw:
    """The synthetic HAR generator; bad kwargs become a DataError, not a TypeError."""
    try:
        x_train, y_train, x_test, y_test = make_synthetic_har(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError("synthetic_har", f"bad generator options {dict(kwargs)}: {exc}") from exc
    return _Raw(
        source="synthetic_har",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test if len(x_test) else None,
        y_test=y_test if len(y_test) else None,
        label_names=dict(enumerate(HAR_CLASSES)),
        channel_names=HAR_CHANNELS,
    )


def _aeon_data_dir() -> Path | None:
    """aeon's bundled data folder (``aeon/datasets/data``), located without importing aeon."""
    try:
        spec = importlib.util.find_spec("aeon.datasets")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent / "data"
    return root if root.is_dir() else None


def _is_classification_ts(path: Path) -> bool:
    """True unless the ``.ts`` header declares a regression target (``@targetlabel true``)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            words = line.strip().lower().split()
            if not words or words[0].startswith("#"):
                continue
            if words[0] == "@data":
                return True
            if words[0] == "@targetlabel" and words[1:2] == ["true"]:
                return False
            if words[0] == "@classlabel":
                return words[1:2] == ["true"]
    return True


def _read_bundled(name: str, load_test: bool) -> _Raw:
    """A dataset from aeon's own data folder, via ``load_classification`` (offline)."""
    from aeon.datasets import load_classification

    root = _aeon_data_dir()
    assert root is not None  # bundled_datasets() found it
    splits = ("train", "test") if load_test else ("train",)
    loaded: dict[str, tuple[Any, Any]] = {}
    for split in splits:
        try:
            loaded[split] = load_classification(name, split=split, extract_path=str(root))
        except Exception as exc:  # aeon raises bare Exception/OSError/ValueError
            raise DataError(f"aeon dataset {name}", f"cannot load {split} split: {exc}") from exc
    x_test, y_test = loaded.get("test", (None, None))
    return _Raw(f"aeon dataset {name}", *loaded["train"], x_test=x_test, y_test=y_test)


def _read_ts_pair(train_path: Path, load_test: bool) -> _Raw:
    """``X_TRAIN.ts`` plus its ``X_TEST.ts`` partner when present (test is optional)."""
    stem = train_path.name[: -len(train_path.suffix)]
    if stem.upper().endswith("_TEST"):
        raise DataError(train_path, "this is a test file; pass its _TRAIN.ts partner")
    x_train, y_train = _load_ts(train_path)
    x_test = y_test = None
    test_path = _ts_test_partner(train_path)
    if load_test and test_path is not None and test_path.is_file():
        x_test, y_test = _load_ts(test_path)
    return _Raw(str(train_path), x_train, y_train, x_test, y_test)


def _ts_test_partner(train_path: Path) -> Path | None:
    """``X_TEST.ts`` beside ``X_TRAIN.ts`` (it may not exist); None for other names."""
    stem = train_path.name[: -len(train_path.suffix)]
    if not stem.upper().endswith("_TRAIN"):
        return None
    return train_path.with_name(stem[: -len("_TRAIN")] + "_TEST" + train_path.suffix)


def _load_ts(path: Path) -> tuple[Any, np.ndarray]:
    """One ``.ts`` file through aeon's parser, with its failures renamed to DataError."""
    from aeon.datasets import load_from_ts_file

    try:
        x, y, meta = load_from_ts_file(str(path), return_meta_data=True)
    except Exception as exc:  # the parser raises OSError, ValueError, IndexError, ...
        detail = re.sub(r"<_io\.\w+ name=[^>]*>", "the file", str(exc))
        if len(detail) > 300:
            detail = detail[:297] + "..."
        raise DataError(path, f"cannot parse .ts file ({type(exc).__name__}: {detail})") from exc
    if meta.get("targetlabel") or not meta.get("classlabel", True):
        raise DataError(path, "no class labels (a regression or unlabelled .ts file)")
    declared = {str(v) for v in meta.get("class_values", [])}
    unknown = sorted({str(v) for v in y} - declared) if declared else []
    if unknown:
        raise DataError(
            path, f"labels {unknown[:5]} not declared in @classLabel (truncated or corrupted line?)"
        )
    return x, np.asarray(y)


def _read_npz(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Named arrays from an ``.npz`` (no pickles), with read errors renamed to DataError."""
    if not path.is_file():
        raise DataError(path, "is a folder, not a file" if path.is_dir() else "file not found")
    if not os.access(path, os.R_OK):
        raise DataError(path, "cannot read .npz (permission denied)")
    if not zipfile.is_zipfile(path):  # np.load would otherwise try to unpickle it
        raise DataError(path, "cannot read .npz (not a zip archive: truncated or corrupted?)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            missing = [k for k in required if k not in keys]
            if missing:
                raise DataError(path, f"missing array(s) {missing}; found {sorted(keys)}")
            arrays = {k: archive[k] for k in (*required, *optional) if k in keys}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                path,
                "cannot read .npz: an array holds Python objects (dtype=object), which are "
                "never unpickled; save numeric X and numeric or string y",
            ) from exc
        raise DataError(path, f"cannot read .npz (ValueError: {exc})") from exc
    except Exception as exc:  # damaged members surface as zlib, zip, tokenize... errors
        raise DataError(path, f"cannot read .npz ({type(exc).__name__}: {exc})") from exc
    for key, value in arrays.items():
        if not isinstance(value, np.ndarray):  # a member that is not in .npy format
            raise DataError(path, f"cannot read .npz: member {key}.npy is not a NumPy array")
    return arrays


def _read_classification_npz(path: Path, load_test: bool) -> _Raw:
    """``X`` ``(n, C, T)`` and ``y``, optionally ``X_test``/``y_test``.

    ``y`` (and ``y_test``) may be absent (unlabelled series, for pretraining);
    :func:`_encode_labels` says so where labels are needed.
    """
    arrays = _read_npz(path, required=("X",), optional=("y", "X_test", "y_test"))
    x_test = y_test = None
    if "y_test" in arrays and "X_test" not in arrays:
        raise DataError(path, "has y_test but no X_test")
    if "X_test" in arrays and load_test:  # y_test may be absent: unlabelled test series
        x_test, y_test = _as_series(arrays["X_test"], path, "X_test"), arrays.get("y_test")
    x = _as_series(arrays["X"], path, "X")
    return _Raw(str(path), x, arrays.get("y"), x_test, y_test)


def _require_pair(arrays: Mapping[str, np.ndarray], source: object, a: str, b: str) -> None:
    """Test arrays come in pairs."""
    if (a in arrays) != (b in arrays):
        present, absent = (a, b) if a in arrays else (b, a)
        raise DataError(source, f"has {present} but no {absent}")


def _uci_har_root(path: Path) -> Path:
    """Accept the ``UCI HAR Dataset`` folder itself or its parent (where the zip unpacked)."""
    nested = path / "UCI HAR Dataset"
    return nested if not (path / "train").is_dir() and nested.is_dir() else path


def _uci_har_files(root: Path, split: str) -> list[Path]:
    """The nine signal files in :data:`HAR_CHANNELS` order, then the label file."""
    signals = [root / split / "Inertial Signals" / f"{c}_{split}.txt" for c in HAR_CHANNELS]
    return [*signals, root / split / _UCI_HAR_LABEL_FILE.format(split=split)]


def _read_uci_har(root: Path, load_test: bool) -> _Raw:
    """The UCI HAR layout: nine ``Inertial Signals`` text files and labels 1..6 per split."""
    if not root.is_dir():
        raise DataError(root, "not a folder" if root.exists() else "folder not found")
    splits = ("train", "test") if load_test else ("train",)
    for split in splits:
        missing = next((f for f in _uci_har_files(root, split) if not f.is_file()), None)
        if missing is not None:
            raise DataError(
                root,
                "not a UCI HAR folder (nor a folder with <Name>_TRAIN.ts): "
                f"missing {missing.relative_to(root)}",
            )
    x_train, y_train = _read_uci_har_split(root, "train")
    x_test, y_test = _read_uci_har_split(root, "test") if load_test else (None, None)
    return _Raw(
        str(root),
        x_train,
        y_train,
        x_test,
        y_test,
        label_names={i + 1: c for i, c in enumerate(HAR_CLASSES)},
        channel_names=HAR_CHANNELS,
    )


def _read_uci_har_split(root: Path, split: str) -> tuple[Float32Array, Int64Array]:
    """Stack one split's nine channels into ``(n, 9, 128)`` and read its 1..6 labels."""
    *signal_files, label_file = _uci_har_files(root, split)
    channels = [_read_text_matrix(f) for f in signal_files]
    first = channels[0].shape
    for path, channel in zip(signal_files, channels, strict=True):
        if channel.shape != first:
            raise DataError(
                path, f"shape {channel.shape} differs from {first} in {signal_files[0].name}"
            )
    labels = _read_text_matrix(label_file)
    if labels.shape[1] != 1 or not np.all(labels == np.round(labels)):
        raise DataError(label_file, "expected one integer label per line")
    y = labels[:, 0].astype(np.int64)
    bad = sorted(set(np.unique(y).tolist()) - set(range(1, len(HAR_CLASSES) + 1)))
    if bad:
        raise DataError(label_file, f"labels must be 1..{len(HAR_CLASSES)}, found {bad[:5]}")
    return np.stack(channels, axis=1), y


def _read_text_matrix(path: Path) -> Float32Array:
    """A whitespace-separated numeric table; ragged or non-numeric rows become a DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": below
            table = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot parse numeric table ({exc})") from exc
    if table.size == 0:
        raise DataError(path, "file is empty")
    return table


# --------------------------------------------------------------------------- validation


def _as_series(x: Any, source: object, key: str) -> Float32Array:
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
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported later
        return array.astype(np.float32, copy=False)


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


def _to_padded(x: Any, source: object, key: str) -> tuple[Float32Array, IndexArray]:
    """Series as ``(n, C, T_max)`` float32 (NaN past each end) plus each series' length.

    Accepts a 3-D array or a list of ``(C, T_i)`` arrays (aeon's unequal-length form).
    """
    if not isinstance(x, list):
        array = _as_series(x, source, key)
        if len(array) == 0:
            raise DataError(source, f"{key} is empty (no series)")
        return array, np.full(len(array), array.shape[2], dtype=np.intp)
    if not x:
        raise DataError(source, f"{key} is empty (no series)")
    series = [np.asarray(s, dtype=np.float32) for s in x]
    bad = next((i for i, s in enumerate(series) if s.ndim != 2 or s.shape[1] == 0), None)
    if bad is not None:
        raise DataError(source, f"{key} series {bad} has shape {series[bad].shape}, not (C, T)")
    n_channels = {s.shape[0] for s in series}
    if len(n_channels) != 1:
        raise DataError(source, f"{key} series have different channel counts {sorted(n_channels)}")
    lengths = np.array([s.shape[1] for s in series], dtype=np.intp)
    out = np.full((len(series), series[0].shape[0], int(lengths.max())), np.nan, np.float32)
    for i, s in enumerate(series):  # one copy per series; the math after this is vectorised
        out[i, :, : s.shape[1]] = s
    return out, lengths


# --------------------------------------------------------------------------- preparation


def _prepare(
    raw: _Raw,
    val_fraction: float,
    seed: int,
    length: int | None,
    length_policy: LengthPolicy,
    load_test: bool,
    labels: _LabelRule,
) -> TimeSeriesSplits:
    """Raw arrays -> encoded labels, equal-length NaN-free series, split and standardised."""
    x_test = raw.x_test if load_test else None
    y_train, y_test, class_names = _encode_labels(raw, x_test is not None, labels)
    x_all, x_te = _clean_series(
        raw.x_train, x_test, raw.source, raw.channel_names, length, length_policy
    )
    if len(x_all) != len(y_train):
        raise DataError(raw.source, f"{len(x_all)} series but {len(y_train)} labels")
    # unlabelled series (code -1) are one more stratum: both splits get their share
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
    y_test = _optional_labels(raw.y_test, raw.source, "test labels", n_test, rule)
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


def _clean_series(
    x_train: Any,
    x_test: Any,
    source: str,
    channel_names: Sequence[str] | None,
    length: int | None,
    length_policy: LengthPolicy,
) -> tuple[Float32Array, Float32Array | None]:
    """Fill NaNs, reject dead channels and bring train/test to a common length."""
    padded, lengths = _to_padded(x_train, source, "train")
    _check_values(padded, source, channel_names)
    target = length or int(lengths.max())
    out_train = _equalise(_fill_nan(padded, lengths), lengths, target, length_policy)
    if x_test is None:
        return out_train, None
    padded_te, lengths_te = _to_padded(x_test, source, "test")
    if np.isinf(padded_te).any():
        raise DataError(source, "test series contain infinite values")
    if padded_te.shape[1] != padded.shape[1]:
        raise DataError(
            source, f"test has {padded_te.shape[1]} channels but train has {padded.shape[1]}"
        )
    out_test = _equalise(_fill_nan(padded_te, lengths_te), lengths_te, target, length_policy)
    return out_train, out_test


def _check_values(x: Float32Array, source: str, channel_names: Sequence[str] | None) -> None:
    """Infinite values or a channel that is NaN in every train series cannot be repaired."""
    if np.isinf(x).any():
        raise DataError(source, "train series contain infinite values")
    dead = np.flatnonzero(np.isnan(x).all(axis=(0, 2)))
    if dead.size:
        c = int(dead[0])
        label = f"channel {c}" + (f" ({channel_names[c]})" if channel_names else "")
        raise DataError(source, f"{label} is NaN in every train series")


def _fill_nan(x: Float32Array, lengths: IndexArray) -> Float32Array:
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
    return np.where(valid_time, filled, np.nan).astype(np.float32, copy=False)


def _forward_fill(x: Float32Array) -> Float32Array:
    """Carry the last non-NaN value forward along the last axis (vectorised)."""
    positions = np.arange(x.shape[-1])
    last_valid = np.where(np.isnan(x), 0, positions)
    np.maximum.accumulate(last_valid, axis=-1, out=last_valid)
    return np.take_along_axis(x, last_valid, axis=-1)


def _equalise(
    x: Float32Array, lengths: IndexArray, target: int, policy: LengthPolicy
) -> Float32Array:
    """Resample each series to ``target`` steps, or pad (NaN, zeroed later) / crop at the end."""
    if policy == "resample":
        if np.all(lengths == target) and x.shape[-1] == target:
            return x
        return _resample(x, lengths, target)
    if x.shape[-1] >= target:
        return np.ascontiguousarray(x[..., :target])
    pad = np.full((*x.shape[:2], target - x.shape[-1]), np.nan, dtype=np.float32)
    return np.concatenate([x, pad], axis=-1)


def _resample(x: Float32Array, lengths: IndexArray, target: int) -> Float32Array:
    """Linear interpolation of series of different lengths onto ``target`` points at once."""
    scale = (lengths - 1) / max(target - 1, 1)  # (n,)
    pos = np.arange(target)[None, :] * scale[:, None]  # (n, target) in source coordinates
    left = np.floor(pos).astype(np.intp)
    right = np.minimum(left + 1, (lengths - 1)[:, None])
    frac = (pos - left).astype(np.float32)[:, None, :]
    idx_left = np.broadcast_to(left[:, None, :], (*x.shape[:2], target))
    idx_right = np.broadcast_to(right[:, None, :], (*x.shape[:2], target))
    lo = np.take_along_axis(x, idx_left, axis=-1)
    hi = np.take_along_axis(x, idx_right, axis=-1)
    # Where frac is 0 avoid 0 * NaN from a padded right neighbour.
    return np.where(frac > 0, lo + frac * (hi - lo), lo).astype(np.float32, copy=False)


def _standardise(
    x_train: Float32Array, x_val: Float32Array, x_test: Float32Array | None
) -> tuple[Float32Array, Float32Array, Float32Array | None]:
    """Per-channel z-score with train-only statistics; leftover NaNs (padding) become 0."""
    mean, std = _channel_stats(x_train)

    def apply(x: Float32Array) -> Float32Array:
        z = (x - mean) / std
        return np.nan_to_num(z, nan=0.0).astype(np.float32, copy=False)

    return apply(x_train), apply(x_val), None if x_test is None else apply(x_test)


def _channel_stats(x: Float32Array) -> tuple[Float32Array, Float32Array]:
    """Mean and floored std per channel over series and time, ignoring NaN, in float64."""
    x64 = x.astype(np.float64)
    observed = (~np.isnan(x64)).sum(axis=(0, 2), keepdims=True)
    count = np.maximum(observed, 1)
    mean = np.nansum(x64, axis=(0, 2), keepdims=True) / count
    var = np.nansum((x64 - mean) ** 2, axis=(0, 2), keepdims=True) / count
    std = np.maximum(np.sqrt(var), STD_FLOOR)
    std[observed == 0] = 1.0  # channel unobserved in this split: leave values unscaled
    return mean.astype(np.float32), std.astype(np.float32)


def _per_class_val_counts(counts: npt.NDArray[np.int_], val_fraction: float) -> IndexArray:
    """How many of each class go to validation (largest remainder, >= 1 left in train)."""
    capacity = np.maximum(counts - 1, 0)
    total = min(math.floor(val_fraction * int(counts.sum()) + 0.5), int(capacity.sum()))
    if val_fraction > 0 and total == 0 and capacity.sum() > 0:
        total = 1  # a non-zero fraction should never yield an empty validation set
    ideal = val_fraction * counts
    n_val = np.minimum(np.floor(ideal).astype(np.intp), capacity)
    remainder = ideal - n_val
    for c in np.argsort(-remainder, kind="stable"):
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
