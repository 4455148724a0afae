"""The grouped pruner: the wrapped pruner's rule, applied among trials of the same group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from hpo import ConfigError, validate_study_data
from hpo.pruners import HyperbandPruner, build_pruner, pruner_defaults_note, study_pruner
from hpo.pruners._grouped import GroupedPruner, _GroupStorage
from tests.conftest import analytic_study

LOSSES = CategoricalDistribution(["fast", "slow"])


def _sqlite(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'g.db'}", direction="maximize", pruner=pruner
    )


def _done(study: optuna.Study, loss: str, curve: list[float]) -> None:
    study.add_trial(
        create_trial(
            params={"loss": loss},
            distributions={"loss": LOSSES},
            value=curve[-1],
            intermediate_values=dict(enumerate(curve)),
        )
    )


def _judge(study: optuna.Study, loss: str, value: float) -> bool:
    trial = study.ask({"loss": LOSSES})
    assert trial.params["loss"] == loss
    trial.report(value, 1)
    return bool(study.pruner.prune(study, study._storage.get_trial(trial._trial_id)))


@pytest.mark.parametrize("grouped", [False, True])
def test_a_slow_starter_is_judged_against_its_own_kind(tmp_path: Path, grouped: bool) -> None:
    """Median at step 1: the fast group's 0.9 and 0.8, the slow group's 0.3 and 0.2.

    A slow trial at 0.4 sits below the median of all four (0.55, pruned) but above the
    median of its own group (0.25, kept). Enqueueing fixes the new trial's loss.
    """
    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = _sqlite(tmp_path, GroupedPruner(median, by=["loss"]) if grouped else median)
    _done(study, "fast", [0.5, 0.9, 0.95])
    _done(study, "fast", [0.5, 0.8, 0.85])
    _done(study, "slow", [0.1, 0.3, 0.97])
    _done(study, "slow", [0.1, 0.2, 0.96])
    study.enqueue_trial({"loss": "slow"})
    assert _judge(study, "slow", 0.4) is not grouped
    study.enqueue_trial({"loss": "slow"})
    assert _judge(study, "slow", 0.1) is True, "a bad trial of its group is still pruned"


def test_a_group_without_completed_trials_is_not_judged_yet(tmp_path: Path) -> None:
    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = _sqlite(tmp_path, GroupedPruner(median, by=["loss"]))
    _done(study, "fast", [0.5, 0.9, 0.95])
    study.enqueue_trial({"loss": "slow"})
    assert _judge(study, "slow", 0.01) is False, "its group has no start-up trial yet"


def _curves(trial: optuna.Trial) -> float:
    """Two losses: 'fast' plateaus at 0.6, 'slow' starts low and ends at up to 0.9."""
    loss = trial.suggest_categorical("loss", ["fast", "slow"])
    quality = trial.suggest_float("quality", 0.0, 1.0)
    value = 0.0
    for step in range(1, 10):
        if loss == "fast":
            value = 0.5 + 0.1 * quality + 0.001 * step
        else:
            value = 0.1 * step * (0.5 + 0.5 * quality)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def _search(storage: str, name: str, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=pruner,
    )
    study.optimize(_curves, n_trials=40)
    return study


def _completed_slow(study: optuna.Study) -> int:
    return sum(
        1 for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.params["loss"] == "slow"
    )


def _halving() -> optuna.pruners.SuccessiveHalvingPruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_halving_within_each_loss_lets_the_slow_starter_finish(
    tmp_path: Path, backend: str, unique_name: str, request: pytest.FixtureRequest
) -> None:
    """Plain successive halving prunes 'slow' at its first rungs; grouped, more finish."""
    if backend == "sqlite":
        storage = f"sqlite:///{tmp_path / 'h.db'}"
    else:
        storage = str(request.getfixturevalue("postgres_url"))
    plain = _search(storage, f"{unique_name}-plain", _halving())
    grouped = _search(storage, f"{unique_name}-grouped", GroupedPruner(_halving(), by=["loss"]))
    assert _completed_slow(grouped) > _completed_slow(plain)
    assert grouped.best_params["loss"] == "slow"
    assert grouped.best_value > plain.best_value
    pruned = grouped.get_trials(states=(TrialState.PRUNED,))
    assert any(t.params["loss"] == "slow" for t in pruned), "it still prunes within the group"
    rungs = [k for t in grouped.trials for k in t.system_attrs if k.startswith("completed_rung")]
    assert rungs, "the rung values reach the real storage"


@pytest.mark.parametrize(
    "hyperband", [optuna.pruners.HyperbandPruner, HyperbandPruner], ids=["optuna", "service"]
)
def test_hyperband_brackets_work_within_groups(
    tmp_path: Path, hyperband: type[optuna.pruners.HyperbandPruner]
) -> None:
    """Hyperband builds its own bracket view on top of the group's view.

    The service's Hyperband binds that view's storage on top of the group's storage: the
    bracket view must still read the group's trials only.
    """
    inner = hyperband(min_resource=1, max_resource=9, reduction_factor=3)
    study = _search(f"sqlite:///{tmp_path / 'b.db'}", "brackets", GroupedPruner(inner, by=["loss"]))
    assert study.best_params["loss"] == "slow"
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    assert any(k.startswith("completed_rung") for t in study.trials for k in t.system_attrs)


def _slow_group(study: optuna.Study) -> optuna.Study:
    """The view the grouped pruner shows its wrapped pruner for a 'slow' trial."""
    storage = _GroupStorage(study, ("loss",), ("slow",))
    return optuna.Study(study_name=study.study_name, storage=storage)  # type: ignore[arg-type]


def test_the_service_hyperbands_bracket_view_reads_only_the_group(tmp_path: Path) -> None:
    study = _sqlite(tmp_path, optuna.pruners.NopPruner())
    _done(study, "fast", [0.5, 0.9])
    _done(study, "slow", [0.1, 0.2])
    _done(study, "slow", [0.1, 0.3])
    group = _slow_group(study)
    hyperband = HyperbandPruner(min_resource=1, max_resource=9, reduction_factor=3)
    hyperband._try_initialization(group)
    assert hyperband._n_brackets is not None
    seen = {
        t.number
        for bracket in range(hyperband._n_brackets)
        for t in hyperband._create_bracket_study(group, bracket).get_trials(deepcopy=False)
    }
    assert seen == {1, 2}


def test_the_group_view_counts_and_ranks_only_its_group(tmp_path: Path) -> None:
    """Wilcoxon judges against ``study.best_trial``: the group's best, not the study's."""
    study = _sqlite(tmp_path, optuna.pruners.NopPruner())
    _done(study, "fast", [0.9])
    _done(study, "slow", [0.2])
    _done(study, "slow", [0.4])
    _done(study, "slow", [0.3])
    view = _slow_group(study)
    assert view.best_trial.number == 2
    assert view.best_value == 0.4
    assert view._storage.get_n_trials(view._study_id) == 3
    assert view._storage.get_n_trials(view._study_id, TrialState.COMPLETE) == 3
    assert study.best_trial.number == 0, "the real study is unchanged"


def test_trials_without_the_parameter_form_their_own_group(tmp_path: Path) -> None:
    """The margin-less trials are one group; a trial with a margin is not among them.

    Without grouping, the median of the 0.9 and 0.05 curves at step 1 is 0.475 and a
    trial at 0.3 is pruned; among the margin-less trials alone (0.9) it is pruned too,
    so the case that tells them apart is a trial at 0.3 with a margin of its own: its
    group holds only the 0.05 curve, and it is kept.
    """
    margins = CategoricalDistribution([0.1, 0.5])
    median = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    study = _sqlite(tmp_path, GroupedPruner(median, by=["margin"]))
    _done(study, "fast", [0.5, 0.9, 0.95])  # no margin: the "absent" group
    study.add_trial(
        create_trial(
            params={"loss": "slow", "margin": 0.5},
            distributions={"loss": LOSSES, "margin": margins},
            value=0.05,
            intermediate_values={0: 0.0, 1: 0.05},
        )
    )
    study.enqueue_trial({"loss": "slow"})
    assert _judge(study, "slow", 0.3) is True, "judged against the other margin-less trial"
    study.enqueue_trial({"loss": "slow", "margin": 0.5})
    trial = study.ask({"loss": LOSSES, "margin": margins})
    trial.report(0.3, 1)
    frozen = study._storage.get_trial(trial._trial_id)
    assert not study.pruner.prune(study, frozen), "judged only against margin 0.5"


def test_the_study_file_builds_it_around_the_fitted_pruner() -> None:
    data: dict[str, Any] = {
        "name": "g",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "pruner": {"name": "grouped", "by": ["loss"], "wrapped": {"name": "hyperband"}},
        "budget": {"n_trials": 2},
        "trainer": {"name": "contrastive", "params": {"epochs": 30}},
        "space": {"loss": {"type": "categorical", "choices": ["infonce", "vicreg"]}},
    }
    cfg = validate_study_data(data)
    pruner = study_pruner(cfg)
    assert isinstance(pruner, GroupedPruner)
    assert pruner.by == ("loss",)
    inner = pruner.wrapped_pruner
    assert isinstance(inner, optuna.pruners.HyperbandPruner)
    assert (inner._min_resource, inner._max_resource) == (4, 30)
    assert "min_resource 4" in pruner_defaults_note(cfg)


@pytest.mark.parametrize(
    ("pruner", "objective", "expected"),
    [
        (
            {"by": [["choice"]]},
            None,
            "pruner.by[0]: expected a parameter name (got ['choice'])",
        ),
        (
            {"by": ["x"]},
            None,
            "pruner.by: 'x' is a continuous float range, so every trial would be a group of "
            "its own; group by categorical, int or stepped float parameters",
        ),
        (
            {"by": ["choice"]},
            {"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
            "pruner.name: grouped needs a single-objective study pruned in its own "
            "direction (no prune_direction against the objective's)",
        ),
    ],
    ids=["nested list", "continuous float", "multi-objective"],
)
def test_study_file_problems(
    pruner: dict[str, Any], objective: dict[str, Any] | None, expected: str
) -> None:
    overrides: dict[str, Any] = {
        "pruner": {"name": "grouped", "wrapped": {"name": "median"}, **pruner}
    }
    if objective is not None:
        overrides["objective"] = objective
    with pytest.raises(ConfigError) as info:
        validate_study_data(analytic_study(**overrides))
    assert info.value.problems == [expected]


@pytest.mark.parametrize(
    "pruner",
    [
        {
            "name": "grouped",
            "by": ["choice"],
            "wrapped": {"name": "patient", "patience": 2, "wrapped": {"name": "median"}},
        },
        {
            "name": "patient",
            "patience": 2,
            "wrapped": {"name": "grouped", "by": ["choice"], "wrapped": {"name": "median"}},
        },
    ],
    ids=["grouped-patient-median", "patient-grouped-median"],
)
def test_chains_of_wrappers_that_build_pass(pruner: dict[str, Any]) -> None:
    """Before, the check read the inner wrapper's own ``wrapped`` as an Optuna argument and
    refused a chain ``build_pruner`` builds ("PatientPruner has no argument 'wrapped'")."""
    cfg = validate_study_data(analytic_study(pruner=pruner))
    assert cfg.pruner.name == pruner["name"]


def test_each_level_of_a_chain_is_checked_where_it_is() -> None:
    pruner = {
        "name": "patient",
        "patience": 2,
        "wrapped": {"name": "grouped", "by": ["x"], "wrapped": {"name": "median", "bogus": 1}},
    }
    with pytest.raises(ConfigError) as info:
        validate_study_data(analytic_study(pruner=pruner))
    assert info.value.problems == [
        "pruner.wrapped.wrapped.bogus: MedianPruner has no argument 'bogus'; allowed: "
        "interval_steps, n_min_trials, n_startup_trials, n_warmup_steps",
        "pruner.wrapped.by: 'x' is a continuous float range, so every trial would be a group "
        "of its own; group by categorical, int or stepped float parameters",
    ]
    with pytest.raises(ConfigError) as info:  # before: silently no inner pruner at all
        validate_study_data(
            analytic_study(pruner={"name": "patient", "patience": 2, "wrapped": []})
        )
    assert info.value.problems == ["pruner.wrapped: expected a pruner like {name: median} (got [])"]


def test_a_stepped_float_and_an_int_are_groups_enough() -> None:
    space = {
        "x": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1},
        "epochs": {"type": "int", "low": 4, "high": 6},
    }
    pruner = {"name": "grouped", "by": ["x", "epochs"], "wrapped": {"name": "median"}}
    assert validate_study_data(analytic_study(space=space, pruner=pruner)).pruner.name == "grouped"


def test_wrapping_rules() -> None:
    with pytest.raises(ValueError, match="needs wrapped"):
        build_pruner("grouped", {"by": ["x"]})
    with pytest.raises(ValueError, match=r"wrapped\.name"):
        build_pruner("grouped", {"by": ["x"], "wrapped": {"name": "grouped", "by": ["x"]}})
    with pytest.raises(ValueError, match="non-empty list"):
        GroupedPruner(optuna.pruners.NopPruner(), by="x")
    patient = build_pruner("grouped", {"by": ["x"], "wrapped": {"name": "patient", "patience": 2}})
    assert isinstance(patient.wrapped_pruner, optuna.pruners.PatientPruner)  # type: ignore[attr-defined]


def test_hpo_run_with_a_grouped_pruner(tmp_path: Path) -> None:
    """The whole service path: a study file, a real SQLite file, trials pruned by group."""
    from hpo import run_study

    data = analytic_study(
        pruner={
            "name": "grouped",
            "by": ["choice"],
            "wrapped": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 2},
        },
        storage=f"sqlite:///{tmp_path / 's.db'}",
    )
    run_study(validate_study_data(data))
    study = optuna.load_study(study_name="analytic", storage=f"sqlite:///{tmp_path / 's.db'}")
    states = {t.state for t in study.trials}
    assert TrialState.COMPLETE in states and TrialState.PRUNED in states
    for trial in study.get_trials(states=(TrialState.PRUNED,)):
        peers = [
            t
            for t in study.get_trials(states=(TrialState.COMPLETE,))
            if t.params["choice"] == trial.params["choice"] and t.number < trial.number
        ]
        assert peers, f"trial {trial.number} was pruned with no completed trial in its group"


def test_completed_trials_without_a_curve_are_no_start_up_peers(tmp_path: Path) -> None:
    # reused duplicates (COMPLETE, no curve) counted towards the wrapped median's
    # n_startup_trials, as they do not ungrouped: it pruned against one real curve
    median = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    study = _sqlite(tmp_path, GroupedPruner(median, ["loss"]))
    _done(study, "fast", [0.5, 0.9])
    for _ in range(2):
        study.add_trial(
            create_trial(params={"loss": "fast"}, distributions={"loss": LOSSES}, value=0.9)
        )
    study.enqueue_trial({"loss": "fast"})
    assert not _judge(study, "fast", 0.2)
    _done(study, "fast", [0.5, 0.9])
    _done(study, "fast", [0.5, 0.9])
    study.enqueue_trial({"loss": "fast"})
    assert _judge(study, "fast", 0.2), "three real curves: judged as before"
