"""The best trial as a standalone trainer config that ``hpo train`` retrains."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.hooks import trainer_accepts_param
from hpo.results import best_config
from hpo.yaml_loader import dump_yaml

if TYPE_CHECKING:
    from hpo.config import StudyConfig

OUTPUT_DIR_PARAMS = ("save_dir", "artifact_dir")
"""Trainer params naming folders a run writes into; an export moves them below the trial's."""
RETRAIN_SUBDIR = "retrain"


def export_text(cfg: StudyConfig) -> str:
    """YAML of the best trial's config (fixed params + best params + its seed), with a header
    saying where it came from and how to retrain it."""
    data: dict[str, Any] = best_config(cfg)
    values = ", ".join(f"{k}={v:.6g}" for k, v in data.get("values", {}).items())
    header = f"# Best trial {data['trial']} of study {data['study']!r} ({values}).\n"
    confirmed = data.get("confirmed")
    if confirmed:
        header += (
            f"# Picked by hpo confirm: mean {confirmed['mean']:.6g} over {confirmed['runs']} "
            f"run(s) at fresh seeds, the best of {confirmed['finalists']} finalists.\n"
        )
    header += f"# Retrain it outside the study:  {retrain_command('THIS_FILE', cfg)}\n"
    params = data["params"]
    trial_dirs = {
        key: params[key]
        for key in OUTPUT_DIR_PARAMS
        if params.get(key) and trainer_accepts_param(cfg, key)  # a folder only where declared
    }
    for key, trial_dir in trial_dirs.items():
        params[key] = f"{str(trial_dir).rstrip('/')}/{RETRAIN_SUBDIR}"
        header += (
            # artifact_dir: each trial had its own trial-<n> folder inside the given one
            f"# {key}: the trial wrote {'under' if key == 'artifact_dir' else 'to'} "
            f"{trial_dir!r}; a retrain writes to "
            f"{params[key]!r}, so the trial's files stay as they are.\n"
        )
    if "save_dir" in trial_dirs and params.get("resume"):
        header += (
            "# resume: true: running this again continues the retrain; --set "
            f"params.save_dir={trial_dirs['save_dir']!r} scores the trial's own run instead.\n"
        )
    return header + dump_yaml(data, sort_keys=False, allow_unicode=True)


def retrain_command(path: str | Path, cfg: StudyConfig) -> str:
    """``hpo train PATH``, with ``--evaluate-test`` only for trainers that take it; the path
    quoted for a shell, so a name with spaces or quotes gives a command that runs as shown."""
    flag = " --evaluate-test" if trainer_accepts_param(cfg, "evaluate_test") else ""
    return f"hpo train {shlex.quote(str(path))}{flag}"


def export_best(cfg: StudyConfig, path: str | Path) -> Path:
    """Write the best trial's config to ``path`` and return it; never over the study file,
    its storage or a SQLite database (:class:`ConfigError`, as ``hpo export -o``)."""
    from hpo.output_files import check_output_file, write_output_file

    check_output_file(path, "path", "best.yaml", cfg)  # as given: "dir/" is a folder
    return write_output_file(Path(path), export_text(cfg))
