"""Storage calls retried through an outage: what the RDB and gRPC storages share.

A storage class mixes :class:`RetryingCalls` in before Optuna's own class and says what
counts as a lost connection (:meth:`RetryingCalls._outage_reason`) and how to name the
storage when it gives up (:meth:`RetryingCalls._unreachable`); the retry loop, the budget
and the treatment of a lost acknowledgement are the same for both.
"""

from __future__ import annotations

import abc
import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from hpo.storages._outages import DEFAULT_STORAGE_RETRY_S, StorageUnavailableError, _Outage


class RetryingCalls(abc.ABC):
    """Retries a storage method while the storage is unreachable, within one budget."""

    _outage: _Outage
    _depth: threading.local

    def _init_resilience(self, budget: float) -> None:
        self._outage = _Outage(budget)
        self._depth = threading.local()

    @abc.abstractmethod
    def _outage_reason(self, exc: BaseException) -> str | None:
        """Why ``exc`` is a lost connection (retried), or ``None`` (raised as it is)."""

    @abc.abstractmethod
    def _unreachable(self, reason: str) -> str:
        """The one line for a storage gone longer than the budget."""

    def _stored_trial(self, trial_id: int) -> Any:
        """The trial as stored, read by Optuna's own class (without the retry loop)."""
        return getattr(super(), "get_trial")(trial_id)  # noqa: B009 (the storage base's)

    def __getstate__(self) -> dict[Any, Any]:
        state: dict[Any, Any] = dict(super().__getstate__())  # type: ignore[call-overload]
        state["_outage_budget"] = self._outage.budget
        state.pop("_outage", None)
        state.pop("_depth", None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        budget = state.pop("_outage_budget", DEFAULT_STORAGE_RETRY_S)
        super().__setstate__(state)  # type: ignore[misc]
        self._init_resilience(budget)

    def _call(self, name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        from optuna.exceptions import UpdateFinishedTrialError

        if getattr(self._depth, "value", 0):  # a nested call: the outermost one retries
            return fn(self, *args, **kwargs)
        self._depth.value = 1
        try:
            attempt, started = 0, time.monotonic()
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
                    reason = self._outage_reason(exc)
                    if reason is None:
                        raise
                    wait = self._outage.wait_before_retry(attempt, exc, started)
                    if wait is None:
                        raise StorageUnavailableError([self._unreachable(reason)]) from None
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
            stored = self._stored_trial(trial_id)
        except Exception:
            return False
        same_values = values is None or list(stored.values or []) == list(values)
        return bool(stored.state == state and same_values)


def retry_methods(cls: type, base: type, names: Iterable[str], *, module: str) -> None:
    """Give ``cls`` each of ``base``'s ``names`` as a method that goes through ``_call``,
    and name it as defined at the top of ``module`` (where pickle, in a worker, finds it)."""

    def wrap(name: str) -> Callable[..., Any]:
        fn = getattr(base, name)

        @functools.wraps(fn)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self._call(name, fn, args, kwargs)

        return method

    for name in names:
        setattr(cls, name, wrap(name))
    cls.__qualname__ = cls.__name__
    cls.__module__ = module
