"""Repeated configurations: reuse a completed trial's value instead of training again.

Samplers over discrete spaces (categorical choices, stepped ranges) propose the same
configuration again, TPE especially once it has found a good region. With
``duplicates: reuse`` in the study file (or ``auto``, the default, when the trainer's
seed is fixed) such a trial is not trained: it completes at once with the value(s) of
the earliest COMPLETE trial with the same parameters and records that trial's number
under :data:`DUPLICATE_OF_ATTR`. "The same" ignores parameters the trainer says it would
not read for that configuration (:class:`TwinFinder`). The sampler still sees the point
(it is a COMPLETE trial), so it learns nothing false, and no epoch is spent on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import FloatParam, ParamSpec, StudyConfig
from hpo.fixed_params import fixed_key, legacy_key, trained_alike
from hpo.space import comparable

DUPLICATE_OF_ATTR = "duplicate_of"
"""User attribute of a reused trial: the number of the trial whose value it took."""
UNUSED_PARAMS_ATTR = "unused_params"
"""User attribute: the sampled parameters the trainer did not read for this trial."""


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    # type-strict: True == 1 and 1 == 1.0 in Python, but they are different choices
    # and a stepped float's grid point is one value, however the sampler rounded it
    return a.keys() == b.keys() and all(
        type(a[k]) is type(b[k]) and comparable(a[k]) == comparable(b[k]) for k in a
    )


def completed_twin(study: optuna.Study, params: Mapping[str, Any]) -> FrozenTrial | None:
    """The earliest COMPLETE trial of ``study`` with exactly ``params``, if any."""
    return TwinFinder().find(study, params)


def active_params(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's parameters without those it recorded as unread (:data:`UNUSED_PARAMS_ATTR`)."""
    unused = trial.user_attrs.get(UNUSED_PARAMS_ATTR) or ()
    return {name: value for name, value in trial.params.items() if name not in unused}


_UNREAD = object()

UnusedParams = Callable[[Mapping[str, Any]], frozenset[str]]
"""Given a trial's full trainer parameters, the names the trainer would not read."""


class TwinFinder:
    """Finds the completed trial that a configuration would train exactly alike.

    Two configurations are twins when they agree on every sampled parameter the trainer
    reads: with ``loss: vicreg``, ``temperature`` 0.05 and 0.15 train alike, since only
    InfoNCE reads a temperature. ``unused`` comes from the trainer's schema
    (``TrainerSpec.unused_params``); without it only identical parameters are twins.
    Keys of finished trials are cached by trial number: a finished trial never changes.
    In the search-efficiency benchmark such twins were 10 % of our default's epochs
    before (docs/search_efficiency.md).
    """

    def __init__(
        self, unused: UnusedParams | None = None, fixed: Mapping[str, Any] | None = None
    ) -> None:
        self.unused = unused
        self.fixed = dict(fixed or {})
        # None: the fixed trainer parameters are not known here, so any trial may be a twin
        self._fixed_key = None if fixed is None else fixed_key(self.fixed)
        self._legacy: object = _UNREAD
        self._keys: dict[int, dict[str, Any]] = {}

    def _legacy_key(self, study: optuna.Study) -> str | None:
        """:func:`legacy_key` of ``study``, read once: it is written before any trial runs."""
        if self._legacy is _UNREAD:
            self._legacy = legacy_key(study.user_attrs)
        assert self._legacy is None or isinstance(self._legacy, str)
        return self._legacy

    def unused_names(self, params: Mapping[str, Any]) -> frozenset[str]:
        """The sampled names in ``params`` that the trainer would not read."""
        if self.unused is None:
            return frozenset()
        return self.unused({**self.fixed, **params}) & params.keys()

    def key(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """``params`` without the ones the trainer would not read."""
        drop = self.unused_names(params)
        return {name: value for name, value in params.items() if name not in drop}

    def find(self, study: optuna.Study, params: Mapping[str, Any]) -> FrozenTrial | None:
        """The earliest COMPLETE trial that trained and is a twin of ``params``, if any."""
        wanted = self.key(params)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if DUPLICATE_OF_ATTR in trial.user_attrs:
                continue
            if self._fixed_key is not None and not trained_alike(
                trial, self._fixed_key, self._legacy_key(study)
            ):
                continue  # trained under other fixed parameters (a study resumed edited)
            key = self._keys.get(trial.number)
            if key is None:
                key = self._keys[trial.number] = self.key(trial.params)
            if same_params(key, wanted):
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
