"""Service overhead per trial with N worker processes on one storage, and its growth.

``benchmarks.service_overhead`` times one in-process worker part by part. This runs the
same study (the analytic trainer doing no work, ``--epochs`` reports per trial, TPE, the
median pruner) the way a team runs it, ``hpo run STUDY --workers N``: a supervisor and N
worker processes sharing one storage (a SQLite file, a journal file or a server URL).
One worker runs inside ``hpo run``, as the service runs it.

The trials are read back from the storage afterwards. With their completion times
sorted, three figures per trial: the study's wall-clock per trial (how fast trials
finish), the worker-seconds per trial (N x that: what a trial costs the workers; on a
machine with fewer cores than workers it also counts the time they wait for a core),
and the CPU time of ``hpo run`` and all its workers per trial (what the service burns,
whatever the load; it includes each process's start-up, about 2 s of imports). The
worker-seconds are also taken over the first ``--window`` trials and over the last
(growth: last over first). The wall-clock windows start at the first trial's start, so
process start-up is outside them. Each count runs ``--rounds`` times,
every other round in reverse order; figures are medians over rounds, and each count's
ratio to one worker is measured side by side in one run.

    python -m benchmarks.worker_overhead                         # SQLite, 1 and 4 workers, 1,000 trials
    python -m benchmarks.worker_overhead --storage journal       # a journal file per run
    python -m benchmarks.worker_overhead --storage postgresql+psycopg://user@host/db
    python -m benchmarks.worker_overhead --quick                 # CI smoke size
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import load_average, machine_line, round_order
from benchmarks.service_overhead import UsageError, _study_data

SIZES: dict[str, tuple[Any, Any]] = {
    "workers": ("1,4", "1,2"),
    "trials": (1000, 40),
    "window": (100, 10),
    "rounds": (2, 1),
}
"""Defaults of the size options: ``(real run, --quick)``."""


@dataclass
class PerTrial:
    """The per-trial figures of one worker count: one round's, or the medians of its rounds."""

    workers: int
    ms_per_trial: float
    ms_per_trial_early: float
    ms_per_trial_late: float
    growth: float
    wall_ms_per_trial: float
    cpu_ms_per_trial: float


_MEDIANS = [f.name for f in fields(PerTrial) if f.name != "workers"]


@dataclass
class WorkerRun(PerTrial):
    """One study with ``workers`` processes: worker-milliseconds per trial."""

    trials: int
    window_s: float
    exit_code: int
    wall_s: float
    """``hpo run`` from start to exit, start-up and shut-down included (context only)."""


@dataclass
class WorkerFigures(PerTrial):
    """One worker count over its rounds (medians), and its ratio to one worker."""

    per_round: list[WorkerRun] = field(default_factory=list)
    ratio_vs_one: float | None = None


def storage_url(kind: str, folder: Path, workers: int, round_: int) -> str:
    """``sqlite`` / ``journal``: a new file per run; anything else is a URL, used as given."""
    if kind == "sqlite":
        return f"sqlite:///{(folder / f'overhead-{workers}-{round_}.db').as_posix()}"
    if kind == "journal":
        return f"journal:///{(folder / f'overhead-{workers}-{round_}.log').as_posix()}"
    return kind


