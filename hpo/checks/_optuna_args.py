"""Sampler and pruner arguments, checked against the Optuna class signatures."""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

from hpo.checks._common import _short
from hpo.config import CategoricalParam, FloatParam, IntParam, ParamSpec, StudyConfig
from hpo.config._space import _can_take, _on_step_grid, _values_of
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
from hpo.space import (
    GridError,
    bruteforce_problems,
    condition_holds,
    conditional_grid_problem,
    dependency_order,
    grid_problems,
)
from hpo.yaml_loader import printable as _printable

_SINGLE_OBJECTIVE_ONLY = {"cmaes"}


# Annotations Optuna writes as strings (``from __future__ import annotations``) that we
# can check without importing anything: a value of the wrong one of these types makes the
# constructor succeed and every trial fail later, after the study was created.
_SIMPLE_TYPES = {"int", "float", "bool", "str", "None"}


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


def _sampler_problems(cfg: StudyConfig, *, for_reading: bool = False) -> list[str]:
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
        problems += grid_problems(cfg.space, conditions=not for_reading)  # every one's
    elif name == "grid":
        grid = cfg.sampler.kwargs["search_space"]
        problems += _given_grid_problems(grid, cfg.space, conditions=not for_reading)
    if name == "grid" and not for_reading:  # what only the run meets: a study run before
        problems += _grid_enqueue_problems(cfg)  # these checks can still be read
    if name == "bruteforce" and not for_reading:
        problems += bruteforce_problems(cfg.space)
    if problems:
        return problems
    try:
        build_sampler(name, cfg.sampler.kwargs, seed=cfg.seed, space=cfg.space)
    except ImportError as exc:
        problems.append(f"sampler.name: {name} needs an extra package ({exc})")
    except GridError as exc:  # the grid of the declared space: already one line
        problems.append(str(exc))
    except (TypeError, ValueError, OverflowError) as exc:
        problems.append(f"sampler: {SAMPLERS[name].__name__} rejected its arguments: {exc}")
    if not problems and not for_reading and name not in _NOT_PROBED:
        problems += _sampling_problems(cfg)
    return problems


_NOT_PROBED = {"grid", "bruteforce", "gp"}
"""Samplers :func:`_sampling_problems` leaves alone: the grid's and brute force's values are
checked above (and they stop a study they exhaust), and GP's model imports torch (seconds)."""

_PROBE_STARTUP = 2
"""The start-up trials of the probe's sampler: enough to reach the model after two."""


def _sampling_problems(cfg: StudyConfig) -> list[str]:
    """What the sampler's arguments break only when it samples (``prior_weight: -1``,
    ``n_ei_candidates: 0``): Optuna's constructors take them, then every trial fails.

    The sampler, with its start-up cut to two trials, samples three trials of the space in
    a throwaway in-memory study. A failure is pinned on the argument whose removal makes
    it pass, else on ``sampler`` as a whole.
    """
    kwargs = dict(cfg.sampler.kwargs)
    error = _probe_error(cfg, kwargs)
    if error is None:
        return []
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    cls = SAMPLERS[cfg.sampler.name].__name__
    named = [k for k in kwargs if re.search(rf"\b{re.escape(str(k))}\b", str(error))]
    culprit = named[0] if len(named) == 1 else None
    if culprit is None:
        culprit = next(
            (
                k
                for k in kwargs
                if _probe_error(cfg, {a: v for a, v in kwargs.items() if a != k}) is None
            ),
            None,
        )
    if len(text) > 200:
        text = text[:197] + "..."
    if culprit is None:
        return [f"sampler: {cls} fails when it samples, so every trial would fail ({text})"]
    return [
        f"sampler.{culprit}: {cls} fails when it samples with {culprit}="
        f"{_short(kwargs[culprit])}, so every trial would fail ({text})"
    ]


def _probe_error(cfg: StudyConfig, kwargs: Mapping[str, Any]) -> Exception | None:
    """The exception the sampler built from ``kwargs`` raises sampling a few trials, if any."""
    import warnings

    import optuna

    from hpo.space import suggest_params

    name = cfg.sampler.name
    args = dict(kwargs)
    startup = args.get("n_startup_trials")
    if "n_startup_trials" in constructor_arguments(SAMPLERS[name]) and not (
        isinstance(startup, int) and startup < _PROBE_STARTUP
    ):
        args["n_startup_trials"] = _PROBE_STARTUP
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sampler = build_sampler(name, args, seed=cfg.seed, space=cfg.space)
            study = optuna.create_study(
                sampler=sampler, directions=list(cfg.objective.study_directions)
            )
            for i in range(_PROBE_STARTUP + 1):
                trial = study.ask()
                suggest_params(trial, cfg.space)
                study.tell(trial, [float(i)] * len(cfg.objective.study_directions))
    except Exception as exc:  # whatever the sampler raises would fail each trial
        return exc
    finally:
        optuna.logging.set_verbosity(verbosity)
    return None


def _given_grid_problems(
    grid: Any, space: Mapping[str, ParamSpec], *, conditions: bool = True
) -> list[str]:
    """A grid written out in the file must list values for exactly the searched parameters:
    Optuna's grid sampler fails every trial on one it lacks."""
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        return ["sampler.search_space: expected a mapping of parameter name to a list of values"]
    missing = [n for n in space if n not in grid]
    extra = [str(n) for n in grid if n not in space]
    conditional = [
        conditional_grid_problem(n, len(grid[n]))
        for n, spec in space.items()
        if conditions and spec.condition is not None and n in grid and len(grid[n]) > 1
    ]
    values = [
        line
        for n, spec in space.items()
        if n in grid
        for line in _grid_value_problems(n, spec, grid[n])
    ]
    return (
        [f"sampler.search_space: no values for the searched parameter {n!r}" for n in missing]
        + [f"sampler.search_space.{n}: not a searched parameter" for n in extra]
        + values
        + conditional
    )


