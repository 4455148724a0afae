"""The study file: a pydantic schema and the loader that reports every problem at once.

Unknown keys are errors everywhere: a misspelt ``n_trails`` must not silently run
the default budget on a shared GPU pool.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpo.errors import ConfigError
from hpo.overrides import apply_overrides
from hpo.yaml_loader import (
    format_loc as _format_loc,
)
from hpo.yaml_loader import (
    load_yaml_file,
    load_yaml_text,
    shape_problems,
)
from hpo.yaml_loader import (
    printable as _printable,
)

Direction = Literal["maximize", "minimize"]
Scalar = bool | int | float | str | None

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION_S = 3650 * 86400.0
"""Ten years: longer durations overflow timers (``setitimer``, ``Event.wait``) at run time."""


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"45s"``, ``"30m"``, ``"2h"`` or ``"1d"``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90, 45s, 30m, 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"expected a duration such as 90, 45s, 30m, 2h; got {shown}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if math.isnan(seconds):
        raise ValueError("expected a duration such as 90, 45s, 30m, 2h; got nan")
    if seconds <= 0:
        raise ValueError("must be > 0")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most {MAX_DURATION_S:.0f} seconds (3650d)")
    return seconds


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


MAX_EXACT_INT = 2**53
"""Integer bounds beyond this lose precision: Optuna stores parameter values as floats."""


def _not_a_bool(value: Any) -> Any:
    """``low: true`` is a typo, not the number 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    return value


class FloatParam(_Strict):
    """A float drawn from [low, high], on a log scale or on a grid of ``step``."""

    type: Literal["float"]
    low: float = Field(allow_inf_nan=False)
    high: float = Field(allow_inf_nan=False)
    log: bool = False
    step: float | None = Field(default=None, allow_inf_nan=False)
    condition: dict[str, Any] | None = Field(default=None, alias="if")

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        return _not_a_bool(value)


class IntParam(_Strict):
    """An integer drawn from [low, high]."""

    type: Literal["int"]
    low: int = Field(ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)
    high: int = Field(ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)
    log: bool = False
    step: int = Field(default=1, ge=-MAX_EXACT_INT, le=MAX_EXACT_INT)
    condition: dict[str, Any] | None = Field(default=None, alias="if")

    @field_validator("low", "high", "step", mode="before")
    @classmethod
    def _no_bools(cls, value: Any) -> Any:
        return _not_a_bool(value)


