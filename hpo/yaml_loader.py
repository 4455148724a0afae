"""Strict YAML: safe loading, duplicate keys rejected, errors with line numbers.

Plain PyYAML silently keeps the last of two equal keys; a study file with two
``temperature`` entries is almost always a mistake, so we refuse it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpo.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that records duplicate mapping keys instead of overwriting."""

    duplicates: list[str]


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue
        line = key_node.start_mark.line + 1
        if key in seen:
            loader.duplicates.append(
                f"line {line}: duplicate key {key!r} (first defined on line {seen[key]})"
            )
        else:
            seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML text strictly; raise :class:`ConfigError` with located problems."""
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = exc.problem or str(exc)
        raise ConfigError([f"{source}: invalid YAML at {where}: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError([f"{source}: {d}" for d in loader.duplicates])
    return data


def load_yaml_file(path: str | Path) -> Any:
    """Read and strictly parse a YAML file, with a clear error when it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{p}: is a directory, expected a YAML file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read file ({exc.strerror})"]) from None
    return load_yaml_text(text, source=str(p))
