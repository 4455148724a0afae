"""Pruners built from a study file: fitted to the trainer's epochs and LR warmup."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from hpo import validate_study_data
from hpo.pruners import study_pruner, trainer_epochs, trainer_warmup
from tests.conftest import analytic_study


def _study(pruner: dict[str, Any], params: dict[str, Any] | None = None, **extra: Any) -> Any:
    data: dict[str, Any] = {
        "name": "p",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "pruner": pruner,
        "budget": {"n_trials": 2},
        "trainer": {"name": "contrastive", "params": {"epochs": 30, **(params or {})}},
        "space": {"temperature": {"type": "float", "low": 0.05, "high": 0.2}},
        **extra,
    }
    return validate_study_data(data)


def test_hyperband_first_rung_is_the_first_epoch_after_the_default_warmup() -> None:
    pruner = study_pruner(_study({"name": "hyperband"}))
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._min_resource == 4, "ContrastiveParams.warmup_epochs defaults to 3"
    assert pruner._max_resource == 30


def test_the_study_file_and_a_zero_warmup_win() -> None:
    given = study_pruner(_study({"name": "hyperband", "min_resource": 2}))
    assert given._min_resource == 2  # type: ignore[attr-defined]
    none = study_pruner(_study({"name": "hyperband"}, {"warmup_epochs": 0}))
    assert none._min_resource == 1, "Optuna's own default"  # type: ignore[attr-defined]


def test_a_warmup_longer_than_the_run_is_capped_at_its_last_epoch() -> None:
    pruner = study_pruner(_study({"name": "hyperband"}, {"epochs": 5, "warmup_epochs": 9}))
    assert pruner._min_resource == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["median", "percentile"])
def test_median_like_pruners_skip_the_warmup_epochs(name: str) -> None:
    kwargs = {"percentile": 25.0} if name == "percentile" else {}
    pruner = study_pruner(_study({"name": name, **kwargs}, {"warmup_epochs": 5}))
    assert pruner._n_warmup_steps == 6  # type: ignore[attr-defined]
    patient = study_pruner(
        _study(
            {"name": "patient", "patience": 2, "wrapped": {"name": name, **kwargs}},
            {"warmup_epochs": 5},
        )
    )
    assert patient._wrapped_pruner._n_warmup_steps == 6  # type: ignore[attr-defined]


def test_no_warmup_is_assumed_where_it_is_not_known() -> None:
    searched = _study(
        {"name": "hyperband"},
        space={"warmup_epochs": {"type": "int", "low": 0, "high": 5}},
    )
    assert trainer_warmup(searched) is None
    assert study_pruner(searched)._min_resource == 1  # type: ignore[attr-defined]
    analytic = validate_study_data(
        {
            "name": "a",
            "objective": {"metric": "best_score", "direction": "maximize"},
            "budget": {"n_trials": 1},
            "trainer": {"name": "analytic", "params": {"epochs": 8}},
            "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
        }
    )
    assert trainer_warmup(analytic) is None, "no warmup_epochs in its schema"


def test_max_resource_is_the_trainers_default_epochs_when_the_file_leaves_it_out() -> None:
    data = {
        "name": "a",
        "objective": {"metric": "best_score", "direction": "maximize"},
        "pruner": {"name": "hyperband"},
        "budget": {"n_trials": 1},
        "trainer": {"name": "analytic", "params": {}},
        "space": {"x": {"type": "float", "low": -1.0, "high": 1.0}},
    }
    assert trainer_epochs(validate_study_data(data)) == 10, "AnalyticParams.epochs default"
    data["trainer"] = {"name": "trainers.analytic:train", "params": {}}
    assert trainer_epochs(validate_study_data(data)) is None, "a user's steps may not be epochs"


@pytest.mark.parametrize(
    ("epochs", "expected"),
    [
        ({"type": "int", "low": 10, "high": 40}, 40),
        ({"type": "int", "low": 10, "high": 45, "step": 10}, 40),  # 45 is never drawn
        ({"type": "categorical", "choices": [40, 10]}, 40),
        ({"type": "categorical", "choices": [10, 20], "if": {"temperature": 0.1}}, 30),
    ],
)
def test_a_searched_epochs_gives_max_resource_its_largest_value(
    epochs: dict[str, Any], expected: int
) -> None:
    # the fixed epochs (30) is used by no trial, unless an if: leaves some with it
    space = {"temperature": {"type": "categorical", "choices": [0.1, 0.2]}, "epochs": epochs}
    cfg = _study({"name": "hyperband"}, space=space)
    assert trainer_epochs(cfg) == expected
    assert study_pruner(cfg)._max_resource == expected  # type: ignore[attr-defined]


def test_a_hyperband_min_resource_past_max_resource_is_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Optuna builds no bracket and prunes nothing, without a word; a smoke run that
    # shortens epochs below min_resource is still allowed
    from hpo.pruners import pruner_defaults_note

    cfg = _study({"name": "hyperband", "min_resource": 10}, {"epochs": 8})
    idle = "min_resource 10 is past max_resource 8 (the trainer's epochs): no trial is ever pruned"
    assert pruner_defaults_note(cfg) == f" ({idle})"
    with caplog.at_level("WARNING", logger="hpo.pruners._study"):
        study_pruner(cfg)
    assert f"pruner: {idle}" in caplog.messages
    patient = {
        "name": "patient",
        "patience": 1,
        "wrapped": {"name": "hyperband", "min_resource": 9},
    }
    assert "min_resource 9 is past" in pruner_defaults_note(_study(patient, {"epochs": 8}))


def test_validate_says_what_the_service_fills_in() -> None:
    from hpo.pruners import pruner_defaults_note

    assert pruner_defaults_note(_study({"name": "hyperband"})) == (
        " (max_resource 30: the trainer's epochs; "
        "min_resource 4: the first epoch after 3 warmup epochs)"
    )
    assert pruner_defaults_note(_study({"name": "median"}, {"warmup_epochs": 2})) == (
        " (n_warmup_steps 3: the first epoch after 2 warmup epochs)"
    )
    given = {"name": "hyperband", "min_resource": 2, "max_resource": 30}
    assert pruner_defaults_note(_study(given)) == ""
    assert pruner_defaults_note(_study({"name": "median"}, {"epochs": 2})) == (
        " (n_warmup_steps 2: the last epoch: the 3 warmup epochs fill the run)"
    )


@pytest.mark.parametrize("name", ["hyperband", "successive_halving"])
@pytest.mark.parametrize("factor", [0, 1])
def test_a_reduction_factor_below_2_is_refused_before_any_trial(name: str, factor: int) -> None:
    # Optuna accepts 1, and then every trial fails with ZeroDivisionError (log 1 = 0)
    from hpo.errors import ConfigError

    study = {
        "name": "rf",
        "objective": {"metric": "best_score", "direction": "maximize"},
        "budget": {"n_trials": 2},
        "pruner": {"name": name, "reduction_factor": factor},
        "trainer": {"name": "analytic", "params": {"epochs": 9}},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
    }
    with pytest.raises(
        ConfigError, match=f"reduction_factor must be an integer >= 2, got {factor}"
    ):
        validate_study_data(study)


@pytest.mark.parametrize(
    ("pruner", "problem"),
    [
        ({"min_resource": 0}, "pruner.min_resource: must be an integer >= 1 (got 0)"),
        ({"max_resource": -5}, "pruner.max_resource: must be an integer >= 1 or 'auto' (got -5)"),
        ({"bootstrap_count": -1}, "pruner.bootstrap_count: must be an integer >= 0 (got -1)"),
        (  # one line for one mistake: the type's
            {"max_resource": 0.5},
            "pruner.max_resource: HyperbandPruner expects an integer or a str (got 0.5)",
        ),
        (
            {"name": "patient", "patience": 1, "wrapped": {"name": "hyperband", "min_resource": 0}},
            "pruner.wrapped.min_resource: must be an integer >= 1 (got 0)",
        ),
    ],
)
def test_hyperband_arguments_out_of_range_are_refused_before_any_trial(
    pruner: dict[str, Any], problem: str
) -> None:
    """Optuna takes them, then every trial fails at its first report (math domain error)."""
    from hpo.errors import ConfigError

    study = analytic_study("hb", pruner={"name": "hyperband", **pruner})
    with pytest.raises(ConfigError) as info:
        validate_study_data(study)
    assert info.value.problems == [problem]
    validate_study_data(analytic_study("hb", pruner={"name": "hyperband", "max_resource": "auto"}))


def test_experimental_components_build_without_a_warning_line() -> None:
    """``patient``/``wilcoxon``/``nsga3`` printed Optuna's warning with our source line."""
    import warnings

    from hpo.pruners import build_pruner
    from hpo.samplers import build_sampler

    with warnings.catch_warnings():
        warnings.simplefilter("error", optuna.exceptions.ExperimentalWarning)
        build_pruner("wilcoxon", {})
        build_pruner("patient", {"patience": 1})
        build_sampler("nsga3", {}, seed=0, space={})


@pytest.mark.parametrize(("pruner", "warned"), [(optuna.pruners.NopPruner(), False), (None, True)])
def test_a_report_without_the_pruning_metric_is_worth_a_word_only_to_a_pruner(
    pruner: optuna.pruners.BasePruner | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from hpo.objective import TrialReporter

    study = optuna.create_study(pruner=pruner or optuna.pruners.MedianPruner())
    reporter = TrialReporter(study.ask(), "probe_f1")
    with caplog.at_level("WARNING", logger="hpo.objective"):
        reporter.report(1, {"ssl_loss": 1.0})  # an epoch without a probe
    assert ("pruning skips it" in caplog.text) is warned
