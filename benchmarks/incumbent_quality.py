"""How good is the configuration each method would hand over, trained again at fresh seeds?

``benchmarks.search_efficiency`` scores a method by the best validation F1 it *saw*. On a
noisy task that is the luckiest draw among the runs, not the quality of the
configuration: the seed-noise benchmark measured a seed sd (0.0115) larger than the
spread between configurations (0.0091). A user keeps the configuration and trains it
again, so this asks what the user gets. For every run of a finished search-efficiency
benchmark it takes the method's incumbent (its best completed configuration, as Optuna's
``best_trial``) after a fraction of the budget, trains that configuration at seeds that
no search used, and reports the mean validation macro-F1 of those runs.

The goal reading: our default's incumbent after a third of the manual sweep's epochs,
against the manual sweep's final pick, both trained again at the same fresh seeds (a
paired difference per search seed).

``--confirm 3x2`` also measures ``hpo confirm``: each search's top 3 distinct
configurations (as :func:`hpo.confirm.select_finalists` ranks them) trained again at 2
confirmation seeds of their own, the best mean picked, and that pick scored at the fresh
seeds like every other. It is taken at equal compute (the search stopped early by the
confirmation's epochs) and after the full search (the confirmation's epochs on top).

``python -m benchmarks.incumbent_quality --from OUT`` where ``OUT`` is a search-efficiency
``--out`` folder (not a ``--replot`` one): the task (epochs, sizes, noise) is rebuilt from
the arguments recorded in its ``search_efficiency.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks import search_efficiency as se
from benchmarks._common import machine_line
from benchmarks.seed_noise import train_once

REEVAL_SEED_BASE = 1000
"""Fresh seeds start here: the searches use seeds 0, 1, 2, ..."""
CONFIRM_SEED_BASE = 2000
"""The confirmation's own seeds: the pick must not be chosen on the seeds that score it."""
THIRD = Fraction(1, 3)
"""The goal's share of the manual sweep's epochs."""


@dataclass(frozen=True)
class Pick:
    """A method's incumbent on one search seed after ``fraction`` of the budget."""

    dataset: str
    method: str
    seed: int
    fraction: Fraction
    params: str  # JSON, sorted keys: hashable and printable
    seen_f1: float  # the F1 the method reports for it: the search's, or the confirmation mean
    confirm: str = ""  # "3x2": chosen by confirming the top 3 at 2 seeds; "": the incumbent

    @property
    def label(self) -> str:
        """How the pick was made: the budget fraction searched, and the confirmation."""
        return f"{self.fraction}" + (f" + confirm {self.confirm}" if self.confirm else "")


def incumbent(run: se.RunRecord, epochs: int) -> tuple[dict[str, Any], float] | None:
    """Best completed trial within ``epochs`` (the first one on ties, as ``best_trial``)."""
    best: tuple[dict[str, Any], float] | None = None
    for cum, _, trial in run.curve():
        if cum > epochs:
            break
        value = trial.value if trial.state == "COMPLETE" else None
        if value is not None and (best is None or value > best[1]):
            best = (trial.params, value)
    return best


def picks(runs: Sequence[se.RunRecord], fractions: Sequence[Fraction]) -> list[Pick]:
    """Every run's incumbent at every fraction of its budget."""
    out = []
    for run in runs:
        for fraction in fractions:
            found = incumbent(run, int(run.budget * fraction))
            if found is not None:
                params, seen = found
                out.append(Pick(run.dataset, run.method, run.seed, fraction, _key(params), seen))
    return out


def _key(params: Mapping[str, Any]) -> str:
    return json.dumps(dict(params), sort_keys=True)


