"""The study file's pruner, fitted to the trainer's epochs and LR warmup."""

from __future__ import annotations

import logging

import optuna

from hpo.config import StudyConfig
from hpo.pruners._registry import FIRST_STEP_ARG, build_pruner, innermost_pruner
from hpo.trainer_defaults import builtin_trainer, trainer_param_defaults

logger = logging.getLogger(__name__)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def trainer_epochs(cfg: StudyConfig) -> int | None:
    """The most epochs a trial runs (Hyperband's ``max_resource``), when it is known.

    The fixed value, else a built-in trainer's default; a searched ``epochs`` gives its
    largest value (and the fixed one only where an ``if:`` leaves some trials with it).
    """
    fixed = cfg.trainer.params.get("epochs")
    if fixed is None and builtin_trainer(cfg.trainer.name):
        fixed = trainer_param_defaults(cfg.trainer.name, ["epochs"]).get("epochs")
    searched = cfg.space.get("epochs")
    if searched is None:
        return _count(fixed)
    counts: list[int | None]
    if searched.type == "int":
        step = searched.step or 1
        counts = [_count(searched.low + (searched.high - searched.low) // step * step)]
    elif searched.type == "categorical":
        counts = [_count(c) for c in searched.choices]
    else:
        return None
    if searched.condition is not None:
        counts.append(_count(fixed))
    known = [c for c in counts if c is not None]
    return max(known) if known and len(known) == len(counts) else None


def trainer_warmup(cfg: StudyConfig) -> int | None:
    """A built-in trainer's LR warmup in epochs: the fixed value, else its schema's default.

    Only built-in trainers: they report once per epoch, so an epoch count is a step count.
    """
    if not builtin_trainer(cfg.trainer.name) or "warmup_epochs" in cfg.space:
        return None  # a user's steps may not be epochs; a searched warmup differs by trial
    value = cfg.trainer.params.get("warmup_epochs")
    if value is None:
        value = trainer_param_defaults(cfg.trainer.name, ["warmup_epochs"]).get("warmup_epochs")
    return _count(value)


def idle_pruner_problem(cfg: StudyConfig) -> str | None:
    """Why the study's Hyperband judges no trial at all, or None.

    A ``min_resource`` past the last epoch builds no bracket: Optuna then prunes nothing
    without a word. Allowed (a smoke run shortens ``epochs`` below it), but said.
    """
    name, kwargs = innermost_pruner(cfg.pruner.name, cfg.pruner.kwargs)
    epochs = trainer_epochs(cfg)
    low, high = kwargs.get("min_resource"), kwargs.get("max_resource", epochs)
    if name != "hyperband" or not isinstance(low, int) or not isinstance(high, int):
        return None
    if low <= high:
        return None
    source = "" if "max_resource" in kwargs else " (the trainer's epochs)"
    return f"min_resource {low} is past max_resource {high}{source}: no trial is ever pruned"


def pruner_defaults_note(cfg: StudyConfig) -> str:
    """What the service fills in for the study's pruner, e.g. `` (min_resource 4: ...)``."""
    idle = idle_pruner_problem(cfg)
    if idle is not None:
        return f" ({idle})"
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
    idle = idle_pruner_problem(cfg)
    if idle is not None:
        logger.warning("pruner: %s", idle)
    return build_pruner(
        cfg.pruner.name,
        cfg.pruner.kwargs,
        max_resource=trainer_epochs(cfg),
        warmup=trainer_warmup(cfg),
    )
