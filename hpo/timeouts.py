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
import sys
import threading
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

_ARMED: dict[int, list[_Alarm | _Watchdog]] = {}
"""The timers each thread has armed and not yet turned off."""


def disarm() -> None:
    """Turn off every timer this thread armed and has not turned off.

    A timeout that lands as the body ends (between its last line and the timer's own
    ``__exit__``, or in that ``__exit__`` before it turned anything off) escapes with the
    timer still repeating: the caller's ``finally`` calls this, so nothing fires later.
    """
    for timer in list(_ARMED.get(threading.get_ident(), ())):
        timer.close()


class deadline:
    """Raise :class:`TrialTimeout` in the body once ``seconds`` have passed (``None``: no limit).

    A class, not a generator: a timeout landing in contextlib's exit, before it resumed
    the generator, left the timer on. One landing after the body's last line but before
    ``__exit__`` is called escapes with the timer on all the same: callers call
    :func:`disarm` in a ``finally`` (the objective does).
    """

    def __init__(self, seconds: float | None) -> None:
        self._timer: _Alarm | _Watchdog | None = None
        if not seconds:
            return
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
            self._timer = _Alarm(seconds)
        else:
            self._timer = _Watchdog(seconds)

    def __enter__(self) -> None:
        if self._timer is not None:
            self._timer.arm()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.close()


class _Alarm:
    """``SIGALRM`` at the deadline, then every :data:`REPEAT_S`, while the body runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._active = False
        self._previous: Any = None

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        if not self._active or _within(frame, _CLOSE_CODES):
            return  # the body has ended, or is being closed: nothing more to interrupt
        raise TrialTimeout(f"trial exceeded trial_timeout of {self.seconds:g}s")

    def arm(self) -> None:
        self._previous = signal.signal(signal.SIGALRM, self._raise)
        self._active = True
        _ARMED.setdefault(threading.get_ident(), []).append(self)
        signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT_S)

    def close(self) -> None:
        """Turn the timer off and put the previous handler back (once; later calls no-ops)."""
        if not self._active:
            return
        self._active = False  # first: from here on a pending SIGALRM raises nothing
        signal.setitimer(signal.ITIMER_REAL, 0)
        # Our handler, inactive, stays until the timer is off: with the previous one
        # (often SIG_DFL, which ends the process) a late signal could not be dropped.
        previous = self._previous if self._previous is not None else signal.SIG_DFL
        signal.signal(signal.SIGALRM, previous)
        _forget(self)


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
                frame = sys._current_frames().get(self._target)
                if not _within(frame, _CLOSE_CODES):  # not while it is being closed
                    _set_async_exc(self._target, TrialTimeout)
            wait = REPEAT_S

    def arm(self) -> None:
        _ARMED.setdefault(threading.get_ident(), []).append(self)
        self._thread.start()

    def close(self) -> None:
        """Stop the watcher and withdraw a timeout not yet raised (once)."""
        if self._done:
            return
        self._done = True  # the watcher checks it, under the lock, before each raise
        try:
            with self._lock:  # one raised before now lands here, or is withdrawn
                _set_async_exc(self._target, None)
        finally:
            self._finished.set()
            self._thread.join()
            _forget(self)


def _forget(timer: _Alarm | _Watchdog) -> None:
    armed = _ARMED.get(threading.get_ident(), [])
    if timer in armed:
        armed.remove(timer)
    if not armed:
        _ARMED.pop(threading.get_ident(), None)


def _within(frame: FrameType | None, codes: frozenset[Any]) -> bool:
    """Whether ``frame`` or a frame below it runs one of ``codes``."""
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


_CLOSE_CODES = frozenset(
    {
        deadline.__exit__.__code__,
        _Alarm.close.__code__,
        _Watchdog.close.__code__,
    }
)
