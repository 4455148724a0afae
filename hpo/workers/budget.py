"""Which trials use up ``budget.n_trials``, counted the same way by every worker.

A trial counts when it is finished, running or queued, unless it has been replaced by a
retry or was started beyond the budget. Replaced trials are recognised two ways: our own
``hpo:retried`` system attribute (set while the trial is still RUNNING) and Optuna's
``retry_history`` convention (a retry lists the numbers of the trials it replaces), which
also covers trials failed by Optuna's heartbeat before anyone could tag them.

Several workers asking at once would overshoot a plain "stop at n" check, so each trial
*claims* its slot when it starts: it may run only if fewer than ``n_trials`` counted trials
have a smaller number. Trial numbers are dense and assigned under a lock on the study row,
so every worker sees the same order and at most ``n_trials`` trials ever run; a losing
trial ends at once as FAIL with ``hpo:surplus`` and is not counted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

RETRIED_ATTR = "hpo:retried"
"""System attr: a retry of this trial has been queued, so it no longer counts."""
SURPLUS_ATTR = "hpo:surplus"
"""System attr: this trial started after the budget was already claimed and did not run."""
RETRY_HISTORY_ATTR = "retry_history"
"""Optuna's system attr on a retry: numbers of the trials it replaces, oldest first."""
FAILED_TRIAL_ATTR = "failed_trial"
"""Optuna's system attr on a retry: the number of the original trial."""

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class SurplusTrial(Exception):
    """This trial started after all of the budget was claimed; it ends without running."""


def replaced_numbers(trials: Iterable[FrozenTrial]) -> set[int]:
    """Numbers of trials that some retry replaces (Optuna's ``retry_history``)."""
    out: set[int] = set()
    for trial in trials:
        history = trial.system_attrs.get(RETRY_HISTORY_ATTR)
        if isinstance(history, list):
            out.update(int(n) for n in history)
    return out


def is_replaced(trial: FrozenTrial, replaced: set[int]) -> bool:
    """True for a trial that a retry stands in for, or a surplus start."""
    attrs = trial.system_attrs
    return (
        bool(attrs.get(RETRIED_ATTR)) or bool(attrs.get(SURPLUS_ATTR)) or trial.number in replaced
    )


def counted_trials(
    trials: Iterable[FrozenTrial],
    *,
    include_running: bool = False,
    include_waiting: bool | None = None,
) -> int:
    """Trials that use up the budget: finished ones (and running / queued ones when asked)."""
    trials = list(trials)
    states = set(_FINISHED)
    if include_running:
        states.add(TrialState.RUNNING)
    if include_running if include_waiting is None else include_waiting:
        states.add(TrialState.WAITING)
    replaced = replaced_numbers(trials)
    return sum(1 for t in trials if t.state in states and not is_replaced(t, replaced))


@dataclass(frozen=True)
class BudgetState:
    """Where a study stands against its budget, as every worker computes it."""

    finished: int
    running: int
    waiting: int
    replaced: int

    @property
    def claimed(self) -> int:
        """Trials that are done, under way or queued."""
        return self.finished + self.running + self.waiting


def budget_state(trials: Iterable[FrozenTrial]) -> BudgetState:
    """Counts of counted trials by phase, plus how many were replaced by retries."""
    trials = list(trials)
    replaced = replaced_numbers(trials)
    finished = running = waiting = n_replaced = 0
    for t in trials:
        if is_replaced(t, replaced):
            n_replaced += 1
        elif t.state in _FINISHED:
            finished += 1
        elif t.state == TrialState.RUNNING:
            running += 1
        elif t.state == TrialState.WAITING:
            waiting += 1
    return BudgetState(finished, running, waiting, n_replaced)


def within_budget(trials: Iterable[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` may run: fewer than ``n_trials`` counted trials precede it."""
    trials = list(trials)
    replaced = replaced_numbers(trials)
    ahead = sum(1 for t in trials if t.number < number and not is_replaced(t, replaced))
    return ahead < n_trials


class BudgetCallback:
    """Stops this worker once the trials finished or running anywhere reach ``n_trials``.

    Queued (WAITING) trials do not stop it: they are retries that still need a worker.
    """

    def __init__(self, n_trials: int | None) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.n_trials is None:
            return
        trials = study.get_trials(deepcopy=False)
        if counted_trials(trials, include_running=True, include_waiting=False) >= self.n_trials:
            study.stop()
