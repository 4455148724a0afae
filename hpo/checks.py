"""Checks that need more than the schema: Optuna signatures, the trainer, the storage URL.

Everything here runs before a study is created, so a typo costs a second, not a GPU hour.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from hpo.config import CategoricalParam, FloatParam, ParamSpec, StudyConfig, _values_of
from hpo.pruners import (
    PRUNERS,
    WRAPPERS,
    build_pruner,
    hyperband_arg_problems,
    trainer_epochs,
    trainer_warmup,
)
from hpo.samplers import (
    SAMPLERS,
    build_sampler,
    constructor_arguments,
    startup_trials,
    unknown_kwargs_problems,
)
from hpo.space import GridError, grid_problems
from hpo.storages import storage_problems

_SINGLE_OBJECTIVE_ONLY = {"cmaes"}

# Annotations Optuna writes as strings (``from __future__ import annotations``) that we
# can check without importing anything: a value of the wrong one of these types makes the
# constructor succeed and every trial fail later, after the study was created.
_SIMPLE_TYPES = {"int", "float", "bool", "str", "None"}


def _short(value: object, limit: int = 60) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _annotation_names(annotation: Any) -> set[str] | None:
    """``{"int", "None"}`` for ``int | None`` (or ``Optional[int]``); ``None`` if not simple."""
    if isinstance(annotation, type):
        text = annotation.__name__
    elif isinstance(annotation, str):
        text = annotation
    else:
        return None
    text = text.replace("Optional[", "").replace("]", "").replace("builtins.", "")
    names = {part.strip() for part in re.split(r"[|,]", text)}
    return names if names and names <= _SIMPLE_TYPES else None


def _only_code(annotation: Any) -> bool:
    """Callables, samplers and pruners: nothing YAML can express except null."""
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return any(
        word in text
        for word in ("Callable", "BaseSampler", "BasePruner", "BaseMutation", "BaseCrossover")
    )


def _fits(value: Any, names: set[str]) -> bool:
    if value is None:
        return "None" in names
    if isinstance(value, bool):
        return "bool" in names
    if isinstance(value, int):
        return "int" in names or "float" in names
    if isinstance(value, float):
        return "float" in names and math.isfinite(value)
    if isinstance(value, str):
        return "str" in names
    return False


def kwarg_type_problems(path: str, cls: type, kwargs: Mapping[str, Any]) -> list[str]:
    """One line per keyword argument whose value does not fit a simple annotation.

    Only plain ``int``/``float``/``bool``/``str``/``None`` annotations are checked; anything
    richer (callables, samplers) is left to the constructor.
    """
    allowed = constructor_arguments(cls)
    out = []
    for key, value in kwargs.items():
        param = allowed.get(key)
        if param is None or param.annotation is inspect.Parameter.empty:
            continue
        if value is not None and _only_code(param.annotation):
            out.append(
                f"{path}.{key}: {cls.__name__} expects a Python object here, which a study "
                f"file cannot give (got {_short(value)}); leave it out"
            )
            continue
        names = _annotation_names(param.annotation)
        if names is None or _fits(value, names):
            continue
        wanted = " or ".join(
            {"None": "null", "float": "a finite number", "int": "an integer"}.get(n, f"a {n}")
            for n in sorted(names, key=["int", "float", "bool", "str", "None"].index)
        )
        out.append(f"{path}.{key}: {cls.__name__} expects {wanted} (got {_short(value)})")
    return out


def _sampler_problems(cfg: StudyConfig) -> list[str]:
    name = cfg.sampler.name
    if name not in SAMPLERS:
        return [f"sampler.name: unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}"]
    problems = unknown_kwargs_problems("sampler", SAMPLERS[name], cfg.sampler.kwargs)
    problems += kwarg_type_problems("sampler", SAMPLERS[name], cfg.sampler.kwargs)
    if cfg.objective.is_multi and name in _SINGLE_OBJECTIVE_ONLY:
        problems.append(f"sampler.name: {name} does not support multi-objective studies")
    if cfg.startup == "balanced" and startup_trials(name, cfg.sampler.kwargs) is None:
        having = ", ".join(n for n in SAMPLERS if startup_trials(n, {}) is not None)
        problems.append(
            f"startup: balanced replaces a sampler's random start-up trials, and {name} has "
            f"none; use random, or a sampler with n_startup_trials ({having})"
        )
    if name == "grid" and "search_space" not in cfg.sampler.kwargs:
        problems += grid_problems(cfg.space)  # every parameter's, not the first only
    elif name == "grid":
        problems += _given_grid_problems(cfg.sampler.kwargs["search_space"], cfg.space)
    if problems:
        return problems
    try:
        build_sampler(name, cfg.sampler.kwargs, seed=cfg.seed, space=cfg.space)
    except ImportError as exc:
        problems.append(f"sampler.name: {name} needs an extra package ({exc})")
    except GridError as exc:  # the grid of the declared space: already one line
        problems.append(str(exc))
    except (TypeError, ValueError) as exc:
        problems.append(f"sampler: {SAMPLERS[name].__name__} rejected its arguments: {exc}")
    return problems


def _given_grid_problems(grid: Any, space: Mapping[str, ParamSpec]) -> list[str]:
    """A grid written out in the file must list values for exactly the searched parameters:
    Optuna's grid sampler fails every trial on one it lacks."""
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        return ["sampler.search_space: expected a mapping of parameter name to a list of values"]
    missing = [n for n in space if n not in grid]
    extra = [str(n) for n in grid if n not in space]
    return [
        f"sampler.search_space: no values for the searched parameter {n!r}" for n in missing
    ] + [f"sampler.search_space.{n}: not a searched parameter" for n in extra]


