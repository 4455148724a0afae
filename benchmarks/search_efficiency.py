"""Search efficiency: best validation F1 reached versus epochs spent, at equal compute.

Ways to tune the seed space of the contrastive trainer (temperature, contrastive
weight, batch size, loss, the dim-reduction bottleneck, number of heads) on a fixed task:

``manual``
    The one-knob-at-a-time sweep users do today, in the order of their notes:
    temperature -> contrastive_weight -> batch_size -> loss -> use_dim_reduction ->
    n_heads. Start from the trainer's defaults, grid one parameter with every other one
    fixed, keep the best value (ties keep the incumbent), move on. Every run trains the
    full epoch count. A configuration already trained (each grid holds the incumbent's
    value) is not trained again, which is the cheapest honest version of the sweep.
``random``
    Random search without pruning: a real Optuna study through :func:`hpo.run_study`
    (``sampler: random``, ``pruner: none``).
``tpe_hyperband``
    Our default: a real study through :func:`hpo.run_study` with ``sampler: tpe`` and
    ``pruner: hyperband`` as the service sets it up: ``max_resource`` = the epoch count
    and ``min_resource`` = the first epoch after the trainer's LR warmup (unless
    ``--hb-min-resource`` is given).
``tpe_hyperband_warm``
    The same study with the two study-file settings that target the manual sweep's
    advantages: ``enqueue`` holds the trainer defaults for every seed-space parameter
    (the manual sweep's start point, tried first), and ``duplicates: reuse`` (a repeat
    of a completed configuration takes its value instead of training again).
``tpe_sha_warm`` (opt-in)
    The warm arm with ``successive_halving`` (one bracket) in place of Hyperband and
    ``multivariate: true`` TPE. It was built to give the sampler one shared history, but
    Optuna 5's TPE already models every bracket and is multivariate by default: what
    this arm changes is the pruner.
``tpe_hyperband_screen`` (opt-in)
    The warm arm with the manual sweep's first look at every knob enqueued: the defaults
    and each one-knob change of them, in the sweep's order, screened by Hyperband before
    TPE samples on its own.

All methods search the same set: every parameter is categorical with the same choices.
Compute is counted in trained epochs; a pruned trial counts only the epochs it reported
(its intermediate values). The manual sweep's total is the budget: the studies run trials
until their cumulative epochs reach it (a study callback stops them), so the methods spend
equal compute. With ``--passes`` > 1 the sweep's later rounds skip what it has trained, so
it may spend less than its nominal budget: every arm is then judged at the epochs that
seed's sweep actually trained. Within one repetition every run trains with the same seed (fixed in the
trainer params, the study seed only drives the sampler), so the methods optimise
the same deterministic function of the configuration and differ only in where they look.

The synthetic HAR task holds 240 labelled training series and 1,760 validation series
(``--n-train 2000 --val-fraction 0.88``): few labels, so the knobs matter, and a
validation set large enough for F1 to tell them apart (``benchmarks.seed_noise``).

The objective is the best validation macro-F1 over the epochs of a run (``best_val_f1``;
the test split is never scored). A method's best-so-far counts completed runs only, as
Optuna's ``best_value`` does. Reported per dataset and method, as medians over seeds: the
best F1 at the budget, the epochs needed to first reach the manual sweep's final best
(of the same seed), and the ratio of those epochs to the manual sweep's own (and to its
full sweep, which is what a user pays to learn the answer). Figures are epoch counts and
ratios measured side by side in one run; wall times are context only.

The best F1 a method *saw* is the luckiest of its runs on a noisy task;
``benchmarks.incumbent_quality`` trains each method's pick again at fresh seeds to score
what a user would actually keep.

Run ``python -m benchmarks.search_efficiency --help``; ``--quick`` is the CI smoke size.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks._common import machine_line

METHODS = ("manual", "random", "tpe_hyperband", "tpe_hyperband_warm")
"""The methods compared by default; ``tpe`` (no pruning) is an optional diagnostic arm."""
ALL_METHODS = (
    *METHODS,
    "tpe_sha_warm",
    "tpe_hyperband_screen",
    "tpe_hyperband_patient",
    "tpe_hyperband_grouped",
    "tpe_hyperband_rerun",
    "tpe_hyperband_exact",
    "gp_hyperband",
    "tpe_hyperband_ordinal",
    "tpe_hyperband_random_start",
    "tpe",
    "gp",
)
RETIRED_METHODS = ("tpe_hyperband_reuse", "tpe_hyperband_balanced")
"""Arms no longer run (each became the default), still read from old outputs."""
REPLACED_BY = {
    "tpe_hyperband_reuse": "tpe_hyperband",  # duplicates reused: the default since 2026-12-04
    "tpe_hyperband_balanced": "tpe_hyperband",  # balanced start-up: the default since 2026-12-06
}
"""The arm that runs what each retired arm ran."""
REPORTED_METHODS = (*ALL_METHODS, *RETIRED_METHODS)
"""Every arm a curves file may hold, in the order tables and plots list them."""
WARM_METHODS = ("tpe_hyperband_warm", "tpe_sha_warm", "tpe_hyperband_screen")
"""Arms that try the trainer defaults first and reuse completed configurations."""
PRUNED_METHODS = (
    "tpe_hyperband",
    *WARM_METHODS,
    "tpe_hyperband_patient",
    "tpe_hyperband_grouped",
    "tpe_hyperband_rerun",
    "tpe_hyperband_exact",
    "gp_hyperband",
    "tpe_hyperband_ordinal",
    "tpe_hyperband_random_start",
)
"""TPE (or GP) with a pruner: the service's default and its variants, judged against the goal."""
METHOD_LABELS = {
    "manual": "manual one-knob sweep",
    "random": "random search, no pruning",
    "tpe_hyperband": "TPE + Hyperband (our default)",
    "tpe_hyperband_warm": "TPE + Hyperband, defaults enqueued, duplicates reused",
    "tpe_sha_warm": "TPE (multivariate) + successive halving, defaults enqueued, duplicates reused",
    "tpe_hyperband_screen": "TPE + Hyperband, one-knob changes of the defaults enqueued",
    "tpe_hyperband_patient": "TPE + Hyperband, only on trials whose val F1 stopped rising",
    "tpe_hyperband_grouped": "TPE + Hyperband within each loss",
    "tpe_hyperband_rerun": "TPE + Hyperband, repeats trained again (the default until 2026-12-04)",
    "tpe_hyperband_exact": "TPE + Hyperband, only identical configurations reused "
    "(the default until session 12)",
    "gp_hyperband": "Gaussian-process BO + Hyperband",
    "tpe_hyperband_ordinal": "TPE modelling numeric grids by position + Hyperband",
    "tpe_hyperband_random_start": "TPE + Hyperband, random start-up trials "
    "(the default until 2026-12-06)",
    "tpe": "TPE, no pruning (diagnostic)",
    "gp": "Gaussian-process BO, no pruning",
    "tpe_hyperband_reuse": "TPE + Hyperband, duplicates reused (the default since 2026-12-04)",
    "tpe_hyperband_balanced": "TPE + Hyperband, start-up trials balanced over every grid "
    "(the default since 2026-12-06)",
}
METHOD_COLORS = {
    "manual": "#7f7f7f",
    "random": "#1f77b4",
    "tpe_hyperband": "#d62728",
    "tpe_hyperband_warm": "#2ca02c",
    "tpe_sha_warm": "#9467bd",
    "tpe_hyperband_screen": "#8c564b",
    "tpe_hyperband_patient": "#e377c2",
    "tpe_hyperband_grouped": "#17becf",
    "tpe_hyperband_rerun": "#bcbd22",
    "tpe_hyperband_exact": "#637939",
    "gp_hyperband": "#393b79",
    "tpe_hyperband_ordinal": "#ff9896",
    "tpe_hyperband_random_start": "#dbdb8d",
    "tpe_hyperband_balanced": "#c49c94",
    "tpe": "#ff7f0e",
    "gp": "#e7969c",
    "tpe_hyperband_reuse": "#aec7e8",
}
ARM_NOTES = {
    "tpe_hyperband_warm": "warm arm: the same TPE + Hyperband with the trainer defaults "
    "enqueued as trial 0 and duplicates: reuse",
    "tpe_sha_warm": "shared-history arm: multivariate TPE + successive halving (same "
    "min_resource and reduction_factor as Hyperband), defaults enqueued, duplicates: reuse",
    "tpe_hyperband_screen": "screening arm: the warm arm with every one-knob change of the "
    "defaults enqueued after them, in the manual sweep's order",
    "tpe_hyperband_patient": "patient arm: Optuna's PatientPruner (patience {patience}, on the "
    "epoch's val_f1) around the same Hyperband; Hyperband judges a trial only once its val F1 "
    "has not risen for that many epochs",
    "tpe_hyperband_grouped": "grouped arm: the same Hyperband, ranking each trial only against "
    "trials of the same loss (pruner grouped, by: [loss])",
    "tpe_hyperband_rerun": "rerun arm: our default with duplicates: rerun (the default until "
    "2026-12-04), so a configuration TPE proposes again trains again at the same seed",
    "tpe_hyperband_exact": "exact-repeats arm: our default on a trainer whose schema does "
    "not say which knobs a configuration leaves unread, so a temperature with VICReg trains "
    "again (the default until session 12)",
    "gp_hyperband": "GP arm: our default with Optuna's GPSampler in place of TPE (same "
    "n_startup_trials); the GP models only completed trials, so pruned trials do not inform it",
    "tpe_hyperband_ordinal": "ordinal arm: our default with the sampler tpe_ordinal "
    "(hpo.samplers._ordinal_tpe), whose model treats a grid of ordered numbers (temperature, "
    "contrastive weight, batch size) as positions 0..n-1, so neighbouring values share "
    "evidence; the study still stores the values",
    "tpe_hyperband_random_start": "random-start arm: our default with startup: random, so "
    "its {startup} start-up trials are TPE's random draws instead of a design in which every "
    "value of every knob appears (the default until 2026-12-06)",
    "gp": "GP arm without pruning: Optuna's GPSampler (same n_startup_trials), every trial "
    "trained to the end",
}
"""The context line each opt-in arm adds to the report when it ran."""
DATASETS = ("synthetic_har", "BasicMotions")