def finalists(run: se.RunRecord, epochs: int, top: int) -> list[str]:
    """The ``top`` configurations ``hpo confirm`` would take from the search within ``epochs``."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from hpo.confirm import select_finalists

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one in-memory study per pick
    study = optuna.create_study(direction="maximize")
    for cum, _, trial in run.curve():
        if cum > epochs:
            break
        if trial.state == "COMPLETE" and trial.value is not None:
            study.add_trial(
                optuna.trial.create_trial(
                    value=trial.value,
                    params=trial.params,
                    distributions={
                        k: CategoricalDistribution([v]) for k, v in trial.params.items()
                    },
                )
            )
    return [_key(t.params) for t in select_finalists(study, top)]


def confirmed_picks(
    runs: Sequence[se.RunRecord],
    top: int,
    n_seeds: int,
    epochs: int,
    fixed: Mapping[str, Mapping[str, Any]],
    jobs: int,
) -> list[Pick]:
    """Each search's pick by confirmation, at equal compute and after the full search."""
    cost = top * n_seeds * epochs
    seeds = [CONFIRM_SEED_BASE + i for i in range(n_seeds)]
    plans: list[tuple[se.RunRecord, Fraction, list[str]]] = []
    for run in runs:
        if run.method == "manual":
            continue
        for searched in (run.budget - cost, run.budget):
            if searched > 0:
                plans.append((run, Fraction(searched, run.budget), finalists(run, searched, top)))
    wanted = {(run.dataset, key) for run, _, keys in plans for key in keys}
    print(f"confirmation: {len(wanted)} configurations x {n_seeds} confirmation seeds")
    scores = reevaluate(wanted, fixed, seeds, jobs)
    out = []
    for run, fraction, keys in plans:
        if not keys:
            continue
        means = {k: statistics.fmean(scores[(run.dataset, k, s)] for s in seeds) for k in keys}
        best = max(keys, key=means.__getitem__)  # max keeps the search's order on ties
        out.append(
            Pick(run.dataset, run.method, run.seed, fraction, best, means[best], f"{top}x{n_seeds}")
        )
    return out


