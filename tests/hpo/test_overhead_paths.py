"""The service's fast paths give exactly what the slow, obvious code gave.

Budget counts kept incrementally, pruning decisions from cached COMPLETE trials, user
attributes written in one transaction and garbage collection over a frozen heap are
each compared with the reference they replace.
"""

from __future__ import annotations

import datetime
import gc
import random
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

import hpo.runner
from hpo import load_study_config, run_study
from hpo.objective import set_user_attrs
from hpo.pruners import CompletedTrialsCache, build_pruner, with_completed_cache
from hpo.storages import open_storage, storage_url
from hpo.workers.budget import (
    RETRIED_ATTR,
    SURPLUS_ATTR,
    BudgetCallback,
    BudgetTracker,
    count_in_storage,
    counted_trials,
    within_budget,
)
from tests.conftest import analytic_study

# -- budget counts ---------------------------------------------------------------------------


def _frozen(number: int, state: TrialState, **system_attrs: Any) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=1.0 if state == TrialState.COMPLETE else None, system_attrs=system_attrs
    )
    trial.number = number
    return trial


def _check_tracker(tracker: BudgetTracker, trials: list[FrozenTrial], n_trials: int) -> None:
    tracker.update(trials)
    for running in (False, True):
        for waiting in (None, False, True):
            expected = counted_trials(trials, include_running=running, include_waiting=waiting)
            got = tracker.counted(include_running=running, include_waiting=waiting)
            assert got == expected, (running, waiting)
    for number in range(len(trials) + 2):
        assert tracker.within_budget(number, n_trials) == within_budget(trials, number, n_trials)
        if tracker.surely_within_budget(number, n_trials):
            assert within_budget(trials, number, n_trials)
    bound_ok = tracker.surely_below(n_trials, len(trials))
    if bound_ok:
        assert counted_trials(trials, include_running=True, include_waiting=False) < n_trials


