"""Seconds of HPO-service overhead per trial, and how it grows with the study.

A study on the analytic trainer (``trainers.analytic``, no sleep: its work is a few
microseconds) with ``epochs`` per-epoch reports per trial runs through the real
service path, :func:`hpo.run_study`: sampling (TPE by default), trial creation, one
storage write per report, a pruning decision per report (median pruner), user
attributes, the final ``tell``, the budget callback and the garbage collection after
each trial. What a trial costs here is therefore what the service adds to every real
trial.

Per-trial time is the interval between consecutive trial-end callbacks. The wrapped
trainer also times its ``trial.report`` and ``trial.should_prune`` calls, giving a
breakdown into storage writes of reports, pruning decisions, the trainer's own work,
the sampler's own work (its calls minus the storage reads inside them: TPE's fit, which
grows with the study by design) and the rest (trial creation, the reads for sampling,
attributes, tell, callbacks, gc). Growth is
the mean per-trial time of the last 100 trials over that of the first 100. On RDB
storages the SQL statements the run sends are counted too: unlike the times, that
count does not depend on what else the machine is doing.

Run ``python -m benchmarks.service_overhead --help``; ``--quick`` is the CI smoke size,
``--profile`` adds a cProfile of the whole run (timings then include profiler cost).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import importlib
import io
import itertools
import json
import math
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import machine_line, median

GOAL_MS_PER_TRIAL = 50.0
"""The service's target: under 50 ms of overhead per trial at 1,000 trials on SQLite."""


Stamp = tuple[float, float]
"""(wall seconds, process CPU seconds)."""


def _now() -> Stamp:
    return time.perf_counter(), time.process_time()


@dataclass
class TrialTiming:
    """Seconds one trial spent in each instrumented part, as ``[wall, cpu]``."""

    report: list[float] = field(default_factory=lambda: [0.0, 0.0])
    should_prune: list[float] = field(default_factory=lambda: [0.0, 0.0])
    trainer: list[float] = field(default_factory=lambda: [0.0, 0.0])
    n_reports: int = 0


def _add(acc: list[float], since: Stamp, minus: Sequence[float] = (0.0, 0.0)) -> None:
    now = _now()
    for k in range(2):
        acc[k] += now[k] - since[k] - minus[k]


@dataclass
class Recorder:
    """Collects timings from the wrapped trainer and the trial-end callback."""

    trials: list[TrialTiming] = field(default_factory=list)
    ends: list[Stamp] = field(default_factory=list)


RECORDER = Recorder()
"""Set by :func:`run` before the study starts; read by :func:`timed_analytic_train`."""


