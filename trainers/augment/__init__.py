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

Layout: one concept per module, all re-exported here (import from
``trainers.augment``, not from the private modules): ``_common`` (the
:class:`AugmentFn` protocol and the batched helpers), ``_ops`` (the augmentations and
:data:`AUGMENTATIONS`), ``_mixup`` (:func:`mixup_views`), ``_policy`` (:class:`AugSpec`,
:data:`POLICIES`, recipe strings, :func:`parse_policy`) and ``_augmenter``
(:class:`Augmenter`). The policy parser needs the registry's names, so
``trainers.params`` (which imports :func:`parse_policy`) loads torch, as it did before
the split, and nothing more.
"""

from __future__ import annotations

from trainers.augment._augmenter import Augmenter
from trainers.augment._common import AugmentFn
from trainers.augment._mixup import mixup_views
from trainers.augment._ops import (
    AUGMENTATIONS,
    blockout,
    channel_dropout,
    crop_resize,
    flip,
    freq_mask,
    jitter,
    magnitude_warp,
    scaling,
    sign_flip,
    smoothing,
    time_shift,
    time_warp,
)
from trainers.augment._policy import POLICIES, AugSpec, parse_policy
from trainers.augment._policy import PolicyConfig as PolicyConfig

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