def _pruner_problems(cfg: StudyConfig) -> list[str]:
    name = cfg.pruner.name
    if name not in PRUNERS:
        return [f"pruner.name: unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}"]
    kwargs = cfg.pruner.kwargs
    checked = {k: v for k, v in kwargs.items() if k != "wrapped"} if name in WRAPPERS else kwargs
    problems = unknown_kwargs_problems("pruner", PRUNERS[name], checked)
    problems += kwarg_type_problems("pruner", PRUNERS[name], checked)
    if name == "hyperband":
        problems += _hyperband_problems("pruner", kwargs)
    if name in WRAPPERS and "wrapped_pruner" in kwargs:
        problems.append("pruner.wrapped_pruner: give the inner pruner as wrapped: {name: median}")
    wrapped = kwargs.get("wrapped") if name in WRAPPERS else None
    if isinstance(wrapped, Mapping) and isinstance(wrapped.get("name"), str):
        inner = PRUNERS.get(wrapped["name"])
        inner_kwargs = {k: v for k, v in wrapped.items() if k != "name"}
        if inner is not None:
            problems += unknown_kwargs_problems("pruner.wrapped", inner, inner_kwargs)
            problems += kwarg_type_problems("pruner.wrapped", inner, inner_kwargs)
            if wrapped["name"] == "hyperband":
                problems += _hyperband_problems("pruner.wrapped", inner_kwargs)
    if name == "grouped":
        if not wrapped:
            problems.append(
                "pruner.wrapped: grouped needs the pruner to run within each group, "
                "like wrapped: {name: hyperband}"
            )
        problems += _grouped_by_problems(cfg, kwargs.get("by"))
        if cfg.objective.is_multi:
            # a multi-objective study is pruned on a companion study whose trials carry
            # no parameters, so every trial would fall into one group
            problems.append("pruner.name: grouped needs a single-objective study")
    if problems:
        return problems
    try:
        build_pruner(name, kwargs, max_resource=trainer_epochs(cfg), warmup=trainer_warmup(cfg))
    except (TypeError, ValueError) as exc:
        problems.append(f"pruner: {PRUNERS[name].__name__} rejected its arguments: {exc}")
    return problems


def _hyperband_problems(prefix: str, kwargs: Mapping[str, Any]) -> list[str]:
    """Range problems of the arguments whose type is right (a wrong type has its own line)."""
    mistyped = {
        line.split(":", 1)[0].rpartition(".")[2]
        for line in kwarg_type_problems(prefix, PRUNERS["hyperband"], kwargs)
    }
    return [
        f"{prefix}.{key}: {problem}"
        for key, problem in hyperband_arg_problems(kwargs).items()
        if key not in mistyped
    ]