class _TimedTrial:
    """Proxy for an ``optuna.Trial`` that times ``report`` and ``should_prune``."""

    def __init__(self, trial: Any, timing: TrialTiming) -> None:
        self._trial = trial
        self._timing = timing

    def report(self, value: float, step: int) -> None:
        started = _now()
        try:
            self._trial.report(value, step)
        finally:
            _add(self._timing.report, started)
            self._timing.n_reports += 1

    def should_prune(self) -> bool:
        started = _now()
        try:
            return bool(self._trial.should_prune())
        finally:
            _add(self._timing.should_prune, started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class _TimedReporter:
    """Wraps the service's reporter to know how much of the trainer call was service time."""

    def __init__(self, reporter: Any) -> None:
        self._reporter = reporter
        self.service = [0.0, 0.0]

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        started = _now()
        try:
            self._reporter.report(step, metrics)
        finally:
            _add(self.service, started)


def timed_analytic_train(params: dict[str, Any], reporter: Any = None) -> Mapping[str, float]:
    """``trainers.analytic.train`` with the service's report/prune calls timed."""
    from trainers.analytic import train

    timing = TrialTiming()
    RECORDER.trials.append(timing)
    if reporter is None:
        started = _now()
        try:
            return train(params, None)
        finally:
            _add(timing.trainer, started)
    # hpo.objective.TrialReporter talks to the trial through these attributes
    for attr in ("trial", "prune_trial"):
        inner = getattr(reporter, attr, None)
        if inner is not None:
            setattr(reporter, attr, _TimedTrial(inner, timing))
    wrapped = _TimedReporter(reporter)
    started = _now()
    try:
        return train(params, wrapped)  # type: ignore[arg-type]
    finally:
        _add(timing.trainer, started, minus=wrapped.service)


class _SamplerClock:
    """Times the sampler's own work: its calls, minus the storage reads made inside them.

    TPE's fit grows with the finished trials by design, and is Optuna's cost, not the
    service's; this separates it so that the service's own growth can be read alone.
    The sampler's and storage's methods are wrapped for the run (they still run), then
    restored.
    """

    SAMPLER_METHODS = (
        "infer_relative_search_space",
        "sample_relative",
        "sample_independent",
        "before_trial",
        "after_trial",
    )

    def __init__(self, sampler_cls: type, storage_cls: type) -> None:
        self.total = [0.0, 0.0]
        self._reads = [0.0, 0.0]
        self._depth = 0
        self._classes = (sampler_cls, storage_cls)
        self._saved: list[tuple[type, str, Any]] = []

    def own(self) -> Stamp:
        """Cumulative sampler time without its storage reads, as (wall, cpu)."""
        return self.total[0] - self._reads[0], self.total[1] - self._reads[1]

    def _wrap_sampler(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    _add(self.total, started)

        return timed

    def _wrap_read(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._depth:
                return fn(*args, **kwargs)
            started = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                _add(self._reads, started)

        return timed

    def __enter__(self) -> _SamplerClock:
        sampler_cls, storage_cls = self._classes
        targets = [(sampler_cls, name, self._wrap_sampler) for name in self.SAMPLER_METHODS]
        targets += [(storage_cls, "get_all_trials", self._wrap_read)]
        for cls, name, wrap in targets:
            if hasattr(cls, name):
                self._saved.append((cls, name, cls.__dict__.get(name)))
                setattr(cls, name, wrap(getattr(cls, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, original in reversed(self._saved):
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)
        self._saved.clear()


class _OptimizeClock:
    """Stamps the moment ``run_study`` hands over to ``Study.optimize``.

    What ``run_study`` does before (loading the study, its checks) happens once per run;
    counting it in the first trial would lift the early window and hide growth.
    """

    def __init__(self) -> None:
        self.entered: Stamp | None = None
        self._original: Any = None

    def __enter__(self) -> _OptimizeClock:
        import optuna

        self._original = original = optuna.Study.optimize

        @functools.wraps(original)
        def optimize(study: Any, *args: Any, **kwargs: Any) -> Any:
            if self.entered is None:
                self.entered = _now()
            return original(study, *args, **kwargs)

        setattr(optuna.Study, "optimize", optimize)  # noqa: B010 (restored on exit)
        return self

    def __exit__(self, *exc: object) -> None:
        import optuna

        setattr(optuna.Study, "optimize", self._original)  # noqa: B010


class _StatementCounter:
    """Counts the SQL statements this process sends (RDB storages), a load-free measure."""

    def __init__(self) -> None:
        self.count = 0

    def _on_execute(self, *args: Any) -> None:
        self.count += 1

    def __enter__(self) -> _StatementCounter:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.listen(Engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        event.remove(Engine, "before_cursor_execute", self._on_execute)


def _publish_analytic_contract() -> None:
    """Validate params and metrics exactly as for the analytic trainer itself."""
    from trainers.analytic import train

    timed_analytic_train.params_schema = train.params_schema  # type: ignore[attr-defined]
    timed_analytic_train.result_metrics = train.result_metrics  # type: ignore[attr-defined]


_publish_analytic_contract()


def _study_data(args: argparse.Namespace, name: str, storage: str) -> dict[str, Any]:
    sampler: dict[str, Any] = {"name": args.sampler}
    return {
        "name": name,
        "storage": storage,
        "seed": args.seed,
        "objective": {"metric": "best_score", "direction": "maximize"},
        "sampler": sampler,
        "pruner": pruner_data(args.pruner),
        "budget": {"n_trials": args.trials},
        "trainer": {
            "name": "benchmarks.service_overhead:timed_analytic_train",
            "params": {"epochs": args.epochs, "sleep_per_epoch": 0.0},
        },
        "space": {
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "y": {"type": "float", "low": -2.0, "high": 2.0},
            "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
            "margin": {"type": "float", "low": 0.1, "high": 1.0, "if": {"choice": "c"}},
        },
        "artifacts": {"enabled": False},
    }


class UsageError(ValueError):
    """A bad command-line value: one line on stderr, exit status 2."""


def pruner_data(text: str) -> dict[str, Any]:
    """``--pruner``: a name, or a YAML mapping as in a study file (``{name: grouped, ...}``)."""
    if not text.lstrip().startswith("{"):
        return {"name": text}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise UsageError(f"--pruner: not a YAML mapping ({problem})") from None
    if not isinstance(data, dict) or "name" not in data:
        raise UsageError(f"--pruner: expected a name or {{name: ..., ...}} (got {text!r})")
    return data


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _ratio(late: Sequence[float], early: Sequence[float], window: int | None = None) -> float:
    """Mean of ``late`` over mean of ``early`` (NaN when either is empty or zero)."""
    if window is not None:
        late, early = late[-window:], early[:window]
    a, b = _mean(late), _mean(early)
    return a / b if b and not math.isnan(a) else math.nan


def _per_report(
    parts: Mapping[str, Sequence[float]], timings: Sequence[TrialTiming]
) -> list[float]:
    """Seconds per report (write + pruning decision), per trial, for trials that reported."""
    return [
        (w + p) / t.n_reports
        for w, p, t in zip(parts["report writes"], parts["pruning decisions"], timings, strict=True)
        if t.n_reports
    ]


def _p90(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def _row(label: str, values_s: Sequence[float], window: int) -> str:
    ms = [1000.0 * v for v in values_s]
    first, last = _mean(ms[:window]), _mean(ms[-window:])
    return (
        f"{label:<24}{_mean(ms):>9.2f}{median(ms):>9.2f}{_p90(ms):>9.2f}{max(ms):>9.2f}"
        f"{first:>11.2f}{last:>11.2f}"
    )


def _profile_report(profiler: cProfile.Profile, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.service_overhead",
        description="HPO service overhead per trial (sampling, report writes, pruning) with a "
        "trainer that does no work, and its growth over the study.",
    )
    parser.add_argument("--trials", type=int, default=None, help="trials to run (default 1000)")
    parser.add_argument("--epochs", type=int, default=20, help="per-epoch reports per trial")
    parser.add_argument(
        "--storage",
        default=None,
        help="storage URL (sqlite:///file.db, postgresql+psycopg://..., journal:///file.log); "
        "default: a new SQLite file in a temporary folder",
    )
    parser.add_argument("--sampler", default="tpe", help="sampler name as in a study file")
    parser.add_argument(
        "--pruner",
        default="median",
        help="pruner name, or a study file's pruner mapping, e.g. "
        "'{name: grouped, by: [choice], wrapped: {name: hyperband}}'",
    )
    parser.add_argument("--window", type=int, default=100, help="trials per early/late window")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--study-name",
        default=None,
        help="name the study (default: a random one); Hyperband assigns brackets by a hash "
        "of it, so runs to compare with Hyperband need the same name",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the study (deleted afterwards by default)"
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="cProfile the run; print the top functions (or write pstats text to FILE)",
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="tiny configuration for CI (30 trials)"
    )
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the study, print the figures and return them as a dict."""
    import optuna

    from hpo import run_study, validate_study_data
    from hpo.runner import open_study
    from hpo.storages import mask_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The trainer is imported by name; use that module's recorder even under ``python -m``.
    module = importlib.import_module("benchmarks.service_overhead")
    recorder = Recorder()
    module.RECORDER = recorder

    tmp_dir: str | None = None
    storage = args.storage
    if storage is None:
        tmp_dir = tempfile.mkdtemp(prefix="hpo-overhead-")
        storage = f"sqlite:///{Path(tmp_dir, 'overhead.db').as_posix()}"
    name = args.study_name or f"bench-overhead-{uuid.uuid4().hex[:8]}"
    cfg = validate_study_data(_study_data(args, name, storage))

    from hpo.runner import open_study_storage
    from hpo.samplers import SAMPLERS

    opened = open_study_storage(cfg)
    if args.study_name is not None and name in optuna.get_all_study_names(storage=opened):
        # run_study would go on with its trials: the figures would not be of fresh trials
        raise UsageError(f"--study-name: {name!r} already exists in {args.storage}")
    storage_cls = type(opened)
    sampler_clock = _SamplerClock(SAMPLERS[args.sampler], storage_cls)
    sampler_at_end: list[Stamp] = []

    def on_trial_end(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        recorder.ends.append(_now())
        sampler_at_end.append(sampler_clock.own())

    profiler = cProfile.Profile() if args.profile else None
    statements = _StatementCounter()
    try:
        setup_started = time.perf_counter()
        open_study(cfg)
        optimize_clock = _OptimizeClock()
        if profiler is not None:
            profiler.enable()
        with statements, sampler_clock, optimize_clock:
            summary = run_study(cfg, callbacks=[on_trial_end])
        if profiler is not None:
            profiler.disable()
        if optimize_clock.entered is None:
            raise RuntimeError("run_study never called Study.optimize")
        started = optimize_clock.entered
        elapsed = time.perf_counter() - started[0]
        setup = started[0] - setup_started
        if not args.keep:
            try:
                optuna.delete_study(study_name=name, storage=opened)
            except Exception as exc:  # cleanup only; the figures are already taken
                print(f"note: could not delete study {name}: {exc}", file=sys.stderr)
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    ends = recorder.ends
    n = len(ends)
    timings = recorder.trials[:n]
    window = max(1, min(args.window, n // 2 if n >= 2 else 1))
    n_reports = sum(t.n_reports for t in timings)
    figures: dict[str, dict[str, Any]] = {}
    for k, clock in enumerate(("wall", "cpu")):
        per_trial = [b[k] - a[k] for a, b in zip([started, *ends[:-1]], ends, strict=True)]
        early, late = per_trial[:window], per_trial[-window:]
        sampler_cum = [0.0, *(c[k] for c in sampler_at_end[:n])]
        parts = {
            "report writes": [t.report[k] for t in timings],
            "pruning decisions": [t.should_prune[k] for t in timings],
            "trainer's own work": [t.trainer[k] for t in timings],
            "sampler's own work": [b - a for a, b in itertools.pairwise(sampler_cum)],
        }
        parts["rest (ask, tell, ...)"] = [
            total - sum(p[i] for p in parts.values()) for i, total in enumerate(per_trial)
        ]
        service = [t - own for t, own in zip(per_trial, parts["sampler's own work"], strict=True)]
        per_report = _per_report(parts, timings)
        rest = parts["rest (ask, tell, ...)"]
        figures[clock] = {
            "per_trial": per_trial,
            "early": early,
            "late": late,
            "parts": parts,
            "ratio": _ratio(late, early),
            "report_ratio": _ratio(per_report, per_report, window),
            "rest_ratio": _ratio(rest[-window:], rest[:window]),
            "service": service,
            "service_ratio": _ratio(service[-window:], service[:window]),
        }
    wall = figures["wall"]
    mean_all_ms = 1000.0 * _mean(wall["per_trial"])
    late_ms = 1000.0 * _mean(wall["late"])

    print(
        f"service overhead: {n} trials x {args.epochs} reports (analytic trainer, no work), "
        f"sampler {args.sampler}, pruner {args.pruner}, storage {mask_url(storage)}"
        + (" (temporary)" if tmp_dir else "")
    )
    print(f"{machine_line()}, optuna {optuna.__version__}")
    print(
        f"total {elapsed:.2f} s for {n} trials = {mean_all_ms:.2f} ms/trial; "
        f"study creation and run_study's set-up {setup:.3f} s (not counted); "
        f"{summary.n_complete} complete, {summary.n_pruned} pruned, {summary.n_failed} failed; "
        f"{n_reports} reports"
    )
    if statements.count:
        print(
            f"SQL statements sent: {statements.count} = {statements.count / max(n, 1):.1f} per "
            f"trial (heartbeat thread included)"
        )
    for clock, title in (
        ("wall", "wall-clock"),
        ("cpu", "CPU time of this process (less sensitive to other load; misses DB-server work)"),
    ):
        fig = figures[clock]
        print()
        print(f"{title}")
        print(
            f"{'per-trial time (ms)':<24}{'mean':>9}{'median':>9}{'p90':>9}{'max':>9}"
            f"{f'first {window}':>11}{f'last {window}':>11}"
        )
        print(_row(f"all {n} trials", fig["per_trial"], window))
        for part, values in fig["parts"].items():
            print(_row(f"  {part}", values, window))
        print(
            f"late/early ratio (mean, last {window} / first {window}): per trial "
            f"{fig['ratio']:.2f}x, per report (write + pruning) {fig['report_ratio']:.2f}x, "
            f"rest {fig['rest_ratio']:.2f}x"
        )
    counts = [float(t.n_reports) for t in timings]
    print(
        f"reports per trial: mean {_mean(counts):.2f}, first {window} {_mean(counts[:window]):.2f}, "
        f"last {window} {_mean(counts[-window:]):.2f} (pruned trials stop reporting early)"
    )
    if n_reports:
        parts = wall["parts"]
        spent = sum(parts["report writes"]) + sum(parts["pruning decisions"])
        print(f"per report (write + pruning decision, wall): {1000.0 * spent / n_reports:.3f} ms")
    service_ms = 1000.0 * _mean(wall["service"])
    service_late_ms = 1000.0 * _mean(wall["service"][-window:])
    print(
        f"without the sampler's own work (wall): mean {service_ms:.2f} ms, last {window} "
        f"{service_late_ms:.2f} ms, growth {wall['service_ratio']:.2f}x "
        f"(CPU {figures['cpu']['service_ratio']:.2f}x)"
    )
    met = late_ms < GOAL_MS_PER_TRIAL and mean_all_ms < GOAL_MS_PER_TRIAL
    print(
        f"goal < {GOAL_MS_PER_TRIAL:.0f} ms/trial: {'met' if met else 'NOT met'} at {n} trials "
        f"(wall: mean {mean_all_ms:.2f} ms, last {window} {late_ms:.2f} ms)"
    )
    if profiler is not None:
        text = _profile_report(profiler, args.top)
        if args.profile == "-":
            print()
            print("cProfile of run_study (timings above include the profiler's cost):")
            print(text)
        else:
            Path(args.profile).write_text(text, encoding="utf-8")
            print(f"cProfile written to {args.profile}")

    result: dict[str, Any] = {
        "trials": n,
        "epochs": args.epochs,
        "storage": mask_url(storage),
        "sampler": args.sampler,
        "pruner": args.pruner,
        "total_seconds": elapsed,
        "window": window,
        "n_complete": summary.n_complete,
        "n_pruned": summary.n_pruned,
        "n_reports": n_reports,
        "profiled": profiler is not None,
        "sql_statements": statements.count,
        "goal_met": met,
    }
    for clock, fig in figures.items():
        result[clock] = {
            "ms_per_trial_mean": 1000.0 * _mean(fig["per_trial"]),
            "ms_per_trial_median": 1000.0 * median(fig["per_trial"]),
            "ms_per_trial_early": 1000.0 * _mean(fig["early"]),
            "ms_per_trial_late": 1000.0 * _mean(fig["late"]),
            "late_early_ratio": fig["ratio"],
            "late_early_ratio_per_report": fig["report_ratio"],
            "late_early_ratio_rest": fig["rest_ratio"],
            "ms_per_trial_without_sampler_mean": 1000.0 * _mean(fig["service"]),
            "ms_per_trial_without_sampler_late": 1000.0 * _mean(fig["service"][-window:]),
            "late_early_ratio_without_sampler": fig["service_ratio"],
            "breakdown_ms_mean": {p: 1000.0 * _mean(v) for p, v in fig["parts"].items()},
        }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.trials is None:
        args.trials = 30 if args.quick else 1000
    if args.trials < 2 or args.epochs < 1 or args.window < 1:
        print("error: need --trials >= 2, --epochs >= 1, --window >= 1", file=sys.stderr)
        return 2
    from hpo.errors import HpoError

    try:
        run(args)
    except (HpoError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
