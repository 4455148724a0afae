"""What happens to a trial whose worker died or was interrupted: fail it, queue it again.

A retry is a new WAITING trial with the same parameters, distributions and (for crashes)
intermediate values, carrying Optuna's ``failed_trial`` / ``retry_history`` system attrs,
so :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` helpers read it as a retry and
:mod:`hpo.workers.budget` stops counting the trial it replaces. The retry also reuses the
original seed, so it repeats the same run rather than a new one.

Crashes (``worker_died``, ``stale``) are retried at most ``workers.max_retries`` times per
original trial: a configuration that kills its worker every time must end as a FAIL.
Interrupts (Ctrl-C, SIGTERM) and a worker that gave up on an unreachable database
(``storage_lost``) are not the trial's fault and are always queued again.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
import warnings
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from types import FrameType
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from hpo.config import PRUNE_COMPANION_ATTR, PRUNE_MARKER
from hpo.cuda_errors import CUDA_ERROR
from hpo.objective import FAIL_MESSAGE, FAIL_REASON, PRUNED_AT_ATTR
from hpo.workers.budget import (
    FAILED_TRIAL_ATTR,
    RETRIED_ATTR,
    RETRY_HISTORY_ATTR,
    SURPLUS_ATTR,
    replaced_numbers,
)
from hpo.workers.identity import (
    MACHINE_ATTR,
    OWNER_ATTRS,
    machine_token,
    owner_is_dead_here,
    owner_key,
)

logger = logging.getLogger(__name__)

WORKER_DIED = "worker_died"
STALE = "stale"
INTERRUPTED = "interrupted"
STORAGE_LOST = "storage_lost"
"""The worker exited because the database stayed unreachable past its retry budget."""
CRASH_REASONS = frozenset({WORKER_DIED, STALE, CUDA_ERROR})

CRASHES_ATTR = "hpo:crashes"
"""System attr on a retry: how many crashes the original trial has had so far."""
RETRY_REASON_ATTR = "hpo:retry_reason"
"""System attr on a retry: why the trial it replaces ended."""
SEED_ATTR = "hpo:seed"
"""System attr: the seed a queued trial must train with (a retry: its original's; a
confirmation run: its fresh seed), applied by :class:`RetryHook`."""
OVERRIDES_ATTR = "hpo:param_overrides"
"""System attr on a retry: trainer params to replace (e.g. a halved batch after an OOM)."""

_NOT_INHERITED_USER_ATTRS = frozenset(
    {*OWNER_ATTRS, FAIL_REASON, FAIL_MESSAGE, "wall_seconds", PRUNED_AT_ATTR, "prune_reason"}
)
HEARTBEAT_ATTR = "hpo:heartbeat"
"""System attr: last sign of life of a running trial (storages without Optuna heartbeats)."""

_QUEUED_BY_ATTR = "hpo:queued_by"
"""System attr on a retry that :func:`requeue_lost_retries` queued: which call did."""

_NOT_INHERITED_SYSTEM_ATTRS = frozenset(
    {RETRIED_ATTR, SURPLUS_ATTR, HEARTBEAT_ATTR, _QUEUED_BY_ATTR}
)


def quiet_expected_warnings() -> None:
    """Silence Optuna warnings that retries and heartbeats make routine.

    A retry re-reports the steps it inherited (Optuna ignores them, which is the point),
    and the multi-objective pruning companion asks for trials on a heartbeat storage
    outside ``optimize`` (it never runs long enough to need one).
    """
    warnings.filterwarnings(
        "ignore", message=r"The reported value is ignored because this `step=\d+` is already"
    )
    warnings.filterwarnings(
        "ignore", message="Heartbeat of storage is supposed to be used with Study.optimize"
    )


def fail_stale_trials(study: optuna.Study) -> None:
    """Optuna's heartbeat check (fails and retries trials whose heartbeat stopped).

    Each stale trial is tagged ``stale`` (and flagged for its retry) before Optuna fails
    it, by :meth:`RetryStaleTrial.before_fail`: a process that dies before the retry is
    queued leaves a trial :func:`requeue_lost_retries` finds.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (main thread; elsewhere a no-op).

    Between failing a trial and queueing its retry, a second Ctrl-C would leave a trial
    marked as retried with no retry: its configuration lost, or counted as a failure.
    A signal that arrives meanwhile is recorded, then raised again once the handlers that
    were in place are back; a second one interrupts at once, so a hold never outlasts
    the user's patience. (Blocking it with ``pthread_sigmask`` would not do: another
    thread, a heartbeat's, would take it.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)
        if len(held) > 1:  # asked again while waiting (a database that does not answer)
            raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for signum in held:  # delivered to the handlers that were in place
        signal.raise_signal(signum)


