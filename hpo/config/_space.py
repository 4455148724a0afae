"""The ``space`` section, entry by entry, so each bad parameter gets its own clean path."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from hpo.config._pydantic_errors import _pydantic_problems
from hpo.config._schema import CategoricalParam, FloatParam, IntParam, ParamSpec
from hpo.errors import short_repr
from hpo.yaml_loader import (
    printable as _printable,
)

_PARAM_TYPES: dict[str, type[ParamSpec]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


def _parse_space(raw: Any) -> tuple[dict[str, ParamSpec], list[str]]:
    """Parse ``space`` entry by entry so each bad parameter gets its own clean path."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [
            f"space: expected a mapping of parameter name to spec, got {type(raw).__name__}"
        ]
    space: dict[str, ParamSpec] = {}
    problems: list[str] = []
    for name, spec in raw.items():
        if not isinstance(name, str) or not name:
            problems.append(f"space: parameter names must be non-empty strings, got {name!r}")
            continue
        path = f"space.{_printable(name)}"
        if _printable(name) != name:
            problems.append(
                f"{path}: parameter names must be printable text without spaces at either end"
            )
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{path}: expected a mapping like {{type: float, low: 0.1, high: 1.0}}")
            continue
        kind = spec.get("type")
        model = _PARAM_TYPES.get(kind) if isinstance(kind, str) else None
        if model is None:
            problems.append(
                f"{path}.type: must be one of float, int, categorical (got {short_repr(kind)})"
            )
            continue
        spec = dict(spec)
        choice_problems = (
            _choice_problems(path, spec.get("choices")) if kind == "categorical" else []
        )
        if choice_problems:
            problems.extend(choice_problems)
            # Still check the rest of the entry, with the bad choices left out.
            spec["choices"] = [c for c in spec["choices"] if _is_choice(c)] or [None]
        try:
            validated = model.model_validate(spec)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, ("space", name), model))
            continue
        if not choice_problems:
            space[name] = validated
    return space, problems


def _is_choice(value: Any) -> bool:
    """Categorical choices are scalars Optuna can store; floats must be finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


def _choice_problems(path: str, choices: Any) -> list[str]:
    """One line per choice that is not a storable scalar (pydantic would give four each)."""
    if not isinstance(choices, list):
        return []
    out = []
    for i, choice in enumerate(choices):
        if _is_choice(choice):
            continue
        what = repr(choice) if isinstance(choice, float) else type(choice).__name__
        out.append(
            f"{path}.choices.{i}: must be a boolean, a finite number, a string or null (got {what})"
        )
    return out


def _range_problems(name: str, spec: ParamSpec) -> list[str]:
    path = f"space.{name}"
    out: list[str] = []
    if isinstance(spec, FloatParam | IntParam):
        if spec.low > spec.high:
            out.append(f"{path}: low ({spec.low}) must be <= high ({spec.high})")
        if spec.log and spec.low <= 0:
            out.append(f"{path}: low must be > 0 when log is true")
        if spec.log and isinstance(spec, FloatParam) and spec.step is not None:
            out.append(f"{path}: step and log cannot be used together")
        if spec.log and isinstance(spec, IntParam) and spec.step != 1:
            out.append(f"{path}: step must be 1 when log is true")
        if spec.step is not None and spec.step <= 0:
            out.append(f"{path}: step must be > 0")
        if isinstance(spec, FloatParam) and not math.isfinite(spec.high - spec.low):
            out.append(f"{path}: high - low must be a finite float (the range is too wide)")
        elif isinstance(spec, FloatParam) and _too_many_steps(spec):
            out.append(
                f"{path}: step {spec.step!r} splits [{spec.low}, {spec.high}] into more than "
                f"10^15 steps, more than a float can tell apart; use a larger "
                "step, or leave step out for a continuous range"
            )
    if isinstance(spec, CategoricalParam):
        seen: list[Any] = []
        for choice in spec.choices:
            twin = next((s for s in seen if choice == s), _NONE)
            if twin is not _NONE and type(choice) is type(twin):
                out.append(f"{path}.choices: duplicate choice {choice!r}")
            elif twin is not _NONE:  # 1 == True == 1.0 in Python
                out.append(
                    f"{path}.choices: {choice!r} equals the choice {twin!r}, and Optuna stores "
                    "a choice by the index of the first equal one; keep one of them"
                )
            seen.append(choice)
    return out


_NONE = object()

MAX_FLOAT_STEPS = 1e15
"""The most steps a stepped float range may have: past about 2**53 neighbouring values are
the same float, and Optuna's decimal arithmetic on the range fails (``step: 1e-30``)."""


