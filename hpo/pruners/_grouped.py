"""A pruner that compares a trial only with trials that share some parameters' values.

Contrastive losses learn at different speeds: on our benchmark task VICReg ranks last at
epochs 4 to 12 and first at epoch 30 (docs/search_efficiency.md). A pruner that ranks
every trial against every other at an early rung cuts the slow starter before it has
caught up. Wrapped in :class:`GroupedPruner` with ``by=["loss"]``, the same pruner ranks a
VICReg trial only against other VICReg trials, so it still cuts bad VICReg trials (a
batch size too large, a bad temperature) but no longer compares one loss with another's
learning speed.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any, cast

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.space import comparable
from hpo.study_bound_storage import StudyBoundStorage

_ABSENT = object()
"""The group value of a parameter a trial did not suggest (a conditional parameter)."""


def group_key(trial: FrozenTrial, by: Sequence[str]) -> tuple[Any, ...]:
    """The values of ``by`` in ``trial``'s parameters; a missing one is its own value."""
    return tuple(comparable(trial.params.get(name, _ABSENT)) for name in by)


class GroupedPruner(optuna.pruners.BasePruner):
    """``wrapped_pruner``, shown only the trials whose ``by`` parameters equal the trial's.

    Any Optuna pruner can be wrapped (median, percentile, successive halving, Hyperband,
    patient, ...): it is called with a view of the study whose storage answers trial
    reads with the trial's group only, so the pruner's own logic (rungs, brackets,
    percentiles, start-up trials) runs unchanged within the group. Everything it writes
    (Hyperband's rung values) goes to the real storage.

    A group's first trials are judged against few peers, so it prunes less than the
    wrapped pruner alone: the cost of not comparing across groups.
    """

    def __init__(self, wrapped_pruner: optuna.pruners.BasePruner, by: Sequence[str]) -> None:
        if isinstance(wrapped_pruner, GroupedPruner):
            raise ValueError("wrapped must not be another grouped pruner; list every name in by")
        if isinstance(by, str) or not by or not all(isinstance(n, str) for n in by):
            raise ValueError("by must be a non-empty list of parameter names")
        self._wrapped_pruner = wrapped_pruner
        self._by = tuple(by)

    @property
    def by(self) -> tuple[str, ...]:
        return self._by

    @property
    def wrapped_pruner(self) -> optuna.pruners.BasePruner:
        return self._wrapped_pruner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner's decision among the trials of ``trial``'s group."""
        view = optuna.Study(
            study_name=study.study_name,
            storage=cast(
                optuna.storages.BaseStorage,
                _GroupStorage(study, self._by, group_key(trial, self._by)),
            ),
            sampler=study.sampler,
            pruner=self._wrapped_pruner,
        )
        return self._wrapped_pruner.prune(view, trial)


class _GroupStorage(StudyBoundStorage):
    """The study's storage, reading only one group's trials; everything else passes through.

    Every read of trials goes through :meth:`get_all_trials`: the count and the best
    trial (Wilcoxon judges against ``study.best_trial``) use Optuna's generic versions,
    which read through it, rather than the real storage's, which would see every group.
    """

    get_n_trials = optuna.storages.BaseStorage.get_n_trials
    get_best_trial = optuna.storages.BaseStorage.get_best_trial

    def __init__(self, study: optuna.Study, by: tuple[str, ...], key: tuple[Any, ...]) -> None:
        super().__init__(study)
        self._by = by
        self._key = key

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        trials = self._storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        # a COMPLETE trial without a curve (a reused duplicate, an imported result) is no
        # peer: a median pruner counted it among its start-up trials (as ungrouped, see
        # hpo.pruners._completed_cache), and no rung holds it
        return [
            t
            for t in trials
            if group_key(t, self._by) == self._key
            and (t.intermediate_values or t.state != TrialState.COMPLETE)
        ]
