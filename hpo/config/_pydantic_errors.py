"""Pydantic's errors as one line each, named by their path in the study file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from hpo.yaml_loader import (
    format_loc as _format_loc,
)


def _pydantic_problems(
    exc: ValidationError, prefix: Sequence[int | str] = (), model: type[BaseModel] | None = None
) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = [*prefix, *err["loc"]]
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, err["loc"][:-1]) if model is not None else []
            hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
            problems.append(f"{_format_loc(loc)}: unknown key{hint}")
            continue
        if kind == "missing":
            problems.append(f"{_format_loc(loc)}: required")
            continue
        msg = str(err["msg"])
        msg = msg.removeprefix("Value error, ")
        if kind not in {"value_error", "assertion_error"} and "input" in err:
            shown = repr(err["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg = f"{msg} (got {shown})"
        problems.append(f"{_format_loc(loc)}: {msg}")
    return problems


def _allowed_keys(model: type[BaseModel] | None, loc: Sequence[int | str]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(
            (f.alias or name) for name, f in current.model_fields.items() if not f.exclude
        )
    return []
