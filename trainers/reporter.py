"""The trainer-side half of the contract with the `hpo` runner.

Trainers stay free of Optuna: they receive an optional object with a
``report(step, metrics)`` method and stop when it raises :class:`Pruned`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable


class Pruned(Exception):
    """Raised by a reporter to tell the trainer to stop this run early."""


# Failures that are the user's to fix (bad data, impossible parameters): a command-line run
# exits 2 on these like on any other bad input; the rest (NaN loss, collapse) exit 1.
USER_ERROR_REASONS = frozenset(
    {"data", "bad_params", "bad_checkpoint", "channel_mismatch", "no_test_split", "no_cuda"}
)


def one_line(text: str) -> str:
    """``text`` with control characters (line breaks, NUL, escapes) shown escaped, so a
    message from a path or a file stays one line in logs and on the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class TrainingFailed(Exception):
    """A run that cannot go on (collapse, NaN loss, ...), with a short machine-readable reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Reporter(Protocol):
    """Receives one call per epoch (or evaluation step)."""

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record ``metrics`` for ``step``; raise :class:`Pruned` to stop the run."""


class NullReporter:
    """Reporter used when a trainer runs alone: records nothing, never prunes."""

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        return None


class RecordingReporter:
    """Keeps every report in memory; handy for tests and notebooks."""

    def __init__(self) -> None:
        self.history: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.history.append((step, dict(metrics)))
