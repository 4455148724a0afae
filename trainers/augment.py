"""Batched time-series augmentations for contrastive learning.

Every augmentation takes ``x`` of shape ``(B, C, T)`` (floating point) and a
``torch.Generator`` that lives on ``x``'s device, and returns a *new* tensor of the
same shape, dtype and device. Work is vectorised over the batch: each sample gets
its own random draws, there are no per-sample Python loops and no numpy.

Two knobs configure each augmentation:

``strength``
    Scale of the effect; ``1.0`` is the default magnitude documented on each
    function, ``0.0`` makes the augmentation (nearly) a no-op.
``p``
    Per-sample probability of applying it. ``p == 0`` returns a copy of ``x``
    without touching the generator. For ``p > 0`` the per-sample "apply" coin is
    always drawn first, then the parameters for every sample, so for a fixed seed a
    sample that is augmented receives the same transform whatever ``p`` is.

Inputs are assumed to be standardised (roughly zero mean, unit variance per
channel), so absolute magnitudes such as the jitter sigma are in standardised
units and "zeroing" a region means setting it to the mean.

Random numbers are always drawn in float32 (so a seed gives the same draws for
float32, float64 and bfloat16 inputs); operations that need it (FFT, interpolation)
run in float32 for half-precision inputs and the result is cast back.

:class:`Augmenter` chains augmentations described by :class:`AugSpec` entries and is
built from a policy name (see :data:`POLICIES`) or an explicit list via
:meth:`Augmenter.from_config`. The two views of a contrastive pair are produced by
calling the augmenter twice with the same generator.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "AUGMENTATIONS",
    "POLICIES",
    "AugSpec",
    "AugmentFn",
    "Augmenter",
    "blockout",
    "channel_dropout",
    "crop_resize",
    "flip",
    "freq_mask",
    "jitter",
    "magnitude_warp",
    "mixup_views",
    "parse_policy",
    "scaling",
    "sign_flip",
    "smoothing",
    "time_shift",
    "time_warp",
]


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


def _unknown(kind: str, name: object, allowed: Sequence[str]) -> ValueError:
    return ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(sorted(allowed))}")


@dataclass(frozen=True)
class AugSpec:
    """One step of an augmentation policy: registered ``name``, probability and strength."""

    name: str
    p: float = 0.5
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in AUGMENTATIONS:
            raise _unknown("augmentation", self.name, list(AUGMENTATIONS))
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"{self.name}: p must be in [0, 1], got {self.p}")
        if not (self.strength >= 0.0 and math.isfinite(self.strength)):
            raise ValueError(f"{self.name}: strength must be finite and >= 0, got {self.strength}")


_DEFAULT = [
    AugSpec("jitter", p=0.8),
    AugSpec("scaling", p=0.8),
    AugSpec("time_shift", p=0.5),
    AugSpec("magnitude_warp", p=0.5),
    AugSpec("blockout", p=0.5),
]

POLICIES: dict[str, list[AugSpec]] = {
    "none": [],
    "weak": [AugSpec("jitter", p=0.5), AugSpec("scaling", p=0.5)],
    "default": _DEFAULT,
    "strong": [
        AugSpec("jitter", p=0.9),
        AugSpec("scaling", p=0.9),
        AugSpec("time_shift", p=0.8),
        AugSpec("magnitude_warp", p=0.8),
        AugSpec("blockout", p=0.8),
        AugSpec("time_warp", p=0.6),
        AugSpec("crop_resize", p=0.6),
        AugSpec("channel_dropout", p=0.5),
        AugSpec("freq_mask", p=0.5),
    ],
    "simclr_ts": [
        AugSpec("flip", p=0.5),
        AugSpec("blockout", p=0.5),
        AugSpec("jitter", p=0.8),
        AugSpec("crop_resize", p=0.8),
        AugSpec("magnitude_warp", p=0.5),
        AugSpec("time_warp", p=0.5),
        AugSpec("smoothing", p=0.3),
    ],
}
"""Named policies: ordered lists of :class:`AugSpec`."""

_SPEC_KEYS = frozenset({"name", "p", "strength"})

PolicyConfig = str | Sequence[str | Mapping[str, float | str] | AugSpec]


def _parse_entry(entry: str | Mapping[str, float | str] | AugSpec) -> AugSpec:
    if isinstance(entry, AugSpec):
        return entry
    if isinstance(entry, str):
        return AugSpec(entry)
    if isinstance(entry, Mapping):
        extra = set(entry) - _SPEC_KEYS
        if extra:
            raise ValueError(
                f"unknown augmentation keys {sorted(extra)}; allowed: name, p, strength"
            )
        if "name" not in entry:
            raise ValueError(f"augmentation entry {dict(entry)!r} has no 'name'")
        name = entry["name"]
        if not isinstance(name, str):
            raise ValueError(f"augmentation name must be a string, got {name!r}")
        try:
            p = float(entry.get("p", 0.5))
            strength = float(entry.get("strength", 1.0))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: p and strength must be numbers ({exc})") from None
        return AugSpec(name, p=p, strength=strength)
    raise ValueError(f"augmentation entry must be a name or a mapping, got {entry!r}")


_RECIPE_STEP = re.compile(r"\s*([A-Za-z_]\w*)\s*(?:\(([^()]*)\))?\s*")


def _recipe_steps(text: str) -> list[str]:
    """``text`` split at each ``+`` outside parentheses (``strength=1e+2`` stays whole)."""
    steps, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "+" and depth == 0:
            steps.append(text[start:i])
            start = i + 1
    return [*steps, text[start:]]


def _parse_recipe(text: str) -> list[AugSpec]:
    """``"jitter(strength=2.5) + channel_dropout(p=0.4)"``: a list in one string.

    A search space can only offer strings, so a categorical of recipes is how a study
    compares sets of augmentations and their strengths. Parsed by a regular expression;
    nothing in it is evaluated. Unknown names are reported before bad settings.
    """
    policies = ", ".join(sorted(POLICIES))
    if not text.strip():
        raise ValueError(f"augmentation policy is empty; allowed: {policies}, or a recipe")
    steps: list[tuple[str, str | None]] = []
    for step in _recipe_steps(text):
        match = _RECIPE_STEP.fullmatch(step)
        if match is None:
            raise ValueError(
                f"cannot read {step.strip()!r} in augmentation recipe {text!r}: write "
                "name or name(strength=..., p=...), joined by '+'"
            )
        steps.append((match.group(1), match.group(2)))
    if len(steps) == 1 and steps[0][1] is None and steps[0][0] not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation policy {steps[0][0]!r}; allowed: {policies}, or "
            f"augmentations joined by '+' ({', '.join(sorted(AUGMENTATIONS))})"
        )
    unknown = [name for name, _ in steps if name not in AUGMENTATIONS]
    if unknown:
        raise _unknown("augmentation", unknown[0], list(AUGMENTATIONS))
    return [_recipe_spec(name, args) for name, args in steps]


def _recipe_spec(name: str, args: str | None) -> AugSpec:
    """One step's ``strength=`` and ``p=`` (each at most once) as an :class:`AugSpec`."""
    entry: dict[str, float | str] = {"name": name}
    for item in (args or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in ("p", "strength"):
            raise ValueError(f"{name}: settings are p=... and strength=..., got {item.strip()!r}")
        if key in entry:
            raise ValueError(f"{name}: {key} is given twice")
        entry[key] = value
    return _parse_entry(entry)


def parse_policy(policy: PolicyConfig) -> list[AugSpec]:
    """The steps of a policy name or an explicit list, or ``ValueError`` naming the problem.

    Shared by :meth:`Augmenter.from_config` and the ``augment`` check of
    :class:`trainers.params.ContrastiveParams`, so both allow exactly the same configs.
    """
    if isinstance(policy, str):
        if policy in POLICIES:
            return list(POLICIES[policy])
        return _parse_recipe(policy)
    if isinstance(policy, Sequence):
        return [_parse_entry(e) for e in policy]
    raise ValueError(f"policy must be a name or a list, got {policy!r}")


class Augmenter:
    """Applies a sequence of :class:`AugSpec` in order to a ``(B, C, T)`` batch."""

    def __init__(self, specs: Sequence[AugSpec]) -> None:
        self._specs = tuple(specs)
        for spec in self._specs:
            if not isinstance(spec, AugSpec):
                raise TypeError(f"expected AugSpec, got {spec!r}")

    @classmethod
    def from_config(
        cls,
        policy: PolicyConfig,
        strength: float = 1.0,
        p: float | None = None,
    ) -> Augmenter:
        """Build from a policy name or a list of names / ``{"name", "p", "strength"}`` dicts.

        ``strength`` multiplies every spec's strength; ``p``, when given, replaces
        every spec's probability. Unknown names raise ``ValueError`` listing the
        allowed ones.
        """
        base = parse_policy(policy)
        if not (strength >= 0.0 and math.isfinite(strength)):
            raise ValueError(f"strength must be finite and >= 0, got {strength}")
        if p is not None and not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        specs = [
            AugSpec(s.name, p=s.p if p is None else p, strength=s.strength * strength) for s in base
        ]
        return cls(specs)

    @property
    def specs(self) -> tuple[AugSpec, ...]:
        """The steps, in application order."""
        return self._specs

    @property
    def names(self) -> list[str]:
        """Augmentation names, in application order."""
        return [s.name for s in self._specs]

    def to_config(self) -> list[dict[str, float | str]]:
        """A list accepted by :meth:`from_config` that rebuilds this augmenter."""
        return [{"name": s.name, "p": s.p, "strength": s.strength} for s in self._specs]

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Apply every step in order; always returns a new tensor."""
        if not self._specs:
            _check(x, generator, 1.0, 1.0)
            return x.clone()
        for spec in self._specs:
            x = AUGMENTATIONS[spec.name](x, generator, strength=spec.strength, p=spec.p)
        return x

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        inner = ", ".join(f"{s.name}(p={s.p:g}, strength={s.strength:g})" for s in self._specs)
        return f"Augmenter([{inner}])"