class CategoricalParam(_Strict):
    """One of a list of scalar choices."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)
    condition: dict[str, Any] | None = Field(default=None, alias="if")


ParamSpec = FloatParam | IntParam | CategoricalParam
_PARAM_TYPES: dict[str, type[ParamSpec]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
}


class ObjectiveConfig(_Strict):
    """What the study optimizes: one metric, or several (multi-objective)."""

    metric: str | None = None
    direction: Direction | None = None
    metrics: list[str] | None = None
    directions: list[Direction] | None = None
    prune_on: str | None = None
    prune_direction: Direction | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ObjectiveConfig:
        single = self.metric is not None or self.direction is not None
        multi = self.metrics is not None or self.directions is not None
        if single and multi:
            raise ValueError("use either metric/direction or metrics/directions, not both")
        if multi:
            if not self.metrics or not self.directions:
                raise ValueError("metrics and directions must both be given")
            if len(self.metrics) != len(self.directions):
                raise ValueError(
                    f"metrics has {len(self.metrics)} entries but directions has "
                    f"{len(self.directions)}"
                )
            if len(set(self.metrics)) != len(self.metrics):
                raise ValueError("metrics must not repeat")
            if self.prune_on is not None and self.prune_on in self.metrics:
                return self
            if self.prune_on is not None and self.prune_direction is None:
                raise ValueError(
                    "prune_on names a metric that is not an objective: give prune_direction too"
                )
        else:
            if self.metric is None:
                raise ValueError("metric is required (a key of the trainer's result)")
        return self

    @property
    def names(self) -> list[str]:
        """Objective metric names in order."""
        return list(self.metrics) if self.metrics else [str(self.metric)]

    @property
    def study_directions(self) -> list[Direction]:
        """Optimization directions in order (``maximize`` when a single metric omits it)."""
        if self.directions:
            return list(self.directions)
        return [self.direction or "maximize"]

    @property
    def is_multi(self) -> bool:
        """True for multi-objective studies."""
        return len(self.names) > 1

    @property
    def pruning_metric(self) -> str:
        """The metric per-epoch reports are judged on."""
        return self.prune_on or self.names[0]

    @property
    def pruning_direction(self) -> Direction:
        """Direction of the pruning metric."""
        if self.prune_direction is not None:
            return self.prune_direction
        names = self.names
        metric = self.pruning_metric
        return self.study_directions[names.index(metric)] if metric in names else "maximize"


class ComponentConfig(BaseModel):
    """A sampler or pruner: a short ``name`` plus the keyword arguments of its Optuna class."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """Everything but ``name``: passed to the Optuna constructor."""
        return dict(self.model_extra or {})


class BudgetConfig(_Strict):
    """When the study stops: trials across all workers together, and/or wall time."""

    n_trials: int | None = Field(default=None, ge=1, le=10_000_000)
    timeout: float | None = None
    trial_timeout: float | None = None

    @field_validator("timeout", "trial_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return parse_duration(value)

    @model_validator(mode="after")
    def _bounded(self) -> BudgetConfig:
        if self.n_trials is None and self.timeout is None:
            raise ValueError("give n_trials, timeout, or both, so the study ends")
        return self


class TrainerConfig(_Strict):
    """The trainer every trial calls, and its parameters fixed across trials."""

    name: str = "contrastive"
    params: dict[str, Any] = Field(default_factory=dict)


class WorkersConfig(_Strict):
    """Parallel workers on this machine and crash handling shared by all workers."""

    gpus: Literal["all", "none"] | list[int] = "none"
    per_gpu: int = Field(default=1, ge=1, le=64)
    n_workers: int = Field(default=1, ge=1, le=1024)
    heartbeat_interval: int = Field(default=30, ge=1, le=3600)
    grace_period: int | None = Field(default=None, ge=2, le=86400)
    max_retries: int = Field(default=2, ge=0, le=100)
    max_restarts: int = Field(default=3, ge=0, le=1000)
    on_oom: Literal["fail", "retry_smaller_batch"] = "fail"

    @field_validator("gpus")
    @classmethod
    def _gpu_ids(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one GPU index, or 'none'")
            if any(i < 0 for i in value) or len(set(value)) != len(value):
                raise ValueError("GPU indices must be distinct and >= 0")
        return value


class ArtifactsConfig(_Strict):
    """What each trial leaves behind in Optuna's artifact store."""

    enabled: bool = True
    dir: str | None = None
    keep_best_k: int = Field(default=3, ge=0, le=10_000)
    plots: bool = True
    embeddings: bool = True
    notes: bool = True


class ConfirmConfig(_Strict):
    """``hpo run`` ends by training the ``top`` finalists again at ``seeds`` fresh seeds."""

    top: int = Field(default=3, ge=1, le=100)
    seeds: int = Field(default=2, ge=1, le=100)


STUDY_NAME_LENGTH = 512
"""Optuna's column for study names (``studies.study_name``)."""


