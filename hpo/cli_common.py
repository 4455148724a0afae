"""Pieces every ``hpo`` command module shares: consoles, option types, error handling."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape

from hpo.errors import HpoError
from hpo.storages import mask_url, storage_file, storage_url
from trainers.reporter import USER_ERROR_REASONS, TrainingFailed, one_line

if TYPE_CHECKING:
    from rich.text import Text

    from hpo.config import StudyConfig


class _SafeConsole(Console):
    """A console that prints text as written: study names, parameters, fail reasons and
    paths are user text, where ``[gelu]`` is not markup. A line that styles itself asks
    for ``markup=True`` (escaping the user text in it); one with a stray ``[/...]`` even
    then is printed literally instead of raising ``MarkupError`` mid-command.
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
    for line in problems:
        err.print(
            f"[red]error:[/red] {escape(one_line(mask_url(line)))}",
            markup=True,
            soft_wrap=True,
        )
    raise typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn user errors into one line per problem and exit code 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HpoError as exc:
            _fail(exc.problems, exc.exit_code)
        except TrainingFailed as exc:  # ``hpo train``: bad data, impossible params, NaN loss
            code = 2 if exc.reason in USER_ERROR_REASONS else 1
            _fail([f"training failed ({exc.reason}): {exc}"], code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def check_output_file(
    path: Path, option: str, example_name: str, cfg: StudyConfig | None = None
) -> None:
    """Fail (exit 2) before any work when ``path`` cannot become the file a command writes.

    Catches what shows without writing: a folder given as the file, a file where a folder
    should be, a folder or file this user may not write, and a file that must not be
    replaced: ``cfg``'s study file or storage, or any SQLite database. Missing folders are
    fine (they are created); what only a write reveals is left to :func:`write_output_file`.
    ``example_name`` is the file name the hint for a folder suggests.
    """
    if path.is_dir():
        _fail([f"{option}: {path} is a folder; give a file name in it, e.g. {path / example_name}"])
    kept = _kept_file(path, cfg)
    if kept:
        _fail([f"{option}: {path} is {kept}; it is not replaced, choose another file name"])
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        _fail([f"{option}: cannot write {path}: {folder} is not a folder"])
    if not os.access(folder, os.W_OK | os.X_OK):
        _fail([f"{option}: cannot write {path}: folder {folder} is not writable"])
    if path.exists() and not os.access(path, os.W_OK):
        _fail([f"{option}: cannot write {path}: the file is read-only"])


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _kept_file(path: Path, cfg: StudyConfig | None) -> str | None:
    """What ``path`` already holds that an output must never overwrite, if anything."""
    if not path.is_file():
        return None
    if cfg is not None:
        storage = storage_file(storage_url(cfg))
        if storage is not None and _same_file(path, storage):
            return "this study's storage"
        if cfg.source and _same_file(path, Path(cfg.source)):
            return "the study file"
    try:
        with path.open("rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC:
                return "a SQLite database"
    except OSError:
        return None  # unreadable: the writability checks speak for it
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def write_output_file(path: Path, text: str, option: str) -> Path:
    """Write ``text`` to ``path``, creating missing folders.

    A failed write (``/proc/x``, a full disk) is one error line naming ``option``, exit 2,
    and leaves no partial new file behind.
    """
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        if not existed:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        _fail([f"{option}: cannot write {path}: {exc.strerror or exc}"])
    return path
