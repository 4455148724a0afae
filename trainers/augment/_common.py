"""The :class:`AugmentFn` protocol and the private batched helpers every augmentation uses.

Argument checks, float32 random draws, the per-sample "apply" coin and selection,
integer draws, smooth random curves, linear resampling and time-block masks.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


class AugmentFn(Protocol):
    """Signature shared by every registered augmentation."""

    def __call__(
        self,
        x: Tensor,
        generator: torch.Generator,
        *,
        strength: float = 1.0,
        p: float = 1.0,
    ) -> Tensor: ...


# --------------------------------------------------------------------------- helpers


def _check(x: Tensor, generator: torch.Generator, strength: float, p: float) -> None:
    if x.dim() != 3:
        raise ValueError(f"expected x of shape (B, C, T), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected a floating-point tensor, got {x.dtype}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but x is on {x.device}; "
            "create the generator on x's device"
        )
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if not (strength >= 0.0 and math.isfinite(strength)):
        raise ValueError(f"strength must be a finite number >= 0, got {strength}")


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (half, bfloat16, float32) runs in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _rand(shape: tuple[int, ...], x: Tensor, g: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=g, device=x.device, dtype=torch.float32)


def _randn(shape: tuple[int, ...], x: Tensor, g: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=g, device=x.device, dtype=torch.float32)


def _draw_apply(x: Tensor, p: float, g: torch.Generator) -> Tensor:
    """Per-sample boolean ``(B,)``: whether to apply the augmentation."""
    return _rand((x.shape[0],), x, g) < p


def _select(apply: Tensor, out: Tensor, x: Tensor, p: float) -> Tensor:
    out = out.to(x.dtype)
    if p >= 1.0:
        return out
    return torch.where(apply.view(-1, 1, 1), out, x)


def _uniform_int(u: Tensor, n: Tensor | int) -> Tensor:
    """Map uniforms ``u`` in [0, 1) to integers in ``[0, n)`` (``n`` per element or scalar)."""
    idx = torch.floor(u * n).long()
    if isinstance(n, Tensor):
        return torch.minimum(idx, (n - 1).long())
    return idx.clamp(max=n - 1)


def _max_len(frac: float, t: int, strength: float) -> int:
    """``round(frac * t * strength)``, at least 1 when ``strength > 0``."""
    if strength <= 0.0 or t <= 0:
        return 0
    return max(1, round(frac * t * strength))


def _smooth_curve(
    b: int, c: int, knots: int, length: int, sigma: float, x: Tensor, g: torch.Generator
) -> Tensor:
    """``(b, c, length)`` float32 smooth random curves through ``knots`` N(0, sigma) values.

    Bicubic interpolation (``align_corners=True``) is linear in the knot values, so it
    is applied once to the identity to get a ``(knots, length)`` basis and the curves
    are a single matmul (same result as interpolating every curve, much faster).
    """
    k = _randn((b * c, knots), x, g) * sigma
    eye = torch.eye(knots, device=x.device, dtype=torch.float32).view(knots, 1, 1, knots)
    basis = F.interpolate(eye, size=(1, length), mode="bicubic", align_corners=True)
    return (k @ basis.view(knots, length)).view(b, c, length)


def _resample(x: Tensor, pos: Tensor) -> Tensor:
    """Linear interpolation of ``x`` (B, C, T) at fractional time indices ``pos`` (B, T').

    The same positions are used for every channel of a sample.
    """
    b, c, t = x.shape
    pos = pos.clamp(0.0, float(t - 1))
    i0 = pos.floor().long().clamp(0, t - 1)
    i1 = (i0 + 1).clamp(max=t - 1)
    w = (pos - i0.to(pos.dtype)).to(x.dtype).unsqueeze(1)
    n = pos.shape[1]
    x0 = x.gather(2, i0.unsqueeze(1).expand(b, c, n))
    x1 = x.gather(2, i1.unsqueeze(1).expand(b, c, n))
    return x0 + (x1 - x0) * w


def _time_block_mask(x: Tensor, start: Tensor, length: Tensor, size: int) -> Tensor:
    """``(B, size)`` boolean mask, True on ``[start, start + length)`` per sample."""
    ar = torch.arange(size, device=x.device)
    return (ar >= start.unsqueeze(1)) & (ar < (start + length).unsqueeze(1))
