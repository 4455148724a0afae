"""Search strategies replayed on a table of learning curves: hundreds of searches, not six.

``benchmarks.search_efficiency`` trains every trial for real, so it affords 6 search
seeds per arm, and on this task 6 seeds cannot separate two strategies: whether a seed
reaches the manual sweep's best is decided by a few early draws. This benchmark runs the
same arms through the same code (:func:`hpo.run_study` with the arm's sampler, pruner,
enqueued trials and duplicate reuse, on a SQLite file; the manual sweep's own loop) but
with a trainer that looks each configuration's per-epoch validation curve up in a table
made by :mod:`benchmarks.curve_table`. A pruned trial stops where the pruner says, as a
real one does, and its epochs count.

One table is one training seed: the function the searches optimise is fixed, the
manual sweep's result is one number, and only the samplers' seeds vary. So every arm is
measured against the same target over ``--replays`` sampler seeds. With ``--check`` a
table of another training seed scores each pick as a user would get it trained again
(the winner's curse of a noisy task), without training.

The figures are what a tabular benchmark gives (as NAS-Bench-201 or LCBench do): the
sampler and pruner are measured exactly, the task's seed noise only through ``--check``.

Run ``python -m benchmarks.search_replay --help``; an arm is a search-efficiency method,
optionally with settings (``tpe_hyperband:hb_min_resource=2``) and keyword arguments of its
sampler (``tpe_hyperband:sampler.prior_weight=0.5``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import machine_line
from benchmarks.curve_table import config_key, task_args
from benchmarks.search_efficiency import (
    ALL_METHODS,
    QUICK_SPACE,
    SEARCH_SPACE,
    RunRecord,
    Setup,
    fixed_params,
    manual_budget,
    run_manual,
    run_optuna,
    study_config,
    trainer_defaults,
)
from hpo.errors import ConfigError
from trainers.params import ContrastiveParams
from trainers.reporter import NullReporter, Reporter

REPLAY_TRAINER = "benchmarks.search_replay:train"
"""By import path: the trainers users see list only theirs."""

ARM_SETTINGS = {"tpe_startup": int, "hb_min_resource": int, "hb_reduction": int}
"""Settings an arm may change, as ``method:name=value,...``."""

SAMPLER_PREFIX = "sampler."
"""``sampler.prior_weight=0.5``: a keyword argument of the arm's sampler (a YAML scalar)."""

FIXED_SAMPLER_ARGS = ("name", "seed")
"""The method picks the sampler and each replay seeds it: an arm may not change either."""


class CurveTable:
    """Per-epoch validation curves of one training seed, looked up by the knobs a run reads."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any]) -> None:
        from trainers.registry import resolve_trainer

        if not rows:
            raise ValueError("a curve table needs at least one row")
        self.seed = int(rows[0]["seed"])
        self.knobs = tuple(rows[0]["config"])
        self.fixed = dict(fixed)
        self.epochs = min(len(r["best_val_f1"]) for r in rows)
        self._unused = resolve_trainer("contrastive").unused_params
        self._rows = {self._key(r["config"]): r for r in rows}

    @classmethod
    def load(cls, path: Path, quick: bool = False) -> CurveTable:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        return cls(rows, fixed_params(task_args(quick), "synthetic_har"))

    def __len__(self) -> int:
        return len(self._rows)

    def _key(self, config: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        knobs = {k: config[k] for k in self.knobs}
        return config_key(knobs, self._unused({**self.fixed, **knobs}))

    def row(self, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """The stored run of ``config`` (knobs it does not read may take any value)."""
        try:
            return self._rows[self._key(config)]
        except KeyError:
            raise KeyError(f"no curve for {dict(self._key(config))} in the table") from None

    def final(self, config: Mapping[str, Any]) -> float:
        """The objective a full run of ``config`` reaches: its best validation F1."""
        return float(self.row(config)["best_val_f1"][self.epochs - 1])

    def finals(self) -> list[float]:
        return [float(r["best_val_f1"][self.epochs - 1]) for r in self._rows.values()]


_TABLE: CurveTable | None = None


def use_table(table: CurveTable) -> None:
    """Make ``table`` the one :func:`train` looks curves up in (per process)."""
    global _TABLE
    _TABLE = table


def train(params: Mapping[str, Any], reporter: Reporter | None = None) -> Mapping[str, float]:
    """Report the table's curve of ``params`` epoch by epoch, as the contrastive trainer would."""
    if _TABLE is None:
        raise RuntimeError("no curve table: call benchmarks.search_replay.use_table first")
    if int(params["seed"]) != _TABLE.seed:
        raise ValueError(f"the table holds seed {_TABLE.seed}, not {params['seed']}")
    epochs = int(params["epochs"])
    if epochs > _TABLE.epochs:
        raise ValueError(f"the table holds {_TABLE.epochs} epochs, not {epochs}")
    row = _TABLE.row(params)
    reporter = reporter or NullReporter()
    for epoch in range(1, epochs + 1):
        reporter.report(
            epoch,
            {"val_f1": row["val_f1"][epoch - 1], "best_val_f1": row["best_val_f1"][epoch - 1]},
        )
    return {"best_val_f1": row["best_val_f1"][epochs - 1], "val_f1": row["val_f1"][epochs - 1]}


