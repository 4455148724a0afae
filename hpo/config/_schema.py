"""The study file's schema: one pydantic model per section, unknown keys refused.

Unknown keys are errors everywhere: a misspelt ``n_trails`` must not silently run
the default budget on a shared GPU pool.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from hpo.errors import short_repr

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
        try:
            seconds = float(value)
        except OverflowError:  # an integer of hundreds of digits
            seconds = math.inf
    else:
        match = _DURATION.match(str(value))
        if not match:
            shown = short_repr(value)
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
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Count = Annotated[int, BeforeValidator(_not_a_bool)]
"""An integer setting (``n_trials: true`` is a typo, not 1 trial)."""


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
            if (
                self.prune_on is not None
                and self.prune_on not in self.metrics
                and self.prune_direction is None
            ):
                raise ValueError(
                    "prune_on names a metric that is not an objective: give prune_direction too"
                )
        elif self.metric is None:
            raise ValueError("metric is required (a key of the trainer's result)")
        if self.prune_direction is not None and self.pruning_metric in self.names:
            own = self.study_directions[self.names.index(self.pruning_metric)]
            if self.prune_direction != own:
                raise ValueError(
                    f"prune_direction is {self.prune_direction} but {self.pruning_metric} is "
                    f"optimized in direction {own}: leave prune_direction out"
                )
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
        """Direction of the pruning metric: given, or its objective's, or the (single) study's.

        ``prune_on: probe_f1`` beside ``metric: best_probe_f1`` goes the objective's way.
        """
        if self.prune_direction is not None:
            return self.prune_direction
        names = self.names
        metric = self.pruning_metric
        return self.study_directions[names.index(metric) if metric in names else 0]


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

    n_trials: Count | None = Field(default=None, ge=1, le=10_000_000)
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

    gpus: Literal["all", "none"] | list[Count] = "none"
    per_gpu: Count = Field(default=1, ge=1, le=64)
    n_workers: Count = Field(default=1, ge=1, le=1024)
    heartbeat_interval: Count = Field(default=30, ge=1, le=3600)
    grace_period: Count | None = Field(default=None, ge=2, le=86400)
    max_retries: Count = Field(default=2, ge=0, le=100)
    max_restarts: Count = Field(default=3, ge=0, le=1000)
    on_oom: Literal["fail", "retry_smaller_batch"] = "fail"

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpus_as_the_flag_takes_them(cls, value: Any) -> Any:
        """``gpus: 0`` and ``gpus: "0,1"`` as ``--gpus 0`` and ``--gpus 0,1`` read them."""
        if isinstance(value, int) and not isinstance(value, bool):
            return [value]
        if isinstance(value, str) and re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*,?\s*", value):
            return [int(part) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _grace_outlasts_heartbeats(self) -> WorkersConfig:
        """A grace shorter than two beats fails live trials whenever one beat is late."""
        if self.grace_period is not None and self.grace_period < 2 * self.heartbeat_interval:
            raise ValueError(
                f"grace_period ({self.grace_period} s) must be at least twice "
                f"heartbeat_interval ({self.heartbeat_interval} s), or a live trial whose "
                "heartbeat is a little late is failed and run again"
            )
        return self

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
    keep_best_k: Count = Field(default=3, ge=0, le=10_000)
    plots: bool = True
    embeddings: bool = True
    notes: bool = True


class ConfirmConfig(_Strict):
    """``hpo run`` ends by training the ``top`` finalists again at ``seeds`` fresh seeds."""

    top: Count = Field(default=3, ge=1, le=100)
    seeds: Count = Field(default=2, ge=1, le=100)


STUDY_NAME_LENGTH = 512
"""Optuna's column for study names (``studies.study_name``)."""


class StudyConfig(_Strict):
    """A validated study file."""

    name: str = Field(min_length=1, max_length=STUDY_NAME_LENGTH)
    storage: str | None = None
    seed: Count = Field(default=0, ge=0, le=2**32 - 1)
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

    @field_validator("name")
    @classmethod
    def _one_printable_line(cls, value: str) -> str:
        """A name is printed in every summary and table: a line break or a terminal escape
        in it would split them or recolour the user's terminal."""
        if not value.isprintable():
            raise ValueError(
                "must be printable text on one line (no line breaks, tabs or control "
                f"characters), got {short_repr(value)}"
            )
        return value

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the study are resolved against."""
        return Path(self.source).resolve().parent if self.source else Path.cwd()

    @property
    def uses_prune_companion(self) -> bool:
        """Whether per-epoch reports go to a study of their own (``<name>::prune::<metric>``).

        Optuna cannot prune multi-objective trials (nor may their trials carry curves: its
        TPE would read them), and a single-objective study prunes (and ranks its pruned
        trials by their last report) in its own direction only; with ``pruner: none`` (as
        ``hpo confirm`` runs) a single objective keeps its curves on its own trials.
        """
        objective = self.objective
        if objective.is_multi:
            return True
        return (
            self.pruner.name != "none"
            and objective.pruning_direction != objective.study_directions[0]
        )


CONFIRM_SUFFIX = "::confirm"
"""Ends the name of a study's confirmation study (``hpo confirm``)."""


PRUNE_MARKER = "::prune::"
"""Marks the service's pruning companion of a multi-objective study."""

PRUNE_COMPANION_ATTR = "prune_companion_trial"
"""Trial user attribute: the number of the trial's twin in the pruning companion study,
which holds its per-epoch curve (companion numbers drift from the study's own)."""
