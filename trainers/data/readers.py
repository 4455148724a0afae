"""One reader per format (synthetic HAR, aeon's bundled sets, ``.ts``, ``.npz``, UCI HAR).

Each turns its format's failures into a :class:`~trainers.data.errors.DataError`; aeon is
imported only inside the readers that parse with it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data._typing import Float32Array, Int64Array
from trainers.data.containers import _Raw
from trainers.data.errors import DataError
from trainers.data.validation import _as_series
from trainers.synthetic import HAR_CHANNELS, HAR_CLASSES, generate_synthetic_har

_UCI_HAR_LABEL_FILE = "y_{split}.txt"
NPZ_SUBJECTS = "subjects"
"""The optional ``.npz`` array of who recorded each series of ``X``."""
UCI_HAR_SUBJECT_FILE = "train/subject_train.txt"
"""Who recorded each UCI HAR training window (1..30), for ``val_split: subject``."""


def _read_synthetic(kwargs: Mapping[str, Any]) -> _Raw:
    """The synthetic HAR generator; bad kwargs become a DataError, not a TypeError."""
    try:
        data = generate_synthetic_har(**kwargs)
    except (TypeError, ValueError) as exc:
        raise DataError("synthetic_har", f"bad generator options {dict(kwargs)}: {exc}") from exc
    return _Raw(
        source="synthetic_har",
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test if len(data.x_test) else None,
        y_test=data.y_test if len(data.y_test) else None,
        label_names=dict(enumerate(HAR_CLASSES)),
        channel_names=HAR_CHANNELS,
        subjects_train=data.subjects_train,
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
    expected = stem[: -len("_TRAIN")] + "_TEST" + train_path.suffix
    try:  # the partner in whatever case it was saved in (x_train.ts beside x_test.ts)
        siblings = [p for p in train_path.parent.iterdir() if p.name.upper() == expected.upper()]
    except OSError:
        siblings = []
    if siblings:
        return min(siblings)  # several spellings on a case-sensitive disk: pick one stably
    return train_path.with_name(expected)


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


def _uci_har_root(path: Path) -> Path:
    """Accept the ``UCI HAR Dataset`` folder itself or its parent (where the zip unpacked)."""
    nested = path / "UCI HAR Dataset"
    return nested if not (path / "train").is_dir() and nested.is_dir() else path


def _uci_har_files(root: Path, split: str) -> list[Path]:
    """The nine signal files in :data:`HAR_CHANNELS` order, then the label file."""
    signals = [root / split / "Inertial Signals" / f"{c}_{split}.txt" for c in HAR_CHANNELS]
    return [*signals, root / split / _UCI_HAR_LABEL_FILE.format(split=split)]


def _uci_har_missing(root: Path, splits: tuple[str, ...]) -> str | None:
    """The first file of ``splits`` the UCI HAR layout lacks under ``root``, said; or None."""
    files = [f for split in splits for f in _uci_har_files(root, split)]
    missing = next((f for f in files if not f.is_file()), None)
    if missing is None:
        return None
    return (
        "not a UCI HAR folder (nor a folder with <Name>_TRAIN.ts): "
        f"missing {missing.relative_to(root)}"
    )


def _read_uci_har(root: Path, load_test: bool) -> _Raw:
    """The UCI HAR layout: nine ``Inertial Signals`` text files and labels 1..6 per split."""
    if not root.is_dir():
        raise DataError(root, "not a folder" if root.exists() else "folder not found")
    problem = _uci_har_missing(root, ("train", "test") if load_test else ("train",))
    if problem is not None:
        raise DataError(root, problem)
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


def read_subjects(path: Path, n: int) -> np.ndarray:
    """Who recorded each of ``n`` training series: UCI HAR's subject file, or an ``.npz``'s
    ``subjects`` array. Read only for ``val_split: subject``, so a malformed one never
    stops a run that does not use it."""
    if path.suffix.lower() == ".npz":
        subjects = _read_npz(path, required=(NPZ_SUBJECTS,), optional=())[NPZ_SUBJECTS]
    else:
        table = _read_text_matrix(path)
        subjects = table[:, 0] if table.ndim == 2 and table.shape[1] == 1 else table
    whole = subjects.dtype.kind == "f" and np.all(np.isfinite(subjects))
    if whole and np.all(subjects == np.round(subjects)):  # ids saved as floats: 1.0, 2.0
        subjects = subjects.astype(np.int64)
    if subjects.shape != (n,) or subjects.dtype.kind not in "iuU":
        raise DataError(
            path,
            f"subject ids must be one integer or string per training series ({n}), "
            f"got {subjects.dtype} of shape {subjects.shape}",
        )
    return subjects


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
