"""One worker among many: run trials until the *study* is finished, not just this process.

A plain :func:`~hpo.runner.run_study` returns as soon as the whole budget is claimed,
even when the last claimed trials are still running on other machines. If one of those
machines dies, nobody would be left to notice. A worker therefore stays until the
budget is finished: it watches the running trials, fails the stale ones (Optuna's
heartbeat; a dead pid on this machine is noticed at once; a trial nobody ever marked as
theirs, after a grace period), and runs their retries. ``hpo worker`` and the
single-process ``hpo run`` both run trials this way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

import optuna

from hpo.config import StudyConfig
from hpo.objective import TrialHook
from hpo.runner import (
    RunSummary,
    StudyCallback,
    grace_period,
    open_study,
    own_heartbeat,
    run_study,
    summarize,
)
from hpo.workers.budget import budget_state
from hpo.workers.heartbeat import recover_stale
from hpo.workers.identity import WorkerIdentity
from hpo.workers.interrupts import interrupt_handling
from hpo.workers.recovery import fail_stale_trials, recover_orphans
from hpo.workers.unowned import UnownedTrialWatch

logger = logging.getLogger(__name__)


def with_timeout(cfg: StudyConfig, seconds: float | None) -> StudyConfig:
    """``cfg`` with ``budget.timeout`` replaced (what is left of the wall-clock budget)."""
    return cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"timeout": seconds})})


def run_worker(
    cfg: StudyConfig,
    *,
    force: bool = False,
    callbacks: Iterable[StudyCallback] = (),
    hooks: Sequence[TrialHook] = (),
    identity: WorkerIdentity | None = None,
    poll_interval: float | None = None,
    deadline_at: float | None = None,
    reseed_sampler: bool = True,
    requeue_lost: bool = False,
) -> RunSummary:
    """Run trials of ``cfg`` until its budget is finished by all workers together (or time is up).

    Ctrl-C / SIGTERM end the running trial cleanly (recorded, parameters queued again)
    and raise ``KeyboardInterrupt``. ``deadline_at`` (wall-clock epoch seconds, from the
    supervisor) replaces ``budget.timeout`` counted from now: a worker's start-up (imports,
    opening the study) and a restart's backoff no longer extend the study's timeout.
    ``reseed_sampler`` and ``requeue_lost`` apply to the first round as in
    :func:`~hpo.runner.run_study`: the in-process ``hpo run`` passes False and True, so a
    study it creates stays reproducible from its seed and it queues the retries an
    interrupt lost, as the supervisor does for its workers (later rounds resume the study,
    which reseeds it anyway).
    """
    identity = identity or WorkerIdentity.current()
    callbacks = list(callbacks)
    n_trials = cfg.budget.n_trials
    poll = poll_interval or float(min(cfg.workers.heartbeat_interval, 5))
    started = time.monotonic()
    if deadline_at is None and cfg.budget.timeout:
        deadline_at = time.time() + cfg.budget.timeout
    deadline = None if deadline_at is None else started + (deadline_at - time.time())
    total_ran = 0
    sampler_stopped = False
    study: optuna.Study | None = None
    with interrupt_handling():
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            summary = run_study(
                with_timeout(cfg, left),
                force=force,
                callbacks=callbacks,
                hooks=hooks,
                identity=identity,
                reseed_sampler=reseed_sampler,
                requeue_lost=requeue_lost,  # workers leave it to their starter: done once
                deadline_at=deadline_at,
            )
            force = requeue_lost = False
            total_ran += summary.trials_run
            sampler_stopped = summary.sampler_stopped
            if sampler_stopped:  # a grid with every point tried: another round re-runs one
                break
            if n_trials is None or (deadline is not None and time.monotonic() >= deadline):
                break
            study = study or open_study(cfg, create=False)
            if not _wait_for_work(study, cfg, n_trials, deadline, poll, summary.trials_run):
                break
    study = study or open_study(cfg, create=False)
    final = summarize(study, cfg, total_ran, time.monotonic() - started)
    final.sampler_stopped = sampler_stopped
    return final


def _runnable(study: optuna.Study, n_trials: int) -> tuple[bool, bool, bool]:
    """``(finished, runnable, others_running)`` for the study's budget right now."""
    st = budget_state(study.get_trials(deepcopy=False))
    finished = st.finished >= n_trials
    runnable = st.claimed < n_trials or (st.waiting > 0 and st.finished + st.running < n_trials)
    return finished, runnable, st.running > 0


def _wait_for_work(
    study: optuna.Study,
    cfg: StudyConfig,
    n_trials: int,
    deadline: float | None,
    poll: float,
    just_ran: int,
) -> bool:
    """Block until there is a trial to run here (True) or nothing more to do (False)."""
    finished, runnable, others = _runnable(study, n_trials)
    if finished:
        return False
    if runnable and just_ran:
        return True
    if not runnable and not others:
        return False
    logger.info("budget claimed; waiting for trials running elsewhere")
    unowned = UnownedTrialWatch(grace_period(cfg))
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(poll)
        fail_stale_trials(study)
        recover_orphans(study, max_retries=cfg.workers.max_retries)
        unowned.check(study, max_retries=cfg.workers.max_retries)
        heartbeat = own_heartbeat(cfg, study)
        if heartbeat is not None:
            recover_stale(study, grace_period=heartbeat[1], max_retries=cfg.workers.max_retries)
        finished, runnable, others = _runnable(study, n_trials)
        if finished:
            return False
        if runnable:
            return True
        if not others:
            return False
