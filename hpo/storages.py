"""Storage URLs: defaults, ``${ENV}`` expansion, masking, and opening them safely.

SQLite is the embedded default and is opened so several worker processes can share
it (WAL journal, long busy timeout). PostgreSQL/MySQL URLs go to Optuna unchanged;
``journal:///path`` uses Optuna's journal file, ``grpc://host:port`` its storage proxy.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import StorageError

if TYPE_CHECKING:
    import optuna

    from hpo.config import StudyConfig

DEFAULT_SQLITE_NAME = "hpo.db"
SQLITE_BUSY_TIMEOUT_S = 60.0
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEMES = ("sqlite", "postgresql", "mysql", "journal", "grpc")
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


def mask_url(text: str) -> str:
    """Replace every password in ``scheme://user:password@host`` forms with ``***``."""
    return _PASSWORD_IN_URL.sub(r"\1***\3", text)


def missing_env_vars(url: str) -> list[str]:
    """Names of ``${VAR}`` references that are not set in the environment."""
    return [name for name in _ENV_REF.findall(url) if name not in os.environ]


def expand_env(url: str) -> str:
    """Substitute ``${VAR}`` from the environment (credentials never live in study files)."""
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), url)


def default_storage_url(cfg: StudyConfig) -> str:
    """A SQLite file next to the study file."""
    return f"sqlite:///{(cfg.base_dir / DEFAULT_SQLITE_NAME).as_posix()}"


def storage_url(cfg: StudyConfig) -> str:
    """The study's storage URL, expanded, with relative SQLite paths resolved beside the file."""
    if not cfg.storage:
        return default_storage_url(cfg)
    url = expand_env(cfg.storage)
    for scheme in ("sqlite:///", "journal:///"):
        if url.startswith(scheme):
            path = url[len(scheme) :]
            if path and not path.startswith("/") and path != ":memory:":
                return scheme + (cfg.base_dir / path).as_posix()
    return url


def sqlite_path(url: str) -> Path | None:
    """Filesystem path of a ``sqlite:///`` URL, or ``None`` for other storages."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
    return None


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
            "postgresql://user@host/db, mysql://..., journal:///file.log or grpc://host:port"
        ]
    for scheme_prefix in ("sqlite:///", "journal:///"):
        if url.startswith(scheme_prefix):
            path = Path(url[len(scheme_prefix) :].split("?", 1)[0])
            if str(path) not in ("", ":memory:") and not path.parent.is_dir():
                return [f"storage: folder {path.parent} does not exist"]
    return []


_SQLITE_PRAGMAS_INSTALLED = False


def _install_sqlite_pragmas() -> None:
    """Per-connection settings for SQLite: WAL makes ``synchronous=NORMAL`` crash-safe.

    With the default FULL every per-epoch report waits for an fsync; NORMAL keeps
    durability across process crashes (only a power loss can drop the last commits).
    """
    global _SQLITE_PRAGMAS_INSTALLED
    if _SQLITE_PRAGMAS_INSTALLED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.close()

    _SQLITE_PRAGMAS_INSTALLED = True


def _prepare_sqlite(path: Path) -> None:
    """Switch the file to WAL once (the mode is persistent), so readers never block writers."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError([f"storage: SQLite file {path} is read-only"])
    if not os.access(path.parent, os.W_OK):
        raise StorageError([f"storage: folder {path.parent} is not writable"])
    try:
        con = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            con.execute("PRAGMA journal_mode=WAL")
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise StorageError([f"storage: cannot open SQLite file {path}: {exc}"]) from None


def is_rdb_url(url: str) -> bool:
    """Whether Optuna opens ``url`` as an RDBStorage (the storages with heartbeats)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")


def default_grace_period(heartbeat_interval: int) -> int:
    """Seconds without a heartbeat before a trial counts as lost: ``max(4 x interval, 60)``.

    Generous on purpose: a busy database or a long garbage collection must never get a
    live trial failed, and on one machine a dead worker is noticed at once anyway.
    """
    return max(4 * heartbeat_interval, 60)


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    heartbeat_stale_trial_callback: Any = None,
    failed_trial_callback: Any = None,
) -> optuna.storages.BaseStorage:
    """Open a storage for a study, raising :class:`StorageError` (password masked) on failure.

    ``heartbeat_interval`` turns on Optuna's heartbeats (RDB storages only; ignored for
    journal and gRPC URLs); ``failed_trial_callback`` is the pre-Optuna-4.9 name of
    ``heartbeat_stale_trial_callback``.
    """
    import warnings

    import optuna
    import sqlalchemy.exc

    stale_callback = heartbeat_stale_trial_callback or failed_trial_callback

    try:
        if url.startswith("journal:///"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(url[len("journal:///") :]))
        if url.startswith("grpc://"):
            host, _, port = url[len("grpc://") :].rstrip("/").partition(":")
            return optuna.storages.GrpcStorageProxy(
                host=host or "localhost", port=int(port or 13000)
            )
        engine_kwargs: dict[str, Any] = {}
        path = sqlite_path(url)
        if path is not None:
            _prepare_sqlite(path)
            _install_sqlite_pragmas()
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            engine_kwargs["pool_pre_ping"] = True
            if url.startswith("postgresql"):
                engine_kwargs["connect_args"] = {"connect_timeout": 10}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period if heartbeat_interval else None,
                heartbeat_stale_trial_callback=stale_callback if heartbeat_interval else None,
            )
    except StorageError:
        raise
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise StorageError([f"storage: cannot open {mask_url(url)}: {mask_url(reason)}"]) from None
    except (ImportError, ModuleNotFoundError) as exc:
        hint = " (pip install 'contrastive-hpo[postgres]')" if "psycopg" in str(exc) else ""
        raise StorageError([f"storage: missing database driver: {exc}{hint}"]) from None
    except (OSError, ValueError) as exc:
        raise StorageError(
            [f"storage: cannot open {mask_url(url)}: {mask_url(str(exc))}"]
        ) from None
