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
from hpo.samplers._registry import startup_trials
from hpo.space import condition_holds, dependency_order

MAX_DESIGN_ROWS = 1000
"""Start-up trials the design queues at most; the sampler draws any beyond at random.

Each row is a queued trial in the storage, written when the study is made: a
``n_startup_trials`` in the millions (with a time budget, nothing else caps it) wrote
rows for minutes or ran out of memory after the study existed.
"""


def balanced_design(space: Mapping[str, ParamSpec], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations in which each parameter's values appear as evenly as ``n`` allows.

    A conditional parameter is balanced over the rows where its ``if`` holds and left out of
    the others (the trial never asks it there).
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = [{} for _ in range(n)]
    for name in dependency_order(space):
        spec = space[name]
        active = [row for row in rows if condition_holds(spec, row)]
        for row, value in zip(active, _column(spec, len(active), rng), strict=True):
            row[name] = value
    return [{name: row[name] for name in space if name in row} for row in rows]


def uses_balanced_startup(cfg: StudyConfig) -> bool:
    """``balanced``, or ``auto`` with a sampler that has random start-up trials to replace."""
    if cfg.startup == "auto":
        return bool(cfg.space) and startup_trials(cfg.sampler.name, cfg.sampler.kwargs) is not None
    return cfg.startup == "balanced"


def study_startup(cfg: StudyConfig) -> list[dict[str, Any]]:
    """What a new study enqueues after ``cfg.enqueue`` for a balanced start-up (else nothing).

    The design fills the start-up trials the file's own enqueued configurations leave, and
    no more than the trial budget can run. Rows that repeat one another or an ``enqueue``
    entry are dropped (Optuna's ``skip_if_exists`` would drop them anyway).
    """
    if not uses_balanced_startup(cfg):
        return []
    n = (startup_trials(cfg.sampler.name, cfg.sampler.kwargs) or 0) - len(cfg.enqueue)
    if cfg.budget.n_trials is not None:
        n = min(n, cfg.budget.n_trials - len(cfg.enqueue))
    n = min(n, MAX_DESIGN_ROWS)
    if n <= 0:
        return []
    seen = {_row_key(params) for params in cfg.enqueue}
    design = []
    for row in balanced_design(cfg.space, n, cfg.seed):
        key = _row_key(row)
        if key not in seen:
            seen.add(key)
            design.append(row)
    return design


def _row_key(row: Mapping[str, Any]) -> frozenset[tuple[str, Any]]:
    """A row as a set member: equal rows (``1 == 1.0``, as for dicts) share a key."""
    return frozenset(row.items())


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
    trials = f"{len(design)} queued trial{'' if len(design) == 1 else 's'}"
    rows = [*cfg.enqueue, *design]
    short = [
        name
        for name, spec in cfg.space.items()
        if isinstance(spec, CategoricalParam)
        and any(not any(_same(row.get(name), c) for row in rows) for c in spec.choices)
    ]
    if short:
        return (
            f"balanced{auto}: {trials} spreading the choices and ranges evenly (with the "
            f"file's enqueue, too few to hold every choice of {', '.join(short)})"
        )
    return f"balanced{auto}: {trials} covering every choice and range"


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
        value = low + min(round((x - low) / spec.step), last) * spec.step
        return min(max(float(f"{value:.12g}"), low), high)  # 0.15, not 0.15000000000000002
    return min(max(x, low), high)


def _same(value: Any, choice: Any) -> bool:
    """A choice as Optuna tells them apart: 1, 1.0 and True are three choices."""
    return type(value) is type(choice) and value == choice
