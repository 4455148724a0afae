"""A balanced start-up design: the sampler's first trials cover every value of every knob.

TPE's start-up trials are random, and five random draws can miss a whole loss; TPE then
spends the budget on the losses it has seen. A Latin-hypercube design over the space
cannot miss one while there are at least as many start-up trials as choices: per
parameter, its choices in a random order cycled to length ``n`` (a float or int range:
one draw in each of ``n`` equal strata), each column shuffled on its own so parameters
pair at random. Optuna's ``QMCSampler`` is the library's nearest equal, but it samples
categorical parameters at random, and a contrastive study is mostly categorical.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from hpo.config import CategoricalParam, FloatParam, IntParam, ParamSpec, StudyConfig
from hpo.samplers import startup_trials
from hpo.space import condition_holds, dependency_order


def balanced_design(space: Mapping[str, ParamSpec], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations in which each parameter's values appear as evenly as ``n`` allows."""
    rng = random.Random(seed)
    columns = {name: _column(spec, n, rng) for name, spec in space.items()}
    return [_active({name: column[i] for name, column in columns.items()}, space) for i in range(n)]


def _active(row: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """The row without the parameters whose ``if`` does not hold (the trial never asks them)."""
    chosen: dict[str, Any] = {}
    for name in dependency_order(space):
        if condition_holds(space[name], chosen):
            chosen[name] = row[name]
    return {name: chosen[name] for name in space if name in chosen}


def uses_balanced_startup(cfg: StudyConfig) -> bool:
    """``balanced``, or ``auto`` with a sampler that has random start-up trials to replace."""
    if cfg.startup == "auto":
        return bool(cfg.space) and startup_trials(cfg.sampler.name, cfg.sampler.kwargs) is not None
    return cfg.startup == "balanced"


def study_startup(cfg: StudyConfig) -> list[dict[str, Any]]:
    """What a new study enqueues after ``cfg.enqueue`` for a balanced start-up (else nothing).

    The design fills the start-up trials the file's own enqueued configurations leave, and
    no more than the trial budget can run.
    """
    if not uses_balanced_startup(cfg):
        return []
    n = (startup_trials(cfg.sampler.name, cfg.sampler.kwargs) or 0) - len(cfg.enqueue)
    if cfg.budget.n_trials is not None:
        n = min(n, cfg.budget.n_trials - len(cfg.enqueue))
    return balanced_design(cfg.space, n, cfg.seed) if n > 0 else []


def describe_startup(cfg: StudyConfig) -> str:
    """How the study starts, for ``hpo validate``: ``auto`` says which way it went."""
    auto = " (auto)" if cfg.startup == "auto" else ""
    if not uses_balanced_startup(cfg):
        why = " (auto: the sampler has no start-up trials to replace)" if auto else ""
        return "random: the sampler's own start-up draws" + why
    design = study_startup(cfg)
    if not design:
        return (
            "balanced"
            + auto
            + ": nothing to add (the file's enqueue fills the start-up or the budget)"
        )
    return f"balanced{auto}: {len(design)} queued trials covering every choice and range"


def _column(spec: ParamSpec, n: int, rng: random.Random) -> list[Any]:
    if isinstance(spec, CategoricalParam):
        order = list(spec.choices)
        rng.shuffle(order)
        column = [order[i % len(order)] for i in range(n)]
    else:
        column = [_in_range(spec, (i + rng.random()) / n) for i in range(n)]
    rng.shuffle(column)
    return column


def _in_range(spec: FloatParam | IntParam, u: float) -> Any:
    """The value at quantile ``u`` of the range, on its log scale and step grid."""
    low, high = float(spec.low), float(spec.high)
    if spec.log:
        x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    else:
        x = low + u * (high - low)
    if isinstance(spec, IntParam):
        steps = round((x - spec.low) / spec.step)
        return min(spec.low + steps * spec.step, spec.high - (spec.high - spec.low) % spec.step)
    if spec.step is not None:
        last = math.floor((high - low) / spec.step + 1e-9)
        return round(low + min(round((x - low) / spec.step), last) * spec.step, 12)
    return min(max(x, low), high)