SEARCH_SPACE: dict[str, list[Any]] = {
    "temperature": [0.05, 0.07, 0.1, 0.15],
    "contrastive_weight": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
    "batch_size": [32, 64, 128],
    "loss": ["infonce", "triplet", "barlow_twins", "vicreg"],
    "use_dim_reduction": [False, True],
    "n_heads": [4, 8],
}
"""The seed space, in the manual sweep's order (users' notes)."""

QUICK_SPACE: dict[str, list[Any]] = {
    "temperature": [0.07, 0.1],
    "contrastive_weight": [0.1, 0.2],
    "batch_size": [32, 64],
    "loss": ["infonce", "vicreg"],
    "use_dim_reduction": [False, True],
    "n_heads": [4, 8],
}
"""Two values per parameter (each grid holds the trainer default) for the smoke size."""

METRIC = "best_val_f1"
_EPS = 1e-9


# --------------------------------------------------------------------------------------
# records
# --------------------------------------------------------------------------------------


@dataclass
class Setup:
    """Everything one (dataset, method, seed) run needs; picklable for worker processes."""

    dataset: str
    epochs: int
    fixed: dict[str, Any]
    space: dict[str, list[Any]]
    start: dict[str, Any]
    budget: int
    tpe_startup: int
    hb_min_resource: int | None
    hb_reduction: int
    threads: int
    patience: int = 3
    passes: int = 1
    verbose: bool = True
    trainer: str = "contrastive"
    train_seed: int | None = None
    """The trainer's seed; None: the search's seed (a replay on a table fixes the table's)."""
    sampler_args: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the arm's sampler (a replay's ``sampler.name=value``)."""


@dataclass
class TrialRecord:
    """One training run: its state, the epochs it trained and its objective value."""

    number: int
    state: str
    epochs: int
    value: float | None
    params: dict[str, Any]
    wall_s: float | None


@dataclass
class RunRecord:
    """One method on one dataset with one seed: its runs in the order they finished."""

    dataset: str
    method: str
    seed: int
    budget: int
    trials: list[TrialRecord] = field(default_factory=list)
    wall_s: float = 0.0

    def curve(self) -> list[tuple[int, float | None, TrialRecord]]:
        """``(cumulative epochs, best completed value so far, trial)`` after each trial."""
        out: list[tuple[int, float | None, TrialRecord]] = []
        cum, best = 0, None
        for t in self.trials:
            cum += t.epochs
            if t.state == "COMPLETE" and t.value is not None and (best is None or t.value > best):
                best = t.value
            out.append((cum, best, t))
        return out

    @property
    def epochs_used(self) -> int:
        """Epochs trained in all, overshoot of the last trial included."""
        return sum(t.epochs for t in self.trials)

    def best_at(self, epochs: int) -> float | None:
        """Best completed value among trials finished within ``epochs``."""
        best = None
        for cum, value, _ in self.curve():
            if cum > epochs:
                break
            best = value
        return best

    def epochs_to_reach(self, target: float, limit: int) -> int | None:
        """Cumulative epochs when the best-so-far first reaches ``target`` (within ``limit``)."""
        for cum, value, _ in self.curve():
            if cum > limit:
                return None
            if value is not None and value >= target - _EPS:
                return cum
        return None


# --------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------


def trainer_defaults(space: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The manual sweep's starting point: the trainer's defaults (grid[0] when off-grid)."""
    from trainers.params import ContrastiveParams

    fields = ContrastiveParams.model_fields
    start: dict[str, Any] = {}
    for name, values in space.items():
        default = fields[name].default
        start[name] = default if _in(default, values) else values[0]
    return start


