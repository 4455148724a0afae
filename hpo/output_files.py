"""Files that ``report`` and ``export`` write: checked before any work, written whole.

Shared by the CLI (``-o``) and the Python API (:func:`hpo.export.export_best`,
:func:`hpo.report.write_report`), so a script cannot overwrite what the CLI refuses to:
the study file, its storage, or any SQLite database.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.errors import ConfigError
from hpo.storages import storage_file, storage_url

if TYPE_CHECKING:
    from hpo.config import StudyConfig

__all__ = ["check_output_file", "write_output_file"]


def check_output_file(
    path: str | Path,
    option: str = "path",
    example_name: str = "out",
    cfg: StudyConfig | None = None,
) -> None:
    """Raise :class:`ConfigError` before any work when ``path`` cannot become the output.

    Catches what shows without writing: a folder given as the file (an existing one, or a
    name ending in ``/``: pass the text as given, since ``Path`` drops that ``/`` and the
    folder's name would become a file's), a file where a folder should be, a folder or
    file this user may not write, and a file that must not be
    replaced: ``cfg``'s study file or storage, or any SQLite database. Missing folders are
    fine (they are created); what only a write reveals is left to :func:`write_output_file`.
    ``example_name`` is the file name the hint for a folder suggests.
    """
    try:
        _check_output_file(path, option, example_name, cfg)
    except OSError as exc:  # a name longer than the file system allows, a loop of links
        raise ConfigError([f"{option}: cannot write {path}: {exc.strerror or exc}"]) from None


def _names_folder(text: str) -> bool:
    """Whether ``text`` ends as only a folder's name can: ``dir/``, ``dir/.``, ``dir/..``."""
    seps = os.sep + (os.altsep or "")
    return text.endswith(tuple(seps)) or text.rstrip(seps).rsplit(os.sep, 1)[-1] in (".", "..")


def _check_output_file(
    given: str | Path, option: str, example_name: str, cfg: StudyConfig | None
) -> None:
    """:func:`check_output_file`'s checks, which may raise ``OSError`` on a bad name."""
    path = Path(given)
    if path.is_dir():
        raise ConfigError(
            [f"{option}: {path} is a folder; give a file name in it, e.g. {path / example_name}"]
        )
    text = os.fspath(given)
    if _names_folder(text):
        raise ConfigError(
            [f"{option}: {text} names a folder; give a file name, e.g. {path / example_name}"]
        )
    kept = _kept_file(path, cfg)
    if kept:
        raise ConfigError(
            [f"{option}: {path} is {kept}; it is not replaced, choose another file name"]
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError([f"{option}: cannot write {path}: {folder} is not a folder"])
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError([f"{option}: cannot write {path}: folder {folder} is not writable"])
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError([f"{option}: cannot write {path}: the file is read-only"])


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _kept_file(path: Path, cfg: StudyConfig | None) -> str | None:
    """What ``path`` already holds that an output must never overwrite, if anything."""
    if not path.is_file():
        return None
    if cfg is not None:
        storage = storage_file(storage_url(cfg))
        if storage is not None and _same_file(path, storage):
            return "this study's storage"
        if cfg.source and _same_file(path, Path(cfg.source)):
            return "the study file"
    try:
        with path.open("rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                return "a SQLite database"
    except OSError:
        return None  # unreadable: the writability checks speak for it
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def write_output_file(path: Path, text: str, option: str = "path") -> Path:
    """Write ``text`` to ``path`` whole, creating missing folders.

    A new or plain file is written to a temporary file beside it, then renamed over it,
    so a failed write (``/proc/x``, a full disk) is one :class:`ConfigError` line naming
    ``option`` that leaves the old file as it was, no partial file, and none of the folders
    it created. A symlink is followed (its target is replaced, not the link); a device
    (``/dev/stdout``) or a file with other hard links is written in place, as before.
    """
    created: list[Path] = []
    tmp: Path | None = None
    try:
        target = Path(os.path.realpath(path))
        created = _missing_folders(target.parent)
        if _written_in_place(target):
            target.write_text(text, encoding="utf-8")
            return path
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        _copy_mode_and_owner(target, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise ConfigError([f"{option}: cannot write {path}: {exc.strerror or exc}"]) from None
    return path


def _written_in_place(target: Path) -> bool:
    """A device, a pipe, or a file with other names: renaming over it would cut it off."""
    try:
        st = target.stat()
    except OSError:
        return False  # new: written whole through a temporary file
    return not stat.S_ISREG(st.st_mode) or st.st_nlink > 1


def _copy_mode_and_owner(target: Path, tmp: Path) -> None:
    """The replaced file's permissions and owner, or a new file's (0666 less the umask)."""
    try:
        st = target.stat()
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        return
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    if (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.chown(tmp, st.st_uid, st.st_gid)


def _missing_folders(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` would create for ``folder``, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
