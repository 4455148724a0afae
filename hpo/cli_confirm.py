"""``hpo confirm``: train the search's finalists again at fresh seeds, on the study's workers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated

import typer

from hpo.cli_common import SetOption, StudyFile, Verbose, _setup_logging, err, handles_errors, out
from hpo.cli_run import (
    ForceOption,
    GpusOption,
    PerGpuOption,
    WorkersOption,
    run_loaded,
    worker_overrides,
)

if TYPE_CHECKING:
    from pathlib import Path

    from rich.table import Table

    from hpo.config import StudyConfig
    from hpo.confirm import Confirmation


def _num(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4g}"


def _param(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def confirmation_table(confirmation: Confirmation) -> Table:
    """Finalists in the search's order: search value against the confirmed mean."""
    from rich.table import Table

    best = confirmation.best()
    table = Table(
        title=f"{confirmation.study_name}: {confirmation.metric} "
        f"({confirmation.direction}) at seeds {', '.join(map(str, confirmation.seeds))}",
        title_justify="left",
    )
    for name in ("trial", "search value", "confirmed mean", "sd", "runs", "params"):
        table.add_column(name, justify="left" if name == "params" else "right")
    for f in confirmation.finalists:
        runs = f"{len(f.values)}"
        if f.failed:
            runs += f" ({f.failed} failed)"
        if f.pending:
            runs += f" ({f.pending} to run)"
        marker = " *" if best is not None and f.trial == best.trial else ""
        table.add_row(
            f"#{f.trial}{marker}",
            _num(f.search_value),
            _num(f.mean),
            _num(f.sd),
            runs,
            ", ".join(f"{k}={_param(v)}" for k, v in f.params.items()),
        )
    return table


def verdict(confirmation: Confirmation) -> str:
    """One line: which finalist the confirmation picks, against the search's own best."""
    best = confirmation.best()
    if best is None:
        return "no confirmation run completed: nothing to pick"
    first = confirmation.finalists[0]
    line = f"picked: trial #{best.trial}, mean {_num(best.mean)} over {len(best.values)} run(s)"
    search_best = confirmation.search_best
    if search_best is not None and search_best not in {f.trial for f in confirmation.finalists}:
        why = "newer" if confirmation.stale else "its parameters are not in this file's space"
        line += f"; the search's best, trial #{search_best}, is no finalist ({why})"
    elif best.trial == first.trial:
        line += "; it is also the search's best"
    else:
        line += (
            f"; the search's best, trial #{first.trial}, scored {_num(first.search_value)} in "
            f"the search and {_num(first.mean)} confirmed"
        )
    if confirmation.pending:
        line += f" ({confirmation.pending} run(s) not finished: hpo best keeps the search's pick)"
    elif confirmation.stale:
        line += " (newer search trials rank among the finalists: hpo best keeps the search's pick)"
    else:
        line += f" (hpo best now returns trial #{best.trial})"
    return line


@handles_errors
def confirm(
    study: StudyFile,
    set_: SetOption = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            min=1,
            max=100,
            help="Finalists: the best distinct configurations (default: confirm.top, else 3).",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            min=1,
            max=100,
            help="Fresh seeds each finalist is trained at (default: confirm.seeds, else 2).",
            show_default=False,
        ),
    ] = None,
    force: ForceOption = False,
    gpus: GpusOption = None,
    workers_per_gpu: PerGpuOption = None,
    workers: WorkersOption = None,
    verbose: Verbose = 0,
) -> None:
    """Train the search's best configurations again at fresh seeds; pick by their mean.

    The runs are trials of the study ``<name>::confirm`` in the same storage, on the same
    workers as ``hpo run``; running it again resumes. ``hpo best`` then returns the pick.
    """
    from hpo.config import load_study_config

    _setup_logging(verbose)
    overrides = [*(set_ or []), *worker_overrides(gpus, workers_per_gpu, workers)]
    cfg = load_study_config(study, overrides)
    run_confirmation(cfg, study, overrides, top=top, seeds=seeds, force=force, verbose=verbose)


def run_confirmation(
    cfg: StudyConfig,
    study: Path,
    overrides: list[str],
    *,
    top: int | None = None,
    seeds: int | None = None,
    force: bool = False,
    verbose: int = 0,
) -> None:
    """Queue the confirmation runs, run them like ``hpo run``, print the finalists and the pick."""
    from hpo.config import load_study_config
    from hpo.confirm import (
        confirm_request,
        confirmation_overrides,
        queue_confirmation,
        read_confirmation,
    )

    top, seeds = confirm_request(cfg, top, seeds)
    plan = queue_confirmation(cfg, top=top, seeds=seeds, force=force)
    if plan.search_unfinished:
        err.print(
            f"note: {plan.search_unfinished} search trial(s) still running or queued; the "
            "finalists are chosen from the completed ones (hpo confirm again after they end)",
        )
    if len(plan.finalists) < top:
        err.print(
            f"note: --top {top}, but the search has {len(plan.finalists)} completed "
            "configuration(s) to confirm (repeats of one configuration count once)",
        )
    err.print(
        f"confirming trials {', '.join(f'#{n}' for n in plan.finalists)} at seeds "
        f"{', '.join(map(str, plan.seeds))}: {plan.queued} run(s) queued now, "
        f"{plan.n_runs} in the confirmation study",
    )
    confirm_overrides = [*overrides, *confirmation_overrides(cfg, plan.n_runs)]
    confirm_cfg = load_study_config(study, confirm_overrides)
    run_loaded(confirm_cfg, study, confirm_overrides, force=force, verbose=verbose, show_best=False)
    confirmation = read_confirmation(cfg)
    if confirmation is None:
        err.print("[red]the confirmation study holds no run[/red]", markup=True)
        raise typer.Exit(1)
    out.print(confirmation_table(confirmation))
    out.print(verdict(confirmation))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hpo`` app."""
    app.command()(confirm)
