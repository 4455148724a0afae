"""Errors the CLI turns into one line per problem and exit code 2."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class HpoError(Exception):
    """Base class for errors that are the user's to fix, printed without a traceback."""

    exit_code = 2

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = [p for p in problems if p]
        super().__init__("\n".join(self.problems))


class ConfigError(HpoError):
    """A study file, override or trainer config is invalid; ``problems`` has one line each."""


class StorageError(HpoError):
    """The storage cannot be opened or written (message has any password masked)."""


class StudyMismatchError(HpoError):
    """An existing study disagrees with the study file (changed space or objective)."""


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, any storage password masked first.

    Masked before the cut: a cut inside a storage URL, before its ``@``, leaves text in
    which no password can be recognised any more (``--set budget.n_trials=postgresql://
    user:secret...`` showed most of the secret).
    """
    from hpo.storages._urls import mask_url  # only when a message is made: no import cost

    shown = mask_url(repr(value))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
