"""Policies: :class:`AugSpec` steps, the named :data:`POLICIES`, recipe strings and
:func:`parse_policy`, which the trainer's parameter schema shares with :class:`Augmenter`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainers.augment._ops import AUGMENTATIONS


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