def _too_many_steps(spec: FloatParam) -> bool:
    """Whether a stepped float range has more than :data:`MAX_FLOAT_STEPS` steps."""
    if spec.step is None or spec.step <= 0 or spec.high <= spec.low:
        return False
    steps = (spec.high - spec.low) / spec.step
    return not math.isfinite(steps) or steps > MAX_FLOAT_STEPS


def _values_of(spec: ParamSpec) -> list[Any]:
    """Representative values a parameter can take (all choices, or the range ends).

    A stepped range ends at its last step, as Optuna narrows it: ``{low: 48, high: 98,
    step: 48}`` samples 48 and 96, never 98.
    """
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    if spec.step is None or spec.step <= 0 or spec.high <= spec.low:  # a bad step has its line
        return [spec.low, spec.high]
    if isinstance(spec, FloatParam) and (
        _too_many_steps(spec) or not math.isfinite(spec.high - spec.low)
    ):
        return [spec.low, spec.high]  # refused in its own line; the decimal division would fail
    if isinstance(spec, IntParam):
        return [spec.low, spec.low + (spec.high - spec.low) // spec.step * spec.step]
    low, step = Decimal(str(spec.low)), Decimal(str(spec.step))
    return [spec.low, float((Decimal(str(spec.high)) - low) // step * step + low)]


def _can_take(spec: ParamSpec, value: Any) -> bool:
    if isinstance(spec, CategoricalParam):
        return any(type(value) is type(c) and value == c for c in spec.choices)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(spec, IntParam) and not float(value).is_integer():
        return False
    return spec.low <= value <= spec.high


def _condition_problems(space: Mapping[str, ParamSpec], unparsed: Collection[str]) -> list[str]:
    """``unparsed``: declared parameters whose own spec failed (and was reported already)."""
    out: list[str] = []
    for name, spec in space.items():
        if not spec.condition:
            continue
        for other, wanted in spec.condition.items():
            path = f"space.{name}.if.{other}"
            if other == name:
                out.append(f"{path}: a parameter cannot depend on itself")
                continue
            if other in unparsed:
                continue
            if other not in space:
                known = ", ".join(n for n in space if n != name) or "none"
                out.append(f"{path}: unknown parameter {other!r}; parameters: {known}")
                continue
            values = wanted if isinstance(wanted, list) else [wanted]
            if not values:
                out.append(f"{path}: empty list of values can never hold")
            target = space[other]
            if isinstance(target, FloatParam) and target.step is None and target.low < target.high:
                # a sampled float equals a given value with probability zero
                out.append(
                    f"{path}: {other} is a continuous float range, so it never equals "
                    f"{'any of ' if isinstance(wanted, list) else ''}{_printable(wanted)}; "
                    f"give {other} a step or make it categorical"
                )
                continue
            for value in values:
                if not _can_take(space[other], value):
                    allowed = ", ".join(repr(v) for v in _values_of(space[other]))
                    out.append(
                        f"{path}: {other} can never be {value!r} "
                        f"(it takes {allowed}{'' if isinstance(space[other], CategoricalParam) else ' range'})"
                    )
                elif not _on_step_grid(space[other], value):
                    out.append(
                        f"{path}: {other} can never be {value!r}: it is off the step grid "
                        f"(low {space[other].low}, step {space[other].step})"  # type: ignore[union-attr]
                    )
    try:
        from hpo.space import dependency_order

        dependency_order(space)
    except ValueError as exc:
        out.append(f"space: {exc}")
    if not out:  # a cycle or a bad entry makes the chains below meaningless
        out += [line for name in space if (line := _never_holds(space, name))]
    return out


def _never_holds(space: Mapping[str, ParamSpec], name: str) -> str | None:
    """Why ``name``'s ``if`` can never hold, counting the ``if`` of each parent it needs.

    ``y`` asked when ``choice: a`` and ``margin: 0.5``, where ``margin`` itself is asked
    only when ``choice: c``, is never in any trial: the file said nothing and no trial
    ever searched ``y``.
    """
    from hpo.space import comparable

    def same(a: Any, b: Any) -> bool:
        a, b = comparable(a), comparable(b)
        return type(a) is type(b) and a == b

    needed: dict[str, tuple[list[Any], str]] = {}
    todo, seen = [name], {name}
    while todo:
        current = todo.pop()
        for other, wanted in (space[current].condition or {}).items():
            if other not in space:  # an entry that failed its own check: not judged
                continue
            values = list(wanted) if isinstance(wanted, list) else [wanted]
            if other in needed:
                before, source = needed[other]
                common = [v for v in before if any(same(v, w) for w in values)]
                if not common:
                    return (
                        f"space.{_printable(name)}.if: can never hold: it needs {other} to be "
                        f"{_either(before)} ({_whose(source, name)}) and {_either(values)} "
                        f"({_whose(current, name)})"
                    )
                needed[other] = (common, source)
            else:
                needed[other] = (values, current)
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return None


def _either(values: Sequence[Any]) -> str:
    return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(map(repr, values))


def _whose(source: str, name: str) -> str:
    return "its own if" if source == name else f"the if of {_printable(source)}, which it needs"


def _enqueue_problems(
    space: Mapping[str, ParamSpec],
    enqueue: Sequence[Mapping[str, Any]],
    unseen: Collection[str] = (),
) -> list[str]:
    """Every enqueued value must be one the space itself could produce.

    ``unseen``: parameters whose own entry failed (said on their own line); their values
    are not judged, nor called "not a parameter of the space".
    """
    out: list[str] = []
    for i, params in enumerate(enqueue):
        for name, value in params.items():
            if name in unseen:
                continue
            path = f"enqueue.{i}.{_printable(name)}"
            spec = space.get(name)
            if spec is None:
                known = ", ".join(space) or "none"
                out.append(f"{path}: not a parameter of the space; parameters: {known}")
            elif not _can_take(spec, value) or (
                isinstance(spec, IntParam) and not isinstance(value, int)
            ):
                allowed = ", ".join(repr(v) for v in _values_of(spec))
                kind = "" if isinstance(spec, CategoricalParam) else " range"
                out.append(f"{path}: {value!r} is not in the space (it takes {allowed}{kind})")
            elif not _on_step_grid(spec, value):
                out.append(
                    f"{path}: {value!r} is off the step grid (low {spec.low}, step {spec.step})"  # type: ignore[union-attr]
                )
            elif _condition_fails(spec, params):
                assert spec.condition is not None
                out.append(
                    f"{path}: never used, the entry's "
                    + ", ".join(f"{k}={params[k]!r}" for k in spec.condition)
                    + f" leaves {_printable(name)} out (if: {spec.condition})"
                )
    return out


def _as_declared(
    space: Mapping[str, ParamSpec], enqueue: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Enqueued whole numbers of float parameters as floats: Optuna hands an enqueued value
    to the trainer as written, so ``v: 1`` reached it as an int, unlike a sampled ``v``."""
    return [
        {
            name: float(value)
            if isinstance(space.get(name), FloatParam) and type(value) is int
            else value
            for name, value in params.items()
        }
        for params in enqueue
    ]


def _condition_fails(spec: ParamSpec, params: Mapping[str, Any]) -> bool:
    """Whether ``params`` sets every parameter of ``spec``'s condition, and it does not hold."""
    if not spec.condition or not all(k in params for k in spec.condition):
        return False
    from hpo.space import condition_holds

    return not condition_holds(spec, params)


def _on_step_grid(spec: ParamSpec, value: Any) -> bool:
    if isinstance(spec, CategoricalParam) or not spec.step:
        return True
    if isinstance(spec, FloatParam) and _too_many_steps(spec):
        return True  # the step is refused in its own line
    steps = (value - spec.low) / spec.step
    if not math.isfinite(steps):
        return True  # a value the range check refuses anyway
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))
