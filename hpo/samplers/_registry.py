"""Optuna samplers by short name, with keyword arguments checked against their signatures."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from hpo.config import ParamSpec
from hpo.samplers._ordinal_tpe import OrdinalTPESampler
from hpo.space import grid_space

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "tpe": optuna.samplers.TPESampler,
    "tpe_ordinal": OrdinalTPESampler,
    "random": optuna.samplers.RandomSampler,
    "gp": optuna.samplers.GPSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "qmc": optuna.samplers.QMCSampler,
    "grid": optuna.samplers.GridSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "nsga3": optuna.samplers.NSGAIIISampler,
    "bruteforce": optuna.samplers.BruteForceSampler,
}
SAMPLERS_THAT_STOP = frozenset({"grid", "bruteforce"})
"""Samplers that stop the study once every point is tried, before ``n_trials`` if smaller."""


def constructor_arguments(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword arguments a class accepts (``self`` and ``*args``/``**kwargs`` left out)."""
    params = inspect.signature(cls).parameters
    return {
        n: p
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def unknown_kwargs_problems(path: str, cls: type, kwargs: Mapping[str, Any]) -> list[str]:
    """One line per keyword argument the Optuna class does not take."""
    allowed = constructor_arguments(cls)
    return [
        f"{path}.{key}: {cls.__name__} has no argument {key!r}; allowed: {', '.join(sorted(allowed))}"
        for key in kwargs
        if key not in allowed
    ]


def build_sampler(
    name: str, kwargs: Mapping[str, Any], *, seed: int, space: Mapping[str, ParamSpec]
) -> optuna.samplers.BaseSampler:
    """Construct a sampler; ``seed`` defaults to the study seed; grid gets its grid from the space."""
    cls = SAMPLERS[name]
    args = dict(kwargs)
    accepted = constructor_arguments(cls)
    if "seed" in accepted:
        args.setdefault("seed", seed)
    if name == "grid" and "search_space" not in args:
        args["search_space"] = grid_space(space)
    with warnings.catch_warnings():  # chosen in the study file: no source-line warning
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(**args)


def startup_trials(name: str, kwargs: Mapping[str, Any]) -> int | None:
    """How many start-up trials the sampler draws at random first; None: it has no such phase."""
    arg = constructor_arguments(SAMPLERS[name]).get("n_startup_trials")
    if arg is None:
        return None
    value = kwargs.get("n_startup_trials", arg.default)
    # a wrong type is reported by the sampler's own argument check; count its default here
    return value if isinstance(value, int) and not isinstance(value, bool) else int(arg.default)