def _grouped_by_problems(cfg: StudyConfig, by: Any) -> list[str]:
    """``grouped``'s ``by``: a list of searched parameters, so that groups exist to compare in."""
    if by is None:
        return ["pruner.by: grouped needs by, the searched parameters to group trials by"]
    if isinstance(by, str) or not isinstance(by, list) or not by:
        return [f"pruner.by: expected a non-empty list of parameter names (got {_short(by)})"]
    allowed = ", ".join(cfg.space)
    problems: list[str] = []
    for i, name in enumerate(by):
        if not isinstance(name, str):
            problems.append(f"pruner.by[{i}]: expected a parameter name (got {_short(name)})")
        elif name not in cfg.space:
            problems.append(f"pruner.by: {name!r} is not a searched parameter; allowed: {allowed}")
        elif isinstance(spec := cfg.space[name], FloatParam) and spec.step is None:
            problems.append(
                f"pruner.by: {name!r} is a continuous float range, so every trial would be a "
                "group of its own; group by categorical, int or stepped float parameters"
            )
    return problems


WHOLE = "(params)"
"""The location :func:`schema_errors` gives an error about several fields together."""


def _did_you_mean(name: str, schema: type[BaseModel]) -> str:
    close = difflib.get_close_matches(name, list(schema.model_fields), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def schema_errors(
    schema: type[BaseModel], params: dict[str, Any], only: str | None = None
) -> list[tuple[str, str]]:
    """``(field, message)`` for each of the trainer schema's objections to ``params``."""
    return [(loc, msg) for loc, msg, _ in _objections(schema, params, only)]


def _objections(
    schema: type[BaseModel], params: dict[str, Any], only: str | None = None
) -> list[tuple[str, str, frozenset[str] | None]]:
    """:func:`schema_errors` with the fields each error about ``params`` as a whole involves.

    A trainer's cross-field check says which fields it read by raising a ``ValueError``
    with a ``fields`` attribute (``trainers.params.CrossFieldError``): that is what lets
    ``hpo validate`` pin ``n_heads`` must divide ``dim`` on ``n_heads`` rather than on
    whichever searched field it was checking. ``None``: the trainer did not say.
    """
    try:
        schema.model_validate(params)
    except (TypeError, AttributeError, KeyError, IndexError) as exc:  # a validator's own bug
        msg = f"the trainer's schema failed ({type(exc).__name__}: {exc})"
        return [(only or WHOLE, msg, None)]
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if only is not None and (not err["loc"] or err["loc"][0] != only):
                continue
            if err["type"] == "extra_forbidden":
                msg = "unknown parameter" + _did_you_mean(str(err["loc"][-1]), schema)
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
            out.append((loc or WHOLE, msg, None if loc else _declared_fields(err)))
        return out
    return []


def _declared_fields(err: Mapping[str, Any]) -> frozenset[str] | None:
    """The ``fields`` a cross-field error's exception names, if it names any."""
    fields = getattr((err.get("ctx") or {}).get("error"), "fields", None)
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        return None
    names = frozenset(fields)
    return names if names and all(isinstance(n, str) for n in names) else None


def _trainer_problems(cfg: StudyConfig, *, unseen: Collection[str] = ()) -> list[str]:
    from trainers.registry import TrainerNotFound, resolve_trainer

    try:
        spec = resolve_trainer(cfg.trainer.name)
    except TrainerNotFound as exc:
        return [f"trainer.name: {exc}"]
    except Exception as exc:  # ":" or ".rel:fn" (ValueError, TypeError), a module that raises
        return [
            f"trainer.name: cannot load trainer {_short(cfg.trainer.name)} "
            f"({type(exc).__name__}: {_short(str(exc), 200)})"
        ]
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
    if "seed" not in schema.model_fields and schema.model_config.get("extra") == "forbid":
        problems.append(
            f"trainer.name: every trial passes its seed as params.seed, which "
            f"{schema.__name__} refuses; give it a field seed: int | None = None"
        )
    # judged on the fixed values alone: a searched field's default stands in, which a
    # conditional parameter's trials do take, and an error found here may hide others
    fixed_errors = _objections(schema, dict(cfg.trainer.params))
    # the space is checked against the fixed fields that passed, so one run of
    # `hpo validate` lists both kinds of problem
    wrong = {loc.split(".")[0] for loc, _, _ in fixed_errors if loc != WHOLE}
    fixed = {k: v for k, v in cfg.trainer.params.items() if k not in wrong}
    fields = schema.model_fields
    # with a field dropped, defaults stand in for what the user wrote: a check that reads
    # it would judge values that are not theirs (an unknown key stands for nothing)
    dropped = frozenset(unseen) | (wrong & set(fields))
    valid = {
        name: [v for v in _values_of(pspec) if not schema_errors(schema, {**fixed, name: v}, name)]
        for name, pspec in cfg.space.items()
        if name in fields
    }
    whole = [(msg, involved) for loc, msg, involved in fixed_errors if loc == WHOLE]
    if whole and not dropped and _searched_values_settle(schema, fixed, cfg.space, valid, whole):
        fixed_errors = [e for e in fixed_errors if e[0] != WHOLE]
    for loc, msg, _ in fixed_errors:
        where = "trainer.params" if loc == WHOLE else f"trainer.params.{loc}"
        problems.append(f"{where}: {msg}")
    if any(loc == WHOLE for loc, _, _ in fixed_errors):
        return problems  # the fixed set as a whole is refused: every value would be too
    before = len(problems)
    for name, pspec in cfg.space.items():
        if name not in fields:
            problems.append(f"space.{name}: trainer {cfg.trainer.name!r} has no parameter {name!r}")
            continue
        problems.extend(_space_value_problems(schema, fixed, name, pspec, valid, dropped))
    if len(problems) == before and not dropped:
        problems += _no_trial_runs_problems(schema, fixed, cfg.space, valid)
    return problems + ([] if dropped else _missing_input_problems(schema, fixed, cfg.space))


def _trial_params(
    fixed: Mapping[str, Any], space: Mapping[str, ParamSpec], valid: Mapping[str, list[Any]]
) -> list[dict[str, Any]] | None:
    """The parameters of every distinct trial the space can make, each searched field at
    one of its ``valid`` values or, where its ``if`` does not hold, at the trainer's default.

    ``None`` when there are more than :data:`MAX_COMBINATIONS` or a field has no valid
    value (its values have their own lines, and no trial of it can be judged).
    """
    from hpo.space import condition_holds, dependency_order

    try:
        names = [n for n in dependency_order(space) if n in valid]
    except ValueError:  # a cycle of conditions: reported by the space's own checks
        return None
    grids = [valid[n] for n in names]
    if not all(grids) or math.prod(len(g) for g in grids) > MAX_COMBINATIONS:
        return None
    seen: set[tuple[tuple[str, Any], ...]] = set()
    out = []
    for combo in itertools.product(*grids):
        chosen: dict[str, Any] = {}
        for name, value in zip(names, combo, strict=True):
            if condition_holds(space[name], chosen):
                chosen[name] = value
        key = tuple(chosen.items())
        if key not in seen:
            seen.add(key)
            out.append({**fixed, **chosen})
    return out


def _ranged(space: Mapping[str, ParamSpec], valid: Mapping[str, list[Any]]) -> frozenset[str]:
    """Searched ranges: :func:`_trial_params` tries their ends only, not every value."""
    return frozenset(n for n in valid if not isinstance(space[n], CategoricalParam))


def _searched_values_settle(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    valid: Mapping[str, list[Any]],
    whole: list[tuple[str, frozenset[str] | None]],
) -> bool:
    """Whether the fixed set's errors are only about a searched field's default, which no
    trial takes: fixed ``n_heads: 3`` with ``dim: [48, 96]`` fails at the default
    ``dim=64``, yet every trial runs. True only when every error involves a searched field
    and every trial the space can make passes; a conditional field's trials that leave it
    out do take the default, an error may hide another behind it, and a range is tried at
    its ends only (an error about one may hold inside it), so anything less keeps the
    fixed set refused.
    """
    ranged = _ranged(space, valid)
    if not all(
        fields is not None and fields & valid.keys() and not fields & ranged for _, fields in whole
    ):
        return False
    trials = _trial_params(fixed, space, valid)
    if not trials:
        return False
    return all(not _objections(schema, params) for params in trials)


def _no_trial_runs_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    valid: Mapping[str, list[Any]],
) -> list[str]:
    """One line when no trial the space can make passes the trainer's cross-field checks.

    ``n_heads: [3, 5]`` with ``dim: [64, 128]``: no value is refused by itself (each
    combination fails with its own message), but every trial of the budget would fail.
    """
    trials = _trial_params(fixed, space, valid)
    if not trials or len(trials) < 2:  # one trial's errors are each value's own lines
        return []
    ranged = _ranged(space, valid)
    first: tuple[dict[str, Any], str, frozenset[str] | None] | None = None
    for params in trials:
        errors = [(msg, f) for loc, msg, f in _objections(schema, params) if loc == WHOLE]
        if not errors or any(_reads_unseen(f, ranged) for _, f in errors):
            return []  # it runs, or a value inside a range (not its ends) may run
        if first is None:
            first = (params, *errors[0])
    assert first is not None
    params, msg, involved = first
    searched = [n for n in space if n in valid and (involved is None or n in involved)]
    example = ", ".join(f"{n}={params[n]!r}" for n in searched if n in params)
    return [
        f"space: no combination of {', '.join(searched)} passes the trainer's checks, so "
        f"every trial would fail; e.g. {example}: {msg}"
    ]


