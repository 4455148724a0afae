"""The augmentations (jitter, scaling, warps, crops, shifts, masks, flips, smoothing)
and :data:`AUGMENTATIONS`, the registry of them by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.augment._common import (
    AugmentFn,
    _check,
    _compute_dtype,
    _draw_apply,
    _max_len,
    _rand,
    _randn,
    _resample,
    _select,
    _smooth_curve,
    _time_block_mask,
    _uniform_int,
)

# --------------------------------------------------------------------- augmentations


def jitter(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Add i.i.d. Gaussian noise. Default: sigma = 0.1 (standardised units) at strength 1.

    ``sigma = 0.1 * strength`` is absolute, i.e. assumes z-normalised inputs.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    apply = _draw_apply(x, p, generator)
    noise = _randn(tuple(x.shape), x, generator) * (0.1 * strength)
    return _select(apply, x + noise.to(x.dtype), x, p)


def scaling(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Multiply each channel of each sample by a factor ~ N(1, 0.1) at strength 1.

    The factor is ``1 + 0.1 * strength * z`` with ``z ~ N(0, 1)``, so its mean is
    exactly 1 (no upward bias).
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, c, _ = x.shape
    apply = _draw_apply(x, p, generator)
    factor = 1.0 + _randn((b, c, 1), x, generator) * (0.1 * strength)
    return _select(apply, x * factor.to(x.dtype), x, p)


def magnitude_warp(
    x: Tensor,
    generator: torch.Generator,
    *,
    strength: float = 1.0,
    p: float = 1.0,
    knots: int = 4,
) -> Tensor:
    """Multiply by a smooth random curve. Default: 4 knots ~ N(1, 0.2) at strength 1.

    Each channel of each sample gets its own curve: ``knots`` values
    ``1 + 0.2 * strength * z`` at evenly spaced times (first and last sample
    included), bicubically interpolated to length T.
    """
    _check(x, generator, strength, p)
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    if p == 0.0:
        return x.clone()
    b, c, t = x.shape
    apply = _draw_apply(x, p, generator)
    curve = 1.0 + _smooth_curve(b, c, knots, t, 0.2 * strength, x, generator)
    return _select(apply, x * curve.to(x.dtype), x, p)


def time_warp(
    x: Tensor,
    generator: torch.Generator,
    *,
    strength: float = 1.0,
    p: float = 1.0,
    knots: int = 4,
) -> Tensor:
    """Smooth monotone time distortion. Default: local speed exp(N(0, 0.2)) at 4 knots.

    Per sample (shared by its channels), a log-speed curve is drawn at ``knots``
    knots ~ N(0, 0.2 * strength) and bicubically interpolated; its exponential is
    a strictly positive speed whose cumulative sum, rescaled so the first and last
    time steps stay fixed, gives the sampling positions. ``x`` is linearly
    interpolated there. Strength 0 is the identity.
    """
    _check(x, generator, strength, p)
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    if p == 0.0:
        return x.clone()
    b, _, t = x.shape
    apply = _draw_apply(x, p, generator)
    if t < 2:
        return x.clone()
    wd = _compute_dtype(x)
    speed = torch.exp(_smooth_curve(b, 1, knots, t - 1, 0.2 * strength, x, generator)).view(b, -1)
    pos = torch.cumsum(speed.to(wd), dim=1)
    pos = torch.cat([torch.zeros(b, 1, dtype=wd, device=x.device), pos], dim=1)
    pos = pos * ((t - 1) / pos[:, -1:])
    return _select(apply, _resample(x, pos), x, p)


def crop_resize(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Random crop resized back to T. Default: crop keeps a fraction U(0.5, 1) of the series.

    The kept fraction is ``U(max(1 - 0.5 * strength, 0.1), 1)`` with a uniformly
    random start; the crop (shared by the sample's channels) is linearly
    interpolated back to length T.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, _, t = x.shape
    apply = _draw_apply(x, p, generator)
    u = _rand((b, 2), x, generator)
    lo = max(1.0 - 0.5 * strength, 0.1)
    wd = _compute_dtype(x)
    frac = (lo + (1.0 - lo) * u[:, :1]).to(wd)
    start = u[:, 1:].to(wd) * (1.0 - frac)
    steps = torch.arange(t, dtype=wd, device=x.device).unsqueeze(0)
    pos = start * (t - 1) + frac * steps  # frac == 1, start == 0 gives exactly 0..T-1
    return _select(apply, _resample(x, pos), x, p)


def time_shift(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Circular roll in time by a random non-zero offset. Default: up to ±0.1·T at strength 1.

    The offset is uniform on ``[-m, -1] ∪ [1, m]`` with
    ``m = min(max(1, round(0.1 * T * strength)), T // 2)`` (0 when ``strength == 0``,
    giving the identity). All channels of a sample are rolled together, so each
    channel keeps exactly its values.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, c, t = x.shape
    apply = _draw_apply(x, p, generator)
    m = min(_max_len(0.1, t, strength), t // 2)
    u = _rand((b,), x, generator)
    if m == 0:
        return x.clone()
    r = _uniform_int(u, 2 * m) - m  # in [-m, m - 1]
    shift = torch.where(r >= 0, r + 1, r)  # in [-m, -1] ∪ [1, m]
    idx = (torch.arange(t, device=x.device).unsqueeze(0) - shift.unsqueeze(1)) % t
    out = x.gather(2, idx.unsqueeze(1).expand(b, c, t))
    return _select(apply, out, x, p)


def blockout(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Zero a random contiguous time block (all channels). Default: length 1..0.1·T.

    Block length is uniform on ``[1, max(1, round(0.1 * T * strength))]`` (capped
    at T) and its start uniform over valid positions (a "time mask"; zero is the
    mean of standardised data).
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, _, t = x.shape
    apply = _draw_apply(x, p, generator)
    m = min(_max_len(0.1, t, strength), t)
    u = _rand((b, 2), x, generator)
    if m == 0:
        return x.clone()
    length = 1 + _uniform_int(u[:, 0], m)
    start = _uniform_int(u[:, 1], t - length + 1)
    mask = _time_block_mask(x, start, length, t).unsqueeze(1)
    out = x.masked_fill(mask, 0.0)
    return _select(apply, out, x, p)


def channel_dropout(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Zero whole channels. Default: each channel dropped with probability 0.1.

    The drop probability is ``min(0.1 * strength, 1)``. A sample never loses all
    its channels: if every channel was drawn for dropping, one random channel is
    kept. No rescaling of the kept channels. Single-channel input is unchanged.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, c, _ = x.shape
    apply = _draw_apply(x, p, generator)
    q = min(0.1 * strength, 1.0)
    drop = _rand((b, c), x, generator) < q
    keep = _uniform_int(_rand((b,), x, generator), c)
    rescue = F.one_hot(keep, c).bool() & drop.all(dim=1, keepdim=True)
    drop = drop & ~rescue
    out = x.masked_fill(drop.unsqueeze(2), 0.0)
    return _select(apply, out, x, p)


def flip(x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0) -> Tensor:
    """Reverse time (left-right flip). ``strength`` is ignored."""
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    apply = _draw_apply(x, p, generator)
    return _select(apply, x.flip(-1), x, p)


def sign_flip(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Negate the sample (all channels). ``strength`` is ignored."""
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    apply = _draw_apply(x, p, generator)
    return _select(apply, -x, x, p)