def may_retry(
    trial: FrozenTrial, reason: str, max_retries: int, *, queued: bool | None = None
) -> bool:
    """Whether a trial that ended for ``reason`` gets another run.

    ``queued`` says whether a retry naming it exists (read from the study by a caller that
    knows the trial's process is dead); by default the trial's own flag is trusted.
    """
    if trial.system_attrs.get(RETRIED_ATTR) if queued is None else queued:
        return False  # a retry is already queued
    if reason not in CRASH_REASONS:
        return True
    return int(trial.system_attrs.get(CRASHES_ATTR, 0)) < max_retries


def retry_copy(
    trial: FrozenTrial,
    reason: str,
    *,
    inherit_intermediate_values: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> FrozenTrial:
    """A WAITING trial that repeats ``trial`` (Optuna's retry attributes included)."""
    system_attrs = {
        k: v for k, v in trial.system_attrs.items() if k not in _NOT_INHERITED_SYSTEM_ATTRS
    }
    history = [*system_attrs.get(RETRY_HISTORY_ATTR, []), trial.number]
    system_attrs[FAILED_TRIAL_ATTR] = system_attrs.get(FAILED_TRIAL_ATTR, trial.number)
    system_attrs[RETRY_HISTORY_ATTR] = history
    system_attrs[RETRY_REASON_ATTR] = reason
    system_attrs[CRASHES_ATTR] = int(system_attrs.get(CRASHES_ATTR, 0)) + (reason in CRASH_REASONS)
    if "seed" in trial.user_attrs:
        system_attrs[SEED_ATTR] = trial.user_attrs["seed"]
    if overrides:
        system_attrs[OVERRIDES_ATTR] = {**system_attrs.get(OVERRIDES_ATTR, {}), **overrides}
    user_attrs = {
        k: v
        for k, v in trial.user_attrs.items()
        if k not in _NOT_INHERITED_USER_ATTRS and not k.startswith("last_")
    }
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        intermediate_values=dict(trial.intermediate_values)
        if inherit_intermediate_values
        else None,
    )


def _fail_companion(study: optuna.Study, trial: FrozenTrial) -> None:
    """End the trial's RUNNING twin in its pruning companion study."""
    number = trial.user_attrs.get(PRUNE_COMPANION_ATTR)
    if not isinstance(number, int):
        return
    storage = study._storage
    prefix = f"{study.study_name}{PRUNE_MARKER}"
    try:
        for summary in storage.get_all_studies():
            if not summary.study_name.startswith(prefix):
                continue
            trial_id = storage.get_trial_id_from_study_id_trial_number(summary._study_id, number)
            if storage.get_trial(trial_id).state == TrialState.RUNNING:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except Exception:  # the companion is advisory; never block recovery on it
        logger.debug("could not end companion trial %s", number, exc_info=True)


_after_retry_queued: Callable[[], None] | None = None
"""Test hook: called between queueing a still-RUNNING trial's retry and flagging it (the
point where a second Ctrl-C's SIGKILL used to lose the configuration)."""


