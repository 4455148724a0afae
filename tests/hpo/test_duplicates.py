"""``duplicates: reuse`` on a real SQLite study: repeats are not trained, their value is reused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo import load_study_config, run_study
from hpo.confirm import select_finalists
from hpo.duplicates import (
    DUPLICATE_OF_ATTR,
    UNUSED_PARAMS_ATTR,
    active_params,
    completed_twin,
    describe_duplicates,
    fixed_seed_rerun_note,
    originals,
    reuses_duplicates,
)
from hpo.results import best_trials, load_existing_study
from tests.conftest import analytic_study

# 3 x 2 = 6 configurations: 12 trials must repeat some of them
_SMALL_SPACE = {
    "x": {"type": "categorical", "choices": [0.0, 0.3, 1.0]},
    "choice": {"type": "categorical", "choices": ["a", "b"]},
}


def _run(write_study: Callable[..., Path], **overrides: object) -> optuna.Study:
    data = analytic_study(
        space=_SMALL_SPACE,
        budget={"n_trials": 12},
        pruner={"name": "none"},
        sampler={"name": "random", "seed": 3},
        **overrides,
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    return load_existing_study(cfg)


def test_reuse_trains_each_configuration_once(write_study: Callable[..., Path]) -> None:
    study = _run(write_study, duplicates="reuse")
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12 and all(t.state == TrialState.COMPLETE for t in trials)
    trained = [t for t in trials if DUPLICATE_OF_ATTR not in t.user_attrs]
    reused = [t for t in trials if DUPLICATE_OF_ATTR in t.user_attrs]
    assert reused, "12 draws from 6 configurations must repeat one"
    keys = [tuple(sorted(t.params.items())) for t in trained]
    assert len(keys) == len(set(keys)), "a configuration was trained twice"
    by_number = {t.number: t for t in trials}
    for t in reused:
        twin = by_number[t.user_attrs[DUPLICATE_OF_ATTR]]
        assert DUPLICATE_OF_ATTR not in twin.user_attrs, "points at the trial that trained"
        assert twin.number < t.number
        assert twin.params == t.params
        assert t.value == twin.value
        assert t.intermediate_values == {}, "a reused trial trains no epoch"
        assert "seed" not in t.user_attrs


def test_auto_trains_every_trial_at_its_own_seed(write_study: Callable[..., Path]) -> None:
    study = _run(write_study)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 12
    assert all(DUPLICATE_OF_ATTR not in t.user_attrs for t in trials)
    assert all(len(t.intermediate_values) == 8 for t in trials)
    assert len({t.user_attrs["seed"] for t in trials}) == 12


def test_auto_reuses_at_a_fixed_seed(write_study: Callable[..., Path]) -> None:
    """At one seed a repeat would train alike: ``auto`` takes the earlier value."""
    fixed = {"name": "analytic", "params": {"epochs": 8, "seed": 7}}
    study = _run(write_study, trainer=fixed)
    reused = [t for t in study.get_trials(deepcopy=False) if DUPLICATE_OF_ATTR in t.user_attrs]
    assert reused, "12 draws from 6 configurations must repeat one"
    assert all(t.intermediate_values == {} for t in reused)
    rerun = _run(write_study, trainer=fixed, duplicates="rerun", name="rerun")
    assert all(DUPLICATE_OF_ATTR not in t.user_attrs for t in rerun.trials)


@pytest.mark.parametrize(
    ("overrides", "reuses", "described"),
    [
        ({}, False, "rerun (auto: each trial trains at its own seed)"),
        (
            {"trainer": {"name": "analytic", "params": {"seed": 7}}},
            True,
            "reuse (auto: every trial trains at trainer.params.seed 7)",
        ),
        (
            {
                "trainer": {"name": "analytic", "params": {"seed": 7}},
                "space": {**_SMALL_SPACE, "seed": {"type": "int", "low": 0, "high": 3}},
            },
            False,
            "rerun (auto: each trial trains at its own seed)",
        ),
        (
            {"trainer": {"name": "analytic", "params": {"seed": 7}}, "duplicates": "rerun"},
            False,
            "rerun",
        ),
        ({"duplicates": "reuse"}, True, "reuse"),
    ],
    ids=["own seeds", "fixed seed", "searched seed", "rerun", "reuse"],
)
def test_what_auto_resolves_to(
    write_study: Callable[..., Path], overrides: dict[str, object], reuses: bool, described: str
) -> None:
    cfg = load_study_config(write_study(analytic_study(**{"space": _SMALL_SPACE, **overrides})))
    assert reuses_duplicates(cfg) is reuses
    assert describe_duplicates(cfg) == described


def test_best_trial_names_the_trial_that_trained(write_study: Callable[..., Path]) -> None:
    # every trial is the optimum (x=0.3, choice=a): all but trial 0 are reused
    space = {
        "x": {"type": "categorical", "choices": [0.3]},
        "choice": {"type": "categorical", "choices": ["a"]},
    }
    data = analytic_study(
        space=space,
        budget={"n_trials": 4},
        pruner={"name": "none"},
        sampler={"name": "random", "seed": 0},
        duplicates="reuse",
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    study = load_existing_study(cfg)
    assert [t.user_attrs.get(DUPLICATE_OF_ATTR) for t in study.trials] == [None, 0, 0, 0]
    assert [t.number for t in best_trials(study)] == [0]
    assert completed_twin(study, {"x": 0.3, "choice": "a"}).number == 0  # type: ignore[union-attr]
    assert completed_twin(study, {"x": 0.3, "choice": "b"}) is None


def test_twins_are_type_strict() -> None:
    study = optuna.create_study()
    study.add_trial(
        optuna.trial.create_trial(
            params={"flag": True},
            distributions={"flag": optuna.distributions.CategoricalDistribution([True, 1])},
            value=1.0,
        )
    )
    assert completed_twin(study, {"flag": True}) is not None
    assert completed_twin(study, {"flag": 1}) is None, "True == 1 in Python, not as choices"
    assert originals(study, study.trials) == study.trials


def test_unknown_policy_is_one_clear_line(write_study: Callable[..., Path]) -> None:
    import pytest

    from hpo.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_study_config(write_study(analytic_study(duplicates="skip")))
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("duplicates:"), info.value.problems
    assert "rerun" in info.value.problems[0] and "reuse" in info.value.problems[0]


def test_a_fixed_trainer_seed_with_rerun_gets_a_note(write_study: Callable[..., Path]) -> None:
    def note(**overrides: object) -> str | None:
        data = analytic_study(**{"space": _SMALL_SPACE, **overrides})
        return fixed_seed_rerun_note(load_study_config(write_study(data)))

    fixed = {"name": "analytic", "params": {"epochs": 8, "seed": 7}}
    text = note(trainer=fixed, duplicates="rerun")
    assert text is not None and "trainer.params.seed is fixed (7)" in text
    assert "duplicates: reuse" in text
    assert note(trainer=fixed) is None, "auto reuses at a fixed seed"
    assert note(trainer=fixed, duplicates="reuse") is None, "repeats are not trained"
    assert note(duplicates="rerun") is None, "each trial gets its own seed"
    stepped = {**_SMALL_SPACE, "y": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5}}
    assert note(trainer=fixed, duplicates="rerun", space=stepped), "a stepped float repeats too"
    continuous = {**_SMALL_SPACE, "y": {"type": "float", "low": 0.0, "high": 1.0}}
    assert note(trainer=fixed, duplicates="rerun", space=continuous) is None, "all but never"


def test_a_knob_the_trainer_does_not_read_makes_no_new_configuration(
    write_study: Callable[..., Path],
) -> None:
    """With VICReg, two temperatures train alike: the second is reused, not trained."""
    tiny = {
        "dataset": "synthetic_har",
        "synthetic_n_train": 160,
        "synthetic_n_test": 20,
        "length": 32,
        "dim": 16,
        "proj_dim": 16,
        "epochs": 2,
        "seed": 3,
        "device": "cpu",
        "evaluate_test": False,
    }
    space = {
        "loss": {"type": "categorical", "choices": ["vicreg", "infonce"]},
        "temperature": {"type": "categorical", "choices": [0.05, 0.15]},
    }
    runs = [("vicreg", 0.05), ("vicreg", 0.15), ("infonce", 0.05), ("infonce", 0.15)]
    data = analytic_study(
        objective={"metric": "best_val_f1", "direction": "maximize"},
        trainer={"name": "contrastive", "params": tiny},
        space=space,
        enqueue=[{"loss": loss, "temperature": t} for loss, t in runs],
        budget={"n_trials": 4},
        pruner={"name": "none"},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    study = load_existing_study(cfg)
    trials = study.get_trials(deepcopy=False)
    assert [(t.params["loss"], t.params["temperature"]) for t in trials] == runs
    assert [t.user_attrs.get(DUPLICATE_OF_ATTR) for t in trials] == [None, 0, None, None]
    assert trials[1].value == trials[0].value and trials[1].intermediate_values == {}
    assert len(trials[3].intermediate_values) == 2, "InfoNCE reads its temperature: trained"
    assert [t.user_attrs.get(UNUSED_PARAMS_ATTR) for t in trials] == [
        ["temperature"],
        ["temperature"],
        None,
        None,
    ]
    # hpo confirm would not train the same configuration twice as two finalists
    finalists = [t.number for t in select_finalists(study, 4)]
    assert sorted(finalists) == [0, 2, 3]


def test_finalists_are_distinct_in_what_the_trainer_reads() -> None:
    """With ``rerun`` both temperatures train; ``hpo confirm`` still takes one of them."""
    study = optuna.create_study(direction="maximize")
    dist = {"t": optuna.distributions.CategoricalDistribution([0.05, 0.15])}
    for value, t, unused in ((0.9, 0.05, ["t"]), (0.8, 0.15, ["t"]), (0.7, 0.05, None)):
        attrs = {UNUSED_PARAMS_ATTR: unused} if unused else {}
        study.add_trial(
            optuna.trial.create_trial(
                params={"t": t}, distributions=dist, value=value, user_attrs=attrs
            )
        )
    finalists = select_finalists(study, 3)
    assert [t.number for t in finalists] == [0, 2]
    assert active_params(study.trials[1]) == {} and active_params(study.trials[2]) == {"t": 0.05}