INPUT_FIELDS = frozenset({"dataset", "data_dir", "init_from", "mode", "channel_adapter"})
"""Trainer fields that decide which input files a trial reads, or whether they fit."""


FIT_FIELDS = frozenset({"proj_dim"})
"""Trainer fields whose value must fit what the inputs hold: a searched one is checked with
the inputs (``mode: align`` predicts the targets Z, so ``proj_dim`` must be Z's width)."""


def _missing_input_problems(
    schema: type[BaseModel], fixed: dict[str, Any], space: Mapping[str, ParamSpec]
) -> list[str]:
    """Input files the trainer would not find (its schema's ``missing_inputs``).

    A missing data file or checkpoint fails every trial, and the failed trials use up
    the budget: found here, it costs a second instead of a study to delete.
    """
    return _input_problems(schema, fixed, space, "missing_inputs")


def _input_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    check: str,
    fields: frozenset[str] = INPUT_FIELDS,
    optional: frozenset[str] = frozenset(),
) -> list[str]:
    """The schema's ``check`` (``missing_inputs``, ``input_misfits``) over the searched inputs.

    Every combination of the searched ``fields``' values (a range's ends) is checked, and
    of the ``optional`` fields' too while the combinations stay within
    :data:`MAX_COMBINATIONS`.
    A problem every combination has is the fixed parameters' and is said once; a searched
    value is refused only when it fails with every value of the others (``dataset:
    BasicMotions`` that needs ``channel_adapter: conv1x1`` is fine while the space also
    offers conv1x1).
    """
    if not callable(getattr(schema, check, None)):
        return []

    def problems_of(params: dict[str, Any]) -> dict[str, str]:
        try:
            return dict(getattr(schema.model_validate(params), check)())
        except Exception:  # invalid params are reported elsewhere; a broken check is not ours
            return {}

    searched = [n for n in space if n in fields]
    with_optional = searched + [n for n in space if n in optional and n not in fields]
    if math.prod(len(_values_of(space[n])) for n in with_optional) <= MAX_COMBINATIONS:
        searched = with_optional
    grids = [_values_of(space[n]) for n in searched]
    if math.prod(len(g) for g in grids) > MAX_COMBINATIONS:
        return []
    found = [
        (
            dict(zip(searched, combo, strict=True)),
            problems_of({**fixed, **dict(zip(searched, combo, strict=True))}),
        )
        for combo in itertools.product(*grids)
    ]
    always = set.intersection(*(set(p.items()) for _, p in found)) if found else set()
    out = [
        f"{'space' if field in searched else 'trainer.params'}.{field}: {why}"
        for field, why in sorted(always)
    ]
    for name, grid in zip(searched, grids, strict=True):
        for value in grid:
            with_value = [
                {k: v for k, v in p.items() if (k, v) not in always}
                for combo, p in found
                if combo[name] == value
            ]
            if with_value and all(with_value):
                why = next(iter(with_value[0].values()))
                out.append(f"space.{name}: value {value!r}: {why}")
    return out


