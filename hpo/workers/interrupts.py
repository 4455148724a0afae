"""Ctrl-C and SIGTERM that end the running trial cleanly, whatever the process is doing.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be; inside
Optuna's ``ask`` or ``tell`` that would leave a trial RUNNING with nobody to finish it.
Here the first signal interrupts only the trainer: outside a trial it is remembered, the
study is told to stop, and the next trial start raises it where it can be recorded. A
second signal interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class InterruptState:
    """Whether a stop was asked for, and whether it may be raised right now."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self.in_trial = False
        self.in_optimize = False
        self.stop_study: Any = None
        """Called (no arguments) when a deferred interrupt should stop the optimize loop."""

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """Signal handler: raise now if that is safe (or asked twice), else defer."""
        first = not self.requested
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if not first or self.in_trial or not self.in_optimize:
            raise KeyboardInterrupt(self.signal_name)
        if self.stop_study is not None:
            try:
                self.stop_study()
            except RuntimeError:  # not inside the optimize loop after all
                raise KeyboardInterrupt(self.signal_name) from None

    def trainer_done(self) -> None:
        """The trainer has returned: a first signal now waits for the trial's bookkeeping."""
        self.in_trial = False

    def check(self) -> None:
        """Raise a deferred interrupt (called where raising is safe)."""
        if self.requested:
            raise KeyboardInterrupt(self.signal_name or "SIGINT")


def installed_state() -> InterruptState | None:
    """The state that SIGINT is routed to now, if an enclosing caller installed one."""
    owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
    return owner if isinstance(owner, InterruptState) else None


@contextmanager
def interrupt_handling(state: InterruptState | None = None) -> Iterator[InterruptState]:
    """Route SIGINT and SIGTERM to a state (main thread only; nested calls share one)."""
    existing = installed_state()
    if existing is not None:
        yield existing
        return
    state = state or InterruptState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, state.handle)
    try:
        yield state
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
