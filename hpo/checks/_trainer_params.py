"""The trainer's schema over the fixed parameters and every trial the space can make.

A cross-field error is pinned on the searched fields it involves.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from hpo.checks._common import MAX_COMBINATIONS, _active, _short, _with_parents
from hpo.checks._inputs import _missing_input_problems
from hpo.config import CategoricalParam, FloatParam, IntParam, ParamSpec, StudyConfig, _values_of

WHOLE = "(params)"
"""The location :func:`schema_errors` gives an error about several fields together."""


def _did_you_mean(name: str, schema: type[BaseModel]) -> str:
    close = difflib.get_close_matches(name, list(schema.model_fields), n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""


def schema_errors(
    schema: type[BaseModel], params: dict[str, Any], only: str | None = None
) -> list[tuple[str, str]]:
    """``(field, message)`` for each of the trainer schema's objections to ``params``."""
    return [(loc, msg) for loc, msg, _ in _objections(schema, params, only)]


def _objections(
    schema: type[BaseModel], params: dict[str, Any], only: str | None = None
) -> list[tuple[str, str, frozenset[str] | None]]:
    """:func:`schema_errors` with the fields each error about ``params`` as a whole involves.

    A trainer's cross-field check says which fields it read by raising a ``ValueError``
    with a ``fields`` attribute (``trainers.params.CrossFieldError``): that is what lets
    ``hpo validate`` pin ``n_heads`` must divide ``dim`` on ``n_heads`` rather than on
    whichever searched field it was checking. ``None``: the trainer did not say.
    """
    try:
        schema.model_validate(params)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if only is not None and (not err["loc"] or err["loc"][0] != only):
                continue
            if err["type"] == "extra_forbidden":
                msg = "unknown parameter" + _did_you_mean(str(err["loc"][-1]), schema)
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
            out.append((loc or WHOLE, msg, None if loc else _declared_fields(err)))
        return out
    except Exception as exc:  # a validator's own bug (ZeroDivisionError, KeyError, ...)
        if only is not None:  # not the field's own error: the whole set's check says it
            return []
        return [(WHOLE, f"the trainer's schema failed ({type(exc).__name__}: {exc})", None)]
    return []


def _declared_fields(err: Mapping[str, Any]) -> frozenset[str] | None:
    """The ``fields`` a cross-field error's exception names, if it names any."""
    fields = getattr((err.get("ctx") or {}).get("error"), "fields", None)
    if isinstance(fields, str) or not isinstance(fields, Iterable):
        return None
    names = frozenset(fields)
    return names if names and all(isinstance(n, str) for n in names) else None


