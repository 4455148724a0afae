"""One entry point that opens every storage URL; each failure is a masked ``StorageError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.errors import StorageError
from hpo.storages._connection_errors import short_reason
from hpo.storages._grpc import _open_grpc
from hpo.storages._resilient_rdb import resilient_rdb_storage_class
from hpo.storages._schema_race import _open_rdb
from hpo.storages._sqlite import (
    SQLITE_BUSY_TIMEOUT_S,
    _forget_new_file,
    _install_sqlite_pragmas,
    _prepare_sqlite,
    _reader_connect,
)
from hpo.storages._urls import (
    is_in_memory_sqlite,
    mask_message,
    mask_url,
    sqlite_path,
    storage_file,
)
from trainers.reporter import one_line

if TYPE_CHECKING:
    import optuna


def default_grace_period(heartbeat_interval: int) -> int:
    """Seconds without a heartbeat before a trial counts as lost: ``max(4 x interval, 60)``.

    Generous on purpose: a busy database or a long garbage collection must never get a
    live trial failed, and on one machine a dead worker is noticed at once anyway.
    """
    return max(4 * heartbeat_interval, 60)


_DRIVERS = {
    "postgresql": ("postgresql+psycopg", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
}
"""The driver each database is tested with, and the extra that installs it."""


def _driver_problem(url: str, exc: BaseException) -> str:
    """Which URL form and extra give a working driver (Optuna's own message names neither)."""
    scheme = url.split("://", 1)[0]
    database = scheme.split("+", 1)[0]
    if database not in _DRIVERS:
        return f"storage: missing database driver for {scheme}://: {exc}"
    form, extra = _DRIVERS[database]
    if scheme == form:  # the right driver, present or not: say what failed to import
        return (
            f"storage: the {form} driver cannot be imported ({one_line(str(exc))[:200]}); "
            f"pip install 'contrastive-hpo[{extra}]'"
        )
    return (
        f"storage: no database driver for {scheme}:// here; use {form}://... "
        f"(pip install 'contrastive-hpo[{extra}]')"
    )


_SCHEMA_MISMATCH = "is no longer compatible with the table schema"
"""What Optuna's ``RuntimeError`` says when the tables were made by another Optuna version."""


def _schema_problem(url: str, exc: RuntimeError) -> str | None:
    """One line for tables of another Optuna version, with the command that fixes them."""
    text = one_line(str(exc))
    if _SCHEMA_MISMATCH not in text:
        return None
    what = text.split(" Please ", 1)[0].rstrip(". ")
    if "optuna storage upgrade" in text:
        fix = f"run: optuna storage upgrade --storage '{mask_url(url)}'"
    else:  # tables of a newer Optuna than this one
        fix = "update optuna here: pip install -U optuna"
    return f"storage: {mask_url(url)}: {mask_message(what, url)}; {fix}"


def open_storage(
    url: str,
    *,
    read_only: bool = False,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    heartbeat_stale_trial_callback: Any = None,
    failed_trial_callback: Any = None,
) -> optuna.storages.BaseStorage:
    """Open a storage for a study, raising :class:`StorageError` (password masked) on failure.

    ``heartbeat_interval`` turns on Optuna's heartbeats (RDB storages only; ignored for
    journal and gRPC URLs); ``failed_trial_callback`` is the pre-Optuna-4.9 name of
    ``heartbeat_stale_trial_callback``. ``read_only`` (the read commands) leaves a SQLite
    file as it is: no switch to WAL, and a file or folder this user cannot write is read.
    A SQLite file this call created is removed again if opening fails.
    """
    import optuna
    import sqlalchemy.exc

    path = sqlite_path(url)
    new_file = path is not None and not path.exists()
    try:
        if url.startswith("journal:///"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(storage_file(url))))
        if url.startswith("grpc://"):
            return _open_grpc(url)
        return _open_rdb_storage(
            url,
            read_only=read_only,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period if heartbeat_interval else None,
            stale_callback=(
                (heartbeat_stale_trial_callback or failed_trial_callback)
                if heartbeat_interval
                else None
            ),
        )
    except BaseException as exc:
        if new_file and path is not None:
            _forget_new_file(path)  # no empty database left behind by a failed open
        if isinstance(exc, StorageError):
            raise
        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError | optuna.exceptions.StorageInternalError):
            reason = mask_message(short_reason(exc), url)
            raise StorageError([f"storage: cannot open {mask_url(url)}: {reason}"]) from None
        if isinstance(exc, ImportError):
            raise StorageError([_driver_problem(url, exc)]) from None
        if isinstance(exc, RuntimeError) and (problem := _schema_problem(url, exc)):
            raise StorageError([problem]) from None
        if isinstance(exc, OSError | ValueError) or (
            # a driver refusing the URL's query (``?ssl_mode=``: TypeError, a bad charset)
            isinstance(exc, TypeError | AttributeError) and _query_keys(url)
        ):
            reason = mask_message(str(exc), url)
            raise StorageError([f"storage: cannot open {mask_url(url)}: {reason}"]) from None
        raise


class NoStudiesError(StorageError):
    """A read found a server database without Optuna's tables: the study never ran there.

    Opening it as Optuna does would create its tables (a read of another program's
    database changed it); the read commands say "not found" instead.
    """


def _server_has_optuna_tables(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """Whether the server database at ``url`` has Optuna's ``studies`` table (nothing written)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return sqlalchemy.inspect(engine).has_table("studies")
    finally:
        engine.dispose()


def _query_keys(url: str) -> set[str]:
    """The option names in ``url``'s query string (``?sslmode=require&connect_timeout=2``)."""
    from urllib.parse import parse_qs, urlsplit

    return set(parse_qs(urlsplit(url).query, keep_blank_values=True))


def _open_rdb_storage(
    url: str,
    *,
    read_only: bool,
    heartbeat_interval: int | None,
    grace_period: int | None,
    stale_callback: Any,
) -> optuna.storages.BaseStorage:
    """An ``RDBStorage``: SQLite set up for several processes (or read as it is), a server
    with pre-pinged connections and outage retries."""
    import warnings

    import optuna

    if is_in_memory_sqlite(url):
        raise StorageError(
            [
                f"storage: {url.split('?', 1)[0]} is an in-memory database: the results would "
                "be gone when the process ends; name a file, e.g. sqlite:///hpo.db"
            ]
        )
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None and read_only and path.exists():
        # a reader switches nothing; a file or folder it cannot write is opened read-only
        _install_sqlite_pragmas(path)
        engine_kwargs["creator"] = _reader_connect(path)
    elif path is not None:
        _prepare_sqlite(path)
        _install_sqlite_pragmas(path)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True
        if url.startswith("postgresql") and "connect_timeout" not in _query_keys(url):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}  # the URL's own one wins
        if read_only and not _server_has_optuna_tables(url, engine_kwargs):
            raise NoStudiesError([f"storage: {mask_url(url)} holds no Optuna studies"])
    storage_class = (
        optuna.storages.RDBStorage if path is not None else resilient_rdb_storage_class()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _open_rdb(
            lambda: storage_class(
                url.replace("{", "{{").replace("}", "}}"),  # Optuna str.format()s the URL
                engine_kwargs=engine_kwargs,
                skip_table_creation="creator" in engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_callback,
            )
        )
