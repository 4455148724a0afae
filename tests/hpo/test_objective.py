"""The objective's reporter: what reaches the pruner, and what counts as a number."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import load_study_config, run_study
from hpo.objective import TrialReporter
from tests.conftest import analytic_study
from trainers.reporter import Pruned

X = FloatDistribution(-1.0, 1.0)
pytestmark = pytest.mark.filterwarnings("ignore:The reported value is ignored")


def _study_with_peers() -> optuna.Study:
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
    )
    for _ in range(2):
        study.add_trial(
            create_trial(
                value=0.9,
                params={"x": 0.0},
                distributions={"x": X},
                intermediate_values={step: 0.9 for step in range(1, 11)},
            )
        )
    return study


def _retry(study: optuna.Study, inherited: range) -> optuna.Trial:
    study.add_trial(
        create_trial(
            state=TrialState.WAITING,
            params={"x": 0.5},
            distributions={"x": X},
            intermediate_values={step: 0.05 for step in inherited},
        )
    )
    trial = study.ask()
    assert trial.number == 2
    return trial


def test_a_retry_is_not_judged_on_the_curve_it_inherited() -> None:
    # a run lost after its last epoch (during its test evaluation): its retry re-reports
    # epoch 1, Optuna ignores that, and the pruner judged the inherited epoch 10 instead,
    # the final epoch that is never a pruning point
    reporter = TrialReporter(_retry(_study_with_peers(), range(1, 11)), "score", final_step=10)
    for step in range(1, 11):
        reporter.report(step, {"score": 0.05})


def test_a_retry_is_judged_again_past_where_its_original_got() -> None:
    reporter = TrialReporter(_retry(_study_with_peers(), range(1, 4)), "score", final_step=10)
    for step in range(1, 4):
        reporter.report(step, {"score": 0.05})
    with pytest.raises(Pruned, match="step 4"):
        reporter.report(4, {"score": 0.05})


def numpy_trainer(params: Mapping[str, Any], reporter: Any) -> dict[str, Any]:
    """Reports and returns NumPy scalars, as ``arr.mean()`` gives them."""
    scores = np.linspace(0.1, 0.5, 3, dtype=np.float32)
    for epoch, score in enumerate(scores, start=1):
        reporter.report(epoch, {"best_score": score, "epoch": np.int64(epoch)})
    return {"best_score": scores[-1], "n_params": np.int64(1000)}


def test_numpy_scalars_are_numbers(tmp_path: Path) -> None:
    # np.float32 was "no finite value" per epoch (never pruned) and failed the trial as
    # bad_result
    data = analytic_study(
        storage=f"sqlite:///{tmp_path / 'hpo.db'}",
        budget={"n_trials": 1},
        trainer={"name": "tests.hpo.test_objective:numpy_trainer", "params": {}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    run_study(load_study_config(path))
    (trial,) = optuna.load_study(study_name="analytic", storage=data["storage"]).trials
    assert trial.state == TrialState.COMPLETE
    assert trial.value == pytest.approx(0.5)
    assert trial.intermediate_values == pytest.approx({1: 0.1, 2: 0.3, 3: 0.5})
