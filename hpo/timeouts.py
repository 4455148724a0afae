"""A per-trial wall-clock limit that ends a hung trainer without killing the worker.

In the main thread a ``SIGALRM`` timer raises :class:`TrialTimeout` inside the trainer,
even while it is blocked in ``sleep`` or a socket read. Elsewhere (a worker thread) the
exception is delivered asynchronously, which interrupts Python code but has to wait for
a blocking C call to return.
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class TrialTimeout(Exception):
    """The trial ran past ``budget.trial_timeout``."""


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TrialTimeout` in the body once ``seconds`` have passed (``None``: no limit)."""
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        with _alarm(seconds):
            yield
    else:
        with _watchdog(seconds):
            yield


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise TrialTimeout(f"trial exceeded trial_timeout of {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    target = threading.get_ident()
    finished = threading.Event()

    def _fire() -> None:
        if not finished.wait(seconds):
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(target), ctypes.py_object(TrialTimeout)
            )

    watcher = threading.Thread(target=_fire, name="hpo-trial-timeout", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()
