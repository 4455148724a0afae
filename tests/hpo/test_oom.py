"""Out-of-GPU-memory trials: their memory is freed, and a retry halves the batch in use.

The trainers here raise a real ``torch.OutOfMemoryError``; nothing touches a GPU.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, ConfigDict

from hpo.config import load_study_config
from hpo.runner import run_study
from hpo.workers.oom import smaller_batch, trainer_batch_defaults
from tests.conftest import analytic_study

MODELS: list[weakref.ref[torch.nn.Module]] = []
KEPT_ERRORS: list[BaseException] = []


def model_oom_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Builds a model, then runs out of 'GPU memory' with the model still in its frame."""
    model = torch.nn.Linear(64, 64)
    MODELS.append(weakref.ref(model))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # noqa: F841 -- held, as in training
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class KeepsAnImportError:
    """A hook that does what optuna's ``try_import`` does on a lazy import: it keeps an
    ImportError for later, which picks up any exception being handled as its context."""

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: TrialState,
        result: Mapping[str, Any] | None,
        history: list[tuple[int, dict[str, float]]],
    ) -> None:
        try:
            raise ModuleNotFoundError("No module named 'botorch'")
        except ImportError as exc:
            KEPT_ERRORS.append(exc)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("notes", [False, True])
def test_a_failed_trials_model_is_freed_before_the_next_trial(tmp_path: Path, notes: bool) -> None:
    MODELS.clear()
    KEPT_ERRORS.clear()
    data = analytic_study(
        name="oom_frees",
        budget={"n_trials": 2},
        pruner={"name": "none"},
        artifacts={"enabled": notes, "notes": notes, "plots": False, "embeddings": False},
        trainer={"name": "tests.hpo.test_oom:model_oom_trainer", "params": {}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    alive_when_recorded: list[bool] = []

    def after_free_memory(study: optuna.Study, trial: FrozenTrial) -> None:
        # runs after the runner's CollectGarbage and FreeMemoryAfterOom callbacks
        alive_when_recorded.append(MODELS[-1]() is not None)

    summary = run_study(
        load_study_config(_write(tmp_path, data)),
        callbacks=[after_free_memory],
        hooks=[KeepsAnImportError()],
    )
    assert summary.n_failed == 2
    trials = optuna.load_study(study_name="oom_frees", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    assert {t.user_attrs["fail_reason"] for t in trials.trials} == {"cuda_oom"}
    assert len(KEPT_ERRORS) == 2
    assert alive_when_recorded == [False, False], "the trainer's frame kept its model alive"
    gc.collect()
    assert [ref() for ref in MODELS] == [None, None]


class BatchParams(BaseModel):
    """A trainer whose batch size the study need not set."""

    model_config = ConfigDict(extra="forbid")
    x: float = 0.0
    seed: int | None = None
    batch_size: int = 64
    grad_accum: int = 1


def default_batch_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Runs out of 'GPU memory' above a batch of 32; the default batch is 64."""
    p = BatchParams.model_validate(dict(params))
    if p.batch_size > 32:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return {
        "best_score": 1.0 - p.x**2,
        "batch_size_used": float(p.batch_size),
        "grad_accum_used": float(p.grad_accum),
    }


default_batch_trainer.params_schema = BatchParams  # type: ignore[attr-defined]


def test_trainer_batch_defaults() -> None:
    assert trainer_batch_defaults("tests.hpo.test_oom:default_batch_trainer") == {
        "batch_size": 64,
        "grad_accum": 1,
    }
    assert trainer_batch_defaults("contrastive") == {
        "batch_size": 32,
        "grad_accum": 1,
        "eval_batch_size": 1024,
    }
    assert trainer_batch_defaults("tests.hpo.test_oom:model_oom_trainer") == {}
    assert trainer_batch_defaults(None) == {}
    assert smaller_batch({"x": 0.5}, {"batch_size": 64, "grad_accum": 1}) == {
        "batch_size": 32,
        "grad_accum": 2,
    }
    assert smaller_batch({"batch_size": 16}, {"batch_size": 64}) == {
        "batch_size": 8,
        "grad_accum": 2,
    }


def test_an_oom_retry_halves_the_trainers_default_batch(tmp_path: Path) -> None:
    data = analytic_study(
        name="oom_default_batch",
        budget={"n_trials": 2},
        pruner={"name": "none"},
        trainer={"name": "tests.hpo.test_oom:default_batch_trainer", "params": {}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
        workers={"on_oom": "retry_smaller_batch"},
    )
    summary = run_study(load_study_config(_write(tmp_path, data)))
    assert summary.n_complete == 2 and summary.n_retried == 2 and summary.n_failed == 0
    study = optuna.load_study(
        study_name="oom_default_batch", storage=f"sqlite:///{tmp_path / 'hpo.db'}"
    )
    for oom in [t for t in study.trials if t.state == TrialState.FAIL]:
        (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == oom.number]
        assert retry.state == TrialState.COMPLETE
        assert retry.user_attrs["param_overrides"] == {"batch_size": 32, "grad_accum": 2}
        assert retry.user_attrs["batch_size_used"] == 32.0
        assert retry.user_attrs["grad_accum_used"] == 2.0
    # the export trains what the best trial trained: at 64 every retrain ran out of memory
    from hpo.results import best_config

    exported = best_config(load_study_config(_write(tmp_path, data)))
    assert exported["params"]["batch_size"] == 32 and exported["params"]["grad_accum"] == 2
    assert "retry_of" not in exported["metrics"]
