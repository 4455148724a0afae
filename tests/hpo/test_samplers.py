"""Every sampler a study file can name runs a real study on SQLite."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo import run_study, validate_study_data
from hpo.samplers import SAMPLERS
from tests.conftest import analytic_study


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_runs_a_study_to_its_budget(tmp_path: Path, name: str) -> None:
    # a discrete space, so that grid and bruteforce can take it too
    space = {
        "x": {"type": "float", "low": -2.0, "high": 2.0, "step": 0.5},
        "y": {"type": "int", "low": -2, "high": 2},
        "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
    }
    sampler: dict[str, object] = {"name": name, "seed": 0}
    if name in ("tpe", "tpe_ordinal", "gp", "cmaes"):
        sampler["n_startup_trials"] = 2
    data = analytic_study(
        f"every-{name}",
        storage=f"sqlite:///{(tmp_path / 'hpo.db').as_posix()}",
        sampler=sampler,
        pruner={"name": "none"},
        budget={"n_trials": 5},
        space=space,
        trainer={"name": "analytic", "params": {"epochs": 2}},
    )
    cfg = validate_study_data(data)
    run_study(cfg)
    study = optuna.load_study(study_name=f"every-{name}", storage=data["storage"])
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 5, [
        t.user_attrs.get("fail_message") for t in study.trials
    ]
