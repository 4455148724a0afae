"""The ``hpo`` command: a thin typer layer over the Python API in :mod:`hpo`."""

from __future__ import annotations

import json
import numbers
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hpo.cli_common import (
    SetOption,
    StudyFile,
    TrainerSetOption,
    Verbose,
    _fail,
    _setup_logging,
    err,
    handles_errors,
    out,
)
from hpo.errors import ConfigError, HpoError
from hpo.storages import mask_url
from hpo.yaml_loader import dump_yaml
from trainers.reporter import TrainingFailed, one_line

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Hyperparameter optimization for contrastive learning on time series, on Optuna.",
)


@app.command()
@handles_errors
def validate(study: StudyFile, set_: SetOption = None) -> None:
    """Check a study file and print the resolved search space."""
    from hpo.checks import run_problems
    from hpo.config import load_study_config
    from hpo.duplicates import describe_duplicates, fixed_seed_rerun_note
    from hpo.pruners import pruner_defaults_note
    from hpo.samplers import describe_startup, ordered_params
    from hpo.space import describe_param
    from hpo.storages import storage_url

    cfg = load_study_config(study, set_ or [])
    problems = run_problems(cfg)  # what a run would meet: the store, inputs that do not fit
    if problems:
        raise ConfigError(problems)
    out.print(f"[bold]{escape(one_line(cfg.name))}[/bold]: valid", markup=True)
    out.print(f"  storage   {mask_url(storage_url(cfg))}")
    directions = ", ".join(
        f"{d} {m}" for m, d in zip(cfg.objective.names, cfg.objective.study_directions, strict=True)
    )
    out.print(
        f"  objective {directions} (pruning on {cfg.objective.pruning_metric})",
    )
    by_position = ordered_params(cfg.space) if cfg.sampler.name == "tpe_ordinal" else []
    positional = f" (modelled by position: {', '.join(by_position)})" if by_position else ""
    out.print(
        f"  sampler   {cfg.sampler.name} {cfg.sampler.kwargs or ''}".rstrip() + positional,
    )
    out.print(
        f"  pruner    {cfg.pruner.name} {cfg.pruner.kwargs or ''}{pruner_defaults_note(cfg)}",
    )
    budget = cfg.budget
    out.print(
        f"  budget    n_trials={budget.n_trials} timeout="
        f"{f'{budget.timeout:g}s' if budget.timeout else 'none'}",
    )
    out.print(f"  trainer   {cfg.trainer.name} {cfg.trainer.params}")
    out.print(f"  start-up  {describe_startup(cfg)}")
    out.print(f"  repeats   {describe_duplicates(cfg)}")
    repeat_note = fixed_seed_rerun_note(cfg)
    if repeat_note:
        out.print(f"  note      {repeat_note}")
    if cfg.confirm is not None:
        out.print(
            f"  confirm   top {cfg.confirm.top} at {cfg.confirm.seeds} fresh seeds after the search",
        )
    out.print("  space:")
    for name, spec in cfg.space.items():
        out.print(f"    {name}: {describe_param(spec)}")


@app.command()
@handles_errors
def status(study: StudyFile, set_: SetOption = None) -> None:
    """Counts by state, best so far, and running trials."""
    from hpo.config import load_study_config
    from hpo.progress import summary_table
    from hpo.results import study_status

    cfg = load_study_config(study, set_ or [], for_reading=True)
    st = study_status(cfg)
    # one_line: a name or a trainer's message may hold line breaks or terminal escapes
    rows: dict[str, object] = {"study": one_line(st.study_name), "storage": st.storage}
    rows.update({k: v for k, v in st.counts.items() if v})
    for reason, (count, message) in st.failures.items():
        message = one_line(mask_url(message))  # an older version kept it as it was
        shown = message if len(message) <= 120 else message[:117] + "..."
        rows[f"  fail: {reason}"] = f"{count}" + (f" (latest: {shown})" if shown else "")
    if st.best_number is not None:
        rows["best trial"] = st.best_number
        rows["best value"] = ", ".join(f"{v:.6g}" for v in st.best_values or [])
        rows["best params"] = st.best_params
    if st.confirmation is not None:
        pick = st.confirmation.best()
        if pick is not None:
            rows["confirmed pick"] = (
                f"#{pick.trial}, mean {pick.mean:.6g} over {len(pick.values)} fresh-seed runs"
            )
        if st.confirmation.pending:
            rows["confirmation"] = f"{st.confirmation.pending} run(s) to go (hpo confirm)"
        elif st.confirmation.stale:
            rows["confirmation"] = (
                "out of date: newer trials rank among the finalists (hpo confirm)"
            )
    out.print(summary_table("status", rows))
    for trial in st.running:
        out.print(
            f"running: trial {trial['number']} step {trial['last_step']} since {trial['started']} "
            f"{trial['params']}",
        )


