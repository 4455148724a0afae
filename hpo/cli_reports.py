"""Commands that read studies back: dashboard, report, export, compare."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from hpo.cli_common import (
    SetOption,
    StudyFile,
    Verbose,
    _fail,
    _setup_logging,
    err,
    handles_errors,
    out,
)
from hpo.errors import ConfigError
from hpo.output_files import check_output_file, write_output_file
from trainers.reporter import one_line

if TYPE_CHECKING:
    from hpo.config import StudyConfig

OUTPUT_OPTION = "-o/--output"
"""How errors about the file ``report`` and ``export`` write name the option."""


def warn_exposed(host: str) -> None:
    """The no-login warning for a dashboard bound beyond loopback (``dashboard`` and ``run``)."""
    from hpo.dashboard import exposure_warning

    warning = exposure_warning(host)
    if warning is not None:
        err.print(f"[yellow]warning:[/yellow] {escape(one_line(warning))}", markup=True)


@handles_errors
def dashboard(
    study: StudyFile,
    set_: SetOption = None,
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port (0: any free port).")
    ] = 8080,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; the dashboard has no login.")
    ] = "127.0.0.1",
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host name to answer besides loopback ones, even on 0.0.0.0 (repeatable, "
            "or a comma list; default: HPO_DASHBOARD_ALLOWED_HOSTS).",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = 0,
) -> None:
    """Serve optuna-dashboard on the study's storage and artifacts until Ctrl-C."""
    from hpo.config import load_study_config
    from hpo.dashboard import create_server, parse_allowed_hosts

    _setup_logging(verbose)
    allowed = (
        None  # HPO_DASHBOARD_ALLOWED_HOSTS, when set
        if allowed_host is None
        else parse_allowed_hosts(allowed_host, option="--allowed-host")
    )
    cfg = load_study_config(study, set_ or [], for_reading=True)
    server = create_server(cfg, host, port, warn_exposure=False, allowed_hosts=allowed)
    warn_exposed(host)
    out.print(
        f"optuna-dashboard for {one_line(cfg.name)}: {server.url}",
        soft_wrap=True,
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        server.stop()


@handles_errors
def report(
    study: StudyFile,
    set_: SetOption = None,
    output: Annotated[  # str: a Path drops the trailing "/" that says a folder was meant
        str, typer.Option("--output", "-o", help="HTML file to write; '-' for stdout.")
    ] = "report.html",
    verbose: Verbose = 0,
) -> None:
    """Write one self-contained HTML report (plots, top trials, counts)."""
    from hpo.config import load_study_config
    from hpo.report import build_report

    _setup_logging(verbose)
    cfg = load_study_config(study, set_ or [], for_reading=True)
    if output == "-":
        sys.stdout.write(build_report(cfg))
        return
    check_output_file(output, OUTPUT_OPTION, "report.html", cfg)
    path = write_output_file(Path(output), build_report(cfg), OUTPUT_OPTION)
    out.print(f"report written to {one_line(str(path))}", soft_wrap=True)


@handles_errors
def export(
    study: StudyFile,
    set_: SetOption = None,
    output: Annotated[  # str: a Path drops the trailing "/" that says a folder was meant
        str, typer.Option("--output", "-o", help="Trainer config to write; '-' for stdout.")
    ] = "best.yaml",
) -> None:
    """Write the best trial as a trainer config for ``hpo train``."""
    from hpo.config import load_study_config
    from hpo.export import export_text, retrain_command

    cfg = load_study_config(study, set_ or [], for_reading=True)
    if output == "-":
        sys.stdout.write(export_text(cfg))
        return
    check_output_file(output, OUTPUT_OPTION, "best.yaml", cfg)
    path = write_output_file(Path(output), export_text(cfg), OUTPUT_OPTION)
    out.print(
        f"best trial written to {one_line(str(path))}; retrain with: "
        f"{one_line(retrain_command(path, cfg))}",
        soft_wrap=True,
    )


def _load_each(paths: list[Path], overrides: list[str]) -> list[StudyConfig]:
    """Every study file (each with ``overrides``), each problem prefixed by its file."""
    from hpo.config import load_study_config

    configs: list[StudyConfig] = []
    problems: list[str] = []
    for path in paths:
        try:
            configs.append(load_study_config(path, overrides, for_reading=True))
        except ConfigError as exc:
            problems += [p if p.startswith(f"{path}:") else f"{path}: {p}" for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    return configs


@handles_errors
def compare(
    studies: Annotated[
        list[Path], typer.Argument(help="Two or more study files.", show_default=False)
    ],
    set_: SetOption = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="table or json")] = "table",
) -> None:
    """Studies side by side: best value, trials to reach it, compute spent.

    ``--set`` applies to every file, e.g. the shared ``storage=${HPO_STORAGE_URL}``.
    """
    from rich.table import Table
    from rich.text import Text

    from hpo.compare import compare_studies, comparison_rows, comparison_warnings

    if len(studies) < 2:
        _fail(["compare: give at least two study files"])
    if format_ not in ("table", "json"):
        _fail([f"--format: must be table or json (got {format_!r})"])
    summaries = compare_studies(_load_each(studies, set_ or []))
    if format_ == "json":
        sys.stdout.write(json.dumps([s.as_dict() for s in summaries], indent=2) + "\n")
        return
    for warning in comparison_warnings(summaries):
        err.print(f"[yellow]warning:[/yellow] {escape(one_line(warning))}", markup=True)
    table = Table(title="study comparison")
    table.add_column("")
    for name, summary in zip(_short_names(studies), summaries, strict=True):
        # Text: names are user text, one_line: with no line breaks or terminal escapes;
        # fold: a storage URL is worth reading whole
        header = Text(f"{one_line(summary.study)}\n({one_line(name)})")
        table.add_column(header, justify="right", overflow="fold")
    for label, cells in comparison_rows(summaries):
        table.add_row(Text(one_line(label)), *(Text(one_line(cell)) for cell in cells))
    out.print(table)


def _short_names(paths: list[Path]) -> list[str]:
    """Each file's name with as many of its folders as tell it apart (one/study.yaml)."""
    parts = [path.resolve().parts for path in paths]
    for depth in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in paths]  # the same file twice


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hpo`` app."""
    app.command()(dashboard)
    app.command()(report)
    app.command()(export)
    app.command()(compare)
