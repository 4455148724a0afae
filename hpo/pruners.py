"""Optuna pruners by short name; ``patient`` wraps another pruner given as ``wrapped``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "patient": optuna.pruners.PatientPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


def build_pruner(
    name: str, kwargs: Mapping[str, Any], *, max_resource: int | None = None
) -> optuna.pruners.BasePruner:
    """Construct a pruner.

    Hyperband's ``max_resource`` defaults to the trainer's ``epochs`` when known, so
    its brackets match the real run length instead of being guessed from early trials.
    """
    cls = PRUNERS[name]
    args = dict(kwargs)
    if name == "hyperband" and max_resource is not None:
        args.setdefault("max_resource", max_resource)
    if name == "patient":
        wrapped = args.pop("wrapped", None) or {"name": "none"}
        if not isinstance(wrapped, Mapping) or "name" not in wrapped:
            raise ValueError("wrapped must be a pruner like {name: median}")
        inner = dict(wrapped)
        inner_name = str(inner.pop("name"))
        if inner_name not in PRUNERS or inner_name == "patient":
            raise ValueError(
                f"wrapped.name must be one of {', '.join(n for n in PRUNERS if n != 'patient')}"
            )
        args["wrapped_pruner"] = build_pruner(inner_name, inner, max_resource=max_resource)
    return cls(**args)