def _in(value: Any, values: Sequence[Any]) -> bool:
    return any(type(value) is type(v) and value == v for v in values)


def manual_budget(space: Mapping[str, Sequence[Any]], start: Mapping[str, Any], epochs: int) -> int:
    """Epochs the manual sweep trains: the first grid in full, then every non-incumbent value."""
    names = list(space)
    runs = len(space[names[0]])
    for name in names[1:]:
        runs += len(space[name]) - (1 if _in(start[name], space[name]) else 0)
    return runs * epochs


def one_knob_changes(
    space: Mapping[str, Sequence[Any]], start: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``start``, then every configuration that changes one knob of it, in ``space``'s order."""
    configs = [dict(start)]
    for name, values in space.items():
        configs.extend({**start, name: v} for v in values if not _in(v, [start[name]]))
    return configs


def fixed_params(args: argparse.Namespace, dataset: str) -> dict[str, Any]:
    """Trainer params shared by every run on ``dataset`` (the seed is added per repetition)."""
    params: dict[str, Any] = {
        "dataset": dataset,
        "device": "cpu",
        "epochs": args.epochs,
        "warmup_epochs": min(3, args.epochs // 3),
        "dim": args.dim,
        "evaluate_test": False,
    }
    if dataset == "synthetic_har":
        params.update(
            synthetic_n_train=args.n_train,
            synthetic_n_test=args.n_test,
            length=args.length,
            synthetic_noise=args.noise,
        )
        val_fraction = getattr(args, "val_fraction", None)
        if val_fraction is not None:
            params["val_fraction"] = val_fraction
    else:
        # 40 training series: half of them for validation, so macro-F1 has 20 samples to
        # resolve (it still saturates at 1.0 for many configurations).
        params["val_fraction"] = 0.5
    return params


def _train_seed(setup: Setup, seed: int) -> int:
    return seed if setup.train_seed is None else setup.train_seed


def study_config(setup: Setup, method: str, seed: int, storage_dir: str) -> Any:
    """The study dict for ``method``, validated by :func:`hpo.validate_study_data`."""
    from hpo import validate_study_data
    from hpo.pruners import study_pruner

    if method == "random":
        sampler: dict[str, Any] = {"name": "random"}
        pruner: dict[str, Any] = {"name": "none"}
    elif method in ("tpe", "gp"):
        sampler = {"name": method, "n_startup_trials": setup.tpe_startup}
        pruner = {"name": "none"}
    elif method in PRUNED_METHODS:
        sampler = {"name": "tpe", "n_startup_trials": setup.tpe_startup}
        if method == "gp_hyperband":
            sampler["name"] = "gp"
        if method == "tpe_hyperband_ordinal":
            sampler["name"] = "tpe_ordinal"
        # min_resource left out: the service starts the rungs after the trainer's warmup
        pruner = {"name": "hyperband", "reduction_factor": setup.hb_reduction}
        if method == "tpe_sha_warm":
            # one bracket (Optuna 5's TPE models every bracket and is multivariate anyway)
            sampler["multivariate"] = True
            pruner["name"] = "successive_halving"
        if setup.hb_min_resource is not None:
            pruner["min_resource"] = setup.hb_min_resource
        if method == "tpe_hyperband_patient":
            # Hyperband asked only once val F1 has not risen for `patience` epochs: a slow
            # starter that is still climbing is not judged on its early rungs
            pruner = {"name": "patient", "patience": setup.patience, "wrapped": pruner}
        if method == "tpe_hyperband_grouped":
            # a slow-starting loss (VICReg) is ranked against its own kind, not against
            # losses that learn faster in the first epochs
            pruner = {"name": "grouped", "by": ["loss"], "wrapped": pruner}
    else:
        raise ValueError(f"no study for method {method!r}")
    sampler.update(setup.sampler_args)
    db = Path(storage_dir) / f"{setup.dataset}-{method}-{seed}.db"
    objective: dict[str, Any] = {"metric": METRIC, "direction": "maximize"}
    if method == "tpe_hyperband_patient":
        # the best-so-far F1 never falls, so patience needs the epoch's own F1
        objective["prune_on"] = "val_f1"
    # Hyperband puts a trial in a bracket by a hash of the study name and trial number:
    # the variants of our default take its name (each arm has its own database file), so
    # they get its brackets and differ from it only in what the variant changes
    named_as = "tpe_hyperband" if method in PRUNED_METHODS else method
    data = {
        "name": f"search-efficiency-{setup.dataset}-{named_as}-s{seed}",
        "storage": f"sqlite:///{db}",
        "seed": seed,
        "objective": objective,
        "sampler": sampler,
        "pruner": pruner,
        # trials are bounded by the epoch budget callback; n_trials is only a backstop
        "budget": {"n_trials": 4 * setup.budget + 10},
        "trainer": {
            "name": setup.trainer,
            "params": {**setup.fixed, "seed": _train_seed(setup, seed)},
        },
        "space": {n: {"type": "categorical", "choices": list(v)} for n, v in setup.space.items()},
        "artifacts": {"enabled": False},
    }
    if method in WARM_METHODS:
        # the manual sweep's start point (the trainer defaults), tried first, and no epoch
        # spent on a configuration that already completed
        data["enqueue"] = [dict(setup.start)]
        data["duplicates"] = "reuse"
    if method == "tpe_hyperband_screen":
        data["enqueue"] = one_knob_changes(setup.space, setup.start)
    if method == "tpe_hyperband_exact":
        # the service fits the pruner's first rung to the warmup of built-in trainers only
        # (a user's steps may not be epochs): this arm states the default's first rung
        default_pruner = study_pruner(validate_study_data(data))
        data["pruner"] = {**pruner, "min_resource": default_pruner._min_resource}
        data["trainer"]["name"] = EXACT_REPEATS_TRAINER
    if method == "tpe_hyperband_random_start":
        # the default's start-up is a balanced design (hpo.samplers._startup_design) since 2026-12-06
        data["startup"] = "random"
    if method == "tpe_hyperband_rerun":
        # every run trains at the search's seed, so a repeat only reproduces its value:
        # our default reuses it (duplicates: auto); this arm trains it again
        data["duplicates"] = "rerun"
    return validate_study_data(data)


# by import path, not a registered name: the registry users see lists only their trainers
EXACT_REPEATS_TRAINER = "benchmarks._exact_repeats:train"


# --------------------------------------------------------------------------------------
# the methods
# --------------------------------------------------------------------------------------


def _log(setup: Setup, message: str) -> None:
    if setup.verbose:
        print(message, file=sys.stderr, flush=True)


class _CountingReporter:
    def __init__(self) -> None:
        self.epochs = 0

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.epochs += 1


def run_manual(
    setup: Setup, seed: int, train: Callable[..., Mapping[str, Any]] | None = None
) -> RunRecord:
    """The one-knob-at-a-time sweep, calling the trainer directly.

    With ``setup.passes`` > 1 it goes round the knobs again from its incumbent, as users do
    when a first pass moved several knobs, skipping configurations it has trained, until
    it has spent the budget or a whole pass changes nothing. As the service does, it
    counts a configuration that differs from a trained one only in knobs the trainer does
    not read (a temperature with VICReg) as trained. ``train`` defaults to the
    contrastive trainer's.
    """
    from trainers.registry import resolve_trainer
    from trainers.reporter import TrainingFailed

    unused: Callable[[Mapping[str, Any]], frozenset[str]] | None = None
    if train is None:
        from trainers.contrastive import train

        unused = resolve_trainer("contrastive").unused_params

    record = RunRecord(setup.dataset, "manual", seed, setup.budget)
    started = time.perf_counter()
    incumbent = dict(setup.start)
    best: float | None = None
    seen: dict[tuple[Any, ...], float | None] = {}
    for _ in range(setup.passes):
        trained_before = len(record.trials)
        incumbent_before = dict(incumbent)
        for name, values in setup.space.items():
            for value in values:
                config = {**incumbent, name: value}
                unread = unused({**setup.fixed, **config}) if unused else frozenset()
                key = tuple(
                    (k, type(v).__name__, v) for k, v in sorted(config.items()) if k not in unread
                )
                if key in seen:
                    score = seen[key]
                elif record.epochs_used + setup.epochs > setup.budget:
                    continue
                else:
                    score = _train_manual_run(setup, seed, config, record, train, TrainingFailed)
                    seen[key] = score
                if score is not None and (best is None or score > best + _EPS):
                    best, incumbent = score, config
        if len(record.trials) == trained_before or incumbent == incumbent_before:
            break
    record.wall_s = time.perf_counter() - started
    return record


def _train_manual_run(
    setup: Setup,
    seed: int,
    config: dict[str, Any],
    record: RunRecord,
    train: Callable[..., Any],
    training_failed: type[Exception],
) -> float | None:
    """One full run of the manual sweep, appended to ``record``; its score (None: failed)."""
    reporter = _CountingReporter()
    t0 = time.perf_counter()
    try:
        result = train({**setup.fixed, **config, "seed": _train_seed(setup, seed)}, reporter)
        score, state = float(result[METRIC]), "COMPLETE"
        if not math.isfinite(score):
            score, state = None, "FAIL"
    except (training_failed, ValueError, RuntimeError) as exc:
        _log(setup, f"  manual run failed: {type(exc).__name__}: {exc}")
        score, state = None, "FAIL"
    record.trials.append(
        TrialRecord(
            len(record.trials),
            state,
            reporter.epochs,
            score,
            config,
            round(time.perf_counter() - t0, 3),
        )
    )
    _progress(setup, record)
    return score


class EpochBudget:
    """Study callback: stop once the finished trials have trained ``budget`` epochs."""

    def __init__(self, budget: int, on_trial: Callable[[Any], None] | None = None) -> None:
        self.budget = budget
        self.on_trial = on_trial

    def __call__(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        trials = study.get_trials(deepcopy=False, states=finished)
        if self.on_trial is not None:
            self.on_trial(trials)
        if sum(len(t.intermediate_values) for t in trials) >= self.budget:
            study.stop()


def _trial_records(trials: Sequence[Any]) -> list[TrialRecord]:
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        value = t.value if t.state.name == "COMPLETE" else None
        out.append(
            TrialRecord(
                t.number,
                t.state.name,
                len(t.intermediate_values),
                float(value) if value is not None else None,
                dict(t.params),
                t.user_attrs.get("wall_seconds"),
            )
        )
    return out


def run_optuna(setup: Setup, method: str, seed: int, storage_dir: str) -> RunRecord:
    """A real study through :func:`hpo.run_study`, stopped at the epoch budget."""
    from optuna.trial import TrialState

    from hpo import open_study, run_study

    cfg = study_config(setup, method, seed, storage_dir)
    record = RunRecord(setup.dataset, method, seed, setup.budget)

    def progress(trials: Sequence[Any]) -> None:
        record.trials = _trial_records(trials)
        _progress(setup, record)

    started = time.perf_counter()
    run_study(cfg, callbacks=[EpochBudget(setup.budget, progress)])
    record.wall_s = time.perf_counter() - started
    study = open_study(cfg, create=False)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    record.trials = _trial_records(study.get_trials(deepcopy=False, states=finished))
    return record


def _progress(setup: Setup, record: RunRecord) -> None:
    if not record.trials:
        return
    t = record.trials[-1]
    value = "-" if t.value is None else f"{t.value:.4f}"
    best = record.best_at(10**9)
    _log(
        setup,
        f"[{record.dataset} {record.method} seed {record.seed}] trial {t.number} {t.state} "
        f"{t.epochs} ep, F1 {value}; {record.epochs_used}/{record.budget} ep, "
        f"best {'-' if best is None else f'{best:.4f}'}",
    )


def run_task(setup: Setup, method: str, seed: int, storage_dir: str) -> RunRecord:
    """One method, one seed (the unit of work of a worker process)."""
    import optuna
    import torch

    threads, verbosity = torch.get_num_threads(), optuna.logging.get_verbosity()
    torch.set_num_threads(setup.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if method == "manual":
            return run_manual(setup, seed)
        return run_optuna(setup, method, seed, storage_dir)
    finally:  # leave the caller's process as it was (the smoke test runs in pytest's)
        torch.set_num_threads(threads)
        optuna.logging.set_verbosity(verbosity)


# --------------------------------------------------------------------------------------
# summary
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: a method on a dataset, medians over seeds."""

    dataset: str
    method: str
    seeds: int
    budget: int
    best_f1: list[float | None]
    to_reach: list[int | None]
    ratio_vs_manual: list[float]
    ratio_vs_sweep: list[float]
    trials: list[int]
    pruned: list[int]
    wall_s: list[float]

    @property
    def reached(self) -> int:
        """Seeds in which the method reached the manual sweep's final best."""
        return sum(1 for e in self.to_reach if e is not None)

    @property
    def median_best(self) -> float:
        """Median best F1 at the budget; a seed with no completed run counts as the worst.

        NaN when the median falls on such seeds.
        """
        value = _median_worst_first(self.best_f1)
        return math.nan if value is None else value

    @property
    def median_to_reach(self) -> float:
        """Median epochs to reach the manual best (``inf`` for 'not reached')."""
        return statistics.median([math.inf if e is None else float(e) for e in self.to_reach])

    @property
    def median_ratio(self) -> float:
        """Median over seeds of (epochs to reach) / (manual's epochs to reach)."""
        return statistics.median(self.ratio_vs_manual)

    @property
    def median_ratio_sweep(self) -> float:
        """Median over seeds of (epochs to reach) / (manual sweep's total epochs)."""
        return statistics.median(self.ratio_vs_sweep)


def summarize(runs: Sequence[RunRecord], tolerance: float = 0.0) -> list[Row]:
    """Per dataset and method: final best at the budget, epochs to reach the manual best.

    ``tolerance`` > 0 counts a method as having reached the manual sweep's final best once
    it is within that much F1 of it (for the manual sweep too), e.g. within the seed noise.
    """
    by_key = {(r.dataset, r.method, r.seed): r for r in runs}
    rows = []
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    for dataset in datasets:
        seeds = sorted({r.seed for r in runs if r.dataset == dataset})
        for method in REPORTED_METHODS:
            row = Row(dataset, method, len(seeds), 0, [], [], [], [], [], [], [])
            for seed in seeds:
                run = by_key.get((dataset, method, seed))
                manual = by_key.get((dataset, "manual", seed))
                if run is None or manual is None:
                    continue
                budget = manual.budget
                row.budget = budget
                target = manual.best_at(budget)
                if target is not None:
                    target -= tolerance
                row.best_f1.append(run.best_at(budget))
                reach = None if target is None else run.epochs_to_reach(target, budget)
                manual_reach = None if target is None else manual.epochs_to_reach(target, budget)
                row.to_reach.append(reach)
                if reach is None or not manual_reach:
                    row.ratio_vs_manual.append(math.inf)
                    row.ratio_vs_sweep.append(math.inf)
                else:
                    row.ratio_vs_manual.append(reach / manual_reach)
                    row.ratio_vs_sweep.append(reach / budget)
                within = [t for cum, _, t in run.curve() if cum <= budget]
                row.trials.append(len(within))
                row.pruned.append(sum(1 for t in within if t.state == "PRUNED"))
                row.wall_s.append(run.wall_s)
            if row.best_f1:
                rows.append(row)
    return rows


def _fmt_ratio(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:.2f}"


def _fmt_epochs(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:g}"


def _range(values: Sequence[float | None]) -> str:
    vals = [v for v in values if v is not None]
    return f"{min(vals):.3f}..{max(vals):.3f}" if vals else "n/a"


TABLE_HEADER = (
    "dataset",
    "method",
    "median best val F1 at budget [range]",
    "reached manual best",
    "median epochs to reach manual best",
    "ratio vs manual's epochs to reach",
    "ratio vs full manual sweep",
    "median trials (pruned)",
    "median wall s",
)


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """The summary as strings, one list per row, in ``TABLE_HEADER`` order."""
    out = []
    for r in rows:
        out.append(
            [
                r.dataset,
                METHOD_LABELS[r.method],
                f"{r.median_best:.3f} [{_range(r.best_f1)}]",
                f"{r.reached}/{len(r.to_reach)}",
                _fmt_epochs(r.median_to_reach) + f" of {r.budget}",
                _fmt_ratio(r.median_ratio),
                _fmt_ratio(r.median_ratio_sweep),
                f"{statistics.median(r.trials):g} ({statistics.median(r.pruned):g})",
                f"{statistics.median(r.wall_s):.0f}",
            ]
        )
    return out


def markdown_table(rows: Sequence[Row]) -> str:
    """The summary as a Markdown table."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines)


def verdicts(rows: Sequence[Row]) -> list[str]:
    """Whether our default reached the manual best with at most a third of the epochs."""
    out = []
    for r in rows:
        if r.method not in PRUNED_METHODS:
            continue
        strict = r.median_ratio <= 1 / 3 + _EPS
        sweep = r.median_ratio_sweep <= 1 / 3 + _EPS
        out.append(
            f"{r.dataset} {r.method}: median ratio vs manual's epochs to reach its best "
            f"{_fmt_ratio(r.median_ratio)} -> goal (<= 0.33) {'MET' if strict else 'NOT met'}; "
            f"vs the full manual sweep {_fmt_ratio(r.median_ratio_sweep)} -> "
            f"{'met' if sweep else 'not met'} (reached in {r.reached}/{len(r.to_reach)} seeds)"
        )
    return out


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def write_curves_csv(runs: Sequence[RunRecord], path: Path) -> None:
    """One row per trial: the best-so-far curve of every method, dataset and seed."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            [
                "dataset",
                "method",
                "seed",
                "budget_epochs",
                "trial",
                "state",
                "epochs",
                "cum_epochs",
                "value",
                "best_so_far",
                "within_budget",
                "wall_s",
                "params",
            ]
        )
        for run in runs:
            for cum, best, t in run.curve():
                writer.writerow(
                    [
                        run.dataset,
                        run.method,
                        run.seed,
                        run.budget,
                        t.number,
                        t.state,
                        t.epochs,
                        cum,
                        "" if t.value is None else f"{t.value:.6f}",
                        "" if best is None else f"{best:.6f}",
                        int(cum <= run.budget),
                        "" if t.wall_s is None else t.wall_s,
                        json.dumps(t.params, sort_keys=True),
                    ]
                )


def write_summary_csv(rows: Sequence[Row], path: Path) -> None:
    """The table, plus per-seed values as JSON columns."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow([*TABLE_HEADER, "per_seed_best_f1", "per_seed_epochs_to_reach"])
        for row, cells in zip(rows, table_rows(rows), strict=True):
            writer.writerow([*cells, json.dumps(row.best_f1), json.dumps(row.to_reach)])


def _step_curve(run: RunRecord) -> tuple[list[int], list[float | None]]:
    xs, ys = [0], [None]
    for cum, best, _ in run.curve():
        if cum > run.budget:
            break
        xs.append(cum)
        ys.append(best)
    return xs, ys


def _median_curve(runs: Sequence[RunRecord], budget: int) -> tuple[list[int], list[float | None]]:
    xs = list(range(budget + 1))
    ys: list[float | None] = []
    for x in xs:
        ys.append(_median_worst_first([r.best_at(x) for r in runs]))
    return xs, ys


def _median_worst_first(values: Sequence[float | None]) -> float | None:
    """Median where None (no completed run yet) ranks below every value.

    Dropping those seeds instead would lift an arm's early median above what most of its
    seeds had; None when the median falls on them.
    """
    if not values:
        return None
    median = statistics.median(-math.inf if v is None else v for v in values)
    return None if math.isinf(median) or math.isnan(median) else median


def write_html(
    runs: Sequence[RunRecord], rows: Sequence[Row], path: Path, context: Sequence[str]
) -> None:
    """Best-so-far curves per dataset (per seed and median) and the table, self-contained."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    datasets = list(dict.fromkeys(r.dataset for r in runs))
    fig = make_subplots(
        rows=2,
        cols=len(datasets),
        specs=[
            [{"type": "xy"}] * len(datasets),
            [{"type": "table", "colspan": len(datasets)}] + [None] * (len(datasets) - 1),
        ],
        subplot_titles=[*datasets, ""],
        row_heights=[0.62, 0.38],
        vertical_spacing=0.1,
    )
    for col, dataset in enumerate(datasets, start=1):
        budget = max(r.budget for r in runs if r.dataset == dataset)
        manual_best = [
            r.best_at(r.budget) for r in runs if r.dataset == dataset and r.method == "manual"
        ]
        known = [v for v in manual_best if v is not None]
        for method in REPORTED_METHODS:
            mruns = [r for r in runs if r.dataset == dataset and r.method == method]
            if not mruns:
                continue
            color = METHOD_COLORS[method]
            for r in mruns:
                xs, ys = _step_curve(r)
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines+markers",
                        line={"shape": "hv", "width": 1, "color": color},
                        marker={"size": 3},
                        opacity=0.35,
                        name=f"{METHOD_LABELS[method]}, seed {r.seed}",
                        legendgroup=method,
                        showlegend=False,
                        hovertemplate="%{x} epochs: best F1 %{y:.4f}",
                    ),
                    row=1,
                    col=col,
                )
            xs, ys = _median_curve(mruns, budget)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"shape": "hv", "width": 3, "color": color},
                    name=f"{METHOD_LABELS[method]} (median of {len(mruns)} seeds)",
                    legendgroup=method,
                    showlegend=col == 1,
                    hovertemplate="%{x} epochs: median best F1 %{y:.4f}",
                ),
                row=1,
                col=col,
            )
        if known:
            fig.add_hline(
                y=statistics.median(known),
                line={"dash": "dash", "color": "black", "width": 1},
                annotation_text="manual sweep's final best (median)",
                annotation_position="bottom right",
                row=1,
                col=col,
            )
        fig.add_vline(
            x=budget / 3,
            line={"dash": "dot", "color": "black", "width": 1},
            annotation_text="1/3 of the manual sweep",
            annotation_position="top left",
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="epochs trained (cumulative)", row=1, col=col)
        fig.update_yaxes(title_text="best validation macro-F1 so far", row=1, col=col)
    cells = list(zip(*table_rows(rows), strict=True)) if rows else [[] for _ in TABLE_HEADER]
    fig.add_trace(
        go.Table(
            header={"values": list(TABLE_HEADER), "align": "left"},
            cells={"values": cells, "align": "left"},
        ),
        row=2,
        col=1,
    )
    title = "Search efficiency at equal compute: best validation F1 vs epochs trained"
    fig.update_layout(
        title={"text": title + "<br><sup>" + "<br>".join(context) + "</sup>"},
        height=1000,
        width=max(1100, 650 * len(datasets) + 350),
        margin={"t": 170},
        legend={"x": 1.01, "y": 1.0, "yanchor": "top", "font": {"size": 11}},
    )
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)