def task_params(folder: Path) -> dict[str, dict[str, Any]] | None:
    """Fixed trainer params per dataset, rebuilt from the search run's recorded arguments."""
    try:
        recorded = json.loads((folder / "search_efficiency.json").read_text(encoding="utf-8"))
        args = argparse.Namespace(**recorded["args"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if getattr(args, "replot", None):  # a re-rendering records its own defaults, not the run's
        return None
    return {d: se.fixed_params(args, d) for d in se.DATASETS}


def reevaluate(
    wanted: set[tuple[str, str]],
    fixed: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    jobs: int,
) -> dict[tuple[str, str, int], float]:
    """Train each (dataset, configuration) at each fresh seed, ``jobs`` runs at a time."""
    tasks = [(d, p, s) for d, p in sorted(wanted) for s in seeds]
    scores: dict[tuple[str, str, int], float] = {}
    with ProcessPoolExecutor(max(1, jobs), mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(train_once, dict(fixed[d]), json.loads(p), s): (d, p, s)
            for d, p, s in tasks
        }
        for done, future in enumerate(as_completed(futures), 1):
            scores[futures[future]] = future.result()
            print(f"  {done}/{len(tasks)} runs done", file=sys.stderr, flush=True)
    return scores


def _fmt_fraction(fraction: Fraction) -> str:
    return "the full budget" if fraction == 1 else f"{fraction} of the budget"


def report(
    found: Sequence[Pick], scores: Mapping[tuple[str, str, int], float], seeds: Sequence[int]
) -> list[str]:
    """The table (medians over search seeds) and the paired goal reading, as text lines."""

    def quality(pick: Pick) -> float:
        return statistics.fmean(scores[(pick.dataset, pick.params, s)] for s in seeds)

    lines = [
        "| dataset | method | incumbent after (fraction of the budget) "
        "| median F1 the method reports (the search's best; confirmed: the confirmation mean) "
        f"| median F1 trained again ({len(seeds)} fresh seeds) "
        "| distinct configurations picked |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str, str], list[Pick]] = {}
    for pick in found:
        groups.setdefault((pick.dataset, pick.method, pick.label), []).append(pick)
    for (dataset, method, label), group in groups.items():
        seen = statistics.median(p.seen_f1 for p in group)
        again = statistics.median(quality(p) for p in group)
        lines.append(
            f"| {dataset} | {se.METHOD_LABELS[method]} | {label} | "
            f"{seen:.3f} | {again:.3f} | {len({p.params for p in group})}/{len(group)} |"
        )
    lines.append("")
    final_manual = {
        (p.dataset, p.seed): p
        for p in found
        if p.method == "manual" and p.fraction == 1 and not p.confirm
    }
    diffs: dict[tuple[str, str, Fraction, str], list[float]] = {}
    for pick in found:
        target = final_manual.get((pick.dataset, pick.seed))
        if pick.method != "manual" and target is not None:
            diff = quality(pick) - quality(target)
            key = (pick.dataset, pick.method, pick.fraction, pick.confirm)
            diffs.setdefault(key, []).append(diff)
    for (dataset, method, fraction, confirm), values in diffs.items():
        as_good = sum(d >= -1e-9 for d in values)
        error = f"{statistics.stdev(values) / len(values) ** 0.5:.4f}" if len(values) > 1 else "n/a"
        lines.append(
            f"{dataset} {method}: its pick after {_fmt_fraction(fraction)}"
            + (f" confirmed ({confirm}: top x seeds)" if confirm else "")
            + " minus the manual "
            f"sweep's final pick, both trained again: mean {statistics.fmean(values):+.4f} F1 "
            f"(standard error {error}); as good or better in {as_good}/{len(values)} seeds"
        )
    return lines


def _parse_confirm(text: str | None) -> tuple[int, int] | None:
    top, sep, seeds = (text or "").lower().partition("x")
    if not sep or not top.strip().isdigit() or not seeds.strip().isdigit():
        return None
    parsed = int(top), int(seeds)
    return parsed if min(parsed) >= 1 else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.incumbent_quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--from", dest="folder", required=True, help="search-efficiency --out")
    parser.add_argument(
        "--reeval-seeds", type=int, default=3, help="fresh seeds per configuration (3)"
    )
    parser.add_argument(
        "--fractions", default="1/3,1", help="budget fractions to take the incumbent at"
    )
    parser.add_argument(
        "--confirm",
        default=None,
        metavar="TOPxSEEDS",
        help="also pick by confirmation as hpo confirm does, e.g. 3x2: the top 3 trained at 2 "
        "seeds of their own, at equal compute and after the full search",
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    folder = Path(args.folder)
    curves = folder / "search_efficiency_curves.csv"
    if not curves.is_file():
        print(f"error: --from: no {curves.name} in {folder}", file=sys.stderr)
        return 2
    fixed = task_params(folder)
    if fixed is None:
        print(
            f"error: --from: {folder}/search_efficiency.json does not record a search run's "
            "arguments (give the --out folder of a run, not of a --replot)",
            file=sys.stderr,
        )
        return 2
    try:
        fractions = {Fraction(f.strip()) for f in args.fractions.split(",") if f.strip()}
    except (ValueError, ZeroDivisionError):
        fractions = set()
    problems = []
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        problems.append("--fractions: give fractions in (0, 1], e.g. 1/3,1")
    if args.reeval_seeds < 1:
        problems.append("--reeval-seeds: give at least 1")
    confirm = _parse_confirm(args.confirm)
    if args.confirm is not None and confirm is None:
        problems.append(
            f"--confirm: give TOPxSEEDS with both at least 1, e.g. 3x2 (got {args.confirm!r})"
        )
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    fractions = sorted(fractions | {THIRD, Fraction(1)})
    runs = se.load_curves_csv(curves)
    print(machine_line())
    started = time.perf_counter()
    found = picks(runs, fractions)
    if confirm is not None:
        epochs = int(json.loads((folder / "search_efficiency.json").read_text())["args"]["epochs"])
        found += confirmed_picks(runs, *confirm, epochs, fixed, args.jobs)
    seeds = [REEVAL_SEED_BASE + i for i in range(args.reeval_seeds)]
    wanted = {(p.dataset, p.params) for p in found}
    print(f"incumbent quality: {len(wanted)} configurations x {len(seeds)} fresh seeds")
    scores = reevaluate(wanted, fixed, seeds, args.jobs)
    lines = report(found, scores, seeds)
    print("\n".join(lines))
    print(f"wall {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.json:
        data = {
            "seeds": seeds,
            "picks": [
                {**p.__dict__, "fraction": str(p.fraction), "params": json.loads(p.params)}
                for p in found
            ],
            "scores": [
                {"dataset": d, "params": json.loads(p), "seed": s, "f1": v}
                for (d, p, s), v in sorted(scores.items())
            ],
            "report": lines,
        }
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
