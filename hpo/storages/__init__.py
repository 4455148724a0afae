"""Storage URLs: defaults, ``${ENV}`` expansion, masking, and opening them safely.

SQLite is the embedded default and is opened so several worker processes can share
it (WAL journal, long busy timeout). PostgreSQL/MySQL URLs go to Optuna unchanged,
except that a storage that was reachable once rides out a database restart: calls that
fail with a connection error are retried with bounded exponential backoff (see
:func:`resilient_rdb_storage_class`). ``journal:///path`` uses Optuna's journal file,
``grpc://host:port`` its storage proxy.

The names below are the public surface; the modules behind them hold one concept each:
``_urls`` (URLs, ``${ENV}``, masking), ``_problems`` (checks before connecting), ``_sqlite``,
``_schema_race`` (tables created by several processes at once), ``_connection_errors``,
``_outages`` (the retry budget), ``_resilient_rdb``, ``_grpc`` and ``_open``
(:func:`open_storage`). ``ResilientRDBStorage`` is made on first access, so importing this
package does not import Optuna.
"""

from typing import Any

from hpo.storages._connection_errors import is_connection_error, short_reason
from hpo.storages._grpc import GRPC_CONNECT_TIMEOUT_S
from hpo.storages._open import NoStudiesError, default_grace_period, open_storage
from hpo.storages._open import _driver_problem as _driver_problem
from hpo.storages._outages import (
    DEFAULT_STORAGE_RETRY_S,
    STORAGE_RETRY_ENV,
    STORAGE_UNAVAILABLE_EXIT,
    StorageUnavailableError,
    outage_as_error,
    storage_outage,
    storage_retry_seconds,
)
from hpo.storages._problems import journal_file_problems, storage_problems
from hpo.storages._resilient_rdb import resilient_rdb_storage_class
from hpo.storages._schema_race import SCHEMA_RACE_ATTEMPTS, is_schema_race
from hpo.storages._sqlite import SQLITE_BUSY_TIMEOUT_S
from hpo.storages._urls import (
    DEFAULT_SQLITE_NAME,
    default_storage_url,
    expand_env,
    is_rdb_url,
    mask_url,
    missing_env_vars,
    sqlite_path,
    storage_file,
    storage_file_absent,
    storage_url,
)


def __getattr__(name: str) -> Any:
    """``hpo.storages.ResilientRDBStorage`` without importing Optuna when the module loads."""
    if name == "ResilientRDBStorage":
        return resilient_rdb_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SQLITE_NAME",
    "DEFAULT_STORAGE_RETRY_S",
    "GRPC_CONNECT_TIMEOUT_S",
    "SCHEMA_RACE_ATTEMPTS",
    "SQLITE_BUSY_TIMEOUT_S",
    "STORAGE_RETRY_ENV",
    "STORAGE_UNAVAILABLE_EXIT",
    "NoStudiesError",
    "StorageUnavailableError",
    "default_grace_period",
    "default_storage_url",
    "expand_env",
    "is_connection_error",
    "is_rdb_url",
    "is_schema_race",
    "journal_file_problems",
    "mask_url",
    "missing_env_vars",
    "open_storage",
    "outage_as_error",
    "resilient_rdb_storage_class",
    "short_reason",
    "sqlite_path",
    "storage_file",
    "storage_file_absent",
    "storage_outage",
    "storage_problems",
    "storage_retry_seconds",
    "storage_url",
]
