"""Confirming the finalists: the search's top configurations trained again at fresh seeds.

A search that tries dozens of configurations keeps the luckiest of them: its best value
is partly seed noise, and the configuration behind it is often not the best one. On the
benchmark task that cost 0.006 macro-F1 against a manual sweep's pick (see
docs/search_efficiency.md). Training the top few configurations again at the same fresh
seeds, and picking by their mean, pays for that winner's curse.

The runs are trials of a companion study, ``<name>::confirm``, in the same storage: they
run on the same workers (GPUs, retries, heartbeats, artifacts) as the search, show up in
the dashboard, and a second ``hpo confirm`` resumes instead of training them again.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import CONFIRM_SUFFIX, ConfirmConfig, StudyConfig, validate_study_data
from hpo.duplicates import DUPLICATE_OF_ATTR, active_params, same_params
from hpo.errors import ConfigError, HpoError
from hpo.fixed_params import fixed_key, legacy_key, trained_alike
from hpo.overrides import apply_overrides
from hpo.storages import (
    NoStudiesError,
    open_storage,
    outage_as_error,
    storage_file_absent,
    storage_url,
)
from hpo.workers.budget import is_replaced, replaced_numbers
from hpo.workers.recovery import SEED_ATTR

CONFIRMS_ATTR = "confirms_trial"
"""User attribute of a confirmation run: the number of the search trial it trains again."""
CONFIRM_SEED_ATTR = "confirm_seed"
"""User attribute of a confirmation run: the fresh seed it was queued with."""
_SEED_STREAM = 0x636F6E66  # "conf": keeps these seeds apart from the per-trial ones
_NOT_DONE = (TrialState.RUNNING, TrialState.WAITING)


def confirm_study_name(name: str) -> str:
    """The companion study that holds the confirmation runs of study ``name``."""
    return f"{name}{CONFIRM_SUFFIX}"


def confirmation_overrides(cfg: StudyConfig, n_runs: int) -> list[str]:
    """``--set`` overrides that turn the study file into its confirmation study.

    Workers load the study file with these, so a confirmation runs wherever the search
    ran. Every run is queued with its parameters, so the sampler only hands them out
    (``random``: a grid sampler would stop the study once its points were visited). No
    pruner (every run trains to the end), nothing enqueued from the file and no start-up
    design, every run trained (``duplicates: rerun``), exactly the queued runs as the
    budget, and no confirmation of the confirmation. The name is quoted: ``--set`` values
    are YAML.
    """
    return [
        f"name={json.dumps(confirm_study_name(cfg.name))}",
        "sampler={name: random}",
        "pruner={name: none}",
        "enqueue=[]",
        "startup=random",
        "duplicates=rerun",
        f"budget.n_trials={max(n_runs, 1)}",
        "budget.timeout=null",
        "confirm=null",
    ]


def confirmation_config(cfg: StudyConfig, n_runs: int) -> StudyConfig:
    """The confirmation study's config, for callers of the Python API (same as the overrides)."""
    data = apply_overrides(
        cfg.model_dump(mode="python", exclude_unset=True), confirmation_overrides(cfg, n_runs)
    )
    return validate_study_data(data, source=cfg.source)


def confirm_seeds(study_seed: int, n: int, taken: set[Any]) -> list[int]:
    """``n`` seeds derived from the study seed, none used by a trial of the search."""
    out: list[int] = []
    index = 0
    while len(out) < n:
        state = np.random.SeedSequence([int(study_seed), _SEED_STREAM, index]).generate_state(1)
        seed = int(state[0] % (2**31 - 1))
        index += 1
        if seed not in taken and seed not in out:
            out.append(seed)
    return out


def select_finalists(
    study: optuna.Study, top: int, fixed: Mapping[str, Any] | None = None
) -> list[FrozenTrial]:
    """The ``top`` best COMPLETE trials with distinct parameters, best first.

    ``fixed``: the trainer parameters the confirmation runs train with; trials trained
    with others (a study resumed from an edited file) are no finalists, since their value
    says nothing of a run under these.
    """
    return _finalists(
        study.get_trials(deepcopy=False), study.direction, top, _trained_with(study, fixed)
    )


