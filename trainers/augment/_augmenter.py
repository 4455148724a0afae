"""The :class:`Augmenter`: a policy's steps applied in order to a ``(B, C, T)`` batch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from trainers.augment._common import _check
from trainers.augment._ops import AUGMENTATIONS
from trainers.augment._policy import AugSpec, PolicyConfig, parse_policy


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