def _grid_value_problems(name: str, spec: ParamSpec, values: list[Any]) -> list[str]:
    """Each grid value the parameter's own definition cannot take, one line each: Optuna's
    grid sampler hands it to every trial that draws it, which then fails (``choice: [z]``
    beside choices ``[a, b]``, ``x: 5`` for a range ``[-1, 1]``)."""
    path = f"sampler.search_space.{_printable(name)}"
    out = []
    for value in values:
        if not _can_take(spec, value) or (isinstance(spec, IntParam) and type(value) is not int):
            allowed = ", ".join(repr(v) for v in _values_of(spec))
            kind = "" if isinstance(spec, CategoricalParam) else " range"
            out.append(f"{path}: {_short(value)} is not in the space (it takes {allowed}{kind})")
        elif not _on_step_grid(spec, value):
            assert not isinstance(spec, CategoricalParam)
            out.append(f"{path}: {value!r} is off the step grid (low {spec.low}, step {spec.step})")
    return out


def _grid_enqueue_problems(cfg: StudyConfig) -> list[str]:
    """Optuna's grid sampler fails an enqueued trial that leaves a parameter to it."""
    problems = []
    for i, params in enumerate(cfg.enqueue):
        chosen: dict[str, Any] = {}
        missing = []
        for name in dependency_order(cfg.space):
            if not condition_holds(cfg.space[name], chosen):
                continue
            if name in params:
                chosen[name] = params[name]
            else:
                missing.append(name)
        if missing:
            problems.append(
                f"enqueue.{i}: the grid sampler runs an enqueued configuration only when it "
                f"sets every parameter; missing: {', '.join(missing)}"
            )
    return problems


def _pruner_problems(cfg: StudyConfig) -> list[str]:
    name = cfg.pruner.name
    if name not in PRUNERS:
        return [f"pruner.name: unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}"]
    kwargs = cfg.pruner.kwargs
    problems = _pruner_spec_problems(cfg, "pruner", name, kwargs)
    if problems:
        return problems
    try:
        build_pruner(name, kwargs, max_resource=trainer_epochs(cfg), warmup=trainer_warmup(cfg))
    except (TypeError, ValueError, OverflowError) as exc:
        problems.append(f"pruner: {PRUNERS[name].__name__} rejected its arguments: {exc}")
    return problems


def _pruner_spec_problems(
    cfg: StudyConfig, prefix: str, name: str, kwargs: Mapping[str, Any]
) -> list[str]:
    """One pruner's arguments at ``prefix``, and the pruner it wraps, however deep.

    ``patient`` around ``grouped`` around ``median`` is a chain ``build_pruner`` builds:
    each level's ``wrapped`` is its own (not an Optuna argument), checked one level down.
    """
    checked = {k: v for k, v in kwargs.items() if k != "wrapped"} if name in WRAPPERS else kwargs
    problems = unknown_kwargs_problems(prefix, PRUNERS[name], checked)
    problems += kwarg_type_problems(prefix, PRUNERS[name], checked)
    if name == "hyperband":
        problems += _hyperband_problems(prefix, kwargs)
    if name not in WRAPPERS:
        return problems
    if "wrapped_pruner" in kwargs:
        problems.append(
            f"{prefix}.wrapped_pruner: give the inner pruner as wrapped: {{name: median}}"
        )
    wrapped = kwargs.get("wrapped")
    if isinstance(wrapped, Mapping) and isinstance(wrapped.get("name"), str):
        inner_kwargs = {k: v for k, v in wrapped.items() if k != "name"}
        if wrapped["name"] in PRUNERS and wrapped["name"] != name:
            problems += _pruner_spec_problems(
                cfg, f"{prefix}.wrapped", wrapped["name"], inner_kwargs
            )
    elif wrapped is not None and (name != "grouped" or wrapped):
        problems.append(
            f"{prefix}.wrapped: expected a pruner like {{name: median}} (got {_short(wrapped)})"
        )
    if name == "grouped":
        if not wrapped:
            problems.append(
                f"{prefix}.wrapped: grouped needs the pruner to run within each group, "
                "like wrapped: {name: hyperband}"
            )
        problems += _grouped_by_problems(cfg, kwargs.get("by"), prefix)
        if cfg.uses_prune_companion:
            # such a study is pruned on a companion study whose trials carry no
            # parameters, so every trial would fall into one group
            problems.append(
                f"{prefix}.name: grouped needs a single-objective study pruned in its own "
                "direction (no prune_direction against the objective's)"
            )
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


def _grouped_by_problems(cfg: StudyConfig, by: Any, prefix: str = "pruner") -> list[str]:
    """``grouped``'s ``by``: a list of searched parameters, so that groups exist to compare in."""
    if by is None:
        return [f"{prefix}.by: grouped needs by, the searched parameters to group trials by"]
    if isinstance(by, str) or not isinstance(by, list) or not by:
        return [f"{prefix}.by: expected a non-empty list of parameter names (got {_short(by)})"]
    allowed = ", ".join(cfg.space)
    problems: list[str] = []
    for i, name in enumerate(by):
        if not isinstance(name, str):
            problems.append(f"{prefix}.by[{i}]: expected a parameter name (got {_short(name)})")
        elif name not in cfg.space:
            problems.append(
                f"{prefix}.by: {name!r} is not a searched parameter; allowed: {allowed}"
            )
        elif isinstance(spec := cfg.space[name], FloatParam) and spec.step is None:
            problems.append(
                f"{prefix}.by: {name!r} is a continuous float range, so every trial would be a "
                "group of its own; group by categorical, int or stepped float parameters"
            )
    return problems
