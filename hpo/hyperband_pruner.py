"""Optuna's Hyperband, minus a storage read each time it builds a bracket's view."""

from __future__ import annotations

import optuna

from hpo.study_bound_storage import bound_study


class HyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, whose bracket views skip looking the study up by name.

    Hyperband builds an ``optuna.Study`` view of the trial's bracket at every pruning
    decision, and Optuna builds one for the sampler at every suggestion; the view's
    constructor looks the study's id up by name each time, a SQL statement on an RDB
    storage (see :mod:`hpo.study_bound_storage`). Still a ``HyperbandPruner``, so Optuna
    treats it as its own (it still builds the sampler's bracket view, which Optuna 5's
    samplers read past: they model the whole study), and it decides exactly as Optuna's:
    only the storage object the bracket view is built on differs.
    """

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        return super()._create_bracket_study(bound_study(study), bracket_id)