def per_trial_ms(completions: list[float], workers: int, window: int) -> tuple[float, ...]:
    """Worker-ms per trial: whole study, first ``window`` trials, last ``window`` trials.

    ``completions`` are seconds from the first trial's start, sorted; the first window
    starts at 0, so it counts the first trials' own time.
    """
    n = len(completions)
    w = max(1, min(window, n // 2))
    whole = workers * completions[-1] / n
    early = workers * completions[w - 1] / w
    late = workers * (completions[-1] - completions[-1 - w]) / w
    return 1000.0 * whole, 1000.0 * early, 1000.0 * late


def measure(args: argparse.Namespace, workers: int, round_: int, folder: Path) -> WorkerRun:
    """Run the study with ``workers`` processes and read its trials back."""
    import optuna

    storage = storage_url(args.storage, folder, workers, round_)
    name = f"bench-workers-{workers}-{uuid.uuid4().hex[:8]}"
    data = _study_data(args, name, storage)
    data["trainer"]["name"] = "analytic"
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cmd = [sys.executable, "-m", "hpo.cli", "run", str(path), "--workers", str(workers)]
    started = time.perf_counter()
    cpu_before = _children_cpu()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    cpu = _children_cpu() - cpu_before
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    opened = _open(storage)
    try:
        trials = optuna.load_study(study_name=name, storage=opened).get_trials(deepcopy=False)
        # COMPLETE and PRUNED: a surplus start the budget ends unrun is no trial
        finished = [
            t
            for t in trials
            if t.state.name in ("COMPLETE", "PRUNED")
            and t.datetime_complete is not None
            and t.datetime_start is not None
        ]
        first = min(t.datetime_start for t in finished if t.datetime_start is not None)
        ends = sorted((t.datetime_complete - first).total_seconds() for t in finished)  # type: ignore[operator]
        if not args.keep:
            optuna.delete_study(study_name=name, storage=opened)
    finally:
        path.unlink(missing_ok=True)
    whole, early, late = per_trial_ms(ends, workers, args.window)
    return WorkerRun(
        workers=workers,
        trials=len(ends),
        window_s=round(ends[-1], 2),
        ms_per_trial=round(whole, 2),
        ms_per_trial_early=round(early, 2),
        ms_per_trial_late=round(late, 2),
        growth=round(late / early, 2) if early else float("nan"),
        wall_ms_per_trial=round(1000.0 * ends[-1] / len(ends), 2),
        cpu_ms_per_trial=round(1000.0 * cpu / len(ends), 2),
        exit_code=proc.returncode,
        wall_s=round(wall, 1),
    )


def _children_cpu() -> float:
    """User + system seconds of the finished child processes and the ones they waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _open(url: str) -> Any:
    """The storage as the service opens it (a journal URL is no SQLAlchemy URL)."""
    from hpo.storages import open_storage

    return open_storage(url)


def combine(runs: list[WorkerRun]) -> WorkerFigures:
    """Medians over a count's rounds."""

    medians = {key: round(statistics.median(getattr(r, key) for r in runs), 2) for key in _MEDIANS}
    return WorkerFigures(workers=runs[0].workers, **medians, per_round=runs)


def table(figures: list[WorkerFigures], window: int) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| workers | worker-ms per trial (median) | per round | ratio vs 1 worker "
        f"| first {window} | last {window} | growth (last / first) | study wall ms per trial "
        "| CPU ms per trial, all processes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        ratio = "n/a" if f.ratio_vs_one is None else f"{f.ratio_vs_one:.2f}"
        rounds = ", ".join(f"{r.ms_per_trial:.1f}" for r in f.per_round)
        lines.append(
            f"| {f.workers} | {f.ms_per_trial:.1f} | {rounds} | {ratio} | "
            f"{f.ms_per_trial_early:.1f} | {f.ms_per_trial_late:.1f} | {f.growth:.2f} | "
            f"{f.wall_ms_per_trial:.1f} | {f.cpu_ms_per_trial:.1f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worker_overhead",
        description="Service overhead per trial with N worker processes on one storage.",
    )
    parser.add_argument("--workers", default=None, help="comma-separated counts (1,4)")
    parser.add_argument("--trials", type=int, default=None, help="trials per study (1000)")
    parser.add_argument("--epochs", type=int, default=20, help="per-epoch reports per trial")
    parser.add_argument(
        "--storage",
        default="sqlite",
        help="sqlite or journal (a new file per run, the default sqlite), or a server URL",
    )
    parser.add_argument("--sampler", default="tpe", help="sampler name as in a study file")
    parser.add_argument("--pruner", default="median", help="pruner name as in a study file")
    parser.add_argument("--window", type=int, default=None, help="trials per early/late window")
    parser.add_argument("--rounds", type=int, default=None, help="runs of each count (2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the studies")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="CI smoke size")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size defaults and check the counts (:class:`UsageError` on a bad value)."""
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    try:
        counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    except ValueError:
        raise UsageError("--workers takes counts like 1,4") from None
    if not counts or any(n < 1 for n in counts):
        raise UsageError("--workers takes counts >= 1, like 1,4")
    for key in ("trials", "rounds", "window", "epochs"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key} takes 1 or more")
    args.worker_counts = sorted(set(counts))
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every worker count; exit 1 if a run failed, 2 on a bad option."""
    try:
        args = resolve_args(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"worker overhead: {machine_line()}")
    print(
        f"{args.trials} trials x {args.epochs} reports (analytic trainer, no work), "
        f"sampler {args.sampler}, pruner {args.pruner}, storage {args.storage}, "
        f"{args.rounds} round(s)"
    )
    runs: dict[int, list[WorkerRun]] = {n: [] for n in args.worker_counts}
    with tempfile.TemporaryDirectory(prefix="worker-overhead-") as tmp:
        for k, n in round_order(args.worker_counts, args.rounds):
            run = measure(args, n, k, Path(tmp))
            runs[n].append(run)
            print(
                f"  round {k + 1}, {n} worker(s): {run.ms_per_trial:.1f} worker-ms, "
                f"{run.cpu_ms_per_trial:.1f} CPU ms per trial ({run.trials} trials in "
                f"{run.window_s} s; hpo run {run.wall_s} s, exit {run.exit_code}; "
                f"load average {load_average()})",
                flush=True,
            )
    figures = [combine(runs[n]) for n in args.worker_counts]
    base = next((f.ms_per_trial for f in figures if f.workers == 1), None)
    for f in figures:
        f.ratio_vs_one = round(f.ms_per_trial / base, 2) if base else None
    print(table(figures, args.window))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"storage": args.storage, "figures": [asdict(f) for f in figures]}, indent=2
            ),
            encoding="utf-8",
        )
    failed = any(r.exit_code != 0 or r.trials < args.trials for rs in runs.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
