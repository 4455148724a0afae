"""Optuna pruners by short name; ``patient`` and ``grouped`` wrap another, given as ``wrapped``."""

from __future__ import annotations

import copy
import threading
import warnings
from collections.abc import Container, Mapping
from typing import Any, cast

import optuna
from optuna.pruners._percentile import _is_first_in_interval_step
from optuna.trial import FrozenTrial, TrialState

from hpo.config import StudyConfig
from hpo.grouped_pruner import GroupedPruner
from hpo.hyperband_pruner import HyperbandPruner
from hpo.workers.budget import count_in_storage

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


def trainer_epochs(cfg: StudyConfig) -> int | None:
    """The trainer's fixed ``epochs`` (Hyperband's ``max_resource``), when the study gives it."""
    epochs = cfg.trainer.params.get("epochs")
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0:
        return epochs
    return None


def trainer_warmup(cfg: StudyConfig) -> int | None:
    """A built-in trainer's LR warmup in epochs: the fixed value, else its schema's default.

    Only built-in trainers: they report once per epoch, so an epoch count is a step count.
    """
    if ":" in cfg.trainer.name or "warmup_epochs" in cfg.space:
        return None  # a user's steps may not be epochs; a searched warmup differs by trial
    value = cfg.trainer.params.get("warmup_epochs")
    if value is None:
        from trainers.registry import resolve_trainer

        try:
            schema = resolve_trainer(cfg.trainer.name).params_schema
        except Exception:  # an unloadable trainer is reported by the study checks
            return None
        field = schema.model_fields.get("warmup_epochs") if schema is not None else None
        value = field.default if field is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def innermost_pruner(name: str, kwargs: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """The pruner that a ``patient`` / ``grouped`` chain finally asks, and its arguments."""
    while name in WRAPPERS:
        wrapped = kwargs.get("wrapped")
        if not isinstance(wrapped, Mapping) or not isinstance(wrapped.get("name"), str):
            break
        name, kwargs = wrapped["name"], {k: v for k, v in wrapped.items() if k != "name"}
    return name, kwargs


def pruner_defaults_note(cfg: StudyConfig) -> str:
    """What the service fills in for the study's pruner, e.g. `` (min_resource 4: ...)``."""
    args: list[str] = []
    epochs, warmup = trainer_epochs(cfg), trainer_warmup(cfg)
    name, kwargs = innermost_pruner(cfg.pruner.name, cfg.pruner.kwargs)
    if name == "hyperband" and epochs is not None and "max_resource" not in kwargs:
        args.append(f"max_resource {epochs}: the trainer's epochs")
    first_arg = FIRST_STEP_ARG.get(name)
    if first_arg is not None and warmup and first_arg not in kwargs:
        first = min(warmup + 1, epochs) if epochs is not None else warmup + 1
        why = (
            f"the first epoch after {warmup} warmup epochs"
            if first == warmup + 1
            else f"the last epoch: the {warmup} warmup epochs fill the run"
        )
        args.append(f"{first_arg} {first}: {why}")
    return f" ({'; '.join(args)})" if args else ""


def study_pruner(cfg: StudyConfig) -> optuna.pruners.BasePruner:
    """The study file's pruner, fitted to the trainer's epochs and warmup."""
    return build_pruner(
        cfg.pruner.name,
        cfg.pruner.kwargs,
        max_resource=trainer_epochs(cfg),
        warmup=trainer_warmup(cfg),
    )


class CompletedTrialsCache(optuna.pruners.BasePruner):
    """Optuna's median / percentile pruner, without re-reading the study at every report.

    Those pruners compare the trial with the study's COMPLETE trials, which they fetch
    with ``study.get_trials`` at every ``should_prune``; on an RDB storage that is a full
    read of every unfinished trial (about seven SQL statements) per report. A COMPLETE
    trial never changes again and the set only grows, so the same list is exact as long
    as the study still has as many COMPLETE trials: this wrapper asks the database for
    that count (one small query) and reads the trials again only when it changed. It
    also skips the call where the pruner is sure to say no before looking at the study
    (no step yet, warm-up steps, between pruning intervals). The decision itself is
    always the wrapped pruner's own ``prune``, on the same trials it would have read.
    Storages other than RDB (journal, gRPC proxy, in-memory) are passed straight through.
    """

    def __init__(self, pruner: optuna.pruners.PercentilePruner) -> None:
        self.pruner = pruner
        self._lock = threading.Lock()
        self._complete: dict[int, list[FrozenTrial]] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """The wrapped pruner's decision, given the study's COMPLETE trials from the cache."""
        step = trial.last_step
        inner = self.pruner
        warmup = inner._n_warmup_steps
        if step is None or step < warmup:
            return False
        if not _is_first_in_interval_step(
            step, trial.intermediate_values.keys(), warmup, inner._interval_steps
        ):
            return False
        count = count_in_storage(study, TrialState.COMPLETE)
        if count is None:
            return inner.prune(study, trial)
        if count == 0 or count < inner._n_startup_trials:
            return False
        with self._lock:
            complete = self._complete.get(study._study_id)
            if complete is None or len(complete) != count:
                complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                self._complete[study._study_id] = complete
        return inner.prune(cast(optuna.Study, _CompleteTrialsView(study, complete)), trial)


class _CompleteTrialsView:
    """A study whose ``get_trials(states=(COMPLETE,))`` answers from a list already read."""

    def __init__(self, study: optuna.Study, complete: list[FrozenTrial]) -> None:
        self._study = study
        self._complete_trials = complete

    def get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None
    ) -> list[FrozenTrial]:
        if states == (TrialState.COMPLETE,):
            trials = list(self._complete_trials)
            return copy.deepcopy(trials) if deepcopy else trials
        return self._study.get_trials(deepcopy=deepcopy, states=states)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def with_completed_cache(pruner: optuna.pruners.BasePruner) -> optuna.pruners.BasePruner:
    """``pruner`` wrapped in :class:`CompletedTrialsCache` where that is exact.

    Only Optuna's median and percentile pruners (exactly those classes, also as the
    pruner a patient pruner wraps) are wrapped; every other pruner is returned as is
    (Hyperband must stay visible as itself: Optuna's samplers look for it).
    """
    if type(pruner) in (optuna.pruners.MedianPruner, optuna.pruners.PercentilePruner):
        return CompletedTrialsCache(pruner)  # type: ignore[arg-type]
    if type(pruner) is optuna.pruners.PatientPruner:
        wrapped = getattr(pruner, "_wrapped_pruner", None)
        if wrapped is not None:
            pruner._wrapped_pruner = with_completed_cache(wrapped)
    return pruner
