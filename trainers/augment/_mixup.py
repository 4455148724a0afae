"""Mixup of the two views of a contrastive pair with a shared partner sample."""

from __future__ import annotations

import torch
from torch import Tensor

from trainers.augment._common import _check, _rand


def mixup_views(
    x1: Tensor, x2: Tensor, alpha: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Mix each sample of both views with the same other sample of the batch.

    Returns ``(lam1 * x1 + (1 - lam1) * x1[perm], lam2 * x2 + (1 - lam2) * x2[perm])``
    where ``perm`` has no fixed points (a random cyclic derangement, identical for both
    views so a positive pair stays dominated by the same sample) and
    ``lam ~ U(1 - alpha, 1)`` is drawn per sample and per view. ``alpha`` is thus the
    maximum fraction of the partner mixed in and must lie in ``[0, 0.5]``
    (not a Beta concentration: Beta sampling cannot take a generator). With a batch of
    one or ``alpha == 0`` the views are returned unchanged (as copies).
    """
    if x1.shape != x2.shape:
        raise ValueError(
            f"views must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    _check(x1, generator, 1.0, 1.0)
    _check(x2, generator, 1.0, 1.0)
    if not 0.0 <= alpha <= 0.5:
        raise ValueError(f"alpha must be in [0, 0.5], got {alpha}")
    b = x1.shape[0]
    if b < 2 or alpha == 0.0:
        return x1.clone(), x2.clone()
    order = torch.randperm(b, generator=generator, device=x1.device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    lam = 1.0 - alpha * _rand((2, b), x1, generator)
    lam1 = lam[0].view(-1, 1, 1).to(x1.dtype)
    lam2 = lam[1].view(-1, 1, 1).to(x2.dtype)
    return lam1 * x1 + (1 - lam1) * x1[partner], lam2 * x2 + (1 - lam2) * x2[partner]
