"""One entry point that opens every storage URL; each failure is a masked ``StorageError``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpo.errors import StorageError
from hpo.storages._connection_errors import short_reason
from hpo.storages._grpc import _open_grpc
from hpo.storages._resilient_rdb import resilient_rdb_storage_class
from hpo.storages._schema_race import _open_rdb
from hpo.storages._sqlite import SQLITE_BUSY_TIMEOUT_S, _install_sqlite_pragmas, _prepare_sqlite
from hpo.storages._urls import mask_url, sqlite_path, storage_file
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

            return JournalStorage(JournalFileBackend(str(storage_file(url))))
        if url.startswith("grpc://"):
            return _open_grpc(url)
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
        storage_class = (
            optuna.storages.RDBStorage if path is not None else resilient_rdb_storage_class()
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _open_rdb(
                lambda: storage_class(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period if heartbeat_interval else None,
                    heartbeat_stale_trial_callback=stale_callback if heartbeat_interval else None,
                )
            )
    except StorageError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError([f"storage: cannot open {mask_url(url)}: {short_reason(exc)}"]) from None
    except (ImportError, ModuleNotFoundError) as exc:
        raise StorageError([_driver_problem(url, exc)]) from None
    except (OSError, ValueError) as exc:
        raise StorageError(
            [f"storage: cannot open {mask_url(url)}: {mask_url(str(exc))}"]
        ) from None
