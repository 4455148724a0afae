"""LR schedules and the optimizer-step count of an epoch with gradient accumulation."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from trainers.schedules import (
    Schedule,
    accumulation_group_size,
    build_schedule,
    cosine_restarts_factor,
    optimizer_steps_per_epoch,
)


def _schedule(name: str, optimizer: torch.optim.Optimizer, **given: Any) -> Schedule:
    """``build_schedule`` with no warmup and plateau patience 1, halving; ``given`` wins."""
    settings: dict[str, Any] = {
        "warmup_epochs": 0,
        "min_lr_ratio": 0.0,
        "t_0": 1,
        "t_mult": 1,
        "plateau_patience": 1,
        "plateau_factor": 0.5,
    }
    return build_schedule(name, optimizer, **{**settings, **given})


@pytest.mark.parametrize("t_mult", [1, 2, 3])
def test_cosine_restarts_factor_matches_torch_warm_restarts(t_mult: int) -> None:
    # torch's CosineAnnealingWarmRestarts is the reference for one parameter group.
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=5, T_mult=t_mult, eta_min=0.1
    )
    for step in range(80):
        assert cosine_restarts_factor(step, 5, t_mult, 0.1) == pytest.approx(
            optimizer.param_groups[0]["lr"], abs=1e-12
        )
        optimizer.step()
        reference.step()


def test_cosine_restarts_anneals_each_group_to_its_own_minimum() -> None:
    # fine-tuning: the encoder at a tenth of the head's rate, min_lr_ratio 0.5
    encoder, head = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [encoder], "lr": 1e-3}, {"params": [head]}], lr=1e-2)
    schedule = _schedule(
        "cosine_restarts",
        optimizer,
        steps_per_epoch=3,
        epochs=10,
        min_lr_ratio=0.5,
        t_0=2,
        t_mult=2,
    )
    seen: list[tuple[float, float]] = []
    for _ in range(30):
        seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
        optimizer.step()
        schedule.step_batch()
    assert all(0.5e-3 - 1e-12 <= enc <= 1e-3 + 1e-12 for enc, _ in seen)
    assert all(0.5e-2 - 1e-12 <= hd <= 1e-2 + 1e-12 for _, hd in seen)
    assert min(enc for enc, _ in seen) < 0.55e-3  # it does anneal
    assert all(hd / enc == pytest.approx(10.0) for enc, hd in seen)


@pytest.mark.parametrize(
    ("n_batches", "grad_accum", "steps", "sizes"),
    [
        (5, 1, 5, [1, 1, 1, 1, 1]),
        (5, 2, 3, [2, 2, 2, 2, 1]),  # the last, single batch still steps, at full weight
        (7, 3, 3, [3, 3, 3, 3, 3, 3, 1]),
        (6, 3, 2, [3] * 6),
        (1, 4, 1, [1]),  # accumulation longer than the epoch: one step of one batch
    ],
)
def test_an_epoch_steps_once_per_accumulation_group(
    n_batches: int, grad_accum: int, steps: int, sizes: list[int]
) -> None:
    assert optimizer_steps_per_epoch(n_batches, grad_accum) == steps
    assert [accumulation_group_size(b, n_batches, grad_accum) for b in range(n_batches)] == sizes


@pytest.mark.parametrize("level", [-0.5, 0.5])
def test_plateau_lowers_the_rate_on_a_flat_metric_of_either_sign(level: float) -> None:
    # -val_loss and a cosine are negative: a relative threshold called a flat one better
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = _schedule("plateau", optimizer, steps_per_epoch=1, epochs=6)
    rates = []
    for _ in range(6):
        schedule.step_epoch(level)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_a_warmup_as_long_as_the_run_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    # the rate would only ever climb: never its peak, never the cosine decay
    from trainers.building import make_schedule
    from trainers.params import ContrastiveParams

    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with caplog.at_level("WARNING", logger="trainers.building"):
        make_schedule(ContrastiveParams(epochs=3, warmup_epochs=3), optimizer, 4)
    assert "warmup_epochs=3 >= epochs=3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="trainers.building"):
        make_schedule(ContrastiveParams(epochs=4, warmup_epochs=3), optimizer, 4)
    assert caplog.text == ""
