"""The epoch meter: count-weighted running means kept on the device, one host transfer."""

from __future__ import annotations

import math

import torch
from torch import Tensor

# --------------------------------------------------------------------------- epoch meter


class EpochMeter:
    """Running, count-weighted means of named scalar tensors, kept on their device.

    ``update(name, value, n)`` adds ``value * n`` (``value`` being a batch mean over ``n``
    samples) to a device-side sum without syncing; :meth:`compute` stacks every sum and does
    one ``.tolist()`` — a single device→host transfer — to return plain floats.

    Example::

        meter = EpochMeter()
        for x, y in loader:
            loss = ...
            meter.update("loss", loss, n=len(x))
            meter.update("acc", accuracy(logits.argmax(1), y), n=len(x))
        reporter.report(epoch, meter.compute())
        meter.reset()
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def update(self, name: str, value: Tensor, n: int = 1) -> None:
        """Accumulate a 1-element tensor ``value`` (a mean over ``n >= 0`` samples)."""
        if value.numel() != 1:
            raise ValueError(f"{name!r}: expected a scalar tensor, got shape {tuple(value.shape)}")
        if n < 0:
            raise ValueError(f"{name!r}: n must be >= 0, got {n}")
        acc_dtype = torch.float32 if value.device.type == "mps" else torch.float64
        v = value.detach().reshape(()).to(acc_dtype) * n
        prev = self._sums.get(name)
        self._sums[name] = v if prev is None else prev + v.to(prev.device)
        self._counts[name] = self._counts.get(name, 0) + n

    def compute(self) -> dict[str, float]:
        """Weighted means by name (NaN for a name whose total count is 0); one host transfer."""
        if not self._sums:
            return {}
        names = list(self._sums)
        first = self._sums[names[0]]
        stacked = torch.stack([self._sums[k].to(first.device, first.dtype) for k in names])
        values = stacked.tolist()
        return {
            k: (v / self._counts[k] if self._counts[k] > 0 else math.nan)
            for k, v in zip(names, values, strict=True)
        }

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums.clear()
        self._counts.clear()

    def __len__(self) -> int:
        return len(self._sums)

    def __contains__(self, name: object) -> bool:
        return name in self._sums
