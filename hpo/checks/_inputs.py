"""Input files a trial reads: missing ones, and ones that do not fit the parameters."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from hpo.checks._common import MAX_COMBINATIONS, _active, _with_parents
from hpo.config import CategoricalParam, ParamSpec, StudyConfig, _values_of

INPUT_FIELDS = frozenset(
    {"dataset", "data_dir", "init_from", "mode", "channel_adapter", "evaluate_test", "val_split"}
)
"""Trainer fields that decide which input files a trial reads, or whether they fit."""


METRIC_FIELDS = frozenset({"dataset", "data_dir", "mode", "unlabeled_label"})
"""Trainer fields that decide which metrics a trial reports (``unreported_metrics``)."""
TERM_FIELDS = frozenset({"loss", "contrastive_weight"})
"""Fields that decide whether a trial has a contrastive term (and its metrics): searched,
each is judged at its default, where the term exists, so only a fixed choice is refused."""


FIT_FIELDS = frozenset({"proj_dim"})
"""Trainer fields whose value must fit what the inputs hold: a searched one is checked with
the inputs (``mode: align`` predicts the targets Z, so ``proj_dim`` must be Z's width)."""


def _missing_input_problems(
    schema: type[BaseModel], fixed: dict[str, Any], space: Mapping[str, ParamSpec]
) -> list[str]:
    """Input files the trainer would not find (its schema's ``missing_inputs``).

    A missing data file or checkpoint fails every trial, and the failed trials use up
    the budget: found here, it costs a second instead of a study to delete.
    """
    return _input_problems(schema, fixed, space, "missing_inputs")


def _input_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    check: str,
    fields: frozenset[str] = INPUT_FIELDS,
    optional: frozenset[str] = frozenset(),
) -> list[str]:
    """The schema's ``check`` (``missing_inputs``, ``input_misfits``) over the searched inputs.

    Every combination of the searched ``fields``' values (a range's ends) is checked, and
    of the ``optional`` fields' too while the combinations stay within
    :data:`MAX_COMBINATIONS`, with the parameters their ``if`` reads: a parameter left out
    by its ``if`` keeps the fixed value, as in a trial.
    A problem every combination has is the fixed parameters' and is said once; a searched
    value is refused only when it fails with every value of the others (``dataset:
    BasicMotions`` that needs ``channel_adapter: conv1x1`` is fine while the space also
    offers conv1x1).
    """
    if not callable(getattr(schema, check, None)):
        return []

    def problems_of(params: dict[str, Any]) -> dict[str, str] | None:
        """``None`` for parameters no trial runs with (reported elsewhere)."""
        try:
            validated = schema.model_validate(params)
        except Exception:  # ValidationError, or the schema's own bug: reported elsewhere
            return None
        try:
            return dict(getattr(validated, check)())
        except Exception:  # a broken check is not ours to report
            return {}

    searched = _with_parents([n for n in space if n in fields], space)
    with_optional = _with_parents([n for n in space if n in fields or n in optional], space)
    if math.prod(len(_values_of(space[n])) for n in with_optional) <= MAX_COMBINATIONS:
        searched = with_optional
    grids = [_values_of(space[n]) for n in searched]
    if math.prod(len(g) for g in grids) > MAX_COMBINATIONS:
        return []
    found: list[tuple[dict[str, Any], dict[str, str]]] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for combo in itertools.product(*grids):
        variants = _active(dict(zip(searched, combo, strict=True)), space)
        if variants is None:
            return []
        for chosen in variants:  # a parameter its if leaves out keeps the fixed value
            key = tuple(sorted(chosen.items()))
            problems = None if key in seen else problems_of({**fixed, **chosen})
            seen.add(key)
            if problems is not None:
                found.append((chosen, problems))
    always = set.intersection(*(set(p.items()) for _, p in found)) if found else set()
    out = [
        f"{'space' if field in searched else 'trainer.params'}.{field}: {why}"
        for field, why in sorted(always)
    ]
    for name, grid in zip(searched, grids, strict=True):
        for value in grid:
            with_value = [
                {k: v for k, v in p.items() if (k, v) not in always}
                for chosen, p in found
                if name in chosen and chosen[name] == value
            ]
            if with_value and all(with_value):
                why = next(iter(with_value[0].values()))
                out.append(f"space.{name}: value {value!r}: {why}")
    return out


def input_misfit_problems(cfg: StudyConfig) -> list[str]:
    """Inputs that exist but do not fit (a fine-tuning checkpoint on other channels).

    Reads the inputs, so it runs where they will be read anyway: ``hpo validate`` and
    before a run creates its study, not at every load (``hpo status`` must stay quick).
    """
    from trainers.registry import resolve_trainer

    try:
        schema = resolve_trainer(cfg.trainer.name).params_schema
    except Exception:  # an unloadable trainer is reported by the load's own checks
        return []
    if schema is None:
        return []
    from hpo.checks._trainer_params import judge_fixed

    judged = judge_fixed(schema, cfg.trainer.params, cfg.space)
    if judged.base is None or judged.dropped:
        return []  # the fixed parameters' own lines say why; inputs are judged after
    fixed = judged.base
    misfits = _input_problems(
        schema,
        fixed,
        cfg.space,
        "input_misfits",
        INPUT_FIELDS | FIT_FIELDS,
        _checkpoint_fields(fixed, cfg.space),
    )
    return misfits + _unreported_metric_problems(cfg, schema, fixed)


def _checkpoint_fields(fixed: Mapping[str, Any], space: Mapping[str, ParamSpec]) -> frozenset[str]:
    """The architecture fields, where a trial may fine-tune: ``mode: finetune`` takes them
    from ``init_from``'s checkpoint, so a searched value other than the checkpoint's fails
    every trial that draws it (a supervised study's space copied into a fine-tuning one)."""
    mode = space.get("mode")
    modes = _values_of(mode) if isinstance(mode, CategoricalParam) else [fixed.get("mode")]
    if "finetune" not in modes:
        return frozenset()
    from trainers.params import ENCODER_ARCH_FIELDS

    return frozenset(ENCODER_ARCH_FIELDS)


def _unreported_metric_problems(
    cfg: StudyConfig, schema: type[BaseModel], fixed: dict[str, Any]
) -> list[str]:
    """Objective metrics the trainer cannot report on these inputs (its ``unreported_metrics``).

    Pretraining on unlabelled data has no probe to report: every trial would train to the
    end, then fail for want of its objective. Judged on the fixed inputs only.
    """
    check = getattr(schema, "unreported_metrics", None)
    if not callable(check) or any(name in METRIC_FIELDS for name in cfg.space):
        return []
    fixed = {k: v for k, v in fixed.items() if not (k in TERM_FIELDS and k in cfg.space)}
    try:
        unreported = dict(schema.model_validate(fixed).unreported_metrics())  # type: ignore[attr-defined]
    except Exception:  # invalid params are reported elsewhere; a broken check is not ours
        return []
    where = {name: "objective.metric" for name in cfg.objective.names}
    if cfg.objective.metrics:
        where = {name: "objective.metrics" for name in cfg.objective.names}
    where.setdefault(cfg.objective.pruning_metric, "objective.prune_on")
    return [
        f"{key}: {name}: {unreported[name]}" for name, key in where.items() if name in unreported
    ]