def _trained_with(
    study: optuna.Study, fixed: Mapping[str, Any] | None
) -> Callable[[FrozenTrial], bool] | None:
    if fixed is None:
        return None
    key, legacy = fixed_key(fixed), legacy_key(study.user_attrs)
    return lambda trial: trained_alike(trial, key, legacy)


def _finalists(
    trials: Sequence[FrozenTrial],
    direction: optuna.study.StudyDirection,
    top: int,
    eligible: Callable[[FrozenTrial], bool] | None = None,
) -> list[FrozenTrial]:
    ranked = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and DUPLICATE_OF_ATTR not in t.user_attrs
        and t.value is not None
        and (eligible is None or eligible(t))
    ]
    sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    ranked.sort(key=lambda t: (sign * float(t.value or 0.0), t.number))
    out: list[FrozenTrial] = []
    for trial in ranked:
        if any(same_params(active_params(trial), active_params(o)) for o in out):
            continue  # a rerun of a configuration already in: the best of its runs stands
        out.append(trial)
        if len(out) == top:
            break
    return out


def _fits_space(trial: FrozenTrial, cfg: StudyConfig) -> bool:
    """Whether the file's space asks exactly ``trial``'s parameters: a run re-suggests them
    from it, so after a forced space change it would train (and record) another one."""
    from hpo.space import suggest_params

    try:
        asked = suggest_params(optuna.trial.FixedTrial(dict(trial.params)), cfg.space)
    except (ValueError, KeyError):  # a parameter the trial does not hold
        return False
    return set(asked) == set(trial.params)


def _confirmable(
    trials: Sequence[FrozenTrial],
    direction: optuna.study.StudyDirection,
    top: int,
    eligible: Callable[[FrozenTrial], bool] | None,
    cfg: StudyConfig,
) -> list[FrozenTrial]:
    """The ``top`` finalists that a confirmation can train again (see :func:`_fits_space`).

    Queueing and reading back both rank by this, so a top trial that cannot be confirmed
    never leaves the confirmation out of date for good.
    """
    ranked = _finalists(trials, direction, len(trials), eligible)
    return list(itertools.islice((t for t in ranked if _fits_space(t, cfg)), top))


def _pair(trial: FrozenTrial) -> tuple[int, int] | None:
    number, seed = trial.user_attrs.get(CONFIRMS_ATTR), trial.user_attrs.get(CONFIRM_SEED_ATTR)
    if isinstance(number, int) and isinstance(seed, int):
        return number, seed
    return None


def _run_of(trial: FrozenTrial, search: Mapping[int, FrozenTrial]) -> tuple[int, int] | None:
    """``(search trial, seed)`` that a confirmation run trains, when it is a run of this
    search: a search deleted and recreated under its name leaves runs of other trials #N."""
    pair = _pair(trial)
    if pair is None:
        return None
    source = search.get(pair[0])
    if source is None or not same_params(source.params, trial.params):
        return None
    return pair


def _load_search(cfg: StudyConfig) -> optuna.Study:
    from hpo.results import load_existing_study

    return load_existing_study(cfg)


def confirm_request(cfg: StudyConfig, top: int | None, seeds: int | None) -> tuple[int, int]:
    """``(top, seeds)``: what was asked, else the study file's ``confirm``, else (3, 2)."""
    section = cfg.confirm or ConfirmConfig()
    return (section.top if top is None else top, section.seeds if seeds is None else seeds)


@dataclass(frozen=True)
class ConfirmationPlan:
    """What :func:`queue_confirmation` did: the finalists, the seeds, the runs queued now."""

    finalists: list[int]
    seeds: list[int]
    queued: int
    n_runs: int
    """Every run the confirmation study holds (earlier requests included): its budget."""
    search_unfinished: int = 0
    """Search trials still running or queued: finalists come from the completed ones."""


