"""contrastive-hpo: declarative Optuna studies for contrastive learning on time series.

The CLI (``hpo``) is a thin layer over these functions; tests and notebooks call them directly.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from hpo.config import StudyConfig, load_study_config, validate_study_data
from hpo.confirm import Confirmation, confirm_study, read_confirmation
from hpo.errors import ConfigError, HpoError, StorageError, StudyMismatchError
from hpo.results import StudyStatus, best_config, study_status
from hpo.runner import RunSummary, open_study, run_study
from hpo.storages import StorageUnavailableError, mask_url, storage_url

if TYPE_CHECKING:
    from hpo.compare import StudySummary, compare_studies
    from hpo.dashboard import create_server, serve_in_background
    from hpo.export import export_best
    from hpo.report import build_report, write_report
    from hpo.standalone import load_trainer_config, run_standalone

_LAZY = {
    "StudySummary": "hpo.compare",
    "compare_studies": "hpo.compare",
    "create_server": "hpo.dashboard",
    "serve_in_background": "hpo.dashboard",
    "export_best": "hpo.export",
    "build_report": "hpo.report",
    "write_report": "hpo.report",
    "load_trainer_config": "hpo.standalone",
    "run_standalone": "hpo.standalone",
}
"""What the other commands use, imported on first use: ``hpo``'s own start-up stays light."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hpo' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "Confirmation",
    "HpoError",
    "RunSummary",
    "StorageError",
    "StorageUnavailableError",
    "StudyConfig",
    "StudyMismatchError",
    "StudyStatus",
    "StudySummary",
    "best_config",
    "build_report",
    "compare_studies",
    "confirm_study",
    "create_server",
    "export_best",
    "load_study_config",
    "load_trainer_config",
    "mask_url",
    "open_study",
    "read_confirmation",
    "run_standalone",
    "run_study",
    "serve_in_background",
    "storage_url",
    "study_status",
    "validate_study_data",
    "write_report",
]