def write_png(runs: Sequence[RunRecord], path: Path, context: Sequence[str]) -> bool:
    """The curves as a PNG when matplotlib is installed (optional; returns False otherwise)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 5), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        budget = max(r.budget for r in runs if r.dataset == dataset)
        for method in REPORTED_METHODS:
            mruns = [r for r in runs if r.dataset == dataset and r.method == method]
            if not mruns:
                continue
            color = METHOD_COLORS[method]
            for r in mruns:
                xs, ys = _step_curve(r)
                ax.step(
                    xs,
                    [math.nan if y is None else y for y in ys],
                    where="post",
                    color=color,
                    alpha=0.3,
                    lw=1,
                )
            xs, ys = _median_curve(mruns, budget)
            ax.step(
                xs,
                [math.nan if y is None else y for y in ys],
                where="post",
                color=color,
                lw=2.5,
                label=f"{METHOD_LABELS[method]} (median)",
            )
        ax.axvline(budget / 3, color="black", ls=":", lw=1)
        ax.set_title(dataset)
        ax.set_xlabel("epochs trained (cumulative)")
        ax.set_ylabel("best validation macro-F1 so far")
        ax.legend(loc="lower right", fontsize=8)
    import textwrap

    width = 110 * len(datasets)
    lines = [wrapped for c in context for wrapped in textwrap.wrap(c, width)]
    fig.suptitle("\n".join(lines), fontsize=7)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.025 * len(lines) - 0.01))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; ``None`` defaults are filled in by ``--quick`` or not."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_efficiency",
        description="Manual one-knob sweep vs random search vs TPE + Hyperband (default and "
        "warm-started) at equal epochs.",
    )
    parser.add_argument(
        "--dataset", choices=[*DATASETS, "both"], default=None, help="default: both"
    )
    parser.add_argument("--seeds", type=int, default=None, help="repetitions (default 6)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per full run (30)")
    parser.add_argument(
        "--n-train", type=int, default=None, help="synthetic HAR train + val (2000)"
    )
    parser.add_argument("--n-test", type=int, default=None, help="synthetic HAR test (100)")
    parser.add_argument(
        "--length", type=int, default=None, help="synthetic HAR series length (32; native 128)"
    )
    parser.add_argument("--dim", type=int, default=None, help="model width (32)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="synthetic HAR share of --n-train held out for validation (0.88: 240 train, 1760 "
        "val, a labelled set small enough for the knobs to matter, a val set large enough "
        "to tell them apart)",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        help="synthetic HAR sensor noise (1.0; the generator's default 0.2 saturates F1)",
    )
    parser.add_argument(
        "--tpe-startup",
        type=int,
        default=5,
        help="TPE n_startup_trials (5: the service's default when a study leaves sampler out)",
    )
    parser.add_argument(
        "--hb-min-resource",
        type=int,
        default=None,
        help="Hyperband min_resource (default: the service's, the first epoch after warmup)",
    )
    parser.add_argument("--hb-reduction", type=int, default=3, help="Hyperband reduction_factor")
    parser.add_argument(
        "--patience",
        type=int,
        default=3,
        help="tpe_hyperband_patient: epochs without a new best val F1 before Hyperband may "
        "prune (Optuna's PatientPruner)",
    )
    parser.add_argument(
        "--passes",
        type=_at_least_one,
        default=1,
        help="rounds of the manual sweep over the knobs (default 1); the arms train up to this "
        "many times one round's epochs and are judged at what the sweep actually trained",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default 2; 1 with --quick)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default 2 // jobs)"
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from {', '.join(ALL_METHODS)} (manual is always run: it sets "
        "the budget and the target)",
    )
    parser.add_argument("--out", default=None, help="write the HTML plot, CSVs and table here")
    parser.add_argument(
        "--replot",
        metavar="CURVES_CSV",
        default=None,
        help="no training: rebuild the table and plots from a curves CSV of an earlier run",
    )
    parser.add_argument(
        "--context-file",
        default=None,
        help="with --replot: text file whose lines describe the run (machine, load, sizes)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="also report the epochs to come within this much F1 of the manual sweep's final "
        "best (e.g. the seed noise that benchmarks.seed_noise measures); works with --replot",
    )
    parser.add_argument("--quick", action="store_true", help="tiny CI configuration (< 60 s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-trial progress")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size defaults: the real configuration, or the tiny one with ``--quick``."""
    full = {
        "dataset": "both",
        "seeds": 6,
        "epochs": 30,
        "n_train": 2000,
        "val_fraction": 0.88,
        "n_test": 100,
        "length": 32,
        "dim": 32,
        "noise": 1.0,
        "jobs": 2,
    }
    quick = {
        "dataset": "synthetic_har",
        "seeds": 1,
        "epochs": 2,
        "n_train": 120,
        "val_fraction": 0.2,
        "n_test": 30,
        "length": 32,
        "dim": 16,
        "noise": 0.2,
        "jobs": 1,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.threads is None:
        args.threads = 1 if args.quick else max(1, 2 // args.jobs)
    methods = [m.strip() for m in str(args.methods).split(",") if m.strip()]
    problems = method_problems(methods)
    if problems:
        raise UsageError("--methods: " + "; ".join(problems))
    args.methods = ["manual", *(m for m in ALL_METHODS if m in methods and m != "manual")]
    return args


class UsageError(ValueError):
    """A command-line value that cannot run: ``main`` prints it as one ``error:`` line, exit 2."""


def method_problems(methods: Sequence[str]) -> list[str]:
    """What is wrong with the ``--methods`` names: retired arms (and what replaced them), unknown ones."""
    problems = [
        f"{m} was retired: the default {REPLACED_BY[m]} now runs it"
        for m in dict.fromkeys(methods)
        if m in REPLACED_BY
    ]
    unknown = [m for m in dict.fromkeys(methods) if m not in ALL_METHODS and m not in REPLACED_BY]
    if unknown:
        names = ", ".join(repr(m) for m in unknown)
        problems.append(
            f"unknown method{'s' if len(unknown) > 1 else ''} {names}; "
            f"use one of {', '.join(ALL_METHODS)}"
        )
    return problems


def run(args: argparse.Namespace) -> tuple[list[RunRecord], list[Row], list[str]]:
    """Run every (dataset, seed, method) and summarize."""
    datasets = list(DATASETS) if args.dataset == "both" else [args.dataset]
    space = QUICK_SPACE if args.quick else SEARCH_SPACE
    start = trainer_defaults(space)
    setups = {}
    for dataset in datasets:
        setups[dataset] = Setup(
            dataset=dataset,
            epochs=args.epochs,
            fixed=fixed_params(args, dataset),
            space={k: list(v) for k, v in space.items()},
            start=start,
            budget=args.passes * manual_budget(space, start, args.epochs),
            tpe_startup=args.tpe_startup,
            hb_min_resource=args.hb_min_resource,
            hb_reduction=args.hb_reduction,
            threads=args.threads,
            patience=args.patience,
            passes=args.passes,
            verbose=not args.quiet,
        )
    tasks = [
        (setups[d], m, seed) for d in datasets for seed in range(args.seeds) for m in args.methods
    ]
    runs: list[RunRecord] = []
    started = time.perf_counter()
    load_before = _loadavg()
    with tempfile.TemporaryDirectory(prefix="search-efficiency-") as tmp:
        if args.jobs <= 1:
            for setup, method, seed in tasks:
                runs.append(run_task(setup, method, seed, tmp))
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
                futures = [pool.submit(run_task, s, m, seed, tmp) for s, m, seed in tasks]
                for fut in as_completed(futures):
                    runs.append(fut.result())
    wall = time.perf_counter() - started
    order = {(s.dataset, m, seed): i for i, (s, m, seed) in enumerate(tasks)}
    runs.sort(key=lambda r: order[(r.dataset, r.method, r.seed)])
    runs = at_equal_compute(runs)
    rows = summarize(runs)
    context = [
        machine_line() + f" (load average at start {load_before})",
        "CPU may be shared with other processes (see the load average): wall times are "
        "context only; the figures are epoch counts measured side by side in one run",
        f"{args.seeds} seed(s), {args.epochs} epochs per full run, budget = manual sweep's "
        + (
            f"({args.passes} rounds over the knobs; each seed's arms judged at the epochs "
            "its sweep trained, at most) "
            if args.passes > 1
            else ""
        )
        + ", ".join(f"{d}: {s.budget} epochs" for d, s in setups.items())
        + f"; {args.jobs} worker(s) x {args.threads} torch thread(s); total wall {wall:.0f} s",
        "our default: TPE (n_startup_trials "
        f"{args.tpe_startup}, start-up trials a balanced design: startup auto) + Hyperband "
        "(min_resource "
        + (
            str(args.hb_min_resource)
            if args.hb_min_resource is not None
            else f"{min(args.epochs, 1 + min(3, args.epochs // 3))}: the service's default, "
            "the first epoch after warmup"
        )
        + ", "
        f"reduction_factor {args.hb_reduction}, max_resource {args.epochs}), repeats reused "
        "(duplicates auto: every run trains at the search's seed); synthetic HAR: "
        f"n_train {args.n_train}, val_fraction {args.val_fraction}, length {args.length}, "
        f"noise {args.noise}, dim {args.dim}; BasicMotions: val_fraction 0.5 (20 val series)",
    ]
    context += [
        note.format(patience=args.patience, startup=args.tpe_startup)
        for m, note in ARM_NOTES.items()
        if m in args.methods
    ]
    return runs, rows, context


def at_equal_compute(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """Each run's budget cut to what its seed's manual sweep actually trained.

    A second round of the sweep skips configurations it has trained, and a failed run
    stops early, so the sweep can spend less than its nominal budget; the arms are then
    judged at the sweep's spend, not given more compute than it had.
    """
    spent = {(r.dataset, r.seed): r.epochs_used for r in runs if r.method == "manual"}
    for run in runs:
        used = spent.get((run.dataset, run.seed))
        if used is not None and 0 < used < run.budget:
            run.budget = used
    return list(runs)


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def load_curves_csv(path: Path) -> list[RunRecord]:
    """Runs back from :func:`write_curves_csv` (a run's wall time: the sum of its trials')."""
    runs: dict[tuple[str, str, int], RunRecord] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            key = (row["dataset"], row["method"], int(row["seed"]))
            run = runs.setdefault(key, RunRecord(*key, budget=int(row["budget_epochs"])))
            wall = float(row["wall_s"]) if row["wall_s"] else None
            run.trials.append(
                TrialRecord(
                    int(row["trial"]),
                    row["state"],
                    int(row["epochs"]),
                    float(row["value"]) if row["value"] else None,
                    json.loads(row["params"]),
                    wall,
                )
            )
            run.wall_s += wall or 0.0
    return at_equal_compute(list(runs.values()))


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number (got {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more (got {value})")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table, and write the outputs under ``--out``.

    Exit status 2, with one ``error:`` line, for a ``--methods`` value that cannot run.
    """
    try:
        args = resolve_args(build_parser().parse_args(argv))
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.replot:
        runs = load_curves_csv(Path(args.replot))
        rows = summarize(runs)
        context = [f"re-rendered without training from {args.replot}"]
        if args.context_file:
            text = Path(args.context_file).read_text(encoding="utf-8")
            context = [line.strip() for line in text.splitlines() if line.strip()] + context
    else:
        runs, rows, context = run(args)
    table = markdown_table(rows)
    verdict = verdicts(rows)
    if args.tolerance > 0:
        near = summarize(runs, args.tolerance)
        heading = f"Within {args.tolerance:g} F1 of the manual sweep's final best:"
        table += "\n\n" + heading + "\n\n" + markdown_table(near)
        verdict += [f"within {args.tolerance:g}: {line}" for line in verdicts(near)]
    print("\n".join(context))
    print()
    print(table)
    print()
    print("\n".join(verdict))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if not args.replot:
            write_curves_csv(runs, out / "search_efficiency_curves.csv")
        write_summary_csv(rows, out / "search_efficiency_summary.csv")
        (out / "search_efficiency.md").write_text(
            "\n\n".join(["\n".join(f"- {c}" for c in context), table, "\n".join(verdict)]) + "\n",
            encoding="utf-8",
        )
        (out / "search_efficiency.json").write_text(
            json.dumps(
                {
                    "args": vars(args),
                    "context": context,
                    "verdicts": verdict,
                    "runs": [asdict(r) for r in runs],
                },
                indent=1,
                default=str,
            ),
            encoding="utf-8",
        )
        # the plots last: the data above survives a plotting problem
        write_html(runs, rows, out / "search_efficiency.html", context)
        png = write_png(runs, out / "search_efficiency.png", context)
        print(f"\nwrote {out}/search_efficiency.html{' (+ .png)' if png else ''}, CSVs, .md, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
