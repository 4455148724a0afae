"""The study file: a pydantic schema and the loader that reports every problem at once.

``_schema`` holds the sections' models, ``_space`` the checks of each searched parameter,
``_load`` the entry point that parses, overrides and validates; this surface is re-exported.
"""

from hpo.config._load import load_study_config, revalidation_problems, validate_study_data
from hpo.config._schema import (
    CONFIRM_SUFFIX,
    MAX_DURATION_S,
    MAX_EXACT_INT,
    PRUNE_COMPANION_ATTR,
    PRUNE_MARKER,
    STUDY_NAME_LENGTH,
    ArtifactsConfig,
    BudgetConfig,
    CategoricalParam,
    ComponentConfig,
    ConfirmConfig,
    Direction,
    FloatParam,
    IntParam,
    ObjectiveConfig,
    ParamSpec,
    Scalar,
    StudyConfig,
    TrainerConfig,
    WorkersConfig,
    parse_duration,
)
from hpo.config._space import _values_of as _values_of  # read by hpo.checks

__all__ = [
    "CONFIRM_SUFFIX",
    "MAX_DURATION_S",
    "MAX_EXACT_INT",
    "PRUNE_COMPANION_ATTR",
    "PRUNE_MARKER",
    "STUDY_NAME_LENGTH",
    "ArtifactsConfig",
    "BudgetConfig",
    "CategoricalParam",
    "ComponentConfig",
    "ConfirmConfig",
    "Direction",
    "FloatParam",
    "IntParam",
    "ObjectiveConfig",
    "ParamSpec",
    "Scalar",
    "StudyConfig",
    "TrainerConfig",
    "WorkersConfig",
    "load_study_config",
    "parse_duration",
    "revalidation_problems",
    "validate_study_data",
]
