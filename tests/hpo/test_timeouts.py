"""The per-trial deadline, in the main thread (SIGALRM) and in a worker thread (async exception)."""

from __future__ import annotations

import threading
import time

import pytest

from hpo.timeouts import TrialTimeout, deadline


def test_main_thread_interrupts_blocking_sleep() -> None:
    started = time.monotonic()
    with pytest.raises(TrialTimeout), deadline(0.3):
        time.sleep(30)
    assert time.monotonic() - started < 5


def test_no_limit_and_fast_body() -> None:
    with deadline(None):
        pass
    with deadline(5.0):
        time.sleep(0.01)
    time.sleep(0.1)  # the timer was cancelled: nothing fires afterwards


def test_worker_thread_interrupts_python_code() -> None:
    outcome: list[str] = []

    def body() -> None:
        try:
            with deadline(0.3):
                end = time.monotonic() + 30
                while time.monotonic() < end:
                    sum(range(1000))
            outcome.append("finished")
        except TrialTimeout:
            outcome.append("timeout")

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert outcome == ["timeout"]
