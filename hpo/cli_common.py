"""Pieces every ``hpo`` command module shares: consoles, option types, error handling."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.errors import MarkupError
from rich.markup import escape

from hpo.console import BestEffortConsole
from hpo.errors import HpoError
from hpo.storages import mask_url
from trainers.reporter import USER_ERROR_REASONS, TrainingFailed, one_line

if TYPE_CHECKING:
    from rich.text import Text


class _SafeConsole(BestEffortConsole):
    """A console that prints text as written: study names, parameters, fail reasons and
    paths are user text, where ``[gelu]`` is not markup. A line that styles itself asks
    for ``markup=True`` (escaping the user text in it); one with a stray ``[/...]`` even
    then is printed literally instead of raising ``MarkupError`` mid-command.

    A write that fails (a closed pipe, a full disk) does not stop the command either: the
    console goes quiet and :func:`handles_errors` reports it once the command is done.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"markup": False, "highlight": False, **kwargs})

    def render_str(self, text: str, *args: Any, **kwargs: Any) -> Text:
        try:
            return super().render_str(text, *args, **kwargs)
        except MarkupError:
            kwargs["markup"] = False
            return super().render_str(text, *args, **kwargs)


out = _SafeConsole()
err = _SafeConsole(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

StudyFile = Annotated[Path, typer.Argument(help="Study file (YAML).", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a key: --set budget.n_trials=3 (repeatable)."),
]
TrainerSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a key of the config: --set params.epochs=3 (repeatable)."
    ),
]
Verbose = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv: debug).")
]


def _setup_logging(verbose: int) -> None:
    import optuna

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    optuna.logging.set_verbosity(
        optuna.logging.ERROR
        if verbose == 0
        else optuna.logging.INFO
        if verbose == 1
        else optuna.logging.DEBUG
    )


def _fail(problems: list[str], code: int = 2) -> None:
    for line in problems:  # stderr that cannot be written takes the message quietly
        err.print(
            f"[red]error:[/red] {escape(one_line(mask_url(line)))}",
            markup=True,
            soft_wrap=True,
        )
    raise typer.Exit(code)


def _flush_stdout() -> None:
    """Flush what the command wrote to ``sys.stdout`` itself, while its failure can be told.

    Python flushes it again at exit, where a failure prints ``Exception ignored ...`` and
    turns the exit status into 120; a failure here is kept on ``out`` (whose stream is
    then pointed at /dev/null) and reported like any other lost output.
    """
    if sys.stdout is None:  # started with stdout closed
        return
    try:
        sys.stdout.flush()
    except (OSError, ValueError) as exc:  # ValueError: a stream closed under us
        out.lost(exc if isinstance(exc, OSError) else OSError(errno.EBADF, str(exc)))


def _lost_output() -> OSError | None:
    """The first write to stdout or stderr that failed during the command, if any."""
    return out.write_error or err.write_error


_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EPIPE})


def handles_errors(fn: F) -> F:
    """Turn user errors into one line per problem and exit code 2, never a traceback.

    Output that could not be written ends the command with ``error: cannot write the
    output: <reason>`` and exit code 1: at once when the command wrote it itself
    (``sys.stdout.write``), after the command otherwise, so that a study whose progress
    or summary was lost still runs to its end. The message goes to stderr unless stderr
    is what failed.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out.reset()
        err.reset()
        try:
            result = fn(*args, **kwargs)
        except HpoError as exc:
            _fail(exc.problems, exc.exit_code)
        except TrainingFailed as exc:  # ``hpo train``: bad data, impossible params, NaN loss
            code = 2 if exc.reason in USER_ERROR_REASONS else 1
            _fail([f"training failed ({exc.reason}): {exc}"], code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None
        except OSError as exc:
            if exc.filename is not None or exc.errno not in _OUTPUT_ERRNOS:
                raise
            # the printed output could not be written (> /dev/full, a full disk, a closed pipe)
            _flush_stdout()
            _fail([_cannot_write(exc)], 1)
        _flush_stdout()
        lost = _lost_output()
        if lost is not None:
            _fail([_cannot_write(lost)], 1)
        return result

    return wrapper  # type: ignore[return-value]


def _cannot_write(exc: OSError) -> str:
    """One wording for every lost output, whichever way it was found out."""
    return f"cannot write the output: {exc.strerror or exc}"
