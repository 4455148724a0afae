"""A per-trial wall-clock limit that ends a hung trainer without killing the worker.

In the main thread a ``SIGALRM`` timer raises :class:`TrialTimeout` inside the trainer,
even while it is blocked in ``sleep`` or a socket read. Elsewhere (a worker thread) the
exception is delivered asynchronously, which interrupts Python code but has to wait for
a blocking C call to return.

Past the deadline the exception comes again every :data:`REPEAT_S` seconds until the
body has ended: a trainer that swallowed one (a retry loop around the call that hangs)
would otherwise keep its trial RUNNING, heartbeat and all, for ever. The price: cleanup
the timeout sets off in the trainer (``finally``, ``with``) has a second before the next
one. Once the body has ended nothing more is raised, not even by a timer that fired a
moment before.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any


class TrialTimeout(BaseException):
    """The trial ran past ``budget.trial_timeout``.

    A ``BaseException``, like ``KeyboardInterrupt``: a trainer's "retry on any error"
    (``except Exception``) must not take it for a flaky call and try again. The objective
    catches it and records the trial as FAIL ``timeout``.
    """


REPEAT_S = 1.0
"""Seconds between repeats of the timeout once the deadline has passed."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in the body once ``seconds`` have passed (``None``: no limit)."""
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _Alarm(seconds):
            yield
    else:
        with _Watchdog(seconds):
            yield


class _Alarm:
    """``SIGALRM`` at the deadline, then every :data:`REPEAT_S`, while the body runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._active = False
        self._previous: Any = None

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        if self._active:  # a signal that fired as the body ended is dropped
            raise TrialTimeout(f"trial exceeded trial_timeout of {self.seconds:g}s")

    def __enter__(self) -> _Alarm:
        self._previous = signal.signal(signal.SIGALRM, self._raise)
        self._active = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT_S)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._active = False  # first: from here on a pending SIGALRM raises nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        # Our handler, inactive, stays until the timer is off: with the previous one
        # (often SIG_DFL, which ends the process) a late signal could not be dropped.
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGALRM, previous)


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in the thread at its next bytecode; ``None`` withdraws one not yet raised."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exc is None else ctypes.py_object(exc)
    )


class _Watchdog:
    """A thread that raises :class:`TrialTimeout` in this one at the deadline, then every
    :data:`REPEAT_S`, while the body runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._target = threading.get_ident()
        self._lock = threading.Lock()
        self._done = False
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._fire, name="hpo-trial-timeout", daemon=True)

    def _fire(self) -> None:
        wait = self.seconds
        while not self._finished.wait(wait):
            with self._lock:
                if self._done:
                    return
                _set_async_exc(self._target, TrialTimeout)
            wait = REPEAT_S

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._done = True  # the watcher checks it, under the lock, before each raise
        try:
            with self._lock:  # one raised before now lands here, or is withdrawn
                _set_async_exc(self._target, None)
        finally:
            self._finished.set()
            self._thread.join()
