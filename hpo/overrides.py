"""``--set dotted.key=value`` overrides, so one study file serves a smoke test and a real run."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from hpo.errors import ConfigError, short_repr
from hpo.yaml_loader import load_yaml_value, printable

STUDY_EXAMPLE = "budget.n_trials=3"
"""The ``--set`` a malformed one is shown next to, for a study file."""


def _shown(text: str) -> str:
    """``text`` as a short repr, passwords masked first: a cut made before masking can fall
    inside a storage URL before its ``@``, where :func:`mask_url` no longer sees a password."""
    return short_repr(text, 80)


def parse_override(text: str, example: str = STUDY_EXAMPLE) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into a key path and a YAML-typed value (``5`` is an int).

    ``example`` is the well-formed override a malformed one is told about: one the
    command reading the file can use (``hpo train`` has no ``budget``).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"--set {_shown(text)}: expected KEY=VALUE, e.g. {example}"])
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError([f"--set {_shown(text)}: empty segment in key {_shown(key)}"])
    if any(printable(p) != p for p in parts):
        raise ConfigError(
            [f"--set {_shown(text)}: key segments must be printable text without spaces"]
        )
    value = load_yaml_value(raw, source=f"--set {_shown(text)}")
    return parts, value


def apply_overrides(
    data: Any,
    overrides: Iterable[str],
    *,
    defaults: Mapping[str, Any] | None = None,
    example: str = STUDY_EXAMPLE,
) -> Any:
    """Return a copy of ``data`` with every override applied; all bad ones reported together.

    ``defaults`` holds what a left-out top-level key means (e.g. ``sampler``): an override
    of one of its sub-keys (``sampler.seed=3``) then changes that default instead of
    starting from an empty mapping. An override of ``KEY.name`` to another name starts
    from nothing, for the file's component as for the default: their other keys belong
    to the class they named (``--set sampler.name=grid`` on a TPE with
    ``n_startup_trials`` gave "GridSampler has no argument"). ``example`` is the
    well-formed override a malformed one is told about (:func:`parse_override`).
    """
    result = copy.deepcopy(data)
    problems: list[str] = []
    parsed: list[tuple[str, list[str], Any]] = []
    for text in overrides:
        try:
            parts, value = parse_override(text, example)
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        parsed.append((text, parts, value))
    if parsed and not isinstance(result, dict):
        problems.extend(
            f"--set {_shown(text)}: the study file is not a mapping" for text, _, _ in parsed
        )
        parsed = []
    if isinstance(result, dict) and defaults:
        renamed = {parts[0]: value for _, parts, value in parsed if parts[1:] == ["name"]}
        for key, name in renamed.items():
            given = result.get(key)
            if key in defaults and isinstance(given, dict) and given.get("name") != name:
                # the file's arguments belong to the class it named, not to the new one
                result[key] = {}
        for _, parts, _ in parsed:
            key = parts[0]
            if len(parts) > 1 and key not in result and key in defaults and key not in renamed:
                result[key] = copy.deepcopy(dict(defaults[key]))
    for text, parts, value in parsed:
        node: Any = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                path = ".".join(parts[: i + 1])
                problems.append(
                    f"--set {_shown(text)}: {path} is a {type(child).__name__}, not a mapping"
                )
                break
            node = child
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return result
