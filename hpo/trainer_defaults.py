"""The defaults a trainer's parameter schema gives, for what a study file leaves unset.

A study that does not write ``epochs`` still trains for the schema's default: the
pruner's last rung, the never-judged final epoch and an OOM retry's halved batch must
all see the number the trainer will use, not "unknown".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def trainer_param_defaults(trainer: str | None, names: Iterable[str]) -> dict[str, Any]:
    """The schema defaults of ``names`` (those with one that is not None); {} without a schema.

    A trainer that cannot be loaded has no defaults here: the study checks report it.
    """
    if not trainer:
        return {}
    from trainers.registry import resolve_trainer

    try:
        schema = resolve_trainer(trainer).params_schema
    except Exception:
        return {}
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