@pytest.mark.parametrize("seed", range(20))
def test_budget_tracker_matches_the_reference_counts_as_a_study_evolves(seed: int) -> None:
    """Trials are created, run, finish, get retried or marked surplus, in random order."""
    rng = random.Random(seed)
    n_trials = rng.randint(3, 12)
    trials: list[FrozenTrial] = []
    tracker = BudgetTracker()
    stale = BudgetTracker()  # sees only some of the updates, like the guard between reads
    for _ in range(60):
        action = rng.random()
        unfinished = [t for t in trials if not t.state.is_finished()]
        if action < 0.35 or not unfinished:
            trials.append(
                _frozen(len(trials), rng.choice([TrialState.RUNNING, TrialState.WAITING]))
            )
        elif action < 0.7:
            t = rng.choice(unfinished)
            state = rng.choice([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
            trials[t.number] = _frozen(t.number, state, **t.system_attrs)
        elif action < 0.85:
            t = rng.choice(unfinished)
            mark = rng.choice([RETRIED_ATTR, SURPLUS_ATTR])
            trials[t.number] = _frozen(t.number, TrialState.FAIL, **{**t.system_attrs, mark: True})
            if mark == RETRIED_ATTR:  # the retry, queued by whoever noticed
                trials.append(_frozen(len(trials), TrialState.WAITING, retry_history=[t.number]))
        else:
            # A crash failed by Optuna's heartbeat: only the retry says it was replaced.
            t = rng.choice(unfinished)
            trials[t.number] = _frozen(t.number, TrialState.FAIL, **t.system_attrs)
            trials.append(_frozen(len(trials), TrialState.WAITING, retry_history=[t.number]))
        _check_tracker(tracker, list(trials), n_trials)
        if rng.random() < 0.3:
            _check_tracker(stale, list(trials), n_trials)
        # An upper bound from an old view must still be an upper bound now.
        for number in range(len(trials)):
            if stale.surely_within_budget(number, n_trials):
                assert within_budget(trials, number, n_trials)
        if stale.surely_below(n_trials, len(trials)):
            assert counted_trials(trials, include_running=True, include_waiting=False) < n_trials


def test_budget_tracker_falls_back_for_lists_that_are_not_a_study() -> None:
    trials = [_frozen(n, TrialState.COMPLETE) for n in (0, 2, 5)]
    tracker = BudgetTracker().update(trials)
    assert tracker.counted() == counted_trials(trials) == 3
    assert tracker.within_budget(5, 2) == within_budget(trials, 5, 2)
    assert not tracker.surely_within_budget(1, 10)
    assert tracker.n_complete_seen == 3, "the progress display refreshes 'best' from this"
    trials.append(_frozen(7, TrialState.COMPLETE))
    assert tracker.update(trials).n_complete_seen == 4


def test_budget_callback_counts_the_storage_only_near_the_end(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 'b.db'}"))
    callback = BudgetCallback(4)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20, callbacks=[callback])
    assert len(study.trials) == 4
    assert count_in_storage(study) == 4
    assert count_in_storage(study, TrialState.COMPLETE) == 4
    assert count_in_storage(study, TrialState.FAIL) == 0
    memory = optuna.create_study()
    assert count_in_storage(memory) is None


def test_the_counting_connection_goes_with_its_storage(tmp_path: Path) -> None:
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    study = optuna.create_study(storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    engine = storage.engine
    assert count_in_storage(study) == 2
    assert engine.pool.checkedout() == 1, "kept open between counts"
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert count_in_storage(study) == 3, "a kept connection still sees new commits"
    del study, storage
    gc.collect()
    assert engine.pool.checkedout() == 0


# -- pruning decisions -----------------------------------------------------------------------


def _add_complete(study: optuna.Study, rng: random.Random, steps: int) -> None:
    trial = study.ask()
    for step in range(steps):
        trial.report(rng.random() + 0.05 * step, step)
    study.tell(trial, rng.random())


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("median", {}),
        ("median", {"n_startup_trials": 3, "n_warmup_steps": 2, "interval_steps": 2}),
        ("percentile", {"percentile": 30.0, "n_min_trials": 2}),
        ("patient", {"patience": 1, "wrapped": {"name": "median", "n_startup_trials": 2}}),
    ],
)
def test_cached_pruner_decides_exactly_as_optuna_while_others_complete_trials(
    tmp_path: Path, name: str, kwargs: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    plain = build_pruner(name, kwargs)
    cached = with_completed_cache(build_pruner(name, kwargs))
    assert cached is not plain
    study = optuna.create_study(storage=open_storage(url), direction="maximize", pruner=plain)
    # Another worker: its own storage object, so our process's caches know nothing of it.
    other = optuna.load_study(study_name=study.study_name, storage=open_storage(url))
    rng = random.Random(0)
    decisions = 0
    for _ in range(12):
        trial = study.ask()
        for step in range(10):
            trial.report(rng.random() + 0.04 * step, step)
            if rng.random() < 0.4:
                _add_complete(other, rng, rng.randint(1, 10))
            frozen = trial._get_latest_trial()
            expected = plain.prune(study, frozen)
            assert cached.prune(study, frozen) == expected, (trial.number, step)
            decisions += expected
        study.tell(trial, rng.random())
    assert decisions > 0, "the scenario never pruned: it tests nothing"


def test_only_percentile_pruners_are_wrapped() -> None:
    assert isinstance(with_completed_cache(optuna.pruners.MedianPruner()), CompletedTrialsCache)
    hyperband = optuna.pruners.HyperbandPruner()
    assert with_completed_cache(hyperband) is hyperband, "samplers look for Hyperband by type"
    nop = optuna.pruners.NopPruner()
    assert with_completed_cache(nop) is nop


def test_cached_pruner_passes_other_storages_through() -> None:
    study = optuna.create_study(direction="maximize")
    rng = random.Random(1)
    for _ in range(6):
        _add_complete(study, rng, 5)
    plain = optuna.pruners.MedianPruner()
    cached = with_completed_cache(optuna.pruners.MedianPruner())
    trial = study.ask()
    for step in range(5):
        trial.report(0.01 * step, step)
        frozen = trial._get_latest_trial()
        assert cached.prune(study, frozen) == plain.prune(study, frozen)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_completed_trials_without_a_curve_do_not_start_pruning(tmp_path: Path, kind: str) -> None:
    # four reused duplicates and one real curve: Optuna's median pruner counted five
    # completed trials against n_startup_trials 3 and pruned against the one curve
    storage = open_storage(f"sqlite:///{tmp_path / 'p.db'}") if kind == "sqlite" else None
    study = optuna.create_study(storage=storage, direction="maximize")
    distribution = optuna.distributions.FloatDistribution(0.0, 1.0)
    curve = {step: 1.0 for step in range(5)}
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.5},
            distributions={"x": distribution},
            value=1.0,
            intermediate_values=curve,
        )
    )
    for _ in range(4):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5}, distributions={"x": distribution}, value=1.0
            )
        )
    plain = optuna.pruners.MedianPruner(n_startup_trials=3)
    cached = with_completed_cache(optuna.pruners.MedianPruner(n_startup_trials=3))
    trial = study.ask()
    trial.report(0.0, 1)
    frozen = trial._get_latest_trial()
    assert plain.prune(study, frozen), "Optuna counts the curveless trials"
    assert not cached.prune(study, frozen)