train.params_schema = ContrastiveParams  # type: ignore[attr-defined]
train.result_metrics = ("best_val_f1", "val_f1")  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Arm:
    """A search-efficiency method with its settings, e.g. ``tpe_hyperband:hb_reduction=4``."""

    spec: str
    method: str
    settings: tuple[tuple[str, Any], ...]

    @classmethod
    def parse(cls, spec: str) -> Arm:
        method, _, rest = spec.strip().partition(":")
        if method not in ALL_METHODS:
            raise ValueError(f"arm {spec!r}: unknown method {method!r}; use one of {ALL_METHODS}")
        if method == "tpe_hyperband_exact":
            raise ValueError(f"arm {spec!r}: the exact arm needs its own trainer, not a table")
        settings: list[tuple[str, Any]] = []
        for part in filter(None, (p.strip() for p in rest.split(","))):
            name, eq, value = part.partition("=")
            if eq and name.startswith(SAMPLER_PREFIX) and len(name) > len(SAMPLER_PREFIX):
                argument = name.removeprefix(SAMPLER_PREFIX)
                if method == "manual":
                    raise ValueError(f"arm {spec!r}: {name}: the manual sweep has no sampler")
                if argument in FIXED_SAMPLER_ARGS:
                    raise ValueError(
                        f"arm {spec!r}: {name} cannot be set: the method names the sampler "
                        "and --replays seeds it"
                    )
                settings.append((name, _scalar(spec, name, value)))
                continue
            if not eq or name not in ARM_SETTINGS:
                allowed = [*sorted(ARM_SETTINGS), f"{SAMPLER_PREFIX}<argument>"]
                raise ValueError(f"arm {spec!r}: {part!r} is not one of {allowed}=N")
            try:
                settings.append((name, ARM_SETTINGS[name](value)))
            except ValueError:
                raise ValueError(
                    f"arm {spec!r}: {name} must be an integer, not {value!r}"
                ) from None
        return cls(spec.strip(), method, tuple(settings))


def base_setup(table: CurveTable, quick: bool) -> Setup:
    """The search-efficiency task's setup, trained by the table instead of the trainer."""
    args = task_args(quick)
    space = {k: list(v) for k, v in (QUICK_SPACE if quick else SEARCH_SPACE).items()}
    start = trainer_defaults(space)
    warmup = int(table.fixed["warmup_epochs"])
    return Setup(
        dataset="synthetic_har",
        epochs=table.epochs if not quick else int(args.epochs),
        fixed={**table.fixed, "epochs": table.epochs},
        space=space,
        start=start,
        budget=manual_budget(space, start, table.epochs),
        tpe_startup=5,
        # the service fits the first rung after the warmup of built-in trainers only; a
        # trainer named by import path is a user's, so the replay states the default's rung
        hb_min_resource=min(warmup + 1, table.epochs),
        hb_reduction=3,
        threads=1,
        verbose=False,
        trainer=REPLAY_TRAINER,
        train_seed=table.seed,
    )