def _trainer_problems(cfg: StudyConfig, *, unseen: Collection[str] = ()) -> list[str]:
    from trainers.registry import TrainerNotFound, resolve_trainer

    try:
        spec = resolve_trainer(cfg.trainer.name)
    except TrainerNotFound as exc:
        return [f"trainer.name: {exc}"]
    except Exception as exc:  # ":" or ".rel:fn" (ValueError, TypeError), a module that raises
        return [
            f"trainer.name: cannot load trainer {_short(cfg.trainer.name)} "
            f"({type(exc).__name__}: {_short(str(exc), 200)})"
        ]
    problems: list[str] = []
    result_metrics = getattr(spec.fn, "result_metrics", None)
    if result_metrics:
        wanted = set(cfg.objective.names) | {cfg.objective.pruning_metric}
        named = "objective.metrics" if cfg.objective.metrics else "objective.metric"
        for metric in sorted(wanted - set(result_metrics)):
            where = named if metric in cfg.objective.names else "objective.prune_on"
            problems.append(
                f"{where}: trainer {cfg.trainer.name!r} reports no metric {metric!r}; "
                f"it reports: {', '.join(result_metrics)}"
            )
    schema = spec.params_schema
    if schema is None:
        return problems
    if "seed" not in schema.model_fields and schema.model_config.get("extra") == "forbid":
        problems.append(
            f"trainer.name: every trial passes its seed as params.seed, which "
            f"{schema.__name__} refuses; give it a field seed: int | None = None"
        )
    judged = judge_fixed(schema, cfg.trainer.params, cfg.space, unseen)
    for loc, msg, _ in judged.errors:
        where = "trainer.params" if loc == WHOLE else f"trainer.params.{loc}"
        problems.append(f"{where}: {msg}")
    if judged.base is None:
        return problems  # the fixed set as a whole is refused: every value would be too
    fixed, valid, dropped = judged.fixed, judged.valid, judged.dropped
    unknown = [
        f"space.{name}: trainer {cfg.trainer.name!r} has no parameter {name!r}"
        for name in cfg.space
        if name not in schema.model_fields
    ]
    own = unknown or [
        line
        for name, pspec in cfg.space.items()
        for line in _space_value_problems(
            schema, fixed, name, pspec, valid, dropped, cfg.space, False
        )
    ]
    no_trial, involved = (
        ([], 0) if own or dropped else _no_trial_runs_problems(schema, fixed, cfg.space, valid)
    )
    # several fields that no combination of lets pass: one line, not each value's; a
    # single field's values are named on their own lines where the check could judge them
    values = {
        name: _space_value_problems(schema, fixed, name, pspec, valid, dropped, cfg.space)
        for name, pspec in cfg.space.items()
        if name in schema.model_fields and not (no_trial and involved > 1)
    }
    one_line = bool(no_trial) and (involved > 1 or not any(values.values()))
    for name in cfg.space:
        if name not in schema.model_fields:
            problems.append(f"space.{name}: trainer {cfg.trainer.name!r} has no parameter {name!r}")
        elif not one_line:
            problems.extend(values[name])
    problems += no_trial if one_line else []
    problems += _grid_value_trainer_problems(cfg, schema, fixed)
    if dropped:
        return problems
    return problems + _missing_input_problems(schema, judged.base, cfg.space)


def _grid_value_trainer_problems(
    cfg: StudyConfig, schema: type[BaseModel], fixed: dict[str, Any]
) -> list[str]:
    """The trainer's objections to the values of a grid written out in the file: the space
    checks try a range at a few values, and the grid gives others (odd ``n_heads``)."""
    grid = cfg.sampler.kwargs.get("search_space") if cfg.sampler.name == "grid" else None
    if not isinstance(grid, Mapping):
        return []
    from hpo.config._space import _can_take

    problems = []
    for name, pspec in cfg.space.items():
        values = grid.get(name)
        if name not in schema.model_fields or not isinstance(values, list):
            continue
        for value in values:
            if not _can_take(pspec, value):
                continue  # the sampler check names it as outside the space
            for loc, msg, fields in _objections(schema, {**fixed, name: value}):
                # its own field's error, or a cross-field one with fixed fields only
                # (``n_heads: 3`` beside a fixed ``dim: 64``): every trial that draws it fails
                mine = loc.split(".")[0] == name or (
                    loc == WHOLE
                    and fields is not None
                    and name in fields
                    and not (fields - {name}) & cfg.space.keys()
                )
                if mine:
                    problems.append(
                        f"sampler.search_space.{name}: value {_short(value)} is not allowed: {msg}"
                    )
    return problems


@dataclass(frozen=True)
class FixedJudgement:
    """The fixed parameters as the trainer's schema judges them, beside the space."""

    errors: list[tuple[str, str, frozenset[str] | None]]
    """What to report about them: ``(field or WHOLE, message, fields involved)``."""
    fixed: dict[str, Any]
    """The fixed parameters whose own values passed: the space is checked against these."""
    dropped: frozenset[str]
    """Fields whose user value no check can see (an entry or a fixed value that failed)."""
    valid: dict[str, list[Any]]
    """Each searched field's values that pass on their own."""
    base: dict[str, Any] | None
    """What the input checks start from: ``fixed``, with the searched values that settle
    its cross-field errors; ``None`` when the fixed set is refused as a whole."""


