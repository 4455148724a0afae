"""SQLite opened so several worker processes can share one file: WAL, a long busy timeout."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.errors import StorageError

SQLITE_BUSY_TIMEOUT_S = 60.0

_SQLITE_PRAGMAS_INSTALLED = False
_HPO_SQLITE_FILES: set[str] = set()
"""The SQLite files hpo opened as storages: the only ones its pragmas are for."""


def _install_sqlite_pragmas(path: Path) -> None:
    """Per-connection settings for ``path``: WAL makes ``synchronous=NORMAL`` crash-safe.

    With the default FULL every per-epoch report waits for an fsync; NORMAL keeps
    durability across process crashes (only a power loss can drop the last commits).
    SQLAlchemy's ``connect`` event can only be heard for every engine at once, so the
    listener asks each new connection which file it opened: a caller's own SQLite
    database in the same process (in rollback-journal mode, where NORMAL is not
    crash-safe) keeps its settings.
    """
    global _SQLITE_PRAGMAS_INSTALLED
    _HPO_SQLITE_FILES.add(_file_key(path))
    if _SQLITE_PRAGMAS_INSTALLED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        cursor = dbapi_connection.cursor()
        try:
            row = cursor.execute("PRAGMA database_list").fetchone()
            if row is None or not row[2] or _file_key(Path(row[2])) not in _HPO_SQLITE_FILES:
                return
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        finally:
            cursor.close()

    _SQLITE_PRAGMAS_INSTALLED = True


def _file_key(path: Path) -> str:
    try:
        return str(path.resolve())
    except OSError:  # a loop of links: compared as written
        return str(path)


def _prepare_sqlite(path: Path) -> None:
    """Switch the file to WAL once (the mode is persistent), so readers never block writers.

    Writers only: a reader opens the file as it is (:func:`_reader_connect`)."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError([f"storage: SQLite file {path} is read-only"])
    if not path.parent.is_dir():  # the study checks say so first; the proxy's --storage not
        raise StorageError([f"storage: folder {path.parent} does not exist"])
    if not os.access(path.parent, os.W_OK):
        raise StorageError([f"storage: folder {path.parent} is not writable"])
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    for attempt in itertools.count(1):
        try:
            # the busy timeout of each try is what is left: the whole wait stays within one
            con = sqlite3.connect(path, timeout=max(deadline - time.monotonic(), 0.0))
            try:
                con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()
            return
        except sqlite3.OperationalError as exc:
            # the switch to WAL does not always wait on the busy timeout: several processes
            # opening a new file at once can get "locked" until one of them has switched it
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StorageError([f"storage: cannot open SQLite file {path}: {exc}"]) from None
            time.sleep(min(0.02 * attempt, 0.5))
        except sqlite3.Error as exc:
            raise StorageError([f"storage: cannot open SQLite file {path}: {exc}"]) from None


def _reader_connect(path: Path) -> Callable[[], sqlite3.Connection]:
    """Connections for a reader: plain where this user may write the file and its folder
    (a reader never switches the journal mode), read-only (``mode=ro``) where not, so a
    study on a read-only share can still be read."""
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    target = str(path) if writable else f"{path.resolve().as_uri()}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            target, timeout=SQLITE_BUSY_TIMEOUT_S, uri=not writable, check_same_thread=False
        )

    return connect


def _forget_new_file(path: Path) -> None:
    """Remove a SQLite file that a failed open created, unless another process has since
    made it an Optuna storage (a fleet opening it at once)."""
    from hpo.storages._urls import _has_optuna_tables

    if not path.is_file() or (path.stat().st_size and _has_optuna_tables(path)):
        return
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(OSError):
            leftover.unlink()
