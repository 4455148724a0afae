"""What is wrong with a study's storage before anything connects, so ``hpo validate`` says it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpo.storages._urls import (
    is_in_memory_sqlite,
    mask_url,
    missing_env_vars,
    read_sqlite_master,
    storage_file,
    storage_url,
)

if TYPE_CHECKING:
    from hpo.config import StudyConfig

_SCHEMES = ("sqlite", "postgresql", "mysql", "journal", "grpc")


def storage_problems(cfg: StudyConfig) -> list[str]:
    """Problems visible without connecting: unset variables, unknown schemes, missing folders."""
    if not cfg.storage:
        return []
    missing = missing_env_vars(cfg.storage)
    if missing:
        return [f"storage: environment variable {name} is not set" for name in missing]
    url = storage_url(cfg)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in _SCHEMES:
        return [
            f"storage: unsupported URL {mask_url(url)!r}; use sqlite:///file.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db, "
            "journal:///file.log or grpc://host:port"
        ]
    if is_in_memory_sqlite(url):  # any form: sqlite://, sqlite+pysqlite:///:memory: ...
        return [
            f"storage: {url.split('?', 1)[0]} is an in-memory database: the results would "
            "be gone when the run ends, and workers could not share it; name a file, "
            "e.g. sqlite:///hpo.db"
        ]
    path = storage_file(url)
    if path is None:
        return []
    try:
        return _file_problems(url, path)
    except OSError as exc:  # a name longer than the file system allows, a loop of links
        return [f"storage: cannot use {path}: {exc.strerror or exc}"]


def _file_problems(url: str, path: Path) -> list[str]:
    """The storage file's folder and, for a journal, the file itself (may raise OSError)."""
    if not path.parent.is_dir():
        # the first folder on the way that is not one: missing, or a file
        blocker = next((f for f in reversed(path.parents) if not f.is_dir()), path.parent)
        if blocker.exists():
            return [f"storage: {blocker} is a file, not a folder"]
        return [f"storage: folder {path.parent} does not exist"]
    if url.startswith("journal:///"):
        return journal_file_problems(path)
    return sqlite_file_problems(path)


def sqlite_file_problems(path: Path) -> list[str]:
    """A folder, or an existing file that is not SQLite, fails ``hpo run`` only once it opens.

    An empty file is fine: SQLite makes a database of it, as ``hpo run`` does. Read with
    :func:`read_sqlite_master` (an ``open()`` here made a supervisor that re-checked its
    study file read a stale database).
    """
    import sqlite3

    if path.is_dir():
        return [f"storage: {path} is a folder, not a SQLite file"]
    if not path.is_file() or path.stat().st_size == 0:
        return []
    try:
        read_sqlite_master(path, "SELECT count(*) FROM sqlite_master")
    except sqlite3.DatabaseError as exc:
        if "not a database" not in str(exc):
            return []  # locked, unreadable here: opening it says why, in the storage's words
        return [
            f"storage: {path} is not a SQLite database (left untouched); "
            "name a new file or an existing database"
        ]
    return []


def journal_file_problems(path: Path) -> list[str]:
    """An existing file that is not an Optuna journal would be appended to, then fail."""
    import json

    if not path.is_file() or path.stat().st_size == 0:
        return [f"storage: {path} is a folder, not a journal file"] if path.is_dir() else []
    try:
        with path.open("rb") as fh:
            line = fh.readline(1 << 20)
    except OSError as exc:
        return [f"storage: cannot read {path}: {exc.strerror or exc}"]
    try:
        first = json.loads(line)
    except ValueError:
        first = None
    if isinstance(first, dict) and "op_code" in first:
        return []
    return [
        f"storage: {path} is not an Optuna journal file (left untouched); "
        "name a new file or an existing journal"
    ]
