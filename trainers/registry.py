"""Trainers by name, in the spirit of timm's model registry.

Names map to ``module:function`` import paths so nothing heavy (torch) is
imported until a trainer is actually resolved.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from trainers.reporter import Reporter

logger = logging.getLogger(__name__)

TrainFn = Callable[..., Mapping[str, float]]
"""``train(params: dict, reporter: Reporter | None = None) -> dict[str, float]``."""

_REGISTRY: dict[str, str] = {
    "contrastive": "trainers.contrastive:train",
    "analytic": "trainers.analytic:train",
}


class TrainerNotFound(LookupError):
    """The trainer name or import path cannot be resolved."""


@dataclass(frozen=True)
class TrainerSpec:
    """A resolved trainer: the callable and, when it publishes one, its parameter schema."""

    name: str
    fn: TrainFn
    params_schema: type[BaseModel] | None

    def unused_params(self, params: Mapping[str, Any]) -> frozenset[str]:
        """Parameters the trainer would not read for ``params``; empty when it cannot tell.

        A schema opts in with an ``unused_params()`` method (see
        ``ContrastiveParams.unused_params``); invalid ``params`` give the empty set, as
        such a configuration fails in the trainer anyway.
        """
        if self.params_schema is None or not hasattr(self.params_schema, "unused_params"):
            return frozenset()
        try:
            validated = self.params_schema.model_validate(dict(params))
            names = validated.unused_params()
        except ValidationError:
            return frozenset()
        except Exception:  # a user's schema method: never fail a trial over a shortcut
            logger.warning("%s.unused_params() raised", self.params_schema.__name__, exc_info=True)
            return frozenset()
        return frozenset(name for name in names if isinstance(name, str))


def register_trainer(name: str, target: str) -> None:
    """Register ``target`` (``"package.module:function"``) under a short ``name``."""
    if ":" not in target:
        raise ValueError(f"trainer target must look like 'package.module:function', got {target!r}")
    _REGISTRY[name] = target


def registered_trainers() -> dict[str, str]:
    """Short names and the import paths they stand for."""
    return dict(_REGISTRY)


def resolve_trainer(name: str) -> TrainerSpec:
    """Import a trainer by registered name or ``package.module:function`` path.

    This is the only way a study file names code: an import path, never text to evaluate.
    """
    target = _REGISTRY.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(_REGISTRY))
        raise TrainerNotFound(
            f"unknown trainer {name!r}; use one of {known} or 'package.module:function'"
        )
    module_name, _, attr = target.partition(":")
    if not module_name or not attr or not attr.isidentifier():
        raise TrainerNotFound(
            f"trainer {name!r} is not 'package.module:function' (both parts are needed)"
        )
    module = _import_trainer_module(module_name)
    fn: Any = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise TrainerNotFound(f"module {module_name!r} has no callable {attr!r}")
    if not _takes_params_and_reporter(fn):
        raise TrainerNotFound(
            f"{module_name}:{attr} must accept (params, reporter): every trial calls it "
            f"with the parameters dict and a reporter"
        )
    schema = getattr(fn, "params_schema", None) or getattr(module, "PARAMS_SCHEMA", None)
    if schema is not None and not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        schema = None
    return TrainerSpec(name=name, fn=fn, params_schema=schema)


def _import_trainer_module(module_name: str) -> Any:
    """Import the trainer's module, turning any failure into :class:`TrainerNotFound`.

    A module that calls ``sys.exit`` or parses the command line with argparse at import
    would otherwise end ``hpo validate`` with its exit code (0 and no output, or argparse's
    usage text). What it writes to ``sys.stderr`` while importing is held back and only
    passed on when the import succeeds, so argparse's usage does not drown the error.
    """
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TrainerNotFound(f"cannot import module {module_name!r}: {exc}") from exc
    except SystemExit as exc:
        raise TrainerNotFound(_exit_message(module_name, exc, captured.getvalue())) from None
    except Exception as exc:  # the user's module failed while importing (or a bad name)
        raise TrainerNotFound(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    _pass_on(captured.getvalue())
    return module


def _pass_on(text: str) -> None:
    """Write what the module printed while importing to stderr, if anywhere it can go.

    Best effort: with stderr closed (``2>&-``: ``sys.stderr`` is None) or full
    (``2>/dev/full``), losing these lines must not turn a trainer that imported into
    "cannot load trainer" for every command that reads the study file.
    """
    if not text or sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: a closed stream
        sys.stderr.write(text)
        sys.stderr.flush()


def _exit_message(module_name: str, exc: SystemExit, stderr: str) -> str:
    """One line for a module that exited while being imported, naming argparse's error."""
    said = [line.strip() for line in stderr.splitlines() if line.strip()]
    if said and said[0].startswith("usage:"):
        error = said[-1] if said[-1] != said[0] else ""
        detail = f" ({error[:200]})" if error else ""
        return (
            f"importing module {module_name!r} parsed the command line and exited{detail}; "
            f"move its argparse code under `if __name__ == '__main__':`"
        )
    last = f"; it printed: {said[-1][:200]}" if said else ""
    return (
        f"importing module {module_name!r} called sys.exit({exc.code!r}){last}; a trainer "
        f"module must not exit when imported"
    )


def _takes_params_and_reporter(fn: Any) -> bool:
    """Whether ``fn(params, reporter)`` binds; ``True`` when its signature cannot be read."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins and C callables have none
        return True
    try:
        signature.bind({}, None)
    except TypeError:
        return False
    return True


def run_trainer(
    name: str, params: Mapping[str, Any], reporter: Reporter | None = None
) -> Mapping[str, float]:
    """Resolve and call a trainer once (the standalone path used by ``hpo train``)."""
    return resolve_trainer(name).fn(dict(params), reporter)
