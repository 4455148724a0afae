"""A worker that wakes to find its trial failed by another worker goes on with the next.

A worker can stall past the heartbeat grace period: a frozen or swapped-out VM, a
suspended laptop, a network partition. Another worker then fails its trial as stale and
queues it again (:mod:`hpo.workers.heartbeat`). When the stalled worker wakes and its
trainer finishes, Optuna's ``tell`` refuses the finished trial (``ValueError``: "Cannot
tell a FAIL trial.", or the storage's ``UpdateFinishedTrialError``), which ends
``study.optimize`` and with it the worker. The trial's retry runs elsewhere, so its result here is dropped and
the worker goes on with the study, within what is left of its ``n_trials`` and timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._cached_storage import _CachedStorage

from hpo.workers.guard import TrialGuard

logger = logging.getLogger(__name__)

Callback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def optimize(
    study: optuna.Study,
    guard: TrialGuard,
    *,
    n_trials: int | None,
    timeout: float | None,
    callbacks: Sequence[Callback],
) -> None:
    """``study.optimize(guard, ...)``, carried on past trials another worker ended meanwhile."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if n_trials is None else n_trials - guard.calls
        remaining = None if deadline is None else deadline - time.monotonic()
        if (left is not None and left <= 0) or (remaining is not None and remaining <= 0):
            return
        try:
            study.optimize(
                guard,
                n_trials=left,
                timeout=remaining,
                catch=(Exception,),
                callbacks=list(callbacks),
            )
            return
        except (ValueError, UpdateFinishedTrialError) as exc:
            number = _ended_elsewhere(study, guard.current_trial_id, exc)
            if number is None:
                raise
            logger.warning(
                "trial %d was ended by another worker while this one stalled past the "
                "heartbeat grace period; its result here is dropped (the trial is retried "
                "as its own new trial), and this worker goes on",
                number,
            )


def _ended_elsewhere(study: optuna.Study, trial_id: int | None, exc: Exception) -> int | None:
    """The trial's number if ``exc`` is Optuna refusing to finish this worker's trial
    because the database has it finished already, else None.

    Optuna's ``tell`` says so as ``ValueError`` when it reads the trial finished, and the
    storage's write as ``UpdateFinishedTrialError`` when this worker still had it running.
    Only Optuna's cache is looked past: a journal storage's ``_backend`` is its log file,
    which cannot read a trial (the worker then exited 1 on journal storages).
    """
    if trial_id is None:
        return None
    if isinstance(exc, ValueError) and not str(exc).startswith("Cannot tell a "):
        return None
    storage = study._storage
    if isinstance(storage, _CachedStorage):  # the database's view, not the cache's
        storage = storage._backend
    try:
        trial = storage.get_trial(trial_id)
    except Exception:  # the storage cannot say: not known to be this case
        return None
    return trial.number if trial.state.is_finished() else None