def judge_fixed(
    schema: type[BaseModel],
    params: Mapping[str, Any],
    space: Mapping[str, ParamSpec],
    unseen: Collection[str] = (),
) -> FixedJudgement:
    """Judge the fixed parameters on their own, then beside the space.

    On their own, a searched field's default stands in, which a conditional parameter's
    trials do take, and an error found may hide others. A cross-field error that only a
    searched field's default causes is dropped when no trial the space makes meets it, or
    an error of the fixed values hidden behind it (:func:`_settling_trial`). ``unseen``:
    searched entries that failed their own checks.
    """
    fixed_errors = _objections(schema, dict(params))
    # the space is checked against the fixed fields that passed, so one run of
    # `hpo validate` lists both kinds of problem
    wrong = {loc.split(".")[0] for loc, _, _ in fixed_errors if loc != WHOLE}
    fixed = {k: v for k, v in params.items() if k not in wrong}
    fields = schema.model_fields
    # with a field dropped, defaults stand in for what the user wrote: a check that reads
    # it would judge values that are not theirs (an unknown key stands for nothing)
    dropped = frozenset(unseen) | (wrong & set(fields))
    if wrong:
        # pydantic skips the cross-field checks when a field fails: run them on the rest
        # (``resume: true`` without ``save_dir`` beside a typo), keeping the errors that
        # do not read a field whose value failed (a default stands in for it here)
        fixed_errors += [
            e
            for e in _objections(schema, fixed)
            if e[0] == WHOLE and e[2] is not None and not e[2] & wrong
        ]
    valid = {
        name: [v for v in _values_of(pspec) if not schema_errors(schema, {**fixed, name: v}, name)]
        for name, pspec in space.items()
        if name in fields
    }
    whole = [(msg, involved) for loc, msg, involved in fixed_errors if loc == WHOLE]
    base: dict[str, Any] | None = fixed
    if any(_reads_unseen(f, dropped) for _, f in whole):
        base = None  # judged on a default that stands in for the user's failed value
    elif whole:
        trial, instead = _settling_trial(schema, fixed, space, valid, whole)
        fields_errors = [e for e in fixed_errors if e[0] != WHOLE]
        if trial is None:
            base = None
            fixed_errors = fields_errors + instead if instead else fixed_errors
        else:
            fixed_errors = fields_errors
            base = _input_base(schema, fixed, trial, valid.keys())
    return FixedJudgement(fixed_errors, fixed, dropped, valid, base)


def _input_base(
    schema: type[BaseModel], fixed: dict[str, Any], trial: dict[str, Any], searched: Iterable[str]
) -> dict[str, Any]:
    """``fixed`` with as few of ``trial``'s searched values as make it pass (else the whole
    trial): the input checks read the fixed values, and a searched value set here would
    be judged as if every trial took it."""
    base = dict(fixed)
    searched = [n for n in searched if n in trial]
    added: set[str] = set()
    for _ in searched:
        errors = [f for loc, _, f in _objections(schema, base) if loc == WHOLE]
        needed = [n for n in searched if n not in added and any(f and n in f for f in errors)]
        if not errors or not needed:
            break
        base.update({n: trial[n] for n in needed})
        added.update(needed)
    return base if not _objections(schema, base) else dict(trial)


def _probe_values(spec: ParamSpec) -> list[Any]:
    """Values that stand for a parameter: every choice, or a range's ends and its first
    step inside (``dim: {low: 48, high: 96}`` samples 49, which no even head count takes)."""
    ends = _values_of(spec)
    if isinstance(spec, CategoricalParam):
        return ends
    if isinstance(spec, IntParam):
        inner: Any = spec.low + spec.step
    else:
        inner = spec.low + spec.step if spec.step else _fractional_value(spec)
    probes = [ends[0]] + ([inner] if inner is not None and inner < ends[-1] else []) + ends[1:]
    return list(dict.fromkeys(probes))