def requeue(
    study: optuna.Study,
    trial: FrozenTrial,
    reason: str,
    *,
    max_retries: int,
    fail: bool = True,
    overrides: Mapping[str, Any] | None = None,
    inherit_intermediate_values: bool = True,
    queued: bool | None = None,
) -> bool:
    """Fail a RUNNING trial (unless ``fail`` is false) and queue a retry when allowed.

    Tags go on while the trial is still RUNNING (finished trials are read-only), and the
    state change decides the race with any other process recovering the same trial: only
    the one whose FAIL succeeds queues the retry. ``queued``: see :func:`may_retry`.
    Returns whether a retry is queued (by this call, or before it when ``queued``).

    A trial left RUNNING (``fail`` false: its own worker, interrupted; Optuna fails it
    next) gets its retry *before* its flag: a ``kill -9`` between the two (a second
    Ctrl-C) then leaves a retry naming it, which the budget and :func:`recover_worker`
    read, instead of a flag with no retry, which lost its configuration.
    """
    storage = study._storage
    trial_id = trial._trial_id
    retry = may_retry(trial, reason, max_retries, queued=queued)
    running = trial.state == TrialState.RUNNING
    with signals_held():  # the retry flag and the retry itself go in together
        if running and fail:
            try:
                if FAIL_REASON not in trial.user_attrs:
                    storage.set_trial_user_attr(trial_id, FAIL_REASON, reason)
                if retry:
                    storage.set_trial_system_attr(trial_id, RETRIED_ATTR, True)
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:
                return False  # another process finished or recovered it first
            _fail_companion(study, trial)
        elif running and retry:
            try:  # a write that checks RUNNING: one finished elsewhere has its retry there
                current = trial.user_attrs.get(FAIL_REASON, reason)
                storage.set_trial_user_attr(trial_id, FAIL_REASON, current)
            except UpdateFinishedTrialError:
                return False
        if not retry:
            if queued:
                logger.warning("trial %d ended (%s); its retry was queued", trial.number, reason)
                return True
            logger.warning("trial %d ended (%s) and is not retried", trial.number, reason)
            return False
        study.add_trial(
            retry_copy(
                trial,
                reason,
                inherit_intermediate_values=inherit_intermediate_values,
                overrides=overrides,
            )
        )
        if running and not fail:
            if _after_retry_queued is not None:
                _after_retry_queued()
            with contextlib.suppress(UpdateFinishedTrialError):  # its retry_history says it
                storage.set_trial_system_attr(trial_id, RETRIED_ATTR, True)
    logger.warning("trial %d ended (%s); its parameters are queued again", trial.number, reason)
    return True


LOST_RETRY_AGE_S = 60.0
"""How long after the storage stops retrying a write a missing retry counts as lost, not
late: the process that failed the trial queues its retry milliseconds later, or once the
database answers again."""


def requeue_lost_retries(
    study: optuna.Study, *, min_age_s: float | None = None, now: datetime | None = None
) -> list[int]:
    """Queue the retries that an interrupt or a crash kept from being added.

    A trial flagged as retried with no retry naming it, or one that ended ``interrupted``
    with no retry at all, lost its configuration (or counted it as a failure) when its
    process died between the two writes. Runs where a study is started (a run, a
    supervisor); two starts at the same moment may both queue one, and the later copy is
    then ended unrun as surplus.
    """
    from hpo.storages import storage_retry_seconds

    min_age = storage_retry_seconds() + LOST_RETRY_AGE_S if min_age_s is None else min_age_s
    now = now or datetime.now()
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    token = uuid.uuid4().hex
    queued = []
    for trial in trials:
        if trial.state != TrialState.FAIL or trial.number in replaced:
            continue
        flagged = bool(trial.system_attrs.get(RETRIED_ATTR))
        if not flagged and trial.user_attrs.get(FAIL_REASON) != INTERRUPTED:
            continue
        ended = trial.datetime_complete
        if ended is None or (now - ended).total_seconds() < min_age:
            continue
        reason = str(trial.user_attrs.get(FAIL_REASON) or INTERRUPTED)
        retry = retry_copy(trial, reason)
        retry.system_attrs[_QUEUED_BY_ATTR] = token
        study.add_trial(retry)
        logger.warning("trial %d ended (%s) without its retry; queued again", trial.number, reason)
        queued.append(trial.number)
    if queued:
        _end_duplicate_retries(study, set(queued), token)
    return queued


