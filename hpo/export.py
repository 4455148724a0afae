"""The best trial as a standalone trainer config that ``hpo train`` retrains."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.results import best_config
from hpo.yaml_loader import dump_yaml

if TYPE_CHECKING:
    from hpo.config import StudyConfig


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
    header += "# Retrain it outside the study:  hpo train THIS_FILE --evaluate-test\n"
    for key in ("save_dir", "artifact_dir"):
        if data["params"].get(key):
            header += (
                f"# {key} {data['params'][key]!r} is where the trial wrote (at its seed): a "
                f"retrain writes there too; --set params.{key}=... keeps the trial's files.\n"
            )
    return header + dump_yaml(data, sort_keys=False, allow_unicode=True)


def export_best(cfg: StudyConfig, path: str | Path) -> Path:
    """Write the best trial's config to ``path`` and return it; never over the study file,
    its storage or a SQLite database (:class:`ConfigError`, as ``hpo export -o``)."""
    from hpo.output_files import check_output_file, write_output_file

    out = Path(path)
    check_output_file(out, "path", "best.yaml", cfg)
    return write_output_file(out, export_text(cfg))
