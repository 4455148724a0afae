"""Optuna samplers by short name, the sampler hpo adds, and the balanced start-up design.

Laid out like Optuna's own ``samplers`` package: one concept per module, this small surface
re-exported here.
"""

from hpo.samplers._ordinal_tpe import (
    OrdinalTPESampler,
    is_ordered_numbers,
    ordered_params,
    positional_space,
)
from hpo.samplers._registry import (
    SAMPLERS,
    SAMPLERS_THAT_STOP,
    build_sampler,
    constructor_arguments,
    startup_trials,
    unknown_kwargs_problems,
)
from hpo.samplers._startup_design import (
    balanced_design,
    describe_startup,
    study_startup,
    uses_balanced_startup,
)

__all__ = [
    "SAMPLERS",
    "SAMPLERS_THAT_STOP",
    "OrdinalTPESampler",
    "balanced_design",
    "build_sampler",
    "constructor_arguments",
    "describe_startup",
    "is_ordered_numbers",
    "ordered_params",
    "positional_space",
    "startup_trials",
    "study_startup",
    "unknown_kwargs_problems",
    "uses_balanced_startup",
]