class StudyConfig(_Strict):
    """A validated study file."""

    name: str = Field(min_length=1, max_length=STUDY_NAME_LENGTH)
    storage: str | None = None
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    objective: ObjectiveConfig
    sampler: ComponentConfig = ComponentConfig.model_validate(
        {"name": "tpe", "n_startup_trials": 5}
    )
    """Left out: TPE after 5 random trials, not Optuna's 10; on the search-efficiency
    benchmark 5 reached the manual sweep's best sooner than 10 or 3
    (docs/search_efficiency.md, session 15). ``{name: tpe}`` keeps Optuna's own default."""
    pruner: ComponentConfig = ComponentConfig(name="hyperband")
    budget: BudgetConfig
    trainer: TrainerConfig = TrainerConfig()
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    enqueue: list[dict[str, Scalar]] = Field(default_factory=list, max_length=1000)
    """Configurations to try first (e.g. the settings a team uses today), as Optuna's
    ``enqueue_trial``: parameters left out are sampled as usual."""
    startup: Literal["auto", "random", "balanced"] = "auto"
    """The sampler's start-up trials: its own random draws, or ``balanced``: a Latin-hypercube
    design over the space, enqueued when the study is created, in which every choice of every
    parameter appears (:mod:`hpo.samplers._startup_design`); it needs a sampler with
    ``n_startup_trials``. ``auto``: balanced for such a sampler (TPE, GP, CMA-ES), else
    random. On the search-efficiency replays the design reached the manual sweep's best
    sooner, and its picks scored higher trained again (docs/search_efficiency.md, session 18)."""
    duplicates: Literal["auto", "rerun", "reuse"] = "auto"
    """A trial whose parameters equal a COMPLETE trial's: train it again (``rerun``; runs
    differ by seed) or take that trial's value without training (``reuse``, saves the
    compute that samplers over discrete spaces spend on repeats). ``auto`` reuses when
    ``trainer.params.seed`` is fixed, where a rerun would only repeat the first run
    (:func:`hpo.duplicates.reuses_duplicates`)."""
    workers: WorkersConfig = WorkersConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    confirm: ConfirmConfig | None = None
    """Confirm the finalists after the search (``hpo confirm``); off when left out."""
    source: str | None = Field(default=None, exclude=True)
    """Path of the study file, used to place the default storage next to it."""

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the study are resolved against."""
        return Path(self.source).resolve().parent if self.source else Path.cwd()


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
            shown = repr(kind) if len(repr(kind)) <= 60 else repr(kind)[:57] + "..."
            problems.append(f"{path}.type: must be one of float, int, categorical (got {shown})")
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


def _values_of(spec: ParamSpec) -> list[Any]:
    """Representative values a parameter can take (all choices, or the range ends)."""
    if isinstance(spec, CategoricalParam):
        return list(spec.choices)
    return [spec.low, spec.high]


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
    return out


def _enqueue_problems(
    space: Mapping[str, ParamSpec], enqueue: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every enqueued value must be one the space itself could produce."""
    out: list[str] = []
    for i, params in enumerate(enqueue):
        for name, value in params.items():
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
    steps = (value - spec.low) / spec.step
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


CONFIRM_SUFFIX = "::confirm"
"""Ends the name of a study's confirmation study (``hpo confirm``)."""
PRUNE_MARKER = "::prune::"
"""Marks the service's pruning companion of a multi-objective study."""


def _name_problems(cfg: StudyConfig) -> list[str]:
    """Companion studies (``::confirm``, ``::prune::<metric>``) need room in the name.

    PostgreSQL and MySQL refuse longer study names than Optuna's column, so a long name
    would fail only later: at ``hpo confirm``, or at a multi-objective study's first report.
    SQLite and journal files take any length, and studies with such names exist.
    A name ending in ``::confirm`` is a confirmation study, which workers load with ``--set``
    (:func:`hpo.confirm.confirmation_overrides`); the pruning companion is never a file's.
    """
    if PRUNE_MARKER in cfg.name or CONFIRM_SUFFIX in cfg.name.removesuffix(CONFIRM_SUFFIX):
        return [
            f"name: {PRUNE_MARKER!r} and {CONFIRM_SUFFIX!r} mark the service's companion "
            f"studies; {CONFIRM_SUFFIX!r} may only end a name (a confirmation study's)"
        ]
    if not cfg.storage or cfg.storage.startswith(("sqlite:", "journal:")):
        return []  # a file storage keeps names of any length; only servers enforce 512
    suffixes = [] if cfg.name.endswith(CONFIRM_SUFFIX) else [CONFIRM_SUFFIX]
    if cfg.objective.is_multi:
        suffixes.append(f"{PRUNE_MARKER}{cfg.objective.pruning_metric}")
    if not suffixes:
        return []
    longest = max(suffixes, key=len)
    room = STUDY_NAME_LENGTH - len(longest)
    if len(cfg.name) <= room:
        return []
    return [
        f"name: at most {room} characters here (got {len(cfg.name)}), so that the companion "
        f"study '<name>{longest}' fits the storage's {STUDY_NAME_LENGTH}"
    ]