def input_misfit_problems(cfg: StudyConfig) -> list[str]:
    """Inputs that exist but do not fit (a fine-tuning checkpoint on other channels).

    Reads the inputs, so it runs where they will be read anyway: ``hpo validate`` and
    before a run creates its study, not at every load (``hpo status`` must stay quick).
    """
    from trainers.registry import resolve_trainer

    try:
        schema = resolve_trainer(cfg.trainer.name).params_schema
    except Exception:  # an unloadable trainer is reported by the load's own checks
        return []
    if schema is None:
        return []
    fixed = dict(cfg.trainer.params)
    misfits = _input_problems(
        schema,
        fixed,
        cfg.space,
        "input_misfits",
        INPUT_FIELDS | FIT_FIELDS,
        _checkpoint_fields(fixed, cfg.space),
    )
    return misfits + _unreported_metric_problems(cfg, schema, fixed)


def _checkpoint_fields(fixed: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> frozenset[str]:
    """The architecture fields, where a trial may fine-tune: ``mode: finetune`` takes them
    from ``init_from``'s checkpoint, so a searched value other than the checkpoint's fails
    every trial that draws it (a supervised study's space copied into a fine-tuning one)."""
    mode = space.get("mode")
    modes = _values_of(mode) if isinstance(mode, CategoricalParam) else [fixed.get("mode")]
    if "finetune" not in modes:
        return frozenset()
    from trainers.params import ENCODER_ARCH_FIELDS

    return frozenset(ENCODER_ARCH_FIELDS)


def _unreported_metric_problems(
    cfg: StudyConfig, schema: type[BaseModel], fixed: dict[str, Any]
) -> list[str]:
    """Objective metrics the trainer cannot report on these inputs (its ``unreported_metrics``).

    Pretraining on unlabelled data has no probe to report: every trial would train to the
    end, then fail for want of its objective. Judged on the fixed inputs only.
    """
    check = getattr(schema, "unreported_metrics", None)
    if not callable(check) or any(name in INPUT_FIELDS for name in cfg.space):
        return []
    try:
        unreported = dict(schema.model_validate(fixed).unreported_metrics())  # type: ignore[attr-defined]
    except Exception:  # invalid params are reported elsewhere; a broken check is not ours
        return []
    where = {name: "objective.metric" for name in cfg.objective.names}
    if cfg.objective.metrics:
        where = {name: "objective.metrics" for name in cfg.objective.names}
    where.setdefault(cfg.objective.pruning_metric, "objective.prune_on")
    return [
        f"{key}: {name}: {unreported[name]}" for name, key in where.items() if name in unreported
    ]


def _space_value_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    name: str,
    pspec: ParamSpec,
    valid: Mapping[str, list[Any]],
    dropped: frozenset[str],
) -> list[str]:
    """``valid``: each searched field's values that pass on their own; ``dropped``: fields
    whose user value the check cannot see (see :func:`_always_refused`)."""
    problems = []
    for value in _values_of(pspec):
        for _loc, msg in schema_errors(schema, {**fixed, name: value}, only=name):
            problems.append(f"space.{name}: value {value!r} is not allowed: {msg}")
        for msg in _always_refused(schema, fixed, name, value, valid, dropped):
            problems.append(f"space.{name}: value {value!r} is never allowed: {msg}")
    inner = _fractional_value(pspec)
    if not problems and inner is not None:
        # the ends of a float range may be whole numbers that an int field takes
        for _loc, msg in schema_errors(schema, {**fixed, name: inner}, only=name):
            remedy = "; use type: int" if "integer" in msg else ""
            problems.append(
                f"space.{name}: a float range samples values like {inner!r}, which the "
                f"trainer refuses: {msg}{remedy}"
            )
    return problems


