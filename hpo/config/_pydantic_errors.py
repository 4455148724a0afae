"""Pydantic's errors as one line each, named by their path in the study file."""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, Union

from pydantic import BaseModel, ValidationError

from hpo.errors import short_repr
from hpo.yaml_loader import (
    format_loc as _format_loc,
)

_UNION_WORDS: dict[str, str] = {
    "workers.gpus": "all, none, or GPU indices like [0, 1], 0 or '0,1'",
}
"""What a union field takes, where the generic wording of its members would be vague."""

_MISMATCH_SUFFIXES = ("_type", "_parsing", "literal_error", "is_instance_of", "none_required")


def _pydantic_problems(
    exc: ValidationError, prefix: Sequence[int | str] = (), model: type[BaseModel] | None = None
) -> list[str]:
    """One line per problem. A value that fits no member of a union (``workers.gpus: 0``)
    is one line saying what the field takes, not one per member with pydantic's type tags
    (``workers.gpus.list[int]``) in the path."""
    problems: list[str] = []
    unions: dict[tuple[Any, ...], list[tuple[str, Any]]] = {}
    for err in exc.errors():
        if err["loc"] and err["loc"][-1] == "[key]":  # ``{1: c}``: the key, not its value
            where = _format_loc([*prefix, *err["loc"][:-2]])
            problems.append(f"{where}: keys must be names, got {_shown(err['loc'][-2])}")
            continue
        at = _union_position(model, err["loc"]) if model is not None else None
        if at is None:
            problems.append(_one_problem(err, [*prefix, *err["loc"]], model))
            continue
        field = tuple(err["loc"][:at])
        if field not in unions:
            unions[field] = []
            problems.append("")  # its place in the order; filled in below
        unions[field].append((str(err["loc"][at]), err))
    lines = iter(
        _union_problems(model, [*prefix, *field], list(field), errs)
        for field, errs in unions.items()
    )
    return [line for p in problems for line in ([p] if p else next(lines))]


def _one_problem(err: Any, loc: Sequence[int | str], model: type[BaseModel] | None) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, err["loc"][:-1]) if model is not None else []
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"{_format_loc(loc)}: unknown key{hint}"
    if kind == "missing":
        return f"{_format_loc(loc)}: required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind not in {"value_error", "assertion_error"} and "input" in err:
        msg = f"{msg} (got {_shown(err['input'])})"
    return f"{_format_loc(loc)}: {msg}"


def _union_problems(
    model: type[BaseModel] | None,
    loc: list[int | str],
    field: list[int | str],
    errs: list[tuple[str, Any]],
) -> list[str]:
    """The errors of the members of one union: those of a member the value matched in
    shape (a list with a bad item, a validator's message), else one ``expected`` line."""
    depth = len(field) + 1
    deeper = [
        e for _, e in errs if len(e["loc"]) > depth or not e["type"].endswith(_MISMATCH_SUFFIXES)
    ]
    if deeper:
        out = []
        for err in deeper:
            inner = [*loc, *err["loc"][depth:]]
            line = _one_problem(err, inner, None)
            if line not in out:
                out.append(line)
        return out
    path = _format_loc(loc)
    key = ".".join(str(p) for p in field if not isinstance(p, int))
    words = _UNION_WORDS.get(key) or _members_words(model, field) or ", ".join(t for t, _ in errs)
    return [f"{path}: expected {words} (got {_shown(errs[0][1].get('input'))})"]


def _shown(value: Any) -> str:
    return short_repr(value)


def _union_position(model: type[BaseModel] | None, loc: Sequence[int | str]) -> int | None:
    """The index in ``loc`` of a union member's tag, if the path passes through a union."""
    current: Any = model
    for i, part in enumerate(loc):
        current = _unwrap(current)
        if _union_members(current):
            return i
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (list, tuple, set, frozenset, Sequence) and args and isinstance(part, int):
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    return None


def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` as ``X``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> list[Any]:
    """The members of a union other than ``None`` (``int | None`` is no union to pydantic)."""
    if typing.get_origin(annotation) not in (Union, types.UnionType):
        return []
    members = [m for m in typing.get_args(annotation) if m is not type(None)]
    return members if len(members) > 1 else []


def _members_words(model: type[BaseModel] | None, field: Sequence[int | str]) -> str:
    """``true/false, an integer, a number, a string or null`` for ``bool | int | float | str |
    None``; empty when a member has no plain wording."""
    current: Any = model
    for part in field:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            current = current.model_fields[str(part)].annotation
        else:
            args = typing.get_args(current)
            current = args[-1] if args else None
    current = _unwrap(current)
    words = [_member_words(m) for m in typing.get_args(current)]
    if not all(words):
        return ""
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def _member_words(member: Any) -> str:
    if typing.get_origin(member) is Literal:
        return ", ".join(str(v) for v in typing.get_args(member))
    plain = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if member is type(None):
        return "null"
    if member in plain:
        return plain[member]
    if typing.get_origin(member) is list:
        inner = typing.get_args(member)
        item = plain.get(inner[0], "") if inner else ""
        return f"a list of {item.removeprefix('an ').removeprefix('a ')}s" if item else "a list"
    return ""


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(
            (f.alias or name) for name, f in current.model_fields.items() if not f.exclude
        )
    return []


def _model_in(annotation: Any) -> Any:
    """The model inside ``Model | None`` (``confirm:``), else the annotation as it is."""
    models = [
        arg
        for arg in typing.get_args(annotation)
        if isinstance(arg, type) and issubclass(arg, BaseModel)
    ]
    return models[0] if len(models) == 1 else annotation
