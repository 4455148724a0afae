"""Learning-rate schedules by name, stepped per optimizer step (plateau: per epoch)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Schedule:
    """A scheduler plus how it is stepped: every optimizer step, or once per epoch on a metric."""

    scheduler: (
        torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
    )
    per_epoch_on_metric: bool = False

    def step_batch(self) -> None:
        """Advance after one optimizer step (no-op for plateau)."""
        if self.scheduler is not None and not self.per_epoch_on_metric:
            self.scheduler.step()

    def step_epoch(self, metric: float) -> None:
        """Advance plateau schedules on the validation metric (higher is better)."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(metric)


PLATEAU_THRESHOLD = 1e-4
"""How much the metric must rise (in its own units) for ``plateau`` to call an epoch better."""


def optimizer_steps_per_epoch(n_batches: int, grad_accum: int) -> int:
    """Optimizer steps in an epoch of ``n_batches``: a last, shorter accumulation group steps too."""
    return max(math.ceil(n_batches / grad_accum), 1)


def accumulation_group_size(batch: int, n_batches: int, grad_accum: int) -> int:
    """Batches in the accumulation group of ``batch`` (0-based), the last group maybe fewer.

    A batch's loss is divided by this, so every optimizer step takes the mean gradient of
    its own batches, the shorter last group's included.
    """
    return min(grad_accum, n_batches - batch + batch % grad_accum)


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_restarts_factor(step: int, period: int, t_mult: int, min_ratio: float) -> float:
    """SGDR: cosine from 1 to ``min_ratio`` over ``period`` steps, restarting; periods grow by ``t_mult``.

    The factor of each parameter group's own learning rate, so every group anneals to its
    own ``min_ratio`` share (``CosineAnnealingWarmRestarts`` takes one ``eta_min`` for all,
    which lifts a group with a lower rate, such as a fine-tuned encoder's, above its own).
    """
    period = max(period, 1)
    if t_mult == 1:
        t_cur, t_i = step % period, period
    else:
        t_cur, t_i = step, period
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= t_mult
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t_cur / t_i))


def build_schedule(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int,
    min_lr_ratio: float,
    t_0: int,
    t_mult: int,
    plateau_patience: int,
    plateau_factor: float,
) -> Schedule:
    """``warmup_cosine``, ``cosine_restarts`` (T_0/T_mult in epochs), ``plateau`` or ``none``."""
    if name == "warmup_cosine":
        warmup = warmup_epochs * steps_per_epoch
        total = epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine_factor(s, warmup, total, min_lr_ratio)
        )
        return Schedule(sched)
    if name == "cosine_restarts":
        period = t_0 * steps_per_epoch
        restarts = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_restarts_factor(s, period, t_mult, min_lr_ratio)
        )
        return Schedule(restarts)
    if name == "plateau":
        # An absolute threshold: the metric may be negative (-val_loss, a cosine), where a
        # relative one would count a flat or slightly worse epoch as an improvement.
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            patience=plateau_patience,
            factor=plateau_factor,
            threshold=PLATEAU_THRESHOLD,
            threshold_mode="abs",
        )
        return Schedule(plateau, per_epoch_on_metric=True)
    if name == "none":
        return Schedule(None)
    raise ValueError(
        f"unknown scheduler {name!r}; use warmup_cosine, cosine_restarts, plateau, none"
    )
