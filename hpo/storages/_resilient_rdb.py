"""``RDBStorage`` that rides out a database restart (PostgreSQL, MySQL).

The class is made on first use, so importing :mod:`hpo.storages` does not import Optuna.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from hpo.errors import StorageError
from hpo.storages._connection_errors import is_connection_error, short_reason
from hpo.storages._outages import storage_retry_seconds
from hpo.storages._retrying import RetryingCalls, retry_methods
from hpo.storages._urls import mask_url

if TYPE_CHECKING:
    import optuna

# The package's logger, as before the split: log lines still say ``hpo.storages``.
logger = logging.getLogger("hpo.storages")

_RETRIED_METHODS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_params",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "_get_stale_trial_ids",
    # What Optuna's ``_CachedStorage`` calls on its backend directly:
    "_create_new_trial",
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
)


_OWN_METHODS = frozenset({"_get_stale_trial_ids", "get_study_id_from_name"})
"""Retried methods the class defines itself (calling ``_call``), not wrapped again."""


class StudyNameCollationError(StorageError):
    """A study found by a name that differs from the one asked for (a MySQL collation)."""


@functools.cache
def resilient_rdb_storage_class() -> type[optuna.storages.RDBStorage]:
    """``RDBStorage`` that rides out a lost database connection (PostgreSQL, MySQL).

    Once the storage has been opened, a call that fails with a connection error (server
    restarted, failover, network blip) is retried after 0.25, 0.5, 1 ... 8 s until
    ``HPO_STORAGE_RETRY_SECONDS`` (120 s) have passed since the connection was lost; then
    it raises :class:`StorageUnavailableError` and later calls fail after one attempt
    until one succeeds. What makes retrying safe:

    - a connection error means the server never started the transaction or rolled it
      back (pooled connections are pre-pinged, so a dead one is replaced, not used);
    - writes are upserts (attrs, reports, params, values, heartbeats), except trial and study
      creation: if the server committed a new trial but its acknowledgement was lost (a
      window of microseconds), the retry creates a second one and the first stays
      RUNNING with no heartbeat and no owner, which Optuna's stale check does not see;
      a worker waiting for the end of the budget fails it and queues it again once it
      has stayed unowned for a grace period (:mod:`hpo.workers.unowned`);
    - finishing a trial again after a lost acknowledgement finds it already finished
      in the requested state, which counts as success;
    - heartbeats are never retried (the next beat comes soon, and a heartbeat thread
      stuck in a backoff would delay the end of its trial), and for one grace period
      after an outage this process judges no trial stale, since no worker could
      beat during it.
    """
    import optuna

    base = optuna.storages.RDBStorage

    class ResilientRDBStorage(RetryingCalls, base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, retry_seconds: float | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budget = storage_retry_seconds() if retry_seconds is None else retry_seconds
            self._init_resilience(budget)

        def _outage_reason(self, exc: BaseException) -> str | None:
            return short_reason(exc) if is_connection_error(exc) else None

        def _unreachable(self, reason: str) -> str:
            return f"storage: {mask_url(self.url)} unreachable for {self._outage.budget:g} s ({reason})"

        def get_study_id_from_name(self, study_name: str) -> int:
            try:
                study_id: int = self._call(
                    "get_study_id_from_name", base.get_study_id_from_name, (study_name,), {}
                )
            except optuna.exceptions.StorageInternalError as exc:
                raise _unstorable_name(study_name, exc) or exc from None
            stored = self.get_study_name_from_id(study_id)
            if stored != study_name:
                # MySQL/MariaDB compare names by a collation: ``REV`` finds ``rev`` (or ``Rév``)
                raise StudyNameCollationError(
                    [
                        f"name: the database takes {study_name!r} for the existing study "
                        f"{stored!r} (its collation ignores case and accents); use that exact "
                        "name, or one that differs in more than case or accents"
                    ]
                )
            return study_id

        def create_new_study(self, directions: Any, study_name: str | None = None) -> int:
            try:
                return int(super().create_new_study(directions, study_name))
            except optuna.exceptions.StorageInternalError as exc:
                raise _unstorable_name(study_name or "", exc) or exc from None

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                logger.debug("heartbeat not recorded: %s", short_reason(exc))
                return
            self._outage.succeeded()

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
            ids: list[int] = self._call(
                "_get_stale_trial_ids", base._get_stale_trial_ids, (study_id,), {}
            )
            if ids and self._outage.recovered_within(float(grace)):
                return []  # nobody could beat during the outage: not evidence of death
            return ids

    retry_methods(
        ResilientRDBStorage,
        base,
        [name for name in _RETRIED_METHODS if name not in _OWN_METHODS and hasattr(base, name)],
        module=__name__,
    )
    return ResilientRDBStorage


# The class's ``__module__`` is this module: pickle finds it here, as it finds it at
# ``hpo.storages.ResilientRDBStorage`` through the package's own ``__getattr__``.
def __getattr__(name: str) -> Any:
    """``hpo.storages.ResilientRDBStorage`` without importing Optuna when the module loads."""
    if name == "ResilientRDBStorage":
        return resilient_rdb_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_UNSTORABLE_CODES = frozenset({1267, 1366})
"""MySQL/MariaDB: "Illegal mix of collations", "Incorrect string value"."""


def _unstorable_name(study_name: str, exc: BaseException) -> StorageError | None:
    """One line for a study name the database's character set cannot hold (an emoji in a
    MySQL ``utf8mb3`` table), instead of Optuna's "exception during the commit"."""
    from hpo.errors import exception_chain

    for cause in exception_chain(exc):
        args = getattr(cause, "args", ())
        if args and isinstance(args[0], int) and args[0] in _UNSTORABLE_CODES:
            return StorageError(
                [
                    f"name: the database cannot store the study name {study_name!r} in its "
                    "character set; convert it to utf8mb4 or use a name without such "
                    "characters"
                ]
            )
    return None