def _trial_params(
    schema: type[BaseModel],
    fixed: Mapping[str, Any],
    space: Mapping[str, ParamSpec],
    valid: Mapping[str, list[Any]],
    only: Collection[str] | None = None,
    held_once: bool = True,
) -> list[dict[str, Any]] | None:
    """The parameters of every distinct trial the space can make, each searched field at
    one of its ``valid`` values (a range at :func:`_probe_values`) or, where its ``if``
    does not hold, at the fixed value or the trainer's default.

    ``only``: vary these fields (and those their ``if`` reads) and hold the others at their
    first value, for a check that knows which fields the errors it looks at read; with
    ``held_once``, each held value is still tried once, beside the first combination.
    ``None`` when there are more than :data:`MAX_COMBINATIONS` or a field has no valid
    value (its values have their own lines, and no trial of it can be judged).
    """
    names = list(valid)
    varied = set(names if only is None else _with_parents(only, space))
    grids = [
        valid[n]
        if isinstance(space[n], CategoricalParam)
        else [v for v in _probe_values(space[n]) if not schema_errors(schema, {**fixed, n: v}, n)]
        for n in names
    ]
    used = [g if n in varied else g[:1] for n, g in zip(names, grids, strict=True)]
    extra = sum(len(g) - 1 for n, g in zip(names, grids, strict=True) if n not in varied)
    extra = extra if held_once else 0
    if not all(grids) or math.prod(len(g) for g in used) + extra > MAX_COMBINATIONS:
        return None
    combos = list(itertools.product(*used))
    # a held field's other values, each beside the first combination: an error of one of
    # them with the fixed values (hidden behind the error that chose the varied fields)
    combos += [
        tuple(v if j == i else c for j, c in enumerate(combos[0]))
        for i, (n, g) in enumerate(zip(names, grids, strict=True))
        if n not in varied and held_once
        for v in g[1:]
    ]
    seen: set[tuple[tuple[str, Any], ...]] = set()
    out = []
    for combo in combos:
        variants = _active(dict(zip(names, combo, strict=True)), space)
        if variants is None:
            return None
        for chosen in variants:
            key = tuple(sorted(chosen.items()))
            if key not in seen:
                seen.add(key)
                out.append({**fixed, **chosen})
    return out


def _ranged(space: Mapping[str, ParamSpec], valid: Mapping[str, list[Any]]) -> frozenset[str]:
    """Searched ranges: :func:`_trial_params` tries a few of their values, not every one."""
    return frozenset(n for n in valid if not isinstance(space[n], CategoricalParam))


def _settling_trial(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    valid: Mapping[str, list[Any]],
    whole: list[tuple[str, frozenset[str] | None]],
) -> tuple[dict[str, Any] | None, list[tuple[str, str, frozenset[str] | None]]]:
    """A passing trial's parameters when the fixed set's errors are only about a searched
    field's default, which no trial takes (fixed ``n_heads: 3`` with ``dim: [48, 96]``
    fails at the default ``dim=64``, yet every trial runs); else ``None`` and, where a
    trial showed it, the error to report instead of the fixed set's own.

    Every trial the space can make is tried (:func:`_trial_params`). None may fail on one
    of the fixed set's errors, on an error of fixed fields only (one hidden behind them),
    or on an error that reads a range, which is tried at a few values only. A trial that
    fails on an error of the searched categorical values is the space's business: its
    values are judged on their own lines (past :data:`MAX_COMBINATIONS` they cannot be,
    so then any failing trial keeps the fixed set refused). If the errors involve no
    searched field, or the trials are too many even varying only the fields the errors
    read, the fixed set stays refused.
    """
    if not all(fields is not None and fields & valid.keys() for _, fields in whole):
        return None, []
    trials = _trial_params(schema, fixed, space, valid)
    reduced = trials is None
    if trials is None:  # too many to try: vary the fields the errors read, hold the rest
        involved = frozenset().union(*(f or () for _, f in whole)) & valid.keys()
        trials = _trial_params(schema, fixed, space, valid, only=involved)
    if not trials:
        return None, []
    own = {msg for msg, _ in whole}
    ranged = _ranged(space, valid)
    for params in trials:
        for loc, msg, fields in _objections(schema, params):
            space_error = (
                loc == WHOLE
                and fields is not None
                and msg not in own
                and fields & valid.keys()
                and not fields & ranged
                # past the cap no value's own line judges an error that reads a fixed
                # value or a default: it may be one hidden behind the fixed set's
                and not (reduced and fields - valid.keys())
            )
            if not space_error:
                instead = [(WHOLE, msg, fields)] if loc == WHOLE and msg not in own else []
                return None, instead
    # the trials' failures are the space's, judged on its own lines; a passing trial
    # (else any) is what the input checks start from
    return next((t for t in trials if not _objections(schema, t)), trials[0]), []


