"""The model registry (name -> factory) and what every model's ``forward`` returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from torch import Tensor, nn

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)

MODELS: dict[str, ModelFactory] = {}
"""Model name -> class (or factory) taking ``in_channels, n_classes, **options``."""

DEFAULT_MODEL = "crossformer"


def register_model(name: str) -> Callable[[_F], _F]:
    """Class decorator adding a model to :data:`MODELS` under ``name``.

    Registering a *different* object under a taken name is an error, so two modules can't
    silently shadow each other; re-registering the same object (module reload) is allowed.
    """

    def decorator(factory: _F) -> _F:
        existing = MODELS.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"model name {name!r} is already registered to {existing!r}")
        MODELS[name] = factory
        return factory

    return decorator


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name (``"crossformer"`` is the default architecture)."""
    try:
        factory = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r}; available models: {known}") from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the optimiser updates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ModelOutput(NamedTuple):
    """What every model's ``forward`` returns."""

    logits: Tensor
    """(B, n_classes) classifier scores."""
    embedding: Tensor
    """(B, dim) pooled encoder output (used for linear probes and prototype init)."""
    projection: Tensor
    """(B, proj_dim) projection-head output fed to the contrastive loss (not normalised)."""
