"""Which fixed trainer parameters (``trainer.params``) each trial trained with.

A study may be resumed from an edited file (``--set trainer.params.epochs=50``), so the
study-level copy only says what the latest run used. Each trial records the key of its
fixed parameters beside its seed (the same write), and the study keeps each distinct set
once under that key: ``hpo best`` and ``hpo export`` rebuild a trial's own configuration,
and ``duplicates: reuse`` never takes a value trained under other fixed parameters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial

FIXED_KEY_ATTR = "hpo:fixed"
"""Trial user attribute: the key of the fixed trainer parameters it trained with."""
FIXED_SET_PREFIX = "hpo:fixed_params:"
"""Study user attribute prefix: ``hpo:fixed_params:<key>`` holds that set of parameters."""


def fixed_key(params: Mapping[str, Any]) -> str:
    """A short, stable key of a set of fixed trainer parameters."""
    text = json.dumps(params, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


LEGACY_SET = FIXED_SET_PREFIX + "legacy"
"""Study user attribute: the set that trials without a key trained with (a study begun
before trials recorded one): the last set recorded before the first keyed run."""


def record_fixed_set(
    study: optuna.Study, params: Mapping[str, Any], previous: Mapping[str, Any] | None
) -> str:
    """Keep ``params`` in the study under their key (once per distinct set); the key.

    ``previous``: the study's last recorded set (``hpo:fixed_params``), kept as the legacy
    set when the study has no keyed set yet, so its older trials keep theirs.
    """
    attrs = study.user_attrs
    if previous is not None and not any(name.startswith(FIXED_SET_PREFIX) for name in attrs):
        study.set_user_attr(LEGACY_SET, dict(previous))
    key = fixed_key(params)
    name = FIXED_SET_PREFIX + key
    if name not in attrs:
        study.set_user_attr(name, dict(params))
    return key


def legacy_key(study_attrs: Mapping[str, Any]) -> str | None:
    """The key of the legacy set, or None when every trial of the study records its own."""
    legacy = study_attrs.get(LEGACY_SET)
    return fixed_key(legacy) if isinstance(legacy, Mapping) else None


def trial_fixed_params(
    study_attrs: Mapping[str, Any], trial: FrozenTrial, default: Mapping[str, Any]
) -> dict[str, Any]:
    """The fixed parameters ``trial`` trained with: its keyed set, else the legacy set, else
    ``default``."""
    key = trial.user_attrs.get(FIXED_KEY_ATTR)
    stored = study_attrs.get(FIXED_SET_PREFIX + key if isinstance(key, str) else LEGACY_SET)
    return dict(stored) if isinstance(stored, Mapping) else dict(default)


def trained_alike(trial: FrozenTrial, key: str, legacy: str | None) -> bool:
    """Whether ``trial`` trained with the fixed parameters of ``key``; a trial without a key
    trained with the ``legacy`` set (None: unknown, assumed alike)."""
    own = trial.user_attrs.get(FIXED_KEY_ATTR, legacy)
    return own is None or own == key