def _no_trial_runs_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    space: Mapping[str, ParamSpec],
    valid: Mapping[str, list[Any]],
) -> tuple[list[str], int]:
    """One line when no trial the space can make passes the trainer's cross-field checks,
    and how many searched fields its error involves.

    ``n_heads: [3, 5]`` with ``dim: [64, 128]``: no value is refused by itself (each
    combination fails with its own message), but every trial of the budget would fail.
    """
    trials = _trial_params(schema, fixed, space, valid)
    held: frozenset[str] = frozenset()
    if trials is None:  # too many to try: vary the fields the first trial's errors read
        sample = _trial_params(schema, fixed, space, valid, only=(), held_once=False)
        read = [f for loc, _, f in _objections(schema, sample[0]) if loc == WHOLE] if sample else []
        if not read or any(f is None for f in read):
            return [], 0
        varied = frozenset().union(*(f or () for f in read)) & valid.keys()
        trials = _trial_params(schema, fixed, space, valid, only=varied, held_once=False)
        held = frozenset(valid) - set(_with_parents(varied, space))
    if not trials:
        return [], 0
    ranged = _ranged(space, valid)
    first: tuple[dict[str, Any], str, frozenset[str] | None] | None = None
    for params in trials:
        errors = [(msg, f) for loc, msg, f in _objections(schema, params) if loc == WHOLE]
        if not errors or any(_reads_unseen(f, ranged | held) for _, f in errors):
            return [], 0  # it runs, or a value not tried (inside a range, or held) may run
        if first is None:
            first = (params, *errors[0])
    assert first is not None
    params, msg, involved = first
    searched = [n for n in space if n in valid and (involved is None or n in involved)]
    if not searched:
        return [], 0  # an error of fixed fields only: the fixed set's own line says it
    example = ", ".join(f"{n}={params[n]!r}" for n in searched if n in params)
    line = (
        f"space: no combination of {', '.join(searched)} passes the trainer's checks, so "
        f"every trial would fail; e.g. {example}: {msg}"
    )
    return [line], len(searched)


def _space_value_problems(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    name: str,
    pspec: ParamSpec,
    valid: Mapping[str, list[Any]],
    dropped: frozenset[str],
    space: Mapping[str, ParamSpec],
    cross: bool = True,
) -> list[str]:
    """``valid``: each searched field's values that pass on their own; ``dropped``: fields
    whose user value the check cannot see (see :func:`_always_refused`). ``cross``: also
    the values that no combination of the others lets pass."""
    problems = []
    for value in _values_of(pspec):
        for _loc, msg in schema_errors(schema, {**fixed, name: value}, only=name):
            problems.append(f"space.{name}: value {value!r} is not allowed: {msg}")
        if not cross:
            continue
        for msg in _always_refused(schema, fixed, name, value, valid, dropped, space):
            problems.append(f"space.{name}: value {value!r} is never allowed: {msg}")
    inner = _fractional_value(pspec)
    if not problems and inner is not None:
        # the ends of a float range may be whole numbers that an int field takes
        for _loc, msg in schema_errors(schema, {**fixed, name: inner}, only=name):
            remedy = "; use type: int" if "integer" in msg else ""
            problems.append(
                f"space.{name}: a float range samples values like {inner!r}, which the "
                f"trainer refuses: {msg}{remedy}"
            )
    return problems


