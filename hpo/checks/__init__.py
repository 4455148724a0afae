"""Checks that need more than the schema: Optuna signatures, the trainer, the storage URL.

Everything here runs before a study is created, so a typo costs a second, not a GPU hour.
"""

from __future__ import annotations

from collections.abc import Collection

from hpo.checks._common import MAX_COMBINATIONS
from hpo.checks._inputs import FIT_FIELDS, INPUT_FIELDS, input_misfit_problems
from hpo.checks._locations import _artifact_problems, _storage_syntax_problems
from hpo.checks._optuna_args import _pruner_problems, _sampler_problems, kwarg_type_problems
from hpo.checks._trainer_params import WHOLE, _trainer_problems, schema_errors
from hpo.config import StudyConfig
from hpo.storages import storage_problems

__all__ = [
    "FIT_FIELDS",
    "INPUT_FIELDS",
    "MAX_COMBINATIONS",
    "WHOLE",
    "input_misfit_problems",
    "kwarg_type_problems",
    "run_problems",
    "schema_errors",
    "semantic_problems",
]


def semantic_problems(
    cfg: StudyConfig, *, unseen: Collection[str] = (), for_reading: bool = False
) -> list[str]:
    """All problems beyond the schema, one line each.

    ``unseen``: searched parameters whose entries failed their own checks and are left out
    of ``cfg.space``. What reads them (cross-field errors that involve them, any error
    that names no fields, input files) is left for the next run: a default would stand in
    for the user's value. Cross-field errors of the other fields are still reported.
    ``for_reading``: the trainer (its code, parameters and input files) is not checked:
    reading a study needs none of it.
    """
    problems = _storage_syntax_problems(cfg) or storage_problems(cfg)
    problems += _sampler_problems(cfg, for_reading=for_reading)
    problems += _pruner_problems(cfg)
    if not for_reading:
        problems += _trainer_problems(cfg, unseen=unseen)
    problems += _artifact_problems(cfg)
    return problems


def run_problems(cfg: StudyConfig) -> list[str]:
    """What only matters to a run, and costs a look at the machine: an artifact store
    it cannot open (no boto3, a folder under a file) and inputs that do not fit.

    ``hpo validate`` and a run creating its study ask; read-only commands (``status``,
    ``best``, ``report``) do not, so they keep working where a run could not start.
    """
    from hpo.artifacts import check_artifact_store
    from hpo.errors import ConfigError

    problems: list[str] = []
    if cfg.artifacts.enabled:
        try:
            check_artifact_store(cfg)
        except ConfigError as exc:
            problems += exc.problems
    return problems + input_misfit_problems(cfg)