def _scalar(spec: str, name: str, text: str) -> int | float | bool | str:
    """A sampler argument's value as YAML reads it (``true``, ``0.5``, ``24``)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = None
    if not isinstance(value, (int, float, bool, str)):
        raise ValueError(f"arm {spec!r}: {name} must be a number, true/false or a word")
    return value


def arm_setup(base: Setup, arm: Arm) -> Setup:
    settings: dict[str, Any] = {}
    sampler_args = dict(base.sampler_args)
    for name, value in arm.settings:
        if name.startswith(SAMPLER_PREFIX):
            sampler_args[name.removeprefix(SAMPLER_PREFIX)] = value
        else:
            settings[name] = value
    return replace(base, **settings, sampler_args=sampler_args)


def replay_one(
    table_path: str, quick: bool, arm: Arm, seed: int, base: Setup | None = None
) -> RunRecord:
    """One search of ``arm`` with sampler seed ``seed`` on the table (a worker's unit)."""
    import optuna

    table = _cached_table(table_path, quick)
    use_table(table)
    setup = arm_setup(base or base_setup(table, quick), arm)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if arm.method == "manual":
            record = run_manual(setup, seed, train=train)
        else:
            # a deprecated sampler argument is reported once, by arm_problems
            with (
                tempfile.TemporaryDirectory(prefix="search-replay-") as tmp,
                warnings.catch_warnings(),
            ):
                warnings.simplefilter("ignore", FutureWarning)
                record = run_optuna(setup, arm.method, seed, tmp)
    finally:
        optuna.logging.set_verbosity(verbosity)
    record.method = arm.spec
    return record


_TABLES: dict[tuple[str, bool], CurveTable] = {}


def _cached_table(path: str, quick: bool) -> CurveTable:
    key = (path, quick)
    if key not in _TABLES:
        _TABLES[key] = CurveTable.load(Path(path), quick)
    return _TABLES[key]


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------


def incumbent(run: RunRecord, epochs: int) -> dict[str, Any] | None:
    """The best completed configuration among trials finished within ``epochs``."""
    best_value, best_params = None, None
    for cum, _, t in run.curve():
        if cum > epochs:
            break
        better = t.value is not None and (best_value is None or t.value > best_value)
        if t.state == "COMPLETE" and better:
            best_value, best_params = t.value, t.params
    return best_params


@dataclass
class ArmSummary:
    """One arm over its replays, against the manual sweep's final best on the same table."""

    arm: str
    replays: int
    reached_third: int
    reached_full: int
    median_to_reach: float
    best_third: list[float]
    best_full: list[float]
    trials: float
    pruned: float
    check_third: list[float]
    check_full: list[float]
    tolerance: float = 0.0
    tolerant_third: int = 0
    median_to_tolerant: float = math.inf


def _mean_se(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    se = statistics.stdev(values) / math.sqrt(len(values))
    return f"{statistics.fmean(values):.4f} ({se:.4f})"


def summarize_replays(
    runs: Sequence[RunRecord],
    manual: RunRecord,
    check: CurveTable | None,
    tolerance: float = 0.0,
) -> list[ArmSummary]:
    """Each arm against the manual sweep's final best; ``tolerance``: also within that of it."""
    budget = manual.budget
    third = budget // 3
    target = manual.best_at(budget)
    if target is None:
        raise ValueError("the manual sweep completed no run on this table")
    out = []
    for arm in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == arm]
        reach = [r.epochs_to_reach(target, budget) for r in mine]
        counted = [[t for cum, _, t in r.curve() if cum <= budget] for r in mine]
        summary = ArmSummary(
            arm=arm,
            replays=len(mine),
            reached_third=sum(1 for e in reach if e is not None and e <= third),
            reached_full=sum(1 for e in reach if e is not None),
            median_to_reach=statistics.median([math.inf if e is None else e for e in reach]),
            best_third=[v for r in mine if (v := r.best_at(third)) is not None],
            best_full=[v for r in mine if (v := r.best_at(budget)) is not None],
            trials=statistics.fmean(len(c) for c in counted),
            pruned=statistics.fmean(sum(1 for t in c if t.state == "PRUNED") for c in counted),
            check_third=[],
            check_full=[],
        )
        if tolerance > 0:
            near = [r.epochs_to_reach(target - tolerance, budget) for r in mine]
            summary.tolerance = tolerance
            summary.tolerant_third = sum(1 for e in near if e is not None and e <= third)
            summary.median_to_tolerant = statistics.median(
                [math.inf if e is None else e for e in near]
            )
        if check is not None:
            for r in mine:
                for epochs, sink in ((third, summary.check_third), (budget, summary.check_full)):
                    pick = incumbent(r, epochs)
                    if pick is not None:
                        sink.append(check.final(pick))
        out.append(summary)
    return out


def _epochs_cell(epochs: float, budget: int) -> str:
    if math.isinf(epochs):
        return "not reached"
    return f"{epochs:.0f} ({epochs / budget:.2f})"


def markdown(
    summaries: Sequence[ArmSummary], manual: RunRecord, table: CurveTable, check: CurveTable | None
) -> str:
    budget = manual.budget
    target = manual.best_at(budget)
    assert target is not None
    finals = table.finals()
    share = sum(1 for f in finals if f >= target - 1e-9) / len(finals)
    lines = [
        f"Table: training seed {table.seed}, {len(table)} distinct configurations, "
        f"{table.epochs} epochs; best {max(finals):.4f}, median {statistics.median(finals):.4f}.",
        f"Manual sweep: final best {target:.4f} after {budget} epochs "
        f"({share:.1%} of the configurations reach it); a third of the budget is "
        f"{budget // 3} epochs.",
    ]
    pick = incumbent(manual, budget)
    if check is not None and pick is not None:
        lines.append(
            f"Check table: training seed {check.seed}; the manual sweep's pick scores "
            f"{check.final(pick):.4f} there."
        )
    header = (
        "| arm | replays | reached the manual best within 1/3 | within the budget | "
        "median epochs to reach (/ budget) | best F1 at 1/3: mean (SE) | at the budget | "
        "trials (pruned) |"
    )
    if check is not None:
        header += " pick at 1/3, trained again | pick at the budget, trained again |"
    tolerance = summaries[0].tolerance if summaries else 0.0
    if tolerance > 0:
        header += (
            f" within {tolerance:g} of it within 1/3 | median epochs to within {tolerance:g} |"
        )
    lines += ["", header, "|" + "---|" * (header.count("|") - 1)]
    for s in summaries:
        cells = [
            s.arm,
            str(s.replays),
            f"{s.reached_third}/{s.replays} ({s.reached_third / s.replays:.0%})",
            f"{s.reached_full}/{s.replays} ({s.reached_full / s.replays:.0%})",
            _epochs_cell(s.median_to_reach, budget),
            _mean_se(s.best_third),
            _mean_se(s.best_full),
            f"{s.trials:.1f} ({s.pruned:.1f})",
        ]
        if check is not None:
            cells += [_mean_se(s.check_third), _mean_se(s.check_full)]
        if tolerance > 0:
            cells += [
                f"{s.tolerant_third}/{s.replays} ({s.tolerant_third / s.replays:.0%})",
                _epochs_cell(s.median_to_tolerant, budget),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="a benchmarks.curve_table file")
    parser.add_argument(
        "--check", type=Path, default=None, help="a table of another training seed: picks' scores"
    )
    parser.add_argument(
        "--arms",
        default="random,tpe,tpe_hyperband",
        help="comma-separated arms; ';' between arms when one has settings "
        "(e.g. 'tpe_hyperband;tpe_hyperband:hb_min_resource=2,hb_reduction=4')",
    )
    parser.add_argument("--replays", type=int, default=100, help="sampler seeds per arm")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="also count reaching within this of the manual best (the task's seed noise)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--quick", action="store_true", help="the smoke size (CI)")
    parser.add_argument("--json", type=Path, default=None, help="write every run's trials here")
    return parser


