"""What the checks share: how a value is shown, and how far a cross-check enumerates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hpo.config import CategoricalParam, ParamSpec
from hpo.errors import short_repr


def _short(value: object, limit: int = 60) -> str:
    return short_repr(value, limit)


MAX_COMBINATIONS = 256
"""The most combinations of the other searched values a cross-field check tries."""


def _active(
    values: Mapping[str, Any], space: Mapping[str, ParamSpec]
) -> list[dict[str, Any]] | None:
    """The trials ``values`` make: less the parameters whose ``if`` they leave unmet, which
    a trial does not sample (it keeps the fixed value or the trainer's default).

    An ``if`` that reads a range cannot be decided from the few values a check tries
    (``if: {depth: 2}`` with ``depth: {low: 1, high: 3}`` tried at 1 and 3), so both
    trials are returned, with the parameter and without. ``None`` on a cycle.
    """
    from hpo.space import condition_holds, dependency_order

    try:
        order = [n for n in dependency_order(space) if n in values]
    except ValueError:  # a cycle of conditions: reported by the space's own checks
        return None
    variants: list[dict[str, Any]] = [{}]
    for name in order:
        spec = space[name]
        condition = spec.condition or {}
        ranges = {p for p in condition if p in space and not isinstance(space[p], CategoricalParam)}
        decided = spec.model_copy(
            update={"condition": {p: condition[p] for p in condition if p not in ranges}}
        )
        forked = []
        for chosen in variants:
            holds = condition_holds(spec, chosen)
            # undecided: the categorical part holds and a range it reads is drawn
            undecided = (
                bool(ranges) and ranges <= chosen.keys() and condition_holds(decided, chosen)
            )
            if holds or undecided:
                forked.append({**chosen, name: values[name]})
            if not holds or undecided:
                forked.append(chosen)
        variants = forked
    return variants


def _with_parents(names: Iterable[str], space: Mapping[str, ParamSpec]) -> list[str]:
    """``names`` and the parameters their ``if`` reads (which decide whether they are
    sampled), in the space's order."""
    out = set(names)
    todo = list(out)
    while todo:
        for parent in space[todo.pop()].condition or {}:
            if parent in space and parent not in out:
                out.add(parent)
                todo.append(parent)
    return [n for n in space if n in out]
