"""The wrapper every trial runs through: mark its owner, claim its budget slot, end it cleanly.

It sits between Optuna's optimize loop and :class:`hpo.objective.Objective`, so it runs
before any sampling or training, and it is the one place where an interrupt is turned
into a recorded, re-queued trial instead of a RUNNING zombie.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext

import optuna

from hpo.objective import FAIL_REASON
from hpo.owned_trials import OwnedTrialsStorage
from hpo.workers.budget import SURPLUS_ATTR, BudgetTracker, SurplusTrial
from hpo.workers.heartbeat import TrialHeartbeat, recover_stale
from hpo.workers.identity import WorkerIdentity, mark_owner
from hpo.workers.interrupts import InterruptState
from hpo.workers.recovery import INTERRUPTED, requeue, signals_held

logger = logging.getLogger(__name__)

ObjectiveFn = Callable[[optuna.Trial], float | Sequence[float]]


def _trials_since_ask(study: optuna.Study, *, fresh: bool) -> list[optuna.trial.FrozenTrial]:
    """The study's trials as read at or after this trial's creation.

    Only needed near the end of the budget (see :meth:`TrialGuard._within_budget`).
    Optuna clears its per-trial snapshot of the study's trials in ``ask`` and fills it on
    the first cached read after the trial is created; samplers that use it (TPE's and
    GP's search-space checks, NSGA, CMA-ES, QMC) share that read. Every trial numbered
    below this one was created before it and is in the snapshot. ``fresh`` forces a new
    read (after :func:`~hpo.workers.heartbeat.recover_stale` has just changed trials).
    """
    get_trials = getattr(study, "_get_trials", None)
    if fresh or get_trials is None:
        return study.get_trials(deepcopy=False)
    return list(get_trials(deepcopy=False, use_cache=True))


class TrialGuard:
    """Callable for ``study.optimize`` that wraps the real objective."""

    def __init__(
        self,
        objective: ObjectiveFn,
        *,
        identity: WorkerIdentity,
        n_trials: int | None,
        interrupts: InterruptState,
        max_retries: int,
        own_heartbeat: tuple[float, float] | None = None,
        tracker: BudgetTracker | None = None,
    ) -> None:
        """``own_heartbeat`` is ``(interval, grace_period)`` for storages without Optuna's;
        ``tracker`` may be shared with the study's :class:`~hpo.workers.budget.BudgetCallback`."""
        self.objective = objective
        self.identity = identity
        self.n_trials = n_trials
        self.interrupts = interrupts
        self.max_retries = max_retries
        self.own_heartbeat = own_heartbeat
        self.current_trial_id: int | None = None
        self.calls = 0
        """Trials this guard has started: ``n_trials`` of an optimize loop that restarts."""
        self.surplus = 0
        """Of those, trials started after the budget was claimed (ended unrun)."""
        self.tracker = tracker or BudgetTracker()

    def __call__(self, trial: optuna.Trial) -> float | Sequence[float]:
        self.current_trial_id = trial._trial_id
        self.calls += 1
        storage = trial.study._storage
        attrs = self.identity.attrs()
        if not (
            isinstance(storage, OwnedTrialsStorage)
            and storage.owner_recorded(trial._trial_id, attrs)
        ):
            mark_owner(trial, self.identity)  # not yet written when the trial was created
        beat: AbstractContextManager[object] = nullcontext()
        if self.own_heartbeat is not None:
            interval, grace = self.own_heartbeat
            beat = TrialHeartbeat(trial.storage, trial._trial_id, interval)
            beat.beat()  # a popped retry must look alive before anyone checks
            recover_stale(trial.study, grace_period=grace, max_retries=self.max_retries)
        if self.n_trials is not None and not self._within_budget(trial):
            trial.storage.set_trial_system_attr(trial._trial_id, SURPLUS_ATTR, True)
            trial.set_user_attr(FAIL_REASON, "surplus")
            self.surplus += 1
            trial.study.stop()
            raise SurplusTrial(f"trial {trial.number} started after the budget was claimed")
        try:
            self.interrupts.in_trial = True
            self.interrupts.check()
            with beat:
                return self.objective(trial)
        except KeyboardInterrupt:
            self.interrupts.in_trial = False
            self._record_interrupt(trial)
            raise
        finally:
            self.interrupts.in_trial = False

    def _within_budget(self, trial: optuna.Trial) -> bool:
        """The budget claim; the study is read only when the answer is not already sure.

        Exactly ``trial.number`` trials precede this one and replaced trials stay
        replaced, so while ``number`` minus the replaced trials already seen is below
        ``n_trials`` the claim holds without a read (every trial but the last few).
        """
        assert self.n_trials is not None
        if self.tracker.surely_within_budget(trial.number, self.n_trials):
            return True
        trials = _trials_since_ask(trial.study, fresh=self.own_heartbeat is not None)
        return self.tracker.update(trials).within_budget(trial.number, self.n_trials)

    def _record_interrupt(self, trial: optuna.Trial) -> None:
        """Tag the trial as interrupted and queue it again; Optuna then marks it FAIL.

        A second signal waits until both are written (a tag without its retry lost the
        configuration).
        """
        with signals_held():
            try:
                trial.set_user_attr(FAIL_REASON, INTERRUPTED)
                frozen = trial.storage.get_trial(trial._trial_id)
                requeue(trial.study, frozen, INTERRUPTED, max_retries=self.max_retries, fail=False)
            except Exception as exc:  # recording must never hide the interrupt itself
                logger.warning("could not record interrupted trial %d: %s", trial.number, exc)