def test_run_study_prunes_exactly_as_with_optuna_pruner(
    write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, same trainer: the fast path and Optuna's own pruner end every trial alike."""

    def outcome(name: str) -> list[tuple[Any, ...]]:
        cfg = load_study_config(write_study(analytic_study(name, budget={"n_trials": 25})))
        run_study(cfg)
        study = optuna.load_study(study_name=name, storage=storage_url(cfg))
        return [
            (t.state, sorted(t.intermediate_values.items()), sorted(t.params.items()))
            for t in study.trials
        ]

    fast = outcome("fast")
    monkeypatch.setattr(hpo.runner, "with_completed_cache", lambda pruner: pruner)
    reference = outcome("reference")
    assert fast == reference
    assert any(state == TrialState.PRUNED for state, *_ in fast)


# -- attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_set_user_attrs_writes_what_set_user_attr_writes(tmp_path: Path, kind: str) -> None:
    storage: Any = {
        "sqlite": lambda: open_storage(f"sqlite:///{tmp_path / 'a.db'}"),
        "journal": lambda: open_storage(f"journal:///{tmp_path / 'a.log'}"),
        "memory": lambda: None,
    }[kind]()
    study = optuna.create_study(storage=storage)
    attrs = {"a": 1, "b": "two", "c": None, "d": 0.5, "e": [1, 2], "f": {"g": True}}
    one, many = study.ask(), study.ask()
    for key, value in attrs.items():
        one.set_user_attr(key, value)
    one.set_user_attr("a", 3)
    set_user_attrs(many, attrs)
    set_user_attrs(many, {"a": 3, "h": 4})
    assert many.user_attrs == {**attrs, "a": 3, "h": 4}
    study.tell(one, 1.0)
    study.tell(many, 1.0)
    stored = {t.number: t.user_attrs for t in study.get_trials()}
    assert stored[many.number] == {**stored[one.number], "h": 4}
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        set_user_attrs(many, {"x": 1, "y": 2})


# -- garbage collection ----------------------------------------------------------------------


class _Cycle:
    def __init__(self) -> None:
        self.me = self


_LAST_CYCLE: list[weakref.ref[_Cycle]] = []


def cycle_train(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
    """A trainer that leaves a reference cycle behind (as models and tracebacks do)."""
    garbage = _Cycle()
    _LAST_CYCLE.append(weakref.ref(garbage))
    del garbage
    return {"best_score": float(params["x"])}


def test_each_trial_garbage_is_collected_and_the_heap_unfrozen_after(
    write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = analytic_study(budget={"n_trials": 3})
    data["trainer"] = {"name": "tests.hpo.test_overhead_paths:cycle_train", "params": {}}
    data["space"] = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    seen_alive: list[bool] = []

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        seen_alive.append(_LAST_CYCLE[-1]() is not None)

    # every trial is "long" here, so each one's cycles must be gone before the next starts
    monkeypatch.setattr(hpo.runner.CollectGarbage, "long_trial_s", 0.0)
    gc.disable()  # only the service's own collection may free the cycles
    try:
        assert (
            run_study(load_study_config(write_study(data)), callbacks=[after_trial]).n_complete == 3
        )
    finally:
        gc.enable()
    assert seen_alive == [False, False, False]
    assert gc.get_freeze_count() == 0


def _finished(state: TrialState, seconds: float) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=1.0 if state == TrialState.COMPLETE else None
    )
    trial.datetime_complete = trial.datetime_start + datetime.timedelta(seconds=seconds)  # type: ignore[operator]
    return trial


def test_collect_garbage_after_long_or_failed_trials_and_amortized_after_short_ones() -> None:
    study = optuna.create_study()
    collect = hpo.runner.CollectGarbage(max_share=0.05)
    collect(study, _finished(TrialState.COMPLETE, 0.001))
    assert collect.collections == 1, "the first trial is always followed by a collection"
    collect._cost = 3600.0  # as if a collection were very expensive
    stuck = _Cycle()
    ref = weakref.ref(stuck)
    del stuck
    collect(study, _finished(TrialState.COMPLETE, 0.001))
    collect(study, _finished(TrialState.PRUNED, 0.001))
    assert collect.collections == 1 and ref() is not None, "short trials wait"
    collect(study, _finished(TrialState.COMPLETE, 2.0))
    assert collect.collections == 2 and ref() is None, "a real training run never waits"
    collect._cost = 3600.0
    collect(study, _finished(TrialState.FAIL, 0.001))
    assert collect.collections == 3, "a failed trial's exception may hold cycles: collect now"
    collect._cost = 0.0  # cheap collections run after every trial, however short
    collect(study, _finished(TrialState.COMPLETE, 0.001))
    assert collect.collections == 4