def _end_duplicate_retries(study: optuna.Study, originals: set[int], token: str) -> None:
    """End this call's retry of a trial when another start queued one before it."""
    storage = study._storage
    firsts: dict[int, int] = {}
    mine: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        history = trial.system_attrs.get(RETRY_HISTORY_ATTR)
        if not isinstance(history, list) or not history or history[-1] not in originals:
            continue
        firsts.setdefault(history[-1], trial.number)
        if trial.system_attrs.get(_QUEUED_BY_ATTR) == token:
            mine[history[-1]] = trial
    for original, retry in mine.items():
        if firsts[original] == retry.number:
            continue
        try:
            if storage.get_trial(retry._trial_id).state != TrialState.WAITING:
                continue  # already taken by a worker: let it run
            storage.set_trial_system_attr(retry._trial_id, SURPLUS_ATTR, True)
            storage.set_trial_state_values(retry._trial_id, TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError):
            continue
        logger.info("trial %d: a duplicate retry of trial %d, ended unrun", retry.number, original)


def recover_trials(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    reason: str,
    *,
    max_retries: int,
    replaced: Container[int] | None = None,
) -> list[int]:
    """:func:`requeue` each RUNNING trial; numbers of those whose retry is queued.

    A trial out of retries is failed all the same (and logged), but not listed: callers
    report the list as "queued again". ``replaced`` (the numbers some retry names, read
    after the trials' processes died) decides whether a retry exists, not the trials'
    flags: a process killed between the two writes left one without the other.
    """
    done = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        try:
            before = study._storage.get_trial(trial._trial_id)
            if before.state != TrialState.RUNNING:
                continue
            queued = None if replaced is None else trial.number in replaced
            if requeue(study, before, reason, max_retries=max_retries, queued=queued):
                done.append(trial.number)
        except Exception as exc:  # keep recovering the others
            logger.warning("could not recover trial %d: %s", trial.number, exc)
    return done


def recover_worker(
    study: optuna.Study, worker_key: str, *, reason: str = WORKER_DIED, max_retries: int
) -> list[int]:
    """Recover the RUNNING trials of this machine's worker ``host:pid`` (which must be gone).

    Hostnames repeat across machines (host-network containers, ``localhost``) and so do
    pids (each container numbers its own), so the trial must also carry this machine's
    token: another machine's live ``host:pid`` twin is not ours to fail.
    """
    machine = machine_token()
    trials = study.get_trials(deepcopy=False)
    mine = [
        t
        for t in trials
        if t.state == TrialState.RUNNING
        and owner_key(t) == worker_key
        and t.user_attrs.get(MACHINE_ATTR, machine) == machine
    ]
    if not mine:
        return []
    replaced = replaced_numbers(trials)  # its process is gone: nobody adds one meanwhile
    return recover_trials(study, mine, reason, max_retries=max_retries, replaced=replaced)