def queue_confirmation(
    cfg: StudyConfig, *, top: int, seeds: int, force: bool = False
) -> ConfirmationPlan:
    """Queue the runs that train the ``top`` finalists again at ``seeds`` fresh seeds.

    Every finalist gets the same seeds, so their means differ by configuration, not by
    seed luck. A (finalist, seed) run already completed, running or queued is not queued
    again; one that failed (or started past the budget) is, so a rerun retries it.
    ``force`` continues a confirmation study whose search space changed, as ``hpo run``.
    """
    problems = []
    if not 1 <= top <= 100:
        problems.append(f"--top (top): must be from 1 to 100 (got {top})")
    if not 1 <= seeds <= 100:
        problems.append(f"--seeds (seeds): must be from 1 to 100 (got {seeds})")
    if cfg.objective.is_multi:
        problems.append(
            "objective: confirmation needs a single objective (this study has "
            f"{len(cfg.objective.names)}: {', '.join(cfg.objective.names)})"
        )
    if problems:
        raise ConfigError(problems)
    search = _load_search(cfg)
    from hpo.runner import check_compatible

    check_compatible(search, cfg, force)  # the companion takes the file's space, as run would
    search_trials = search.get_trials(deepcopy=False)
    eligible = _trained_with(search, cfg.trainer.params)
    finalists = _confirmable(search_trials, search.direction, top, eligible, cfg)
    if not finalists and _finalists(search_trials, search.direction, 1, eligible):
        raise ConfigError(
            [
                f"study {cfg.name!r}: no completed trial has the parameters of this file's "
                "space (it changed since they ran, with --force), so none can be trained again"
            ]
        )
    if not finalists:
        if select_finalists(search, 1):
            raise ConfigError(
                [
                    f"study {cfg.name!r}: no completed trial trained with this file's "
                    "trainer.params (they changed since the trials ran, e.g. by --set), so "
                    "none can be confirmed under them; confirm with the trials' params"
                ]
            )
        raise ConfigError([f"study {cfg.name!r} has no completed trial to confirm yet"])
    taken = {t.user_attrs.get("seed") for t in search_trials}
    unfinished = sum(1 for t in search_trials if t.state in _NOT_DONE)

    from hpo.runner import open_study

    confirm = open_study(confirmation_config(cfg, n_runs=1), force=force)
    existing = confirm.get_trials(deepcopy=False)
    replaced = replaced_numbers(existing)
    key = fixed_key(cfg.trainer.params)
    by_number = {t.number: t for t in search_trials}
    live = [  # runs of this search under these trainer params: others confirm nothing
        t
        for t in existing
        if t.state != TrialState.FAIL
        and not is_replaced(t, replaced)
        and trained_alike(t, key, None)
    ]
    have = {_run_of(t, by_number) for t in live}
    # every finalist gets every seed the confirmation already used (a later --seeds 1
    # after --seeds 3 still compares means over the same three seeds)
    used = list(dict.fromkeys(pair[1] for pair in have if pair is not None))
    fresh = confirm_seeds(cfg.seed, max(seeds, len(used)) + len(used), taken | set(used))
    seed_list = (used + fresh)[: max(seeds, len(used))]
    queued = 0
    for trial in finalists:
        for seed in seed_list:
            if (trial.number, seed) in have:
                continue
            confirm.add_trial(
                optuna.trial.create_trial(
                    state=TrialState.WAITING,
                    params=trial.params,
                    distributions=trial.distributions,
                    user_attrs={CONFIRMS_ATTR: trial.number, CONFIRM_SEED_ATTR: seed},
                    system_attrs={SEED_ATTR: seed},
                )
            )
            queued += 1
    trials = confirm.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    n_runs = sum(1 for t in trials if not is_replaced(t, replaced))
    return ConfirmationPlan(
        finalists=[t.number for t in finalists],
        seeds=seed_list,
        queued=queued,
        n_runs=n_runs,
        search_unfinished=unfinished,
    )


@dataclass(frozen=True)
class Finalist:
    """One configuration of the search and its confirmation runs."""

    trial: int
    params: dict[str, Any]
    search_value: float
    values: list[float] = field(default_factory=list)
    """One value per seed whose run completed."""
    failed: int = 0
    """Seeds whose runs all failed, with none queued again."""
    pending: int = 0
    """Seeds whose run is queued or running."""

    @property
    def mean(self) -> float:
        """Mean of the completed confirmation runs (NaN when none has completed)."""
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over the confirmation runs (None below two runs)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None