@app.command()
@handles_errors
def best(
    study: StudyFile,
    set_: SetOption = None,
    format_: Annotated[str, typer.Option("--format", "-f", help="yaml or json")] = "yaml",
) -> None:
    """Best parameters and metrics, ready to paste into a trainer config."""
    from hpo.config import load_study_config
    from hpo.results import best_config

    if format_ not in ("yaml", "json"):
        _fail([f"--format: must be yaml or json (got {format_!r})"])
    cfg = load_study_config(study, set_ or [], for_reading=True)
    data = best_config(cfg)
    if format_ == "json":
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(dump_yaml(data, sort_keys=False, allow_unicode=True))


def _plain(value: Any) -> Any:
    """``value`` as YAML's safe dumper can write it: a trainer may return NumPy or torch
    scalars (``np.float64``), arrays, tuples; ``hpo run`` takes them, so ``hpo train``
    must print them instead of losing the finished run to a ``RepresenterError``."""
    if value is None or type(value) in (str, bool, int, float):
        return value
    if isinstance(value, Mapping):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays, torch tensors
    if callable(tolist):
        try:
            return _plain(tolist())
        except Exception:  # e.g. a tensor on a lost device: its text still says what it was
            return str(value)
    for kind in (bool, int, float, str):  # a subclass (an IntEnum) as the plain type
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def _key(key: Any) -> Any:
    """A mapping key YAML can write back as it was: plain scalars stay, others become text."""
    plain = _plain(key)
    return plain if plain is None or isinstance(plain, str | bool | int | float) else str(plain)


def _no_test_split(name: str) -> bool:
    """Whether trainer ``name`` declares parameters and ``evaluate_test`` is not one of them
    (a trainer without a schema gets the flag and decides itself)."""
    from hpo.trainer_defaults import trainer_schema

    schema = trainer_schema(name)
    return schema is not None and "evaluate_test" not in schema.model_fields


@app.command()
@handles_errors
def train(
    config: Annotated[Path, typer.Argument(help="Trainer config: {trainer: NAME, params: {...}}.")],
    set_: TrainerSetOption = None,
    evaluate_test: Annotated[
        bool, typer.Option("--evaluate-test", help="Also score the held-out test split.")
    ] = False,
    verbose: Verbose = 0,
) -> None:
    """Run one trainer once, outside any study (e.g. the output of ``hpo best``)."""
    from hpo.standalone import load_trainer_config, run_standalone

    _setup_logging(verbose)
    name, params = load_trainer_config(config, set_ or [])
    if evaluate_test:
        if _no_test_split(name):
            _fail([f"--evaluate-test: trainer {name!r} has no test split"])
        params["evaluate_test"] = True
    try:
        result = run_standalone(name, params, console=err)
    except (HpoError, TrainingFailed, KeyboardInterrupt):
        raise  # one line each, from handles_errors
    except SystemExit as exc:  # an argparse error or a library's exit inside the trainer
        if verbose:
            raise
        _fail([f"the trainer called sys.exit({exc.code!r}) (-v shows the traceback)"], 1)
    except Exception as exc:  # the trainer's own code: its error, one line; -v for the frames
        if verbose:
            raise
        _fail([f"the trainer raised {type(exc).__name__}: {exc} (-v shows the traceback)"], 1)
    sys.stdout.write(dump_yaml({"result": _plain(result)}, sort_keys=False))


def _register_commands() -> None:
    """Commands that live in their own modules (one concept each)."""
    from hpo import cli_confirm, cli_reports, cli_run

    cli_run.register(app)
    cli_confirm.register(app)
    cli_reports.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