def _fractional_value(spec: ParamSpec) -> float | None:
    """A value inside a float range that is not a whole number, if the range has one."""
    if not isinstance(spec, FloatParam) or spec.high <= spec.low:
        return None
    if spec.step is None:
        return spec.low + (spec.high - spec.low) * 0.381966 if spec.high - spec.low > 1e-6 else None
    candidates = (spec.low + spec.step, spec.low + 2 * spec.step)
    return next((v for v in candidates if v <= spec.high and not v.is_integer()), None)


MAX_COMBINATIONS = 256
"""The most combinations of the other searched values a cross-field check tries."""


def _always_refused(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    name: str,
    value: Any,
    valid: Mapping[str, list[Any]],
    dropped: frozenset[str],
) -> list[str]:
    """The trainer's cross-field errors (``n_heads`` must divide ``dim``) that ``name: value``
    meets with every combination of the other searched parameters' valid values.

    Another searched parameter may be what makes the value fit (``dim: [48, 64]`` with
    ``n_heads: [3, 4]``), so only an error that stays the same whatever the others take is
    certain to fail every trial with that value. An error is pinned on ``name`` only when
    it involves ``name`` (its ``fields``, see :func:`_objections`): with ``loss: [infonce,
    triplet]`` and ``n_heads: [3]``, the heads error is ``n_heads``'s, not ``loss``'s.
    A combination that fails on an error of other fields only says nothing about
    ``name``, and is skipped. Values that fail on their own have their own lines and
    never reach a trial, so they are left out; a field with none left, or in ``dropped``,
    is judged at its default, which is not the user's value: an error that reads it (or
    that names no fields, when anything was dropped) is not claimed.
    """
    others = {n: values for n, values in valid.items() if n != name and values}
    unseen = dropped | {n for n, values in valid.items() if n != name and not values}
    if math.prod(len(v) for v in others.values()) > MAX_COMBINATIONS:
        return []
    always: set[str] | None = None
    for combo in itertools.product(*others.values()):
        params = {**fixed, **dict(zip(others, combo, strict=True)), name: value}
        errors = [(msg, fields) for loc, msg, fields in _objections(schema, params) if loc == WHOLE]
        if not errors:
            return []  # a trial with this combination runs
        if all(fields is not None and name not in fields for _, fields in errors):
            continue  # it fails whatever name takes: that error is another field's
        if any(_reads_unseen(fields, unseen) for _, fields in errors):
            return []  # judged on a default: with the user's own value it may run
        mine = {msg for msg, fields in errors if fields is None or name in fields}
        always = mine if always is None else always & mine
        if not always:
            return []
    return sorted(always or ())


