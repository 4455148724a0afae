"""Repeated configurations: reuse a completed trial's value instead of training again.

Samplers over discrete spaces (categorical choices, stepped ranges) propose the same
configuration again, TPE especially once it has found a good region. With
``duplicates: reuse`` in the study file (or ``auto``, the default, when the trainer's
seed is fixed) such a trial is not trained: it completes at once with the value(s) of
the earliest COMPLETE trial with identical parameters and records that trial's number
under :data:`DUPLICATE_OF_ATTR`. The sampler still sees the point (it is a COMPLETE
trial), so it learns nothing false, and no epoch is spent on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import FloatParam, ParamSpec, StudyConfig

DUPLICATE_OF_ATTR = "duplicate_of"
"""User attribute of a reused trial: the number of the trial whose value it took."""


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    # type-strict: True == 1 and 1 == 1.0 in Python, but they are different choices
    return a.keys() == b.keys() and all(type(a[k]) is type(b[k]) and a[k] == b[k] for k in a)


def completed_twin(study: optuna.Study, params: Mapping[str, Any]) -> FrozenTrial | None:
    """The earliest COMPLETE trial of ``study`` with exactly ``params``, if any."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if DUPLICATE_OF_ATTR not in trial.user_attrs and same_params(trial.params, params):
            return trial
    return None


def originals(study: optuna.Study, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` with each reused trial replaced by the trial that trained (order kept)."""
    wanted = [t.user_attrs.get(DUPLICATE_OF_ATTR) for t in trials]
    if all(n is None for n in wanted):
        return list(trials)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    out: list[FrozenTrial] = []
    for trial, number in zip(trials, wanted, strict=True):
        original = by_number.get(number, trial) if isinstance(number, int) else trial
        if all(o.number != original.number for o in out):
            out.append(original)
    return out


def fixed_seed(cfg: StudyConfig) -> Any:
    """The seed every trial trains at (``trainer.params.seed``, not searched), or None."""
    return None if "seed" in cfg.space else cfg.trainer.params.get("seed")


def reuses_duplicates(cfg: StudyConfig) -> bool:
    """Whether a repeat of a completed configuration takes its value instead of training.

    ``auto`` reuses when every trial trains at one fixed seed. ``rerun`` exists to train
    a repeat at the trial's own seed; at a fixed seed the repeat reproduces the first
    run's value on a deterministic trainer. In the search-efficiency benchmark such
    repeats were 15 % of our default's epochs (23 % at twice the budget); reusing them,
    it reached the manual sweep's best after 261 epochs instead of 297
    (docs/search_efficiency.md).
    """
    if cfg.duplicates == "auto":
        return fixed_seed(cfg) is not None
    return cfg.duplicates == "reuse"


def describe_duplicates(cfg: StudyConfig) -> str:
    """How repeats are handled, for ``hpo validate``: ``auto`` says which way it went."""
    verb = "reuse" if reuses_duplicates(cfg) else "rerun"
    if cfg.duplicates != "auto":
        return verb
    if verb == "reuse":
        return f"reuse (auto: every trial trains at trainer.params.seed {fixed_seed(cfg)})"
    return "rerun (auto: each trial trains at its own seed)"


def fixed_seed_rerun_note(cfg: StudyConfig) -> str | None:
    """Why an explicit ``rerun`` is wasted when the trainer's seed is fixed.

    See :func:`reuses_duplicates`: at one fixed seed, the repeat trains alike.
    """
    seed = fixed_seed(cfg)
    if cfg.duplicates != "rerun" or seed is None:
        return None
    if not all(_has_repeats(spec) for spec in cfg.space.values()):
        return None  # a continuous parameter: the sampler all but never repeats a configuration
    return (
        f"trainer.params.seed is fixed ({seed}) and duplicates is rerun: "
        "a configuration the sampler proposes again trains again at the same seed; "
        "duplicates: reuse takes the earlier value instead"
    )


def _has_repeats(spec: ParamSpec) -> bool:
    """Whether a sampler can draw one of the parameter's values again: not a continuous float."""
    return not (isinstance(spec, FloatParam) and spec.step is None)
