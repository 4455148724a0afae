"""Optuna pruners by short name, fitted to the trainer, and the pruners hpo adds.

Laid out like Optuna's own ``pruners`` package: one concept per module, this small surface
re-exported here.
"""

from hpo.pruners._completed_cache import CompletedTrialsCache, with_completed_cache
from hpo.pruners._grouped import GroupedPruner
from hpo.pruners._hyperband import HyperbandPruner
from hpo.pruners._registry import (
    FIRST_STEP_ARG,
    PRUNERS,
    WRAPPERS,
    build_pruner,
    hyperband_arg_problems,
    innermost_pruner,
)
from hpo.pruners._study import pruner_defaults_note, study_pruner, trainer_epochs, trainer_warmup

__all__ = [
    "FIRST_STEP_ARG",
    "PRUNERS",
    "WRAPPERS",
    "CompletedTrialsCache",
    "GroupedPruner",
    "HyperbandPruner",
    "build_pruner",
    "hyperband_arg_problems",
    "innermost_pruner",
    "pruner_defaults_note",
    "study_pruner",
    "trainer_epochs",
    "trainer_warmup",
    "with_completed_cache",
]