def recover_orphans(
    study: optuna.Study, *, max_retries: int, include_unowned: bool = False
) -> list[int]:
    """Recover RUNNING trials whose owner ran on this host and no longer exists.

    ``include_unowned`` also takes RUNNING trials that never got an owner (a worker killed
    between asking for a trial and marking it); only safe when no other process can be
    running trials of the study, e.g. a SQLite study whose workers have all exited.
    """
    machine = machine_token()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    dead = [
        t
        for t in running
        if owner_is_dead_here(t, machine) or (include_unowned and owner_key(t) is None)
    ]
    if not dead:
        return []
    replaced = replaced_numbers(study.get_trials(deepcopy=False))  # as in recover_worker
    return recover_trials(study, dead, WORKER_DIED, max_retries=max_retries, replaced=replaced)


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's heartbeat retry callback, with our retry limit, seed and budget bookkeeping.

    Optuna fails a stale trial first and calls the callback after, when the trial can no
    longer be tagged: so :meth:`before_fail`, which :class:`hpo.owned_trials.OwnedTrialsStorage`
    calls from the stale-trial query Optuna's check starts with, tags it while it is still
    RUNNING, and ``__call__`` queues the retry.
    """

    def __init__(self, max_retries: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retries, inherit_intermediate_values=True)
        self.max_retries = max_retries

    def before_fail(self, storage: BaseStorage, study_id: int, trial_id: int) -> bool:
        """Tag a stale trial about to be failed: ``fail_reason: stale``, and the retry flag
        when it gets a retry. False (the trial is left alone) when it is no longer RUNNING.

        Without the tags a process killed between Optuna's FAIL and the callback left a
        FAIL with no reason and no retry, its parameters never run again; with them,
        :func:`requeue_lost_retries` queues that retry. The writes check that the trial is
        still RUNNING, as :func:`requeue`'s do; the FAIL that follows decides the race
        with another process recovering the same trial. A storage error propagates, as
        one in the stale-trial query itself would: the trial stays RUNNING, for the next
        check.
        """
        try:
            trial = storage.get_trial(trial_id)
            if trial.state != TrialState.RUNNING:
                return False
            # its worker is gone: whether a retry names it is settled (as in recover_worker)
            replaced = replaced_numbers(storage.get_all_trials(study_id, deepcopy=False))
            queued = trial.number in replaced
            if FAIL_REASON not in trial.user_attrs:
                storage.set_trial_user_attr(trial_id, FAIL_REASON, STALE)
            if may_retry(trial, STALE, self.max_retries, queued=queued):
                storage.set_trial_system_attr(trial_id, RETRIED_ATTR, True)
        except UpdateFinishedTrialError:
            return False  # finished meanwhile: recovered elsewhere, or not stale after all
        return True

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        _fail_companion(study, trial)
        if trial.number in replaced_numbers(study.get_trials(deepcopy=False)):
            logger.warning("trial %d lost its worker; its retry was queued", trial.number)
            return
        # the decision before_fail flagged (the same count); made here on a storage without it
        if not may_retry(trial, STALE, self.max_retries, queued=False):
            logger.warning("trial %d lost its worker and is not retried", trial.number)
            return
        study.add_trial(retry_copy(trial, STALE))
        logger.warning("trial %d lost its worker (heartbeat); queued again", trial.number)


class RetryHook:
    """Trial hook that makes a retry repeat its original (same seed, param overrides applied)
    and gives a confirmation run its queued seed."""

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        """Apply the retry's stored seed and overrides to the trainer params."""
        attrs = trial.storage.get_trial_system_attrs(trial._trial_id)
        seed = attrs.get(SEED_ATTR)
        if isinstance(seed, int):
            params = {**params, "seed": seed}
            trial.set_user_attr("seed", seed)
        if FAILED_TRIAL_ATTR not in attrs:
            return params
        trial.set_user_attr("retry_of", attrs[FAILED_TRIAL_ATTR])
        overrides = attrs.get(OVERRIDES_ATTR)
        if isinstance(overrides, dict) and overrides:
            params = {**params, **overrides}
            trial.set_user_attr("param_overrides", overrides)  # results.PARAM_OVERRIDES_ATTR
        return params

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: TrialState,
        result: Mapping[str, Any] | None,
        history: list[tuple[int, dict[str, float]]],
    ) -> None:
        """Nothing to do after the trial."""