def smoothing(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Moving average with a random odd kernel per sample. Default: kernel 3, 5 or 7.

    The kernel is uniform over ``3, 5, ..., 3 + 2 * round(2 * strength)`` (so strength
    0 still smooths with kernel 3), edges use replicate padding. One depthwise
    average is computed per candidate kernel and selected per sample.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    apply = _draw_apply(x, p, generator)
    b, c, t = x.shape
    n_kernels = 1 + round(2 * strength)
    choice = _uniform_int(_rand((b,), x, generator), n_kernels).view(-1, 1, 1)
    half = n_kernels  # half-width of the largest kernel, 3 + 2 * (n_kernels - 1)
    xp = F.pad(x.to(_compute_dtype(x)), (half, half), mode="replicate")
    out = torch.empty_like(xp[..., :t])
    for i in range(n_kernels):
        k = 3 + 2 * i
        weight = torch.full((c, 1, k), 1.0 / k, dtype=xp.dtype, device=x.device)
        avg = F.conv1d(xp[..., half - i - 1 : half + i + 1 + t], weight, groups=c)
        out = torch.where(choice == i, avg, out)
    return _select(apply, out, x, p)


def freq_mask(
    x: Tensor, generator: torch.Generator, *, strength: float = 1.0, p: float = 1.0
) -> Tensor:
    """Zero a random band of rFFT bins. Default: band width 1..0.1·(T//2) bins.

    Width is uniform on ``[1, min(max(1, round(0.1 * (T // 2) * strength)), T // 2)]``;
    the band lies among bins ``1..T//2`` (the DC bin is never masked, so the mean is
    kept) and is shared by the sample's channels.
    """
    _check(x, generator, strength, p)
    if p == 0.0:
        return x.clone()
    b, _, t = x.shape
    apply = _draw_apply(x, p, generator)
    nb = t // 2  # maskable bins 1..nb
    m = min(_max_len(0.1, nb, strength), nb)
    u = _rand((b, 2), x, generator)
    if m == 0:
        return x.clone()
    width = 1 + _uniform_int(u[:, 0], m)
    start = 1 + _uniform_int(u[:, 1], nb - width + 1)
    mask = _time_block_mask(x, start, width, nb + 1).unsqueeze(1)
    spec = torch.fft.rfft(x.to(_compute_dtype(x)), dim=-1)
    spec = spec.masked_fill(mask, 0.0)
    out = torch.fft.irfft(spec, n=t, dim=-1)
    return _select(apply, out, x, p)


# -------------------------------------------------------------------- registry/policy

AUGMENTATIONS: dict[str, AugmentFn] = {
    "jitter": jitter,
    "scaling": scaling,
    "magnitude_warp": magnitude_warp,
    "time_warp": time_warp,
    "crop_resize": crop_resize,
    "time_shift": time_shift,
    "blockout": blockout,
    "channel_dropout": channel_dropout,
    "flip": flip,
    "sign_flip": sign_flip,
    "smoothing": smoothing,
    "freq_mask": freq_mask,
}
"""Augmentations by name."""
