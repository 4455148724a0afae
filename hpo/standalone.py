"""Running a trainer once from a config file (``hpo train``), with the same validation as studies."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from hpo.errors import ConfigError
from hpo.overrides import apply_overrides
from hpo.yaml_loader import load_yaml_file
from trainers.registry import TrainerNotFound, resolve_trainer

TRAIN_SET_EXAMPLE = "params.epochs=3"
"""The ``--set`` a malformed one is shown next to in ``hpo train`` (a config has no budget)."""

_TOP_LEVEL = {
    "trainer",
    "params",
    "study",
    "trial",
    "values",
    "metrics",
    "confirmed",
    "pareto_front",
}


def load_trainer_config(
    path: str | Path, overrides: Iterable[str] = ()
) -> tuple[str, dict[str, Any]]:
    """Read ``{trainer: NAME, params: {...}}`` (``hpo best`` output) or a bare params mapping."""
    data = load_yaml_file(path)
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(
            data if data is not None else {}, overrides, example=TRAIN_SET_EXAMPLE
        )
    if not isinstance(data, Mapping):
        raise ConfigError([f"{path}: expected a mapping of trainer parameters"])
    if {"objective", "budget"} <= set(map(str, data)):
        raise ConfigError(
            [
                f"{path} is a study file; hpo train runs one trainer config "
                "(trainer: NAME, params: {...}, as hpo export writes): use hpo run "
                f"{path}, or hpo export {path} -o best.yaml for its best trial"
            ]
        )
    if "params" in data or "trainer" in data:
        given = {p.partition("=")[0].strip() for p in overrides}
        unknown = sorted(set(map(str, data)) - _TOP_LEVEL)
        if unknown:
            raise ConfigError(
                [
                    f"--set {k}: {path} holds trainer: and params:, so set params.{k}"
                    if k in given
                    else f"{path}: unknown key {k!r}; allowed: {', '.join(sorted(_TOP_LEVEL))}"
                    for k in unknown
                ]
            )
        name = str(data.get("trainer", "contrastive"))
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError([f"{path}: params must be a mapping"])
        return name, dict(params)
    return "contrastive", dict(data)


def _shown_metric(value: object) -> str:
    """A reported metric for the epoch line: finite numbers as ``.4g``, anything else as text.

    Trainers may report text (``{"phase": "warmup"}``), which a study run ignores; echoing
    it must not stop the training.
    """
    if isinstance(value, str | bytes | bool):
        return str(value)
    try:
        number = float(value)  # type: ignore[arg-type]  # numpy / torch scalars too
    except (TypeError, ValueError, OverflowError, RuntimeError):  # RuntimeError: big tensors
        return str(value)
    return f"{number:.4g}" if math.isfinite(number) else str(value)


def run_standalone(
    name: str, params: dict[str, Any], console: Console | None = None
) -> dict[str, float]:
    """Validate params against the trainer's schema, then train once and return its result."""
    try:
        spec = resolve_trainer(name)
    except TrainerNotFound as exc:
        raise ConfigError([f"trainer: {exc}"]) from None
    if spec.params_schema is not None:
        from hpo.checks import WHOLE, schema_errors

        problems = [
            f"{'params' if loc == WHOLE else f'params.{loc}'}: {msg}"
            for loc, msg in schema_errors(spec.params_schema, dict(params))
        ]
        if problems:
            raise ConfigError(problems)
    from trainers.reporter import Reporter

    class _Echo(Reporter):
        def report(self, step: int, metrics: Mapping[str, float]) -> None:
            if console is not None:
                shown = "  ".join(f"{k}={_shown_metric(v)}" for k, v in metrics.items())
                console.print(f"epoch {step}: {shown}", markup=False, highlight=False)

    return dict(spec.fn(params, _Echo()))