@dataclass(frozen=True)
class Confirmation:
    """The confirmation study read back, finalists in the search's order."""

    study_name: str
    metric: str
    direction: str
    seeds: list[int]
    finalists: list[Finalist]
    stale: bool = False
    """Search trials finished since then rank among the top ``len(finalists)``
    configurations without being confirmed: ``hpo confirm`` again brings it up to date."""
    search_best: int | None = None
    """The search's best trial; not a finalist when its parameters left the file's space."""

    @property
    def pending(self) -> int:
        """Runs queued or running: the confirmation is not finished while any is."""
        return sum(f.pending for f in self.finalists)

    def best(self) -> Finalist | None:
        """The finalist with the best mean, among those with a completed run.

        A finalist whose run failed at some seed (NaN, out of memory, an exception) is
        picked only when every finalist has a failure: a configuration that breaks at one
        seed in a handful is not the one to hand over.
        """
        scored = [f for f in self.finalists if f.values and not f.failed]
        scored = scored or [f for f in self.finalists if f.values]
        if not scored:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        return min(scored, key=lambda f: sign * f.mean)  # min keeps the search's order on ties


def read_confirmation(
    cfg: StudyConfig, search_study: optuna.Study | None = None
) -> Confirmation | None:
    """The confirmation of ``cfg``'s study, or None when it was never asked for (or the
    study is multi-objective). ``search_study``: the search, when the caller has it open."""
    if cfg.objective.is_multi:
        return None
    if storage_file_absent(storage_url(cfg)):
        return None
    try:
        storage = open_storage(storage_url(cfg), read_only=True)  # status and best only read
        confirm = optuna.load_study(study_name=confirm_study_name(cfg.name), storage=storage)
    except (KeyError, NoStudiesError):
        return None
    search_study = search_study or _load_search(cfg)
    search_trials = search_study.get_trials(deepcopy=False)
    search = {t.number: t for t in search_trials}
    trials = confirm.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    key = fixed_key(cfg.trainer.params)
    runs: dict[int, dict[int, list[FrozenTrial]]] = {}
    seeds: list[int] = []
    for trial in trials:
        pair = _run_of(trial, search)
        if pair is None or is_replaced(trial, replaced) or not trained_alike(trial, key, None):
            continue  # (runs under other trainer.params: a mean of the two means nothing)
        runs.setdefault(pair[0], {}).setdefault(pair[1], []).append(trial)
        if pair[1] not in seeds:
            seeds.append(pair[1])
    direction = confirm.direction.name.lower()  # as stored, like the search's best trial
    sign = -1.0 if direction == "maximize" else 1.0
    finalists = []
    for number, by_seed in runs.items():
        source = search[number]
        if source.value is None:
            continue
        values: list[float] = []
        failed = pending = 0
        for seed_runs in by_seed.values():
            done = [t.value for t in seed_runs if t.state == TrialState.COMPLETE]
            if done and done[0] is not None:
                values.append(float(done[0]))
            elif any(t.state in _NOT_DONE for t in seed_runs):
                pending += 1
            else:
                failed += 1
        finalists.append(
            Finalist(number, dict(source.params), float(source.value), values, failed, pending)
        )
    if not finalists:
        return None
    finalists.sort(key=lambda f: (sign * f.search_value, f.trial))
    confirmed = {f.trial for f in finalists}
    eligible = _trained_with(search_study, cfg.trainer.params)
    current = _confirmable(search_trials, search_study.direction, len(finalists), eligible, cfg)
    best = _finalists(search_trials, search_study.direction, 1, eligible)
    return Confirmation(
        study_name=confirm.study_name,
        metric=cfg.objective.names[0],
        direction=direction,
        seeds=seeds,
        finalists=finalists,
        stale=any(t.number not in confirmed for t in current),
        search_best=best[0].number if best else None,
    )


@outage_as_error()
def confirm_study(
    cfg: StudyConfig,
    *,
    top: int | None = None,
    seeds: int | None = None,
    hooks: Sequence[Any] = (),
    force: bool = False,
) -> Confirmation:
    """Queue and run the confirmation in this process; the CLI can spread it over workers.

    ``top`` and ``seeds`` default to the study file's ``confirm`` section, else 3 and 2.
    """
    from hpo.runner import run_study

    top, seeds = confirm_request(cfg, top, seeds)
    plan = queue_confirmation(cfg, top=top, seeds=seeds, force=force)
    run_study(confirmation_config(cfg, plan.n_runs), hooks=hooks, force=force)
    confirmation = read_confirmation(cfg)
    if confirmation is None:  # the runs were just queued: only a vanished study gets here
        raise HpoError([f"study {confirm_study_name(cfg.name)!r} holds no confirmation run"])
    return confirmation
