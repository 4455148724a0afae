"""Optuna's Hyperband, minus the per-decision costs that grow with the study."""

from __future__ import annotations

import functools
from collections.abc import Container

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.study_bound_storage import bound_study


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with bracket views that cost no study lookup and no hashing.

    Hyperband builds an ``optuna.Study`` view of the trial's bracket at every pruning
    decision, and Optuna builds one for the sampler at every suggestion. The view's
    constructor looks the study's id up by name each time, a SQL statement on an RDB
    storage (see :mod:`hpo.study_bound_storage`). At every decision that reaches a rung,
    the view's ``get_trials`` then hashes every trial of the study to find its bracket,
    through the view's guarded attribute access: a cost that grows with the study. A
    trial's bracket is a function of the study name and the trial number alone, so here
    it is hashed once and looked up after. Still a ``HyperbandPruner``, so Optuna treats
    it as its own, and it decides exactly as Optuna's.
    """

    @functools.cached_property
    def _bracket_ids(self) -> dict[str, dict[int, int]]:
        """Each study's trial numbers and their brackets (made on first use: no __init__
        of ours, so the constructor's signature, which the study schema checks, is Optuna's)."""
        return {}

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        view = super()._create_bracket_study(bound_study(study), bracket_id)
        # shadows Optuna's filter (the same trials) on this view only
        view.get_trials = functools.partial(self._trials_in_bracket, view, bracket_id)  # type: ignore[method-assign]
        return view

    def _get_bracket_id(self, study: optuna.Study, trial: FrozenTrial) -> int:
        if not self._pruners:  # not initialised: every trial is in bracket 0 for now
            return 0
        brackets = self._bracket_ids.setdefault(study.study_name, {})
        bracket_id = brackets.get(trial.number)
        if bracket_id is None:
            bracket_id = brackets[trial.number] = super()._get_bracket_id(study, trial)
        return bracket_id

    def _trials_in_bracket(
        self,
        view: optuna.Study,
        bracket_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """Optuna's bracket filter, with each trial's bracket hashed once per study."""
        trials = view._get_trials(deepcopy=deepcopy, states=states)
        brackets = self._bracket_ids.setdefault(view.study_name, {})
        in_bracket = []
        for trial in trials:
            trial_bracket = brackets.get(trial.number)
            if trial_bracket is None:
                trial_bracket = self._get_bracket_id(view, trial)
            if trial_bracket == bracket_id:
                in_bracket.append(trial)
        return in_bracket
