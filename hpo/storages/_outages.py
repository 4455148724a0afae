"""A database lost mid-run: how long to retry, and the error once the budget is spent.

The budget runs from when the connection was lost, not per call, so a process gives up in
bounded time; its exit status 75 tells the supervisor "storage lost", not "crashed".
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator

from hpo.errors import HpoError, StorageError, exception_chain
from hpo.storages._connection_errors import short_reason

# The package's logger, as before the split: log lines still say ``hpo.storages``.
logger = logging.getLogger("hpo.storages")

STORAGE_RETRY_ENV = "HPO_STORAGE_RETRY_SECONDS"
"""Environment variable: how long a lost database connection is retried (seconds)."""
DEFAULT_STORAGE_RETRY_S = 120.0
STORAGE_UNAVAILABLE_EXIT = 75
"""Exit status (EX_TEMPFAIL) of a worker that gave up on an unreachable storage."""


class StorageUnavailableError(StorageError):
    """The database stopped answering mid-run and did not come back within the retry budget."""

    exit_code = STORAGE_UNAVAILABLE_EXIT


def storage_retry_seconds() -> float:
    """How long a storage that was reachable keeps retrying a lost connection.

    ``HPO_STORAGE_RETRY_SECONDS`` overrides the default (120 s); 0 turns retries off. A
    value that is no finite number (``nan`` retried forever) counts as not given.
    """
    raw = os.environ.get(STORAGE_RETRY_ENV, "").strip()
    try:
        seconds = float(raw) if raw else DEFAULT_STORAGE_RETRY_S
    except ValueError:
        return DEFAULT_STORAGE_RETRY_S
    return max(seconds, 0.0) if math.isfinite(seconds) else DEFAULT_STORAGE_RETRY_S


class _Outage:
    """When the connection was lost, and whether the retry budget for it is spent."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.down_since: float | None = None
        self.last_recovery: float | None = None
        self.lock = threading.Lock()

    def wait_before_retry(
        self, attempt: int, exc: BaseException, call_started: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` once the budget is spent.

        The budget runs from the outage's start, and never longer than from the start of
        the call itself: another thread's successful call (a heartbeat) ends the outage
        for the log, but cannot give a call that keeps failing a fresh budget.
        """
        now = time.monotonic()
        with self.lock:
            first = self.down_since is None
            if self.down_since is None:
                self.down_since = now
            elapsed = now - self.down_since
        if call_started is not None:
            elapsed = max(elapsed, now - call_started)
        remaining = self.budget - elapsed
        if remaining <= 0:
            return None
        wait = min(0.25 * 2.0 ** min(attempt, 5), 8.0, remaining)
        if first:
            logger.warning(
                "storage connection lost (%s); retrying for up to %g s",
                short_reason(exc),
                self.budget,
            )
        return wait

    def succeeded(self) -> None:
        """A call went through: the outage (if any) is over."""
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is None:
                return
            lasted = time.monotonic() - self.down_since
            self.down_since = None
            self.last_recovery = time.monotonic()
        logger.warning("storage reachable again after %.1f s", lasted)

    def recovered_within(self, seconds: float) -> bool:
        """Whether an outage ended less than ``seconds`` ago."""
        last = self.last_recovery
        return last is not None and time.monotonic() - last < seconds


def storage_outage(exc: BaseException) -> StorageUnavailableError | None:
    """The :class:`StorageUnavailableError` behind ``exc``, if a lost database caused it.

    Optuna sometimes raises something else while handling it (a failed ``tell`` inside
    its optimize loop), so the whole cause/context chain is searched.
    """
    for link in exception_chain(exc):
        if isinstance(link, StorageUnavailableError):
            return link
    return None


@contextlib.contextmanager
def outage_as_error() -> Iterator[None]:
    """A database lost mid-run past the retry budget becomes :class:`StorageUnavailableError`
    (one masked line; the CLI exits 75), whatever Optuna raised while handling it.

    Also a decorator: :func:`hpo.run_study` and :func:`hpo.confirm_study` use it, so a script
    that catches :class:`HpoError` sees an outage as the CLI does.
    """
    try:
        yield
    except HpoError:
        raise
    except Exception as exc:
        outage = storage_outage(exc)
        if outage is None:
            raise
        raise outage from None