def validate_study_data(data: Any, *, source: str | None = None) -> StudyConfig:
    """Validate parsed YAML into a :class:`StudyConfig`, or raise with every problem found."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError([f"(top level): expected a mapping of study settings, got {kind}"])
    problems = shape_problems(data)
    if problems:
        raise ConfigError(problems)
    # `x-` keys hold YAML anchors for merge keys (`x-base: &base {...}`), as in compose files
    raw = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    raw_space = raw.pop("space", None)
    space, problems = _parse_space(raw_space)
    declared = set(raw_space) if isinstance(raw_space, Mapping) else set()
    # the space's own checks need no other section, so they are reported with its type errors
    out_of_range: set[str] = set()
    for name, spec in space.items():
        ranged = _range_problems(name, spec)
        problems.extend(ranged)
        out_of_range |= {name} if ranged else set()
    problems.extend(_condition_problems(space, declared - set(space)))
    try:
        cfg = StudyConfig.model_validate({**raw, "space": {}, "source": source})
    except ValidationError as exc:
        problems = _pydantic_problems(exc, (), StudyConfig) + problems
        raise ConfigError(problems) from None
    problems.extend(_enqueue_problems(space, cfg.enqueue))
    n_trials = cfg.budget.n_trials
    if n_trials is not None and len(cfg.enqueue) > n_trials:
        problems.append(
            f"enqueue: {len(cfg.enqueue)} configurations but budget.n_trials is {n_trials}; "
            "raise n_trials or enqueue at most that many (the rest would never run)"
        )
    problems.extend(_name_problems(cfg))
    if cfg.confirm is not None and cfg.objective.is_multi:
        problems.append(
            "confirm: needs a single objective (the finalists are ranked by one value); "
            "remove it or use objective.metric"
        )
    from hpo.checks import semantic_problems

    if problems:
        # the sampler, pruner, storage and trainer checks need only a valid top level: run
        # them on the parameters that parsed, so one `hpo validate` lists every problem
        checked = {n: spec for n, spec in space.items() if n not in out_of_range}
        failed = declared - set(checked)
        later = semantic_problems(cfg.model_copy(update={"space": checked}), unseen=failed)
        # grouping by a parameter whose own entry failed would read as "not searched"
        raise ConfigError(
            problems
            + [
                p
                for p in later
                if not (p.startswith("pruner.by") and any(repr(n) in p for n in failed))
            ]
        )
    cfg = cfg.model_copy(update={"space": space, "enqueue": _as_declared(space, cfg.enqueue)})
    problems = semantic_problems(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def revalidation_problems(cfg: StudyConfig) -> list[str]:
    """What :func:`validate_study_data` checks beyond the field types, for a config built or
    copied without it (``StudyConfig(...)``, ``model_copy``): a run asks before it creates
    its study, so a script's config is held to the file's rules (about a millisecond)."""
    problems = [p for name, spec in cfg.space.items() for p in _range_problems(name, spec)]
    problems += _condition_problems(cfg.space, set())
    problems += _name_problems(cfg)
    if problems:
        return problems
    from hpo.checks import semantic_problems

    return semantic_problems(cfg)


def load_study_config(
    path_or_text: str | Path | Mapping[str, Any],
    overrides: Iterable[str] = (),
    *,
    is_text: bool = False,
) -> StudyConfig:
    """Load, override and validate a study file; the single entry point for the CLI and tests.

    ``path_or_text`` is a file, YAML text (``is_text``, or any text with a line break: no
    file name has one) or an already parsed mapping. Text and mappings have no folder of
    their own: relative paths in them, and the default ``hpo.db``, are in the current one.
    """
    if isinstance(path_or_text, Mapping):
        data: Any = copy.deepcopy(dict(path_or_text))
        source = None
    elif is_text or (isinstance(path_or_text, str) and "\n" in path_or_text):
        data = load_yaml_text(str(path_or_text))
        source = None
    else:
        data = load_yaml_file(path_or_text)
        source = str(path_or_text)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(
            data if data is not None else {}, overrides, defaults=_component_defaults()
        )
    return validate_study_data(data, source=source)


def _component_defaults() -> dict[str, dict[str, Any]]:
    """What a left-out ``sampler`` or ``pruner`` means, so ``--set sampler.seed=3`` tweaks it."""
    fields = StudyConfig.model_fields
    return {
        key: cast(ComponentConfig, fields[key].default).model_dump()
        for key in ("sampler", "pruner")
    }
