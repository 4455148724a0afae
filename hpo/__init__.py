"""contrastive-hpo: declarative Optuna studies for contrastive learning on time series.

The CLI (``hpo``) is a thin layer over these functions; tests and notebooks call them directly.
"""

from hpo.config import StudyConfig, load_study_config, validate_study_data
from hpo.confirm import Confirmation, confirm_study, read_confirmation
from hpo.errors import ConfigError, HpoError, StorageError, StudyMismatchError
from hpo.results import StudyStatus, best_config, study_status
from hpo.runner import RunSummary, open_study, run_study
from hpo.storages import mask_url, storage_url

__all__ = [
    "ConfigError",
    "Confirmation",
    "HpoError",
    "RunSummary",
    "StorageError",
    "StudyConfig",
    "StudyMismatchError",
    "StudyStatus",
    "best_config",
    "confirm_study",
    "load_study_config",
    "mask_url",
    "open_study",
    "read_confirmation",
    "run_study",
    "storage_url",
    "study_status",
    "validate_study_data",
]
