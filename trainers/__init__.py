"""Shared trainers called by every trial of an `hpo` study.

A trainer is a plain function ``train(params: dict, reporter=None) -> dict[str, float]``.
It never imports Optuna, so it also runs on its own.
"""

from trainers.registry import (
    TrainerNotFound,
    TrainerSpec,
    register_trainer,
    registered_trainers,
    resolve_trainer,
    run_trainer,
)
from trainers.reporter import NullReporter, Pruned, RecordingReporter, Reporter, TrainingFailed

__all__ = [
    "NullReporter",
    "Pruned",
    "RecordingReporter",
    "Reporter",
    "TrainerNotFound",
    "TrainerSpec",
    "TrainingFailed",
    "register_trainer",
    "registered_trainers",
    "resolve_trainer",
    "run_trainer",
]
