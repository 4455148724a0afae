"""Optuna pruners by short name; ``patient`` and ``grouped`` wrap another, given as ``wrapped``."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from hpo.pruners._grouped import GroupedPruner
from hpo.pruners._hyperband import HyperbandPruner

PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": HyperbandPruner,
    "patient": optuna.pruners.PatientPruner,
    "grouped": GroupedPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


WRAPPERS = ("patient", "grouped")
"""Pruners that take another pruner, given in the study file as ``wrapped: {name: ...}``."""


FIRST_STEP_ARG = {
    "hyperband": "min_resource",
    "successive_halving": "min_resource",
    "median": "n_warmup_steps",
    "percentile": "n_warmup_steps",
    "threshold": "n_warmup_steps",
}
"""Each pruner's argument for the first step it may judge a trial on."""


def build_pruner(
    name: str,
    kwargs: Mapping[str, Any],
    *,
    max_resource: int | None = None,
    warmup: int | None = None,
) -> optuna.pruners.BasePruner:
    """Construct a pruner.

    Hyperband's ``max_resource`` defaults to the trainer's ``epochs`` when known, so
    its brackets match the real run length instead of being guessed from early trials.
    With the trainer's LR ``warmup`` (in epochs) known, the first step a pruner may judge
    (``min_resource`` / ``n_warmup_steps``, when the study file leaves it out) is the
    first epoch after the warmup: during warmup the scores rank how fast a learning rate
    ramps up, not the configuration, and pruning on them discards good trials (see
    docs/search_efficiency.md).
    """
    cls = PRUNERS[name]
    args = dict(kwargs)
    factor = args.get("reduction_factor")
    if name in ("hyperband", "successive_halving") and isinstance(factor, int) and factor < 2:
        # Optuna takes 1 and every trial then fails dividing by log(1) = 0
        raise ValueError(f"reduction_factor must be an integer >= 2, got {factor}")
    if name == "hyperband":
        for key, problem in hyperband_arg_problems(args).items():
            raise ValueError(f"{key} {problem}")
    if name == "hyperband" and max_resource is not None:
        args.setdefault("max_resource", max_resource)
    first_arg = FIRST_STEP_ARG.get(name)
    if first_arg is not None and warmup:
        first = warmup + 1
        if max_resource is not None:
            first = min(first, max_resource)
        args.setdefault(first_arg, first)
    if name in WRAPPERS:
        if name == "grouped" and not args.get("wrapped"):
            raise ValueError("grouped needs wrapped: the pruner to run in each group")
        wrapped = args.pop("wrapped", None) or {"name": "none"}
        if not isinstance(wrapped, Mapping) or "name" not in wrapped:
            raise ValueError("wrapped must be a pruner like {name: median}")
        inner = dict(wrapped)
        inner_name = str(inner.pop("name"))
        if inner_name not in PRUNERS or inner_name == name:
            raise ValueError(
                f"wrapped.name must be one of {', '.join(n for n in PRUNERS if n != name)}"
            )
        args["wrapped_pruner"] = build_pruner(
            inner_name, inner, max_resource=max_resource, warmup=warmup
        )
    with warnings.catch_warnings():  # chosen in the study file: no source-line warning
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**args)


def hyperband_arg_problems(args: Mapping[str, Any]) -> dict[str, str]:
    """Out-of-range Hyperband arguments, by name: Optuna checks them only at the first
    report, where every trial then fails (``math domain error``)."""
    problems: dict[str, str] = {}
    for key, least, auto in (
        ("min_resource", 1, False),
        ("max_resource", 1, True),
        ("bootstrap_count", 0, False),
    ):
        if key not in args or (auto and args[key] == "auto"):
            continue
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            allowed = f"an integer >= {least}" + (" or 'auto'" if auto else "")
            problems[key] = f"must be {allowed} (got {value!r})"
    return problems


def innermost_pruner(name: str, kwargs: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The pruner that a ``patient`` / ``grouped`` chain finally asks, and its arguments."""
    while name in WRAPPERS:
        wrapped = kwargs.get("wrapped")
        if not isinstance(wrapped, Mapping) or not isinstance(wrapped.get("name"), str):
            break
        name, kwargs = wrapped["name"], {k: v for k, v in wrapped.items() if k != "name"}
    return name, kwargs
