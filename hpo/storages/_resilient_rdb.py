"""``RDBStorage`` that rides out a database restart (PostgreSQL, MySQL).

The class is made on first use, so importing :mod:`hpo.storages` does not import Optuna.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpo.storages._connection_errors import is_connection_error, short_reason
from hpo.storages._outages import (
    DEFAULT_STORAGE_RETRY_S,
    StorageUnavailableError,
    _Outage,
    storage_retry_seconds,
)
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
    from optuna.exceptions import UpdateFinishedTrialError

    base = optuna.storages.RDBStorage

    class ResilientRDBStorage(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, retry_seconds: float | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budget = storage_retry_seconds() if retry_seconds is None else retry_seconds
            self._init_resilience(budget)

        def _init_resilience(self, budget: float) -> None:
            self._outage = _Outage(budget)
            self._depth = threading.local()

        def __getstate__(self) -> dict[Any, Any]:
            state = super().__getstate__()
            state["_outage_budget"] = self._outage.budget
            state.pop("_outage", None)
            state.pop("_depth", None)
            return state

        def __setstate__(self, state: dict[Any, Any]) -> None:
            budget = state.pop("_outage_budget", DEFAULT_STORAGE_RETRY_S)
            super().__setstate__(state)
            self._init_resilience(budget)

        def _call(self, name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            depth = getattr(self._depth, "value", 0)
            if depth:  # a nested call: the outermost one retries
                return fn(self, *args, **kwargs)
            self._depth.value = 1
            try:
                attempt = 0
                started = time.monotonic()
                while True:
                    try:
                        result = fn(self, *args, **kwargs)
                    except UpdateFinishedTrialError:
                        if (
                            attempt
                            and name == "set_trial_state_values"
                            and self._already_finished_as(args, kwargs)
                        ):
                            self._outage.succeeded()
                            return True
                        raise
                    except Exception as exc:
                        if not is_connection_error(exc):
                            raise
                        wait = self._outage.wait_before_retry(attempt, exc, started)
                        if wait is None:
                            raise StorageUnavailableError(
                                [
                                    f"storage: {mask_url(self.url)} unreachable for "
                                    f"{self._outage.budget:g} s ({short_reason(exc)})"
                                ]
                            ) from None
                        time.sleep(wait)
                        attempt += 1
                        continue
                    self._outage.succeeded()
                    return result
            finally:
                self._depth.value = 0

        def _already_finished_as(self, args: Any, kwargs: Any) -> bool:
            """After a lost acknowledgement: did our earlier attempt finish the trial?"""
            trial_id = kwargs.get("trial_id", args[0] if args else None)
            state = kwargs.get("state", args[1] if len(args) > 1 else None)
            values = kwargs.get("values", args[2] if len(args) > 2 else None)
            try:
                stored = base.get_trial(self, trial_id)
            except Exception:
                return False
            same_values = values is None or list(stored.values or []) == list(values)
            return stored.state == state and same_values

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

    def _wrap(name: str) -> Callable[..., Any]:
        fn = getattr(base, name)

        @functools.wraps(fn)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self._call(name, fn, args, kwargs)

        return method

    for name in _RETRIED_METHODS:
        if name != "_get_stale_trial_ids" and hasattr(base, name):
            setattr(ResilientRDBStorage, name, _wrap(name))
    ResilientRDBStorage.__name__ = ResilientRDBStorage.__qualname__ = "ResilientRDBStorage"
    ResilientRDBStorage.__module__ = __name__
    return ResilientRDBStorage


# The class's ``__module__`` is this module: pickle finds it here, as it finds it at
# ``hpo.storages.ResilientRDBStorage`` through the package's own ``__getattr__``.
def __getattr__(name: str) -> Any:
    """``hpo.storages.ResilientRDBStorage`` without importing Optuna when the module loads."""
    if name == "ResilientRDBStorage":
        return resilient_rdb_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
