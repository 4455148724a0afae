"""Loading a study file: parse, apply ``--set`` overrides, report every problem at once."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError

from hpo.config._pydantic_errors import _pydantic_problems
from hpo.config._schema import (
    CONFIRM_SUFFIX,
    PRUNE_MARKER,
    STUDY_NAME_LENGTH,
    ComponentConfig,
    StudyConfig,
)
from hpo.config._space import (
    _as_declared,
    _condition_problems,
    _enqueue_problems,
    _parse_space,
    _range_problems,
)
from hpo.errors import ConfigError
from hpo.overrides import apply_overrides
from hpo.yaml_loader import (
    load_yaml_file,
    load_yaml_text,
    shape_problems,
)


def _name_problems(cfg: StudyConfig) -> list[str]:
    """Companion studies (``::confirm``, ``::prune::<metric>``) need room in the name.

    PostgreSQL and MySQL refuse longer study names than Optuna's column, so a long name
    would fail only later: at ``hpo confirm``, or at a multi-objective study's first report.
    SQLite and journal files take any length, and studies with such names exist.
    A name ending in ``::confirm`` is a confirmation study, which workers load with ``--set``
    (:func:`hpo.confirm.confirmation_overrides`); the pruning companion is never a file's.
    """
    if PRUNE_MARKER in cfg.name or CONFIRM_SUFFIX in cfg.name.removesuffix(CONFIRM_SUFFIX):
        return [
            f"name: {PRUNE_MARKER!r} and {CONFIRM_SUFFIX!r} mark the service's companion "
            f"studies; {CONFIRM_SUFFIX!r} may only end a name (a confirmation study's)"
        ]
    if not cfg.storage or cfg.storage.startswith(("sqlite:", "journal:")):
        return []  # a file storage keeps names of any length; only servers enforce 512
    suffixes = [] if cfg.name.endswith(CONFIRM_SUFFIX) else [CONFIRM_SUFFIX]
    if cfg.uses_prune_companion:
        suffixes.append(f"{PRUNE_MARKER}{cfg.objective.pruning_metric}")
    if not suffixes:
        return []
    longest = max(suffixes, key=len)
    room = STUDY_NAME_LENGTH - len(longest)
    if len(cfg.name) <= room:
        return []
    return [
        f"name: at most {room} characters here (got {len(cfg.name)}), so that the companion "
        f"study '<name>{longest}' fits the storage's {STUDY_NAME_LENGTH}"
    ]


def validate_study_data(
    data: Any, *, source: str | None = None, for_reading: bool = False
) -> StudyConfig:
    """Validate parsed YAML into a :class:`StudyConfig`, or raise with every problem found.

    ``for_reading``: for commands that only read the study (status, best, report, the
    dashboard), which must work on a machine without the trainer's code or its data (a
    laptop looking at a cluster's study): the trainer and its inputs are not checked.
    """
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else type(data).__name__
        raise ConfigError([f"(top level): expected a mapping of study settings, got {kind}"])
    problems = shape_problems(data)
    if problems:
        raise ConfigError(problems)
    # `x-` keys hold YAML anchors for merge keys (`x-base: &base {...}`), as in compose files
    raw = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))}
    raw_space = raw.pop("space", None)
    space, problems = _parse_space(raw_space)
    declared = set(raw_space) if isinstance(raw_space, Mapping) else set()
    # the space's own checks need no other section, so they are reported with its type errors
    out_of_range: set[str] = set()
    for name, spec in space.items():
        ranged = _range_problems(name, spec)
        problems.extend(ranged)
        out_of_range |= {name} if ranged else set()
    # a condition on an entry that failed its own check is not judged on that entry
    problems.extend(_condition_problems(space, (declared - set(space)) | out_of_range))
    try:
        cfg = StudyConfig.model_validate({**raw, "space": {}, "source": source})
    except ValidationError as exc:
        problems = _pydantic_problems(exc, (), StudyConfig) + problems
        raise ConfigError(problems) from None
    failed_entries = (declared - set(space)) | out_of_range
    problems.extend(_enqueue_problems(space, cfg.enqueue, unseen=failed_entries))
    n_trials = cfg.budget.n_trials
    if n_trials is not None and len(cfg.enqueue) > n_trials:
        problems.append(
            f"enqueue: {len(cfg.enqueue)} configurations but budget.n_trials is {n_trials}; "
            "raise n_trials or enqueue at most that many (the rest would never run)"
        )
    problems.extend(_name_problems(cfg))
    if cfg.confirm is not None and cfg.objective.is_multi:
        problems.append(
            "confirm: needs a single objective (the finalists are ranked by one value); "
            "remove it or use objective.metric"
        )
    from hpo.checks import semantic_problems

    if problems:
        # the sampler, pruner, storage and trainer checks need only a valid top level: run
        # them on the parameters that parsed, so one `hpo validate` lists every problem
        checked = {n: spec for n, spec in space.items() if n not in out_of_range}
        failed = declared - set(checked)
        partial = cfg.model_copy(update={"space": checked})
        later = semantic_problems(partial, unseen=failed, for_reading=for_reading)
        if not for_reading:  # the run's own check of its artifact store needs no space
            later += [p for p in _artifact_store_problems(partial) if p not in later]
        # grouping by, or a grid listing, a parameter whose own entry failed would read
        # as "not searched"
        not_searched = {f"sampler.search_space.{n}: not a searched parameter" for n in failed}
        raise ConfigError(
            problems
            + [
                p
                for p in later
                if not (p.startswith("pruner.by") and any(repr(n) in p for n in failed))
                and p not in not_searched
            ]
        )
    cfg = cfg.model_copy(update={"space": space, "enqueue": _as_declared(space, cfg.enqueue)})
    problems = semantic_problems(cfg, for_reading=for_reading)
    if problems:
        store = [] if for_reading else _artifact_store_problems(cfg)
        raise ConfigError(problems + [p for p in store if p not in problems])
    return cfg


def _artifact_store_problems(cfg: StudyConfig) -> list[str]:
    """The store :func:`hpo.checks.run_problems` would refuse, said beside the other lines
    of a file that is invalid anyway (else it came only on the next try)."""
    if not cfg.artifacts.enabled:
        return []
    from hpo.artifacts import check_artifact_store

    try:
        check_artifact_store(cfg)
    except ConfigError as exc:
        return exc.problems
    return []


def revalidation_problems(cfg: StudyConfig) -> list[str]:
    """What :func:`validate_study_data` checks beyond the field types, for a config built or
    copied without it (``StudyConfig(...)``, ``model_copy``): a run asks before it creates
    its study, so a script's config is held to the file's rules (about a millisecond)."""
    problems = [p for name, spec in cfg.space.items() for p in _range_problems(name, spec)]
    problems += _condition_problems(cfg.space, set())
    problems += _name_problems(cfg)
    if problems:
        return problems
    from hpo.checks import semantic_problems

    return semantic_problems(cfg)


def load_study_config(
    path_or_text: str | Path | Mapping[str, Any],
    overrides: Iterable[str] = (),
    *,
    is_text: bool = False,
    for_reading: bool = False,
) -> StudyConfig:
    """Load, override and validate a study file; the single entry point for the CLI and tests.

    ``path_or_text`` is a file, YAML text (``is_text``, or any text with a line break: no
    file name has one) or an already parsed mapping. Text and mappings have no folder of
    their own: relative paths in them, and the default ``hpo.db``, are in the current one.
    ``for_reading``: see :func:`validate_study_data`.
    """
    if isinstance(path_or_text, Mapping):
        data: Any = copy.deepcopy(dict(path_or_text))
        source = None
    elif is_text or (isinstance(path_or_text, str) and "\n" in path_or_text):
        data = load_yaml_text(str(path_or_text))
        source = None
    else:
        data = load_yaml_file(path_or_text)
        # absolute now: resolved at each use, a later os.chdir() moved the storage
        source = str(Path(path_or_text).resolve())
    overrides = list(overrides)
    if overrides:
        data = apply_overrides(
            data if data is not None else {}, overrides, defaults=_component_defaults()
        )
    return validate_study_data(data, source=source, for_reading=for_reading)


def _component_defaults() -> dict[str, dict[str, Any]]:
    """What a left-out ``sampler`` or ``pruner`` means, so ``--set sampler.seed=3`` tweaks it."""
    fields = StudyConfig.model_fields
    return {
        key: cast(ComponentConfig, fields[key].default).model_dump()
        for key in ("sampler", "pruner")
    }
