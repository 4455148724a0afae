"""Sampling a declared search space, conditional parameters included."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpo.config import CategoricalParam, FloatParam, IntParam, ParamSpec

if TYPE_CHECKING:
    import optuna


def dependency_order(space: Mapping[str, ParamSpec]) -> list[str]:
    """Names in an order where every condition's parameter is sampled first.

    Declaration order is kept where it already works; a cycle is an error.
    """
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise ValueError(f"conditions form a cycle: {cycle}")
        state[name] = 1
        spec = space[name]
        for other in spec.condition or {}:
            if other in space:
                visit(other, [*chain, name])
        state[name] = 2
        order.append(name)

    for name in space:
        visit(name, [])
    return order


def comparable(value: Any) -> Any:
    """``value`` as the service compares parameters: a float at 12 significant digits.

    Optuna's samplers put a stepped float's grid point at ``low + k * step``, which
    floating point makes 0.15000000000000002 where the start-up design, an ``enqueue``
    row or an ``if:`` says 0.15: one grid point, which conditions, duplicates and
    pruning groups must see as one value.
    """
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.12g}")
    return value


def condition_holds(spec: ParamSpec, chosen: Mapping[str, Any]) -> bool:
    """True when every ``if`` entry matches the values sampled so far."""
    for other, wanted in (spec.condition or {}).items():
        if other not in chosen:
            return False
        values = [comparable(v) for v in (wanted if isinstance(wanted, list) else [wanted])]
        value = comparable(chosen[other])
        if not any(type(value) is type(v) and value == v for v in values) and value not in values:
            return False
    return True


def suggest_params(
    trial: optuna.Trial | optuna.trial.FixedTrial, space: Mapping[str, ParamSpec]
) -> dict[str, Any]:
    """Ask the trial for every active parameter, in dependency order."""
    chosen: dict[str, Any] = {}
    for name in dependency_order(space):
        spec = space[name]
        if not condition_holds(spec, chosen):
            continue
        if isinstance(spec, FloatParam):
            chosen[name] = trial.suggest_float(
                name, spec.low, spec.high, log=spec.log, step=spec.step
            )
        elif isinstance(spec, IntParam):
            chosen[name] = trial.suggest_int(
                name, spec.low, spec.high, log=spec.log, step=spec.step
            )
        else:
            chosen[name] = trial.suggest_categorical(name, spec.choices)
    return chosen


def distribution_of(spec: ParamSpec) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution a trial records for ``spec`` (as :func:`suggest_params` asks)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(spec, FloatParam):
        return FloatDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    if isinstance(spec, IntParam):
        return IntDistribution(spec.low, spec.high, log=spec.log, step=spec.step)
    return CategoricalDistribution(spec.choices)


def space_as_dict(space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """Plain data form of the space, as written in a study file."""
    return {
        name: spec.model_dump(by_alias=True, exclude_none=True, exclude_defaults=False)
        for name, spec in space.items()
    }


def space_fingerprint(space: Mapping[str, ParamSpec]) -> str:
    """Stable hash of the space, stored with the study to refuse silent changes on resume."""
    canonical = json.dumps(space_as_dict(space), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def describe_param(spec: ParamSpec) -> str:
    """One-line human description, used by ``hpo validate``."""
    if isinstance(spec, CategoricalParam):
        text = "one of " + ", ".join(repr(c) for c in spec.choices)
    else:
        kind = "float" if isinstance(spec, FloatParam) else "int"
        text = f"{kind} in [{spec.low}, {spec.high}]"
        if spec.log:
            text += ", log scale"
        if isinstance(spec, FloatParam) and spec.step is not None:
            text += f", step {spec.step}"
        if isinstance(spec, IntParam) and spec.step != 1:
            text += f", step {spec.step}"
    if spec.condition:
        cond = ", ".join(
            f"{k} in {v}" if isinstance(v, list) else f"{k} = {v!r}"
            for k, v in spec.condition.items()
        )
        text += f"  (only when {cond})"
    return text


class GridError(ValueError):
    """The declared space gives no grid the grid sampler can hold; one line naming the field."""


MAX_GRID_POINTS = 1_000_000
"""The most combinations a grid may have: Optuna's grid sampler holds every one in memory."""