def parse_arms(text: str) -> list[Arm]:
    parts = text.split(";") if ";" in text else text.split(",")
    return [Arm.parse(p) for p in parts if p.strip()]


def arm_problems(arms: Sequence[Arm], base: Setup) -> tuple[list[str], list[str]]:
    """Each arm's study checked as the service checks a study file, before any search runs.

    Returns the problems (the run stops) and the sampler's warnings (a deprecated argument:
    printed once here, not once per search).
    """
    problems: list[str] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="search-replay-check-") as tmp:
        for arm in arms:
            if arm.method == "manual":
                continue
            try:
                # validating builds the sampler: its warnings come from here
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    study_config(arm_setup(base, arm), arm.method, 0, tmp)
            except ConfigError as exc:
                problems += [f"arm {arm.spec!r}: {line}" for line in str(exc).splitlines()]
            else:
                messages = dict.fromkeys(str(w.message) for w in caught)
                notes += [f"arm {arm.spec!r}: {m}" for m in messages]
    return problems, notes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        arms = parse_arms(args.arms)
        table = CurveTable.load(args.table, args.quick)
        check = CurveTable.load(args.check, args.quick) if args.check else None
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if check is not None and check.seed == table.seed:
        print("error: --check must hold another training seed than --table", file=sys.stderr)
        return 2
    problems, notes = arm_problems(arms, base_setup(table, args.quick))
    if problems:
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    started = time.perf_counter()
    manual = replay_one(str(args.table), args.quick, Arm("manual", "manual", ()), 0)
    tasks = [(arm, seed) for arm in arms if arm.method != "manual" for seed in range(args.replays)]
    runs: list[RunRecord] = []
    if args.jobs <= 1:
        runs = [replay_one(str(args.table), args.quick, arm, seed) for arm, seed in tasks]
    else:
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
            futures = [
                pool.submit(replay_one, str(args.table), args.quick, arm, seed)
                for arm, seed in tasks
            ]
            for future in as_completed(futures):
                runs.append(future.result())
    order = {(arm.spec, seed): i for i, (arm, seed) in enumerate(tasks)}
    runs.sort(key=lambda r: order[(r.method, r.seed)])
    wall = time.perf_counter() - started
    summaries = summarize_replays(runs, manual, check, args.tolerance)
    print(markdown(summaries, manual, table, check))
    print(f"\n{machine_line()}; {len(runs)} searches in {wall:.0f} s ({args.jobs} worker(s))")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "arm": r.method,
                        "seed": r.seed,
                        "trials": [[t.state, t.epochs, t.value, t.params] for t in r.trials],
                    }
                    for r in [manual, *runs]
                ]
            )
        )
    return 0


if __name__ == "__main__":
    # run the importable module's main: the trainer the studies resolve by import path
    # reads the table from that module, not from this ``__main__`` copy
    from benchmarks.search_replay import main as _main

    raise SystemExit(_main())
