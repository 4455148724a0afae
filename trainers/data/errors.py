"""The one exception every data problem becomes, so a failed trial says why in one line."""

from __future__ import annotations

from typing import Any

from trainers.reporter import TrainingFailed, one_line


class DataError(TrainingFailed, ValueError):
    """Data that cannot be used; the message names the file or dataset and the problem.

    A :class:`~trainers.reporter.TrainingFailed` with reason ``data``, so a trial that hits
    it is recorded with ``fail_reason: data`` and ``hpo train`` exits 2 with one line; still
    a ``ValueError`` for callers that catch that.
    """

    def __init__(self, source: object, problem: str | None = None) -> None:
        self.source = str(source)
        self.problem = problem
        text = self.source if problem is None else f"{source}: {problem}"
        text = " ".join(text.split())  # always one line, for study logs
        super().__init__("data", one_line(text))  # a NUL or escape from a path or a file

    def __reduce__(self) -> tuple[Any, ...]:
        return (DataError, (self.source, self.problem))