def grid_size(name: str, spec: ParamSpec) -> int:
    """How many values :func:`grid_values` gives, counted without making them."""
    if isinstance(spec, CategoricalParam):
        return len(spec.choices)
    if isinstance(spec, IntParam):
        if spec.log:
            raise GridError(f"space.{name}: the grid sampler cannot enumerate a log-scale int")
        return (spec.high - spec.low) // spec.step + 1
    if spec.step is None:
        raise GridError(
            f"space.{name}: the grid sampler needs a step (or categorical choices) for float parameters"
        )
    steps = (spec.high - spec.low) / spec.step if spec.step > 0 else math.inf
    if not math.isfinite(steps):  # ``high: 1e300, step: 1e-10``: more values than any limit
        raise GridError(
            f"space.{name}: step {spec.step!r} gives more grid values than the grid sampler's "
            f"limit of {MAX_GRID_POINTS}; use a larger step, fewer choices or another sampler"
        )
    # the last point may not pass high (a step that does not divide the range stops short)
    return math.floor(steps + 1e-9) + 1


def grid_values(name: str, spec: ParamSpec) -> list[Any]:
    """Every value of a parameter, for the grid sampler; floats need a step."""
    size = _checked_grid_size(name, spec)
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    if isinstance(spec, IntParam):
        return list(range(spec.low, spec.high + 1, spec.step))
    assert spec.step is not None  # grid_size refused a float without one
    return [round(spec.low + i * spec.step, 12) for i in range(size)]


def grid_problems(space: Mapping[str, ParamSpec], *, conditions: bool = True) -> list[str]:
    """Every reason the grid sampler cannot take ``space``, one line each (``conditions``:
    with the repeats a conditional parameter makes, which only a run minds)."""
    problems: list[str] = []
    sizes: list[int] = []
    for name, spec in space.items():
        try:
            sizes.append(_checked_grid_size(name, spec))
        except GridError as exc:
            problems.append(str(exc))
            continue
        if conditions and spec.condition is not None and sizes[-1] > 1:
            problems.append(conditional_grid_problem(name, sizes[-1]))
    total = math.prod(sizes)
    if not problems and total > MAX_GRID_POINTS:
        problems.append(
            f"space: {total} grid combinations, more than the grid sampler's limit of "
            f"{MAX_GRID_POINTS}; use larger steps, fewer choices or another sampler"
        )
    return problems


def conditional_grid_problem(name: str, size: int) -> str:
    """Optuna's grid has a point for each value of a parameter an ``if:`` turns off."""
    return (
        f"space.{name}: the grid sampler gives each of its {size} values a grid point even "
        "where its if: turns it off, so those configurations would train again; use sampler "
        "bruteforce, which follows conditions"
    )


def bruteforce_problems(space: Mapping[str, ParamSpec]) -> list[str]:
    """Every parameter the brute-force sampler cannot enumerate, one line each.

    It lists a parameter's values at every trial, so a parameter may have at most
    :data:`MAX_GRID_POINTS` of them, as on the grid (``step: 1e-30`` failed every trial).
    """
    problems = []
    for name, spec in space.items():
        if isinstance(spec, FloatParam) and spec.step is None:
            if spec.low != spec.high:
                problems.append(
                    f"space.{name}: the bruteforce sampler tries every value, so a float needs "
                    "a step (or categorical choices)"
                )
            continue
        if isinstance(spec, CategoricalParam):
            continue
        if isinstance(spec, IntParam):
            size = (spec.high - spec.low) // spec.step + 1 if spec.step > 0 else 0
        else:
            try:
                size = grid_size(name, spec)
            except GridError:
                size = MAX_GRID_POINTS + 1
        if size > MAX_GRID_POINTS:
            problems.append(
                f"space.{name}: more than {MAX_GRID_POINTS} values, the most the bruteforce "
                "sampler is given for one parameter; use a larger step or another sampler"
            )
    return problems


def grid_space(space: Mapping[str, ParamSpec]) -> dict[str, list[Any]]:
    """The grid sampler's ``search_space``; every combination must fit in memory."""
    problems = grid_problems(space, conditions=False)  # the file's checks refuse repeats
    if problems:
        raise GridError(problems[0])
    return {name: grid_values(name, spec) for name, spec in space.items()}


def _checked_grid_size(name: str, spec: ParamSpec) -> int:
    size = grid_size(name, spec)
    if size > MAX_GRID_POINTS:
        raise GridError(
            f"space.{name}: {size} grid values, more than the grid sampler's limit of "
            f"{MAX_GRID_POINTS}; use a larger step, fewer choices or another sampler"
        )
    return size
