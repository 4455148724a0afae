"""RUNNING trials that nobody runs and no heartbeat check can see: recovered by watching.

A worker names itself on a trial the moment it creates or pops it (SQL storages) or as
the first thing it does after ``ask`` (others), so a trial that stays RUNNING without an
owner is one that no process is running:

- the first of two trials made for one ``ask`` on PostgreSQL, when the server committed
  the new trial but its acknowledgement was lost and the reconnecting storage created it
  again; that first trial never gets a heartbeat, so Optuna's stale check never sees it;
- a worker that died before naming itself, on another machine (on this machine
  :func:`~hpo.workers.recovery.recover_orphans` sees the dead pid).

Left alone, such a trial holds a slot of ``budget.n_trials`` forever, and the workers
waiting for the trials running elsewhere would wait for it forever. This process looks
at the unowned RUNNING trials each time it checks for stale ones and recovers a trial it
has seen unowned for a whole grace period, measured by its own monotonic clock between
two looks, so no two machines' clocks are ever compared.

A run that starts on a storage only this machine writes (a SQLite or journal file) also
recovers, at once, unowned trials that started more than a grace period ago by its clock
(:func:`recover_abandoned_unowned`): an in-process ``hpo run`` killed between making a
trial and naming itself left one that every later ``hpo run`` counted as running, ran
nothing, and exited 0 one trial short. There every writer's ``datetime_start`` comes
from this machine's clock (Optuna writes local time, so machines in other time zones
could not be compared).
"""

from __future__ import annotations

import time
from datetime import datetime

import optuna
from optuna.trial import TrialState

from hpo.storages import sqlite_path
from hpo.workers.identity import owner_key
from hpo.workers.recovery import recover_trials

NEVER_STARTED = "never_started"
"""``fail_reason`` of a trial failed because nobody ever ran it."""


class UnownedTrialWatch:
    """Remembers when each unowned RUNNING trial was first seen; recovers the overdue ones."""

    def __init__(self, grace_period: float) -> None:
        self.grace_period = grace_period
        self._first_seen: dict[int, float] = {}

    def check(self, study: optuna.Study, *, max_retries: int) -> list[int]:
        """Numbers of the trials failed and queued again by this call."""
        now = time.monotonic()
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        unowned = {t._trial_id: t for t in running if owner_key(t) is None}
        self._first_seen = {i: self._first_seen.get(i, now) for i in unowned}
        overdue = [
            trial
            for trial_id, trial in unowned.items()
            if now - self._first_seen[trial_id] >= self.grace_period
        ]
        return recover_trials(study, overdue, NEVER_STARTED, max_retries=max_retries)


def single_machine_storage(url: str) -> bool:
    """True for a storage no process on another machine writes (a SQLite or journal file)."""
    return sqlite_path(url) is not None or url.startswith("journal:///")


def recover_abandoned_unowned(
    study: optuna.Study, *, grace_period: float, max_retries: int, now: datetime | None = None
) -> list[int]:
    """Recover unowned RUNNING trials that started over ``grace_period`` seconds ago.

    Only for a :func:`single_machine_storage`, where ``datetime_start`` is this machine's
    clock. A live process names itself milliseconds after making or popping a trial (SQL
    storages), or right after ``ask`` (others); a grace period later nobody will.
    """
    now = now or datetime.now()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    abandoned = [
        t
        for t in running
        if owner_key(t) is None
        and t.datetime_start is not None
        and (now - t.datetime_start).total_seconds() >= grace_period
    ]
    if not abandoned:
        return []
    return recover_trials(study, abandoned, NEVER_STARTED, max_retries=max_retries)
