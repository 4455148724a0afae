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

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

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
    """True for a trial that a retry stands in for, or a surplus start.

    The retry mark counts on a FAIL trial only: a stale check marks a trial just before
    Optuna fails it, and one that its own worker completed in between keeps the mark but
    was never failed, nor retried (it counts, and can be the best).
    """
    attrs = trial.system_attrs
    return _marked_retried(trial) or bool(attrs.get(SURPLUS_ATTR)) or trial.number in replaced


def _marked_retried(trial: FrozenTrial) -> bool:
    return bool(trial.system_attrs.get(RETRIED_ATTR)) and trial.state == TrialState.FAIL


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


_count_connections = threading.local()


def _count_connection(backend: optuna.storages.RDBStorage) -> Any:
    """This thread's connection for counting, kept open between calls (a pool checkout
    costs more than the count itself) and never left inside a transaction.

    Kept per storage object and closed when that storage is garbage-collected, so a
    process that opens many storages (``run_worker`` opens one per round) holds at most
    one such connection per live storage and thread.
    """
    conns = getattr(_count_connections, "by_storage", None)
    if conns is None:
        conns = _count_connections.by_storage = weakref.WeakKeyDictionary()
    entry = conns.get(backend)
    if entry is None or entry[0] != os.getpid() or entry[1].closed or entry[1].invalidated:
        # Autocommit: each count is one round trip that sees the latest commits, with no
        # BEGIN / ROLLBACK around it.
        conn = backend.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        weakref.finalize(backend, _close_quietly, conn)
        entry = conns[backend] = (os.getpid(), conn)
    return entry[1]


def _close_quietly(conn: Any) -> None:
    with contextlib.suppress(Exception):  # interpreter shutdown, a dead server
        conn.close()


def _drop_count_connection(backend: optuna.storages.RDBStorage) -> None:
    conns = getattr(_count_connections, "by_storage", None)
    entry = conns.pop(backend, None) if conns is not None else None
    if entry is not None and entry[0] == os.getpid():
        with contextlib.suppress(Exception):  # already broken: nothing to release
            entry[1].invalidate()


@functools.cache
def _count_query(state: TrialState | None) -> Any:
    """``SELECT count(*)`` of a study's trials (in one state), built once."""
    import sqlalchemy
    from optuna.storages._rdb import models

    model = models.TrialModel
    query = (
        sqlalchemy.select(sqlalchemy.func.count())
        .select_from(model)
        .where(model.study_id == sqlalchemy.bindparam("study_id"))
    )
    if state is not None:
        query = query.where(model.state == sqlalchemy.bindparam("state"))
    return query


def count_in_storage(study: optuna.Study, state: TrialState | None = None) -> int | None:
    """How many trials (in ``state``, if given) ``study`` has, by one ``COUNT`` query.

    ``None`` when the storage is not an RDB storage (journal, gRPC proxy, in-memory):
    callers then read the trials as usual; also ``None`` when the query fails (a lost
    connection: the storage's own calls know how to wait for it).
    """
    storage = study._storage
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    query = _count_query(state)
    params: dict[str, Any] = {"study_id": study._study_id}
    if state is not None:
        params["state"] = state
    try:
        conn = _count_connection(backend)
        try:
            return int(conn.execute(query, params).scalar_one())
        finally:
            conn.rollback()  # end the read: the next count must see newer commits
    except Exception as exc:  # the caller falls back to reading the trials
        logger.debug("counting trials failed: %s", exc)
        _drop_count_connection(backend)
        return None


def within_budget(trials: Iterable[FrozenTrial], number: int, n_trials: int) -> bool:
    """Whether trial ``number`` may run: fewer than ``n_trials`` counted trials precede it."""
    trials = list(trials)
    replaced = replaced_numbers(trials)
    ahead = sum(1 for t in trials if t.number < number and not is_replaced(t, replaced))
    return ahead < n_trials


