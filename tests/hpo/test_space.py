"""One grid point, one value: a stepped float as Optuna's samplers round it and as a study
file (its start-up design, ``enqueue`` rows, ``if:`` values) writes it."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from hpo import load_study_config, run_study, validate_study_data
from hpo.duplicates import same_params
from hpo.pruners._grouped import group_key
from hpo.space import comparable, condition_holds
from tests.conftest import analytic_study

SAMPLED = 0.05 + 2 * 0.05  # what TPE, random and QMC store for the grid point 0.15


def test_a_sampled_grid_point_compares_equal_to_the_written_one() -> None:
    assert SAMPLED != 0.15 and comparable(SAMPLED) == comparable(0.15) == 0.15
    assert comparable(1) == 1 and comparable("a") == "a" and comparable(True) is True
    assert same_params({"x": SAMPLED}, {"x": 0.15})
    assert not same_params({"x": 1}, {"x": 1.0}), "an int and a float stay two choices"
    trial = create_trial(
        value=1.0, params={"x": SAMPLED}, distributions={"x": FloatDistribution(0.05, 0.3)}
    )
    assert group_key(trial, ["x"]) == (0.15,)


def test_a_condition_on_a_stepped_float_holds_for_the_sampled_value() -> None:
    # "if: {x: 0.15}" never held for a sampled trial: its conditional parameter was only
    # ever trained in the start-up design's rows
    cfg = validate_study_data(
        analytic_study(
            space={
                "x": {"type": "float", "low": 0.05, "high": 0.3, "step": 0.05},
                "margin": {"type": "float", "low": 0.1, "high": 1.0, "if": {"x": 0.15}},
            }
        )
    )
    assert condition_holds(cfg.space["margin"], {"x": SAMPLED})
    assert not condition_holds(cfg.space["margin"], {"x": 0.2})


def test_a_sampled_repeat_of_a_design_row_is_reused(tmp_path: Path) -> None:
    # the start-up design writes 0.15, the sampler 0.15000000000000002: both trained
    data = analytic_study(
        storage=f"sqlite:///{tmp_path / 'hpo.db'}",
        budget={"n_trials": 40},
        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 6},
        startup="balanced",
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 1, "seed": 7}},
        space={"x": {"type": "float", "low": 0.05, "high": 0.3, "step": 0.05}},
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    run_study(load_study_config(path))
    trials = optuna.load_study(study_name="analytic", storage=data["storage"]).trials
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    points = [comparable(t.params["x"]) for t in trained]
    assert len(points) == len(set(points)) <= 6, points
