"""A console for output that must not stop work: progress, summaries, the CLI's own lines.

Kept apart from :mod:`hpo.progress` so that every command can use it without importing
Optuna (``hpo --help`` and ``hpo validate`` start in a fraction of a second).
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console


class BestEffortConsole(Console):
    """A console whose failed writes are kept, not raised: output lost must not stop work.

    Rich answers a broken pipe with ``SystemExit(1)`` (after pointing fd 1 at /dev/null,
    whichever stream broke) and a full disk with ``OSError``; raised inside an Optuna
    callback or the supervisor's loop, either ends the study, silently. Here the first
    failed write turns the console quiet and is kept in :attr:`write_error`, for the
    command to report once at its end (``hpo.cli_common.handles_errors``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_error: OSError | None = None
        """The first write that failed; the console has been quiet since."""

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        # Every print and Live refresh writes here, when its outermost buffer closes.
        try:
            super().__exit__(exc_type, exc_value, traceback)
        except OSError as exc:  # ENOSPC, EIO, EPIPE on a stream rich did not recognise
            if exc.filename is not None:  # a file a renderable read, not our output
                raise
            self.lost(exc)

    def on_broken_pipe(self) -> None:
        """Rich's hook for ``BrokenPipeError``: keep it instead of exiting."""
        self.lost(BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE)))

    def reset(self) -> None:
        """Write again: a new command in the same process (a notebook, a test's runner)
        must not inherit the last one's lost output."""
        self.quiet = False
        self.write_error = None

    def lost(self, exc: OSError) -> None:
        """Turn the console off after ``exc``; the first failure is the one reported."""
        self.quiet = True  # rich drops the unwritten text at its next write
        if self.write_error is None:
            self.write_error = exc
        _discard_stream(self.file)


def _discard_stream(file: IO[str]) -> None:
    """Point a failed standard stream at /dev/null.

    Python flushes stdout and stderr again at exit; the text still buffered would fail a
    second time there, print ``Exception ignored ...`` and turn the exit status into 120.
    """
    if file not in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        return
    try:
        fd = file.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):  # no descriptor (a test's capture, a StringIO)
        return
    try:
        os.dup2(devnull, fd)
    except OSError:
        pass
    finally:
        os.close(devnull)


def display_write(console: Console, write: Callable[[], object]) -> bool:
    """Run one write of a progress display; ``False`` when it failed (the console is off).

    Progress is a side concern: the study goes on without it. A failed write turns the
    console quiet; on a :class:`BestEffortConsole` it is kept for the end of the command.
    A plain rich console answers a broken pipe with ``SystemExit(1)`` after setting
    ``quiet``: that one is taken as the broken pipe it is, any other exit is passed on.
    """
    try:
        write()
    except OSError as exc:
        error = exc
    except SystemExit:
        if not console.quiet:
            raise
        error = BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
    else:
        return not console.quiet
    if isinstance(console, BestEffortConsole):
        console.lost(error)
    else:
        console.quiet = True
    return False


def display_line(console: Console, text: str) -> bool:
    """Print one line of a display as written (no markup: fail reasons are the trainer's
    text) through :func:`display_write`; nothing once the console is off."""
    if console.quiet:
        return False
    print_line = functools.partial(
        console.print, text, markup=False, highlight=False, soft_wrap=True
    )
    return display_write(console, print_line)
