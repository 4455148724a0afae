"""From a dataset name to its reader and its files, and checks that need no reading.

The look-up is shared, so ``hpo validate`` and the worker's cache key see exactly what
:func:`~trainers.data.load_dataset` would read.
"""

from __future__ import annotations

import functools
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainers.data.containers import _Raw
from trainers.data.errors import DataError
from trainers.data.labels import _key, _LabelRule
from trainers.data.readers import (
    NPZ_SUBJECTS,
    UCI_HAR_SUBJECT_FILE,
    _aeon_data_dir,
    _is_classification_ts,
    _read_bundled,
    _read_classification_npz,
    _read_synthetic,
    _read_ts_pair,
    _read_uci_har,
    _ts_test_partner,
    _uci_har_files,
    _uci_har_missing,
    _uci_har_root,
    read_subjects,
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


def _read_source(
    name: str, data_dir: str | None, load_test: bool, synthetic: Mapping[str, Any] | None
) -> _Raw:
    """Pick the reader for ``name``; unknown names list what is available offline."""
    if name == "synthetic_har":
        return _read_synthetic(synthetic or {})
    if name == "uci_har":
        if data_dir is None:
            raise DataError("uci_har", "data_dir must point to the 'UCI HAR Dataset' folder")
        return _read_uci_har(_uci_har_root(Path(data_dir).expanduser()), load_test)
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
    if not Path(name).expanduser().is_absolute() and not data_dir:
        # unlike a study's storage and artifacts.dir, data paths are not read beside it
        where = f" in the current folder {Path.cwd()}"
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
    n_test_unlabeled: int = 0  # NaN, or the unlabelled label, in y_test
    unseen_test: tuple[str, ...] = ()  # labels of y_test that y never has


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
        test_unlabeled = rule.unlabeled(y_test) if y_test is not None else np.zeros(0, bool)
        test_labels = y_test is not None and not test_unlabeled.all()
        known = {_key(v) for v in np.unique(y[~unlabeled])} if y is not None else set()
        unseen = (
            sorted(
                {str(_key(v)) for v in np.unique(y_test[~test_unlabeled]) if _key(v) not in known}
            )
            if y_test is not None and y is not None
            else []
        )
    except Exception:  # unreadable, pickled, odd shapes: the reader says what is wrong
        return None
    return NpzLabels(
        has_y=y is not None,
        n_unlabeled=int(unlabeled.sum()),
        n_labels=0 if y is None else len(y),
        n_classes=n_classes,
        has_test="X_test" in keys,
        has_test_labels=bool(test_labels),
        n_test_unlabeled=int(test_unlabeled.sum()),
        unseen_test=tuple(unseen),
    )


def dataset_layout_problem(name: str, data_dir: str | None) -> str | None:
    """Why the files behind ``name`` cannot be read, from names and headers alone; or None.

    A damaged ``.npz``, an ``X`` that is not ``(n, channels, length)``, or a folder that is
    neither a UEA pair nor the UCI HAR layout fails every trial: ``hpo validate`` and a run
    ask before the study exists. No series is read, so a large file costs nothing.
    """
    if name == "synthetic_har" or dataset_problem(name, data_dir) is not None:
        return None
    try:
        if name == "uci_har":
            return _uci_har_layout_problem(_uci_har_root(Path(str(data_dir)).expanduser()))
        path = _resolve_path(name, data_dir)
        if path is None:
            return None  # bundled with aeon
        if path.is_dir():
            if _folder_train_file(path) is not None:
                return None
            return _uci_har_layout_problem(_uci_har_root(path))
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return _npz_layout_problem(path)
        if suffix != ".ts":
            return f"unsupported file type {suffix or '(none)'!r}; expected .ts or .npz"
    except DataError as exc:  # several *_TRAIN.ts in one folder
        return str(exc)
    return None


def _uci_har_layout_problem(root: Path) -> str | None:
    if not root.is_dir():
        return f"{root} is not a folder"
    # the trainer reads the test split too (trainers.building), scored or not
    problem = _uci_har_missing(root, ("train", "test"))
    return None if problem is None else f"{root} is {problem}"


def _npz_layout_problem(path: Path) -> str | None:
    shapes = npz_shapes(path)
    if shapes is None:
        return f"{path} is not a readable .npz file (numpy.savez writes one)"
    if "X" not in shapes:
        held = ", ".join(sorted(shapes)) or "nothing"
        return f"{path} has no array X (it holds {held})"
    for key in ("X", "X_test"):
        if key in shapes and len(shapes[key]) != 3:
            return f"{path}: {key} has shape {shapes[key]}, not (n, channels, length)"
    return None


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """The shape of each array in the ``.npz`` at ``path``, from the ``.npy`` headers alone.

    Named as ``np.load`` names them (``Z`` for the member ``Z.npy``). No array is read, so
    ``hpo validate`` can check ``mode: align``'s targets ``Z`` without loading ``X``, however
    large. None where it is no readable ``.npz``: the reader says what is wrong.
    """
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return None
        shapes: dict[str, tuple[int, ...]] = {}
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):  # np.load hands such members out as bytes
                    continue
                with archive.open(member) as fp:
                    version = np.lib.format.read_magic(fp)
                    if version == (1, 0):
                        shape = np.lib.format.read_array_header_1_0(fp)[0]
                    elif version == (2, 0):
                        shape = np.lib.format.read_array_header_2_0(fp)[0]
                    else:  # 3.0 only differs for non-Latin-1 field names: not ours
                        return None
                shapes[member.removesuffix(".npy")] = tuple(int(n) for n in shape)
    except Exception:  # not .npy members, damaged headers: the reader says what is wrong
        return None
    return shapes


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
        return [] if root is None else _uci_har_all_files(root)
    path = _resolve_path(name, data_dir)
    if path is None:
        return []
    if path.is_dir():
        train_file = _folder_train_file(path)
        if train_file is None:
            return _uci_har_all_files(_uci_har_root(path))
        path = train_file
    partner = _ts_test_partner(path) if path.suffix.lower() == ".ts" else None
    return [path, partner] if partner is not None else [path]


