"""The defaults a trainer's parameter schema gives, for what a study file leaves unset.

A study that does not write ``epochs`` still trains for the schema's default: the
pruner's last rung, the never-judged final epoch and an OOM retry's halved batch must
all see the number the trainer will use, not "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel


def trainer_schema(trainer: str | None) -> type[BaseModel] | None:
    """The trainer's parameter schema; None without one, or for a trainer that cannot be
    loaded here (the study checks report that)."""
    if not trainer:
        return None
    from trainers.registry import resolve_trainer

    try:
        return resolve_trainer(trainer).params_schema
    except Exception:
        return None


def trainer_param_defaults(trainer: str | None, names: Iterable[str]) -> dict[str, Any]:
    """The schema defaults of ``names`` (those with one that is not None); {} without a schema."""
    schema = trainer_schema(trainer)
    if schema is None:
        return {}
    defaults: dict[str, Any] = {}
    for name in names:
        field = schema.model_fields.get(name)
        if field is not None and not field.is_required():
            value = field.get_default(call_default_factory=True)
            if value is not None:
                defaults[name] = value
    return defaults


def builtin_trainer(trainer: str) -> bool:
    """Built-in trainers report once per epoch, so their epoch counts are step counts."""
    return ":" not in trainer
