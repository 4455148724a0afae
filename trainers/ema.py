"""The EMA of a model's weights that every mode may evaluate and save in their place."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EmaModel:
    """Exponential moving average of the weights, evaluated and saved in their place when on.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates
    (TensorFlow's ``ExponentialMovingAverage(num_updates=t)``). A fixed 0.999 from the first step keeps the random
    init in the average for thousands of steps (61 % of it after 100 epochs of 5 steps),
    so a trial with EMA was scored, pruned and saved on near-random weights. Float buffers
    (BatchNorm statistics) are averaged with the same decay, as timm does, so they describe
    the averaged weights; integer buffers (batch counts) are copied.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.decay = decay
        self.updates = updates  # set from the optimizer steps done when a run resumes
        self.model = copy.deepcopy(model).eval()
        for param in self.model.parameters():
            param.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update blends with."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights and float buffers in; once per optimizer step."""
        weight = 1.0 - self.current_decay()
        self.updates += 1
        ema_params: list[Tensor] = list(self.model.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, weight)
        for ema_buf, buf in zip(self.model.buffers(), model.buffers(), strict=True):
            if ema_buf.is_floating_point():
                ema_buf.lerp_(buf, weight)
            else:
                ema_buf.copy_(buf)