def _uci_har_all_files(root: Path) -> list[Path]:
    """Every file the UCI HAR reader may open, the optional subjects file included."""
    return [
        *_uci_har_files(root, "train"),
        *_uci_har_files(root, "test"),
        root / UCI_HAR_SUBJECT_FILE,
    ]


NO_SUBJECTS = (
    "this source does not say who recorded each series (synthetic_har, uci_har with "
    f"{UCI_HAR_SUBJECT_FILE}, and an .npz with a '{NPZ_SUBJECTS}' array do)"
)


def subjects_problem(name: str, data_dir: str | None) -> str | None:
    """Why ``name`` has no usable subject per series (``val_split: subject``), or None.

    Reads the subject ids alone (a small file or array), the way :func:`subject_ids` does,
    once per version of the files: ``hpo validate`` asks for every combination of the
    searched inputs. None too where the source itself is missing: the dataset's own check
    says that.
    """
    if name == "synthetic_har" or dataset_problem(name, data_dir) is not None:
        return None
    return _subjects_problem(name, data_dir, source_fingerprint(name, data_dir))


@functools.lru_cache(maxsize=16)
def _subjects_problem(name: str, data_dir: str | None, _stamp: tuple[Any, ...]) -> str | None:
    path = _subjects_file(name, data_dir)
    if path is None or not path.is_file():
        return NO_SUBJECTS
    # as many ids as training series: X's rows, or UCI HAR's label lines
    if path.suffix.lower() == ".npz":
        n = (npz_shapes(path) or {}).get("X", (0,))[0]
    else:
        n = len(_read_text_lines(path.parent / "y_train.txt"))
    try:
        read_subjects(path, n)
    except DataError as exc:
        return str(exc)
    return None


def subject_ids(raw: _Raw, name: str, data_dir: str | None) -> np.ndarray:
    """Who recorded each training series of ``raw``, or a :class:`DataError` saying why not."""
    if raw.subjects_train is not None:
        return raw.subjects_train
    path = _subjects_file(name, data_dir)
    if path is None or not path.is_file():
        raise DataError(raw.source, f"val_split 'subject': {NO_SUBJECTS}")
    return read_subjects(path, len(raw.x_train))


def _subjects_file(name: str, data_dir: str | None) -> Path | None:
    """Where ``name``'s subject ids would be: UCI HAR's subject file, or the ``.npz`` itself."""
    files = _source_files(name, data_dir)
    subject_file = next((f for f in files if f.name == Path(UCI_HAR_SUBJECT_FILE).name), None)
    if subject_file is not None:
        return subject_file
    if files and files[0].suffix.lower() == ".npz":
        shapes = npz_shapes(files[0])
        return files[0] if shapes is None or NPZ_SUBJECTS in shapes else None
    return None


def _read_text_lines(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return []


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
