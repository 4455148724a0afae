"""The study file's pruner, fitted to the trainer's epochs and LR warmup."""

from __future__ import annotations

import optuna

from hpo.config import StudyConfig
from hpo.pruners._registry import FIRST_STEP_ARG, build_pruner, innermost_pruner


def trainer_epochs(cfg: StudyConfig) -> int | None:
    """The trainer's fixed ``epochs`` (Hyperband's ``max_resource``), when the study gives it."""
    epochs = cfg.trainer.params.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
        return epochs
    return None


def trainer_warmup(cfg: StudyConfig) -> int | None:
    """A built-in trainer's LR warmup in epochs: the fixed value, else its schema's default.

    Only built-in trainers: they report once per epoch, so an epoch count is a step count.
    """
    if ":" in cfg.trainer.name or "warmup_epochs" in cfg.space:
        return None  # a user's steps may not be epochs; a searched warmup differs by trial
    value = cfg.trainer.params.get("warmup_epochs")
    if value is None:
        from trainers.registry import resolve_trainer

        try:
            schema = resolve_trainer(cfg.trainer.name).params_schema
        except Exception:  # an unloadable trainer is reported by the study checks
            return None
        field = schema.model_fields.get("warmup_epochs") if schema is not None else None
        value = field.default if field is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def pruner_defaults_note(cfg: StudyConfig) -> str:
    """What the service fills in for the study's pruner, e.g. `` (min_resource 4: ...)``."""
    args: list[str] = []
    epochs, warmup = trainer_epochs(cfg), trainer_warmup(cfg)
    name, kwargs = innermost_pruner(cfg.pruner.name, cfg.pruner.kwargs)
    if name == "hyperband" and epochs is not None and "max_resource" not in kwargs:
        args.append(f"max_resource {epochs}: the trainer's epochs")
    first_arg = FIRST_STEP_ARG.get(name)
    if first_arg is not None and warmup and first_arg not in kwargs:
        first = min(warmup + 1, epochs) if epochs is not None else warmup + 1
        why = (
            f"the first epoch after {warmup} warmup epochs"
            if first == warmup + 1
            else f"the last epoch: the {warmup} warmup epochs fill the run"
        )
        args.append(f"{first_arg} {first}: {why}")
    return f" ({'; '.join(args)})" if args else ""


def study_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study file's pruner, fitted to the trainer's epochs and warmup."""
    return build_pruner(
        cfg.pruner.name,
        cfg.pruner.kwargs,
        max_resource=trainer_epochs(cfg),
        warmup=trainer_warmup(cfg),
    )