def _fractional_value(spec: ParamSpec) -> float | None:
    """A value inside a float range that is not a whole number, if the range has one."""
    if not isinstance(spec, FloatParam) or spec.high <= spec.low:
        return None
    if spec.step is None:
        return spec.low + (spec.high - spec.low) * 0.381966 if spec.high - spec.low > 1e-6 else None
    candidates = (spec.low + spec.step, spec.low + 2 * spec.step)
    return next((v for v in candidates if v <= spec.high and not v.is_integer()), None)


def _always_refused(
    schema: type[BaseModel],
    fixed: dict[str, Any],
    name: str,
    value: Any,
    valid: Mapping[str, list[Any]],
    dropped: frozenset[str],
    space: Mapping[str, ParamSpec],
) -> list[str]:
    """The trainer's cross-field errors (``n_heads`` must divide ``dim``) that ``name: value``
    meets with every combination of the other searched parameters' valid values.

    Another searched parameter may be what makes the value fit (``dim: [48, 64]`` with
    ``n_heads: [3, 4]``), so the value is refused only when every combination fails on an
    error that involves it; the message is the one they share, or the first one's
    (``n_heads=5`` with ``dim: [48, 96]`` fails on ``dim=48`` and on ``dim=96``). An error is pinned on ``name`` only when
    it involves ``name`` (its ``fields``, see :func:`_objections`): with ``loss: [infonce,
    triplet]`` and ``n_heads: [3]``, the heads error is ``n_heads``'s, not ``loss``'s.
    A combination that fails on an error of other fields only says nothing about
    ``name``, and is skipped. Values that fail on their own have their own lines and
    never reach a trial, so they are left out; a field with none left, or in ``dropped``,
    is judged at its default, which is not the user's value: an error that reads it (or
    that names no fields, when anything was dropped) is not claimed. A parameter whose
    ``if`` the combination leaves unmet keeps its fixed value or default, as in a trial.
    """
    others = {n: values for n, values in valid.items() if n != name and values}
    unseen = dropped | {n for n, values in valid.items() if n != name and not values}
    if math.prod(len(v) for v in others.values()) > MAX_COMBINATIONS:
        return []
    always: set[str] | None = None
    example: str | None = None
    example_fields: frozenset[str] | None = None
    undecided = False
    ranged = frozenset(n for n in others if not isinstance(space[n], CategoricalParam))
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for combo in itertools.product(*others.values()):
        variants = _active({**dict(zip(others, combo, strict=True)), name: value}, space)
        for chosen in variants or ():
            if name not in chosen:
                continue  # no trial takes the value beside these (its ``if`` fails)
            key = tuple(sorted(chosen.items()))
            if key in seen:
                continue
            seen.add(key)
            errors = [
                (msg, fields)
                for loc, msg, fields in _objections(schema, {**fixed, **chosen})
                if loc == WHOLE
            ]
            if not errors:
                return []  # a trial with this combination runs
            if all(fields is not None and name not in fields for _, fields in errors):
                continue  # it fails whatever name takes: that error is another field's
            if any(_reads_unseen(fields, unseen) for _, fields in errors):
                return []  # judged on a default: with the user's own value it may run
            mine = [(msg, f) for msg, f in errors if f is None or name in f]
            always = {m for m, _ in mine} if always is None else always & {m for m, _ in mine}
            if example is None:
                example, example_fields = mine[0]
            if any(_reads_unseen(fields, ranged) for _, fields in errors):
                undecided = True  # tried at a range's ends: a value inside may pass
    if example is None or undecided:
        return []
    if always:
        return sorted(always)
    beside = [n for n in others if example_fields is None or n in example_fields]
    return [f"{example} (and with every other value of {', '.join(beside) or 'the others'})"]


def _reads_unseen(fields: frozenset[str] | None, unseen: frozenset[str]) -> bool:
    """Whether an error may read a field the check saw only at its default."""
    return bool(unseen) if fields is None else bool(fields & unseen)
