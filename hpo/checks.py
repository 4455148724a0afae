"""Checks that need more than the schema: Optuna signatures, the trainer, the storage URL.

Everything here runs before a study is created, so a typo costs a second, not a GPU hour.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from hpo.config import ParamSpec, StudyConfig, _values_of
from hpo.pruners import PRUNERS, build_pruner
from hpo.samplers import SAMPLERS, build_sampler, unknown_kwargs_problems
from hpo.storages import storage_problems

_SINGLE_OBJECTIVE_ONLY = {"cmaes"}


def _sampler_problems(cfg: StudyConfig) -> list[str]:
    name = cfg.sampler.name
    if name not in SAMPLERS:
        return [f"sampler.name: unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}"]
    problems = unknown_kwargs_problems("sampler", SAMPLERS[name], cfg.sampler.kwargs)
    if cfg.objective.is_multi and name in _SINGLE_OBJECTIVE_ONLY:
        problems.append(f"sampler.name: {name} does not support multi-objective studies")
    if problems:
        return problems
    try:
        build_sampler(name, cfg.sampler.kwargs, seed=cfg.seed, space=cfg.space)
    except ImportError as exc:
        problems.append(f"sampler.name: {name} needs an extra package ({exc})")
    except (TypeError, ValueError) as exc:
        problems.append(f"sampler: {SAMPLERS[name].__name__} rejected its arguments: {exc}")
    return problems


def _pruner_problems(cfg: StudyConfig) -> list[str]:
    name = cfg.pruner.name
    if name not in PRUNERS:
        return [f"pruner.name: unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}"]
    kwargs = cfg.pruner.kwargs
    checked = {k: v for k, v in kwargs.items() if k != "wrapped"} if name == "patient" else kwargs
    problems = unknown_kwargs_problems("pruner", PRUNERS[name], checked)
    if name == "patient" and "wrapped_pruner" in kwargs:
        problems.append("pruner.wrapped_pruner: give the inner pruner as wrapped: {name: median}")
    if problems:
        return problems
    try:
        build_pruner(name, kwargs, max_resource=_epochs(cfg))
    except (TypeError, ValueError) as exc:
        problems.append(f"pruner: {PRUNERS[name].__name__} rejected its arguments: {exc}")
    return problems


def _epochs(cfg: StudyConfig) -> int | None:
    epochs = cfg.trainer.params.get("epochs")
    return (
        epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else None
    )


def _schema_errors(
    schema: type[BaseModel], params: dict[str, Any], only: str | None = None
) -> list[tuple[str, str]]:
    try:
        schema.model_validate(params)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if only is not None and (not err["loc"] or err["loc"][0] != only):
                continue
            if err["type"] == "extra_forbidden":
                msg = "unknown parameter"
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
            out.append((loc or "(params)", msg))
        return out
    return []


def _trainer_problems(cfg: StudyConfig) -> list[str]:
    from trainers.registry import TrainerNotFound, resolve_trainer

    try:
        spec = resolve_trainer(cfg.trainer.name)
    except TrainerNotFound as exc:
        return [f"trainer.name: {exc}"]
    problems: list[str] = []
    result_metrics = getattr(spec.fn, "result_metrics", None)
    if result_metrics:
        wanted = set(cfg.objective.names) | {cfg.objective.pruning_metric}
        for metric in sorted(wanted - set(result_metrics)):
            problems.append(
                f"objective: trainer {cfg.trainer.name!r} reports no metric {metric!r}; "
                f"it reports: {', '.join(result_metrics)}"
            )
    schema = spec.params_schema
    if schema is None:
        return problems
    fixed = dict(cfg.trainer.params)
    fixed_errors = _schema_errors(schema, fixed)
    for loc, msg in fixed_errors:
        problems.append(f"trainer.params.{loc}: {msg}")
    if fixed_errors:
        return problems
    fields = schema.model_fields
    for name, pspec in cfg.space.items():
        if name not in fields:
            problems.append(f"space.{name}: trainer {cfg.trainer.name!r} has no parameter {name!r}")
            continue
        problems.extend(_space_value_problems(schema, fixed, name, pspec))
    return problems


def _space_value_problems(
    schema: type[BaseModel], fixed: dict[str, Any], name: str, pspec: ParamSpec
) -> list[str]:
    problems = []
    for value in _values_of(pspec):
        for _loc, msg in _schema_errors(schema, {**fixed, name: value}, only=name):
            problems.append(f"space.{name}: value {value!r} is not allowed: {msg}")
    return problems


def semantic_problems(cfg: StudyConfig) -> list[str]:
    """All problems beyond the schema, one line each."""
    problems = storage_problems(cfg)
    problems += _sampler_problems(cfg)
    problems += _pruner_problems(cfg)
    problems += _trainer_problems(cfg)
    return problems
