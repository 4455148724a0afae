"""Median and percentile pruning without re-reading the study at every report."""

from __future__ import annotations

import copy
import threading
from collections.abc import Container
from typing import Any, cast

import optuna
from optuna.pruners._percentile import _is_first_in_interval_step
from optuna.trial import FrozenTrial, TrialState

from hpo.workers.budget import count_in_storage


class CompletedTrialsCache(optuna.pruners.BasePruner):
    """Optuna's median / percentile pruner, without re-reading the study at every report.

    Those pruners compare the trial with the study's COMPLETE trials, which they fetch
    with ``study.get_trials`` at every ``should_prune``; on an RDB storage that is a full
    read of every unfinished trial (about seven SQL statements) per report. A COMPLETE
    trial never changes again and the set only grows, so the same list is exact as long
    as the study still has as many COMPLETE trials: this wrapper asks the database for
    that count (one small query) and reads the trials again only when it changed. It
    also skips the call where the pruner is sure to say no before looking at the study
    (no step yet, warm-up steps, between pruning intervals). The decision itself is
    always the wrapped pruner's own ``prune``, on the same trials it would have read,
    less COMPLETE trials without a curve (a reused duplicate, an imported result): they
    would count towards ``n_startup_trials`` and let pruning start against fewer real
    curves. Storages other than RDB (journal, gRPC proxy, in-memory) have no cheap count:
    there the trials are read at every call, as the pruner itself would.
    """

    def __init__(self, pruner: optuna.pruners.PercentilePruner) -> None:
        self.pruner = pruner
        self._lock = threading.Lock()
        self._complete: dict[int, tuple[int, list[FrozenTrial]]] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner's decision, given the study's COMPLETE trials from the cache."""
        step = trial.last_step
        inner = self.pruner
        warmup = inner._n_warmup_steps
        if step is None or step < warmup:
            return False
        if not _is_first_in_interval_step(
            step, trial.intermediate_values.keys(), warmup, inner._interval_steps
        ):
            return False
        count = count_in_storage(study, TrialState.COMPLETE)
        if count is None:  # no cheap count: read them as the pruner would
            complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            curves = [t for t in complete if t.intermediate_values]
            return inner.prune(cast(optuna.Study, _CompleteTrialsView(study, curves)), trial)
        if count == 0 or count < inner._n_startup_trials:
            return False
        with self._lock:
            cached = self._complete.get(study._study_id)
            if cached is None or cached[0] != count:
                complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                cached = (len(complete), [t for t in complete if t.intermediate_values])
                self._complete[study._study_id] = cached
        return inner.prune(cast(optuna.Study, _CompleteTrialsView(study, cached[1])), trial)


class _CompleteTrialsView:
    """A study whose ``get_trials(states=(COMPLETE,))`` answers from a list already read."""

    def __init__(self, study: optuna.Study, complete: list[FrozenTrial]) -> None:
        self._study = study
        self._complete_trials = complete

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if states == (TrialState.COMPLETE,):
            trials = list(self._complete_trials)
            return copy.deepcopy(trials) if deepcopy else trials
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def with_completed_cache(pruner: optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    """``pruner`` wrapped in :class:`CompletedTrialsCache` where that is exact.

    Only Optuna's median and percentile pruners (exactly those classes, also as the
    pruner a patient pruner wraps) are wrapped; every other pruner is returned as is
    (Hyperband must stay visible as itself: Optuna's samplers look for it).
    """
    if type(pruner) in (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner):
        return CompletedTrialsCache(pruner)  # type: ignore[arg-type]
    if type(pruner) is optuna.pruners.PatientPruner:
        wrapped = getattr(pruner, "_wrapped_pruner", None)
        if wrapped is not None:
            pruner._wrapped_pruner = with_completed_cache(wrapped)
    return pruner
