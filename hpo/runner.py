"""Create or resume a study and run trials until the shared budget is spent."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.config import StudyConfig
from hpo.cuda_errors import CudaContextLost
from hpo.errors import ConfigError, StudyMismatchError
from hpo.fixed_params import record_fixed_set
from hpo.objective import FAIL_REASON, Objective, TrialHook, prune_study_name
from hpo.owned_trials import OwnedTrialsStorage
from hpo.pruners import study_pruner, with_completed_cache
from hpo.samplers import SAMPLERS_THAT_STOP, build_sampler, study_startup
from hpo.space import distribution_of, space_as_dict, space_fingerprint
from hpo.storages import (
    default_grace_period,
    is_rdb_url,
    mask_url,
    open_storage,
    outage_as_error,
    storage_file_absent,
    storage_url,
)
from hpo.workers import lapsed
from hpo.workers.budget import (
    RETRIED_ATTR,
    SURPLUS_ATTR,
    BudgetCallback,
    BudgetTracker,
    budget_state,
    counted_trials,
    is_replaced,
    replaced_numbers,
)
from hpo.workers.guard import TrialGuard
from hpo.workers.heartbeat import needs_own_heartbeat, recover_stale
from hpo.workers.identity import WorkerIdentity, owned_by
from hpo.workers.interrupts import interrupt_handling
from hpo.workers.oom import FreeMemoryAfterOom, OomRetryHook
from hpo.workers.recovery import (
    INTERRUPTED,
    RetryHook,
    RetryStaleTrial,
    fail_stale_trials,
    quiet_expected_warnings,
    recover_orphans,
    requeue,
    requeue_lost_retries,
    signals_held,
)
from hpo.workers.unowned import recover_abandoned_unowned, single_machine_storage
from trainers.registry import resolve_trainer

logger = logging.getLogger(__name__)

StudyCallback = Callable[[optuna.Study, FrozenTrial], None]

ATTR_SPACE = "hpo:space"
ATTR_FINGERPRINT = "hpo:space_fingerprint"
ATTR_OBJECTIVE = "hpo:objective"
ATTR_TRAINER = "hpo:trainer"
ATTR_FIXED = "hpo:fixed_params"
ATTR_SEED = "hpo:seed"

__all__ = [
    "RETRIED_ATTR",
    "BudgetCallback",
    "RunSummary",
    "counted_trials",
    "open_study",
    "run_study",
    "summarize",
]


@dataclass
class RunSummary:
    """What one ``run_study`` call did and where the study stands."""

    study_name: str
    storage: str
    trials_run: int
    n_complete: int
    n_pruned: int
    n_failed: int
    n_running: int
    elapsed_seconds: float
    n_retried: int = 0
    n_surplus: int = 0
    best_number: int | None = None
    best_values: list[float] | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    sampler_stopped: bool = False
    """The sampler ended the study (a grid or brute force with every point tried): there
    is nothing more to run, whatever ``n_trials`` says."""

    @property
    def any_complete(self) -> bool:
        """True when the study has at least one completed trial (the CLI's exit status)."""
        return self.n_complete > 0


def check_compatible(study: optuna.Study, cfg: StudyConfig, force: bool) -> None:
    """Refuse to go on with a study whose space or objective the file changed.

    ``force`` lets a changed space through; what Optuna cannot take never passes.
    """
    attrs = study.user_attrs
    problems: list[str] = []
    old_fp = attrs.get(ATTR_FINGERPRINT)
    if old_fp is not None and old_fp != space_fingerprint(cfg.space):
        old_space = attrs.get(ATTR_SPACE, {})
        new_space = space_as_dict(cfg.space)
        changed = sorted(
            k for k in set(old_space) | set(new_space) if old_space.get(k) != new_space.get(k)
        )
        problems.append(
            f"study {cfg.name!r} exists with a different search space (changed: "
            f"{', '.join(changed)}); use --force (force=True) to continue it anyway, or give the study a new name"
        )
    unforceable = _distribution_changes(study, cfg)
    changed_pruning = prune_direction_change(study, cfg)
    if changed_pruning is not None:
        unforceable.append(changed_pruning)
    changed_objective = objective_change(study, cfg)
    if changed_objective is not None:
        unforceable.append(
            f"{changed_objective}; an objective cannot change within a study: give the study "
            "a new name"
        )
    if unforceable:  # --force cannot help: its hint would only mislead
        raise StudyMismatchError(unforceable)
    if problems and not force:
        raise StudyMismatchError(problems)


def objective_change(study: optuna.Study, cfg: StudyConfig) -> str | None:
    """How the file's objective differs from the one the study was run with, or None.

    Every command that reads values refuses a change too: the stored values would be
    printed under the file's metric names and ranked in its directions.
    """
    old = study.user_attrs.get(ATTR_OBJECTIVE)
    new = {"metrics": cfg.objective.names, "directions": cfg.objective.study_directions}
    if old is None or old == new:
        return None
    return f"study {cfg.name!r} exists with objective {old}, the file says {new}"


def _distribution_changes(study: optuna.Study, cfg: StudyConfig) -> list[str]:
    """Changes Optuna refuses for a parameter the study's trials hold, ``--force`` or not.

    A parameter must keep its kind, its log scale and (categorical) its choices within a
    study (``optuna.distributions.check_distribution_compatibility``): with ``--force``
    every new trial failed. Compared with what the trials hold, not with the file of the
    last run: a parameter no trial drew yet may still change.
    """
    held: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for param, dist in trial.distributions.items():
            held.setdefault(param, dist)
    out = []
    for param, spec in cfg.space.items():
        old = held.get(param)
        if old is None:
            continue
        new = distribution_of(spec)
        try:
            optuna.distributions.check_distribution_compatibility(old, new)
        except ValueError:
            out.append(f"study {cfg.name!r}: space.{param} {_incompatibility(old, new)}")
    return out


def _incompatibility(
    old: optuna.distributions.BaseDistribution, new: optuna.distributions.BaseDistribution
) -> str:
    """One line on what changed, and the way out."""
    way_out = "within a study (not even with --force): give the study a new name"
    if isinstance(old, CategoricalDistribution) and isinstance(new, CategoricalDistribution):
        text = (
            f"choices: the study's trials hold {list(old.choices)}, the file says "
            f"{list(new.choices)}; Optuna cannot change a parameter's choices {way_out}"
        )
        if _same_numbers(old.choices, new.choices):
            text += (
                " (earlier versions read numbers like 1e-3 as text: quote the choices, "
                "'1e-3', to continue this study)"
            )
        return text
    if type(old) is not type(new):
        kind = {FloatDistribution: "float", IntDistribution: "int"}
        return (
            f"type: the study's trials hold {kind.get(type(old), 'categorical')} values, the "
            f"file says {kind.get(type(new), 'categorical')}; Optuna cannot change a "
            f"parameter's type {way_out}"
        )
    return (
        f"log scale: the study's trials hold log={getattr(old, 'log', None)}, the file says "
        f"log={getattr(new, 'log', None)}; Optuna cannot change a parameter's log scale {way_out}"
    )


def _same_numbers(old: Sequence[Any], new: Sequence[Any]) -> bool:
    """Whether ``old`` are texts of exactly the numbers in ``new`` (``'1e-3'`` and 0.001)."""
    if len(old) != len(new) or not all(isinstance(o, str) for o in old):
        return False
    try:
        return all(float(o) == n for o, n in zip(old, new, strict=True))
    except (TypeError, ValueError):
        return False


def _record_study_attrs(study: optuna.Study, cfg: StudyConfig) -> None:
    study.set_user_attr(ATTR_SPACE, space_as_dict(cfg.space))
    study.set_user_attr(ATTR_FINGERPRINT, space_fingerprint(cfg.space))
    study.set_user_attr(
        ATTR_OBJECTIVE,
        {"metrics": cfg.objective.names, "directions": cfg.objective.study_directions},
    )
    study.set_user_attr(ATTR_TRAINER, cfg.trainer.name)
    # each trial's, by the key it records; then the latest run's
    record_fixed_set(study, cfg.trainer.params, study.user_attrs.get(ATTR_FIXED))
    study.set_user_attr(ATTR_FIXED, cfg.trainer.params)
    study.set_user_attr(ATTR_SEED, cfg.seed)


def grace_period(cfg: StudyConfig) -> float:
    """Seconds without a sign of life after which a running trial counts as abandoned."""
    workers = cfg.workers
    return float(workers.grace_period or default_grace_period(workers.heartbeat_interval))


def open_study_storage(cfg: StudyConfig) -> optuna.storages.BaseStorage:
    """The study's storage, with heartbeats and stale-trial retries on for RDB storages."""
    url = storage_url(cfg)
    if not is_rdb_url(url):
        return open_storage(url)
    workers = cfg.workers
    interval = workers.heartbeat_interval
    backend = open_storage(
        url,
        heartbeat_interval=interval,
        grace_period=int(grace_period(cfg)),
        heartbeat_stale_trial_callback=RetryStaleTrial(workers.max_retries),
    )
    if not OwnedTrialsStorage.supported():  # another Optuna: its own cache, as before
        return backend
    assert isinstance(backend, optuna.storages.RDBStorage)
    return OwnedTrialsStorage(backend)


def own_heartbeat(cfg: StudyConfig, study: optuna.Study) -> tuple[float, float] | None:
    """``(interval, grace)`` of hpo's own heartbeat when the storage lacks Optuna's, else None."""
    if not needs_own_heartbeat(study._storage):
        return None
    interval = cfg.workers.heartbeat_interval
    return float(interval), grace_period(cfg)


def open_study(cfg: StudyConfig, *, force: bool = False, create: bool = True) -> optuna.Study:
    """Create the study or load it, refusing a changed space or objective unless ``force``."""
    return _open_study(cfg, force=force, create=create)[0]


def study_not_found(cfg: StudyConfig) -> ConfigError:
    """The error of a read that finds no study named ``cfg.name`` in its storage."""
    return ConfigError(
        [f"study {cfg.name!r} not found in {mask_url(storage_url(cfg))}; run it first"]
    )


def _open_study(
    cfg: StudyConfig, *, force: bool = False, create: bool = True
) -> tuple[optuna.Study, bool]:
    """:func:`open_study`, and whether this call created the study."""
    if not create and storage_file_absent(storage_url(cfg)):
        raise study_not_found(cfg)
    if create:
        from hpo.checks import run_problems
        from hpo.config import revalidation_problems

        # a config a script built may have skipped validation; a store or an input that
        # cannot work: either way, no study is left behind
        problems = revalidation_problems(cfg) or run_problems(cfg)
        if problems:
            raise ConfigError(problems)
    storage = open_study_storage(cfg)
    if create and cfg.artifacts.enabled:
        from hpo.artifacts import study_artifact_store

        study_artifact_store(cfg)  # made once the storage opened: no folder left by a failure
    sampler = build_sampler(cfg.sampler.name, cfg.sampler.kwargs, seed=cfg.seed, space=cfg.space)
    pruner = with_completed_cache(study_pruner(cfg))
    directions = cfg.objective.study_directions
    if not create:
        try:
            loaded = optuna.load_study(
                study_name=cfg.name, storage=storage, sampler=sampler, pruner=pruner
            )
        except KeyError:
            raise study_not_found(cfg) from None
        return loaded, False
    try:
        existing = optuna.load_study(
            study_name=cfg.name, storage=storage, sampler=sampler, pruner=pruner
        )
    except KeyError:
        existing = None
    if existing is not None:
        return _resumed(existing, cfg, force), False
    try:
        study = optuna.create_study(
            study_name=cfg.name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
        )
    except optuna.exceptions.DuplicatedStudyError:
        # another machine's `hpo run` created it since the look-up: that one queues the
        # start-up trials, so they are queued once, not once per machine
        existing = optuna.load_study(
            study_name=cfg.name, storage=storage, sampler=sampler, pruner=pruner
        )
        existing = _resumed(existing, cfg, force)
        if not _wait_for_queue(existing):
            # its creator died before queueing (or this process created it and lost the
            # acknowledgement): queue them here, once more at worst
            _queue_first_trials(existing, cfg)
        return existing, False
    _record_study_attrs(study, cfg)
    # only by the process that created the study: a resumed study has run them
    _queue_first_trials(study, cfg)
    return study, True


QUEUED_ATTR = "hpo:first_trials_queued"
"""Study system attr set once a new study's ``enqueue`` and start-up trials are queued."""

QUEUE_WAIT_S = 10.0
"""How long a machine that lost the race to create a study waits for its creator to queue."""


def _queue_first_trials(study: optuna.Study, cfg: StudyConfig) -> None:
    for params in [*cfg.enqueue, *study_startup(cfg)]:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    study._storage.set_study_system_attr(study._study_id, QUEUED_ATTR, True)


def _wait_for_queue(study: optuna.Study) -> bool:
    """Whether the creator queued the first trials: waited for, so they run first."""
    deadline = time.monotonic() + QUEUE_WAIT_S
    while True:
        if study._storage.get_study_system_attrs(study._study_id).get(QUEUED_ATTR):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _resumed(existing: optuna.Study, cfg: StudyConfig, force: bool) -> optuna.Study:
    """An existing study, checked against the file (same directions, compatible space)."""
    directions = cfg.objective.study_directions
    if [d.name.lower() for d in existing.directions] != directions:
        raise StudyMismatchError(
            [
                f"study {cfg.name!r} exists with directions "
                f"{[d.name.lower() for d in existing.directions]}, the file says {directions}"
            ]
        )
    check_compatible(existing, cfg, force)
    _record_study_attrs(existing, cfg)
    return existing


def prune_direction_change(study: optuna.Study, cfg: StudyConfig) -> str | None:
    """How the file's pruning direction differs from the study's pruning companion, or None.

    Read without creating the companion, so a run (and each of its workers) refuses it
    before anything changes: its finished curves were ranked the other way, and pruning
    would keep the worst trials.
    """
    if not cfg.uses_prune_companion:
        return None
    storage = study._storage
    try:
        companion_id = storage.get_study_id_from_name(prune_study_name(cfg))
    except KeyError:
        return None
    (held,) = storage.get_study_directions(companion_id)
    wanted = cfg.objective.pruning_direction
    if held.name.lower() == wanted:
        return None
    return (
        f"objective.prune_direction: study {cfg.name!r} prunes on "
        f"{cfg.objective.pruning_metric} in direction {held.name.lower()}, the file says "
        f"{wanted}; keep {held.name.lower()}, or give the study a new name"
    )


def _prune_companion(cfg: StudyConfig, study: optuna.Study) -> optuna.Study | None:
    """The study that prunes, where the main one cannot (see ``uses_prune_companion``)."""
    if not cfg.uses_prune_companion:
        return None
    direction = cfg.objective.pruning_direction
    companion = optuna.create_study(
        study_name=prune_study_name(cfg),
        storage=study._storage,
        sampler=optuna.samplers.RandomSampler(seed=cfg.seed),
        pruner=with_completed_cache(study_pruner(cfg)),
        direction=direction,
        load_if_exists=True,
    )
    changed = prune_direction_change(study, cfg)  # a companion created since the start
    if changed is not None:
        raise StudyMismatchError([changed])
    return companion


def ranked_best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or the Pareto front ranked by the first objective (ties: earlier trial).

    Every command names the front's first as the study's best trial: with Optuna's own
    order (by number) ``hpo best`` and the report named different trials.
    """
    if len(study.directions) == 1:
        return [study.best_trial]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(study.best_trials, key=lambda t: (sign * float(t.values[0]), t.number))


def summarize(study: optuna.Study, cfg: StudyConfig, trials_run: int, elapsed: float) -> RunSummary:
    """Counts by state and the best trial (:func:`ranked_best_trials`' first).

    Failed trials that were replaced by a retry, or that started beyond the budget, are
    reported as ``n_retried`` / ``n_surplus`` rather than as failures.
    """
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    kept = [t for t in trials if not is_replaced(t, replaced)]
    counts = {s: sum(1 for t in kept if t.state == s) for s in TrialState}
    surplus = sum(1 for t in trials if t.system_attrs.get(SURPLUS_ATTR))
    summary = RunSummary(
        study_name=cfg.name,
        storage=mask_url(storage_url(cfg)),
        trials_run=trials_run,
        n_complete=counts[TrialState.COMPLETE],
        n_pruned=counts[TrialState.PRUNED],
        n_failed=counts[TrialState.FAIL],
        n_running=sum(1 for t in trials if t.state == TrialState.RUNNING),
        elapsed_seconds=elapsed,
        n_retried=len(trials) - len(kept) - surplus,
        n_surplus=surplus,
    )
    if summary.n_complete:
        best = ranked_best_trials(study)[0]
        summary.best_number = best.number
        summary.best_values = list(best.values or [])
        summary.best_params = dict(best.params)
    return summary


class CollectGarbage:
    """Study callback: a full garbage collection after trials, at most a small share of their time.

    What ``gc_after_trial=True`` did: a trial's reference cycles (a model held by a
    closure, an exception's frames, CUDA tensors among them) are freed before the next
    trial starts. That is kept for every trial that ran for ``long_trial_s`` or more (every
    real training run) and for every trial that did not end well (an exception keeps
    cycles alive; :class:`~hpo.workers.oom.FreeMemoryAfterOom` relies on it). A full
    collection walks the whole unfrozen heap, which grows with the study (the storage's
    cache of finished trials): about 1 ms early on, about 9 ms by trial 1,000. For trials
    of milliseconds that is the one service cost that grows with the study, so after a
    short trial the collection waits until the time since the last one is large enough
    for its cost to stay under ``max_share`` of it; garbage then waits a few short trials.
    """

    long_trial_s: float = 1.0
    """Trials at least this long are always followed by a full collection."""

    def __init__(self, max_share: float = 0.05) -> None:
        self.max_share = max_share
        self._cost = 0.0
        self._done_at = time.perf_counter()
        self.collections = 0

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        now = time.perf_counter()
        took = trial.duration.total_seconds() if trial.duration is not None else 0.0
        due = (
            trial.state not in (TrialState.COMPLETE, TrialState.PRUNED)
            or took >= self.long_trial_s
            or self._cost <= self.max_share * (now - self._done_at)
        )
        if not due:
            return
        gc.collect()
        self._done_at = time.perf_counter()
        self._cost = self._done_at - now
        self.collections += 1


@contextmanager
def frozen_heap() -> Iterator[bool]:
    """``gc.collect(); gc.freeze()`` on entry, ``gc.unfreeze()`` on exit; yields whether it froze.

    Leaves the collector alone when something else already froze objects (that owner
    decides when to unfreeze them).
    """
    froze = gc.get_freeze_count() == 0
    if froze:
        gc.collect()
        gc.freeze()
    try:
        yield froze
    finally:
        if froze:
            gc.unfreeze()


def _requeue_after_interrupt(
    study: optuna.Study, guard: TrialGuard, identity: WorkerIdentity, max_retries: int
) -> None:
    """After Ctrl-C / SIGTERM: leave none of this process's trials RUNNING or lost.

    The guard normally records the interrupted trial itself; this catches an interrupt
    that landed outside it (a second Ctrl-C inside Optuna's own bookkeeping). A further
    signal waits until this is done.
    """
    with signals_held():
        _requeue_mine(study, guard, identity, max_retries)


def _requeue_mine(
    study: optuna.Study, guard: TrialGuard, identity: WorkerIdentity, max_retries: int
) -> None:
    try:
        storage = study._storage
        mine = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if owned_by(t, identity)
        ]
        if guard.current_trial_id is not None:
            current = storage.get_trial(guard.current_trial_id)
            replaced = replaced_numbers(study.get_trials(deepcopy=False))
            if (
                current.state == TrialState.FAIL
                and FAIL_REASON not in current.user_attrs
                and not is_replaced(current, replaced)
            ):
                requeue(study, current, INTERRUPTED, max_retries=max_retries, fail=False)
        for trial in mine:
            if not trial.user_attrs.get(FAIL_REASON):
                storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, INTERRUPTED)
            requeue(study, storage.get_trial(trial._trial_id), INTERRUPTED, max_retries=max_retries)
    except Exception as exc:  # never turn an interrupt into a traceback
        logger.warning("could not record the interrupted trials: %s", exc)


@outage_as_error()
def run_study(
    cfg: StudyConfig,
    *,
    force: bool = False,
    callbacks: Iterable[StudyCallback] = (),
    n_trials: int | None = None,
    hooks: Sequence[TrialHook] = (),
    identity: WorkerIdentity | None = None,
    reseed_sampler: bool = False,
    requeue_lost: bool = True,
    deadline_at: float | None = None,
) -> RunSummary:
    """Run trials of ``cfg`` in this process until the budget (shared with other workers) is used.

    Running it again on the same storage continues the same study up to ``budget.n_trials``
    in total. ``n_trials`` caps the trials *this* call runs (used by worker processes).
    Each trial first claims its place in the budget (see :mod:`hpo.workers.budget`), so
    any number of concurrent callers together run exactly ``budget.n_trials`` counted
    trials. Ctrl-C / SIGTERM end the running trial as FAIL (``fail_reason: interrupted``)
    and queue its parameters again, then raise ``KeyboardInterrupt``.
    ``reseed_sampler`` gives this process's sampler a fresh random seed: parallel workers
    built from the same study seed would otherwise propose the same parameters. A run
    that did not create the study (a resumed study, or another machine's run joining it)
    is reseeded too: from the study seed it would propose the first run's parameters again.
    Trials another machine left RUNNING are failed and queued again once their heartbeat is
    stale, and ``requeue_lost`` queues the retries an interrupt kept from being added
    (:func:`~hpo.workers.recovery.requeue_lost_retries`); workers, which start together,
    leave that to the process that starts them. ``deadline_at`` (wall-clock epoch seconds)
    replaces ``budget.timeout`` counted from the first trial: a worker's deadline, so that
    opening the study here does not extend it.
    """
    spec = resolve_trainer(cfg.trainer.name)
    study, created = _open_study(cfg, force=force)
    if reseed_sampler or not created:
        study.sampler.reseed_rng()
    identity = identity or WorkerIdentity.current()
    if isinstance(study._storage, OwnedTrialsStorage):
        study._storage.owner_attrs = identity.attrs()
    max_retries = cfg.workers.max_retries
    quiet_expected_warnings()
    fail_stale_trials(study)  # a trial of a machine that died: Optuna's heartbeat says so
    recover_orphans(study, max_retries=max_retries)
    if requeue_lost:
        requeue_lost_retries(study)
        if single_machine_storage(storage_url(cfg)):
            recover_abandoned_unowned(
                study, grace_period=grace_period(cfg), max_retries=max_retries
            )
    heartbeat = own_heartbeat(cfg, study)
    if heartbeat is not None:
        recover_stale(study, grace_period=heartbeat[1], max_retries=max_retries)
    from hpo.hooks import default_hooks

    all_hooks: list[TrialHook] = [RetryHook(), *default_hooks(cfg, study), *hooks]
    if cfg.workers.on_oom == "retry_smaller_batch":
        all_hooks.append(OomRetryHook(cfg.trainer.name))
    objective = Objective(
        cfg,
        spec.fn,
        prune_study=_prune_companion(cfg, study),
        hooks=all_hooks,
        unused_params=spec.unused_params,
    )
    budget = cfg.budget.n_trials
    trials = study.get_trials(deepcopy=False)
    # Queued (WAITING) trials are not subtracted: they are work for whoever runs next.
    already = counted_trials(trials, include_running=True, include_waiting=False)
    remaining = None if budget is None else max(budget - already, 0)
    if n_trials is not None:
        remaining = n_trials if remaining is None else min(remaining, n_trials)
    started = time.perf_counter()
    tracker = BudgetTracker()
    with interrupt_handling() as interrupts:
        objective.on_trained = interrupts.trainer_done
        guard = TrialGuard(
            objective,
            identity=identity,
            n_trials=budget,
            interrupts=interrupts,
            max_retries=max_retries,
            own_heartbeat=heartbeat,
            tracker=tracker,
        )
        if remaining is None or remaining > 0:
            interrupts.in_optimize = True
            interrupts.stop_study = study.stop
            try:
                # The budget is enforced by the guard's claim and BudgetCallback, not by
                # Optuna's n_trials: retried and surplus trials must not use up iterations.
                # Garbage is collected after trials by CollectGarbage, over the heap frozen
                # at the start (imports, torch). Survivors of later trials are not frozen:
                # in the 200-trial soak, freezing them held objects that died right after
                # the callback until the next full collection (RSS 528 -> 1,017 MiB, against
                # 528 -> 554 MiB without).
                with frozen_heap():
                    lapsed.optimize(
                        study,
                        guard,
                        n_trials=n_trials,
                        timeout=cfg.budget.timeout
                        if deadline_at is None
                        else max(deadline_at - time.time(), 0.0),
                        callbacks=[
                            CollectGarbage(),
                            BudgetCallback(budget, tracker),
                            FreeMemoryAfterOom(),
                            *callbacks,
                        ],
                    )
            except KeyboardInterrupt:
                _requeue_after_interrupt(study, guard, identity, max_retries)
                raise
            finally:
                interrupts.in_optimize = False
                interrupts.stop_study = None
            interrupts.check()
            if objective.cuda_lost is not None:
                raise CudaContextLost(
                    [
                        f"{objective.cuda_lost}: this process can no longer use its GPU "
                        "(a CUDA error that leaves it unusable); the trial is queued again "
                        "for a fresh process (run again, or let the supervisor restart it)"
                    ]
                )
        else:
            logger.info("study %s already has %d trials; nothing to run", cfg.name, already)
    elapsed = time.perf_counter() - started
    # what this process ran, new or queued (enqueue, start-up design, retries); not another
    # run's trials on the same study, nor a surplus trial ended unrun
    summary = summarize(study, cfg, guard.calls - guard.surplus, elapsed)
    summary.sampler_stopped = _sampler_stopped(study, cfg)
    return summary


def _sampler_stopped(study: optuna.Study, cfg: StudyConfig) -> bool:
    """Whether a grid or brute-force sampler ended the study, all its points tried.

    Optuna clears the stop flag when optimize starts, not when it ends; the budget and
    a surplus start stop it too, but only once the budget is claimed.
    """
    if cfg.sampler.name not in SAMPLERS_THAT_STOP or not getattr(study, "_stop_flag", False):
        return False
    exhausted = getattr(study.sampler, "is_exhausted", None)  # the grid sampler says so
    if callable(exhausted):
        return bool(exhausted(study))
    n_trials = cfg.budget.n_trials
    return n_trials is None or budget_state(study.get_trials(deepcopy=False)).claimed < n_trials