def _reads_unseen(fields: frozenset[str] | None, unseen: frozenset[str]) -> bool:
    """Whether an error may read a field the check saw only at its default."""
    return bool(unseen) if fields is None else bool(fields & unseen)


_ENV_TEXT = re.compile(r"\$\{[^}]*\}?")
_ENV_NAME = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")


def _storage_syntax_problems(cfg: StudyConfig) -> list[str]:
    """Storage URL mistakes that would otherwise pass: ``${}`` forms, SQLite without a file."""
    url = cfg.storage
    if not url:
        return []
    out = [
        f"storage: {_short(ref)} is not a ${{VARIABLE}} reference (letters, digits, _)"
        for ref in _ENV_TEXT.findall(url)
        if not _ENV_NAME.match(ref)
    ]
    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        out.append(
            "storage: a SQLite URL names a file: sqlite:///relative.db or sqlite:////abs/path.db"
        )
    return out


def semantic_problems(cfg: StudyConfig, *, unseen: Collection[str] = ()) -> list[str]:
    """All problems beyond the schema, one line each.

    ``unseen``: searched parameters whose entries failed their own checks and are left out
    of ``cfg.space``. What reads them (cross-field errors that involve them, any error
    that names no fields, input files) is left for the next run: a default would stand in
    for the user's value. Cross-field errors of the other fields are still reported.
    """
    problems = _storage_syntax_problems(cfg) or storage_problems(cfg)
    problems += _sampler_problems(cfg)
    problems += _pruner_problems(cfg)
    problems += _trainer_problems(cfg, unseen=unseen)
    problems += _artifact_problems(cfg)
    return problems


def _artifact_problems(cfg: StudyConfig) -> list[str]:
    """An ``s3://`` store without a bucket: seen in the text, at every load."""
    location = cfg.artifacts.dir or ""
    bucket = location[len("s3://") :].partition("/")[0]
    if cfg.artifacts.enabled and location.startswith("s3://") and not bucket:
        return [f"artifacts.dir: no bucket in {location!r}; use s3://bucket/prefix"]
    return []


def run_problems(cfg: StudyConfig) -> list[str]:
    """What only matters to a run, and costs a look at the machine: an artifact store
    it cannot open (no boto3, a folder under a file) and inputs that do not fit.

    ``hpo validate`` and a run creating its study ask; read-only commands (``status``,
    ``best``, ``report``) do not, so they keep working where a run could not start.
    """
    from hpo.artifacts import check_artifact_store
    from hpo.errors import ConfigError

    problems: list[str] = []
    if cfg.artifacts.enabled:
        try:
            check_artifact_store(cfg)
        except ConfigError as exc:
            problems += exc.problems
    return problems + input_misfit_problems(cfg)