class BudgetTracker:
    """:func:`counted_trials` and :func:`within_budget` without rescanning the whole study.

    A finished trial never changes again, and a trial, once replaced, stays replaced (the
    ``hpo:retried`` / ``hpo:surplus`` marks and the retries' ``retry_history`` are never
    removed). So each :meth:`update` looks only at the trials that were unfinished last
    time and at the new ones; the counts are exactly those of the reference functions on
    the same list of trials. Trial numbers of a study are dense (trial ``i`` is the
    ``i``-th), which is what lets the new trials be found by position; a list that is not
    (a hand-made one in a test) is simply counted from scratch.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._trials: list[FrozenTrial] = []
        self._dense = True
        self._n_seen = 0
        self._pending: set[int] = set()  # numbers of trials unfinished at the last update
        self._finished: dict[int, TrialState] = {}
        self._dead: set[int] = set()  # numbers of replaced trials (retried, surplus, superseded)
        self._n_by_state = dict.fromkeys(_FINISHED, 0)  # finished trials seen, replaced or not

    def update(self, trials: list[FrozenTrial]) -> BudgetTracker:
        """Take in the study's trials (``study.get_trials(deepcopy=False)``, in number order)."""
        n = len(trials)
        if n < self._n_seen or not self._dense:
            self._reset()
        for i in [*self._pending, *range(self._n_seen, n)]:
            trial = trials[i]
            if trial.number != i:  # not a study's own list: use the reference functions
                self._reset()
                self._dense = False
                break
            self._take(trial)
        self._n_seen = n
        self._trials = trials
        return self

    def _take(self, trial: FrozenTrial) -> None:
        attrs = trial.system_attrs
        if _marked_retried(trial) or attrs.get(SURPLUS_ATTR):
            self._dead.add(trial.number)
        history = attrs.get(RETRY_HISTORY_ATTR)
        if isinstance(history, list):
            self._dead.update(int(n) for n in history)
        if trial.state in _FINISHED:
            if trial.number not in self._finished:
                self._n_by_state[trial.state] += 1
            self._finished[trial.number] = trial.state
            self._pending.discard(trial.number)
        else:
            self._pending.add(trial.number)

    def finished_counts(self) -> dict[TrialState, int]:
        """Counted (not replaced) finished trials by state: COMPLETE, PRUNED, FAIL."""
        counts = dict.fromkeys(_FINISHED, 0)
        if not self._dense:
            replaced = replaced_numbers(self._trials)
            for t in self._trials:
                if t.state in counts and not is_replaced(t, replaced):
                    counts[t.state] += 1
            return counts
        counts.update(self._n_by_state)
        for number in self._dead:
            dead_state = self._finished.get(number)
            if dead_state is not None:
                counts[dead_state] -= 1
        return counts

    @property
    def n_complete_seen(self) -> int:
        """COMPLETE trials seen so far, replaced or not (grows whenever one completes)."""
        if not self._dense:
            return sum(1 for t in self._trials if t.state == TrialState.COMPLETE)
        return self._n_by_state[TrialState.COMPLETE]

    def counted(self, *, include_running: bool = False, include_waiting: bool | None = None) -> int:
        """Same as :func:`counted_trials` on the trials of the last :meth:`update`."""
        if not self._dense:
            return counted_trials(
                self._trials, include_running=include_running, include_waiting=include_waiting
            )
        dead = self._dead
        n = len(self._finished) - sum(1 for d in dead if d in self._finished)
        states: set[TrialState] = set()
        if include_running:
            states.add(TrialState.RUNNING)
        if include_running if include_waiting is None else include_waiting:
            states.add(TrialState.WAITING)
        if states:
            trials = self._trials
            n += sum(1 for i in self._pending if i not in dead and trials[i].state in states)
        return n

    def surely_within_budget(self, number: int, n_trials: int) -> bool:
        """True when trial ``number`` is within the budget whatever the study holds now.

        Trial numbers are dense, so exactly ``number`` trials precede it, and replaced
        trials stay replaced: the replaced ones already seen can only be fewer than the
        real ones. When even this upper bound on the counted trials ahead is below
        ``n_trials``, :func:`within_budget` on a fresh read is sure to say True.
        """
        return self._dense and number - sum(1 for d in self._dead if d < number) < n_trials

    def surely_below(self, n_trials: int, n_existing: int) -> bool:
        """True when fewer than ``n_trials`` of the ``n_existing`` trials can be counted.

        An upper bound for ``counted(include_running=True, include_waiting=False)`` on a
        fresh read, from the number of trials the study has now: all of them, less the
        replaced ones already seen (they stay replaced).
        """
        if not self._dense:
            return False
        return n_existing - sum(1 for d in self._dead if d < n_existing) < n_trials

    def within_budget(self, number: int, n_trials: int) -> bool:
        """Same as :func:`within_budget` on the trials of the last :meth:`update`."""
        if not self._dense:
            return within_budget(self._trials, number, n_trials)
        limit = min(number, self._n_seen)
        return limit - sum(1 for d in self._dead if d < limit) < n_trials


class BudgetCallback:
    """Stops this worker once the trials finished or running anywhere reach ``n_trials``.

    Queued (WAITING) trials do not stop it: they are retries that still need a worker.
    ``tracker`` may be shared with the :class:`~hpo.workers.guard.TrialGuard` of the same
    study; the counts are updated incrementally from one read of the study's trials.
    """

    def __init__(self, n_trials: int | None, tracker: BudgetTracker | None = None) -> None:
        self.n_trials = n_trials
        self.tracker = tracker or BudgetTracker()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.n_trials is None:
            return
        n_existing = count_in_storage(study)
        if n_existing is not None and self.tracker.surely_below(self.n_trials, n_existing):
            return  # exact: even counting every trial not known to be replaced falls short
        tracker = self.tracker.update(study.get_trials(deepcopy=False))
        if tracker.counted(include_running=True, include_waiting=False) >= self.n_trials:
            study.stop()
