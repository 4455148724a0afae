"""What the standalone trainer reads from its command line: ``--config`` files and ``--set``.

The trainer never imports ``hpo`` (whose loader is stricter still), so the few checks a
user needs to get one clear line instead of a traceback live here. Both read YAML 1.2
numbers (:mod:`trainers.yaml12`): ``seed: 010`` is ten here as in a study file.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from trainers.yaml12 import Yaml12Loader

__all__ = [
    "PLACEHOLDER_ONLY",
    "ConfigFileError",
    "parse_set_value",
    "read_config",
    "unique_key_loader",
]


def parse_set_value(text: str) -> Any:
    """A ``--set`` value: YAML-typed (``5`` is an int), else the text as given.

    Numbers are YAML 1.2's, as ``hpo --set`` reads them (``010`` is ten, ``1:30`` is text).
    ``{seed}`` and ``runs/{seed}/x`` are ``save_dir`` placeholders, not YAML mappings.
    """
    if PLACEHOLDER_ONLY.fullmatch(text.strip()):
        return text
    try:
        return yaml.load(text, Loader=Yaml12Loader)
    except yaml.YAMLError:
        return text


PLACEHOLDER_ONLY = re.compile(r"\{\w+\}")
"""A ``--set`` value that is a ``{name}`` placeholder (``save_dir={seed}``), not a YAML
mapping; ``hpo``'s ``--set`` reads it alike."""


class ConfigFileError(Exception):
    """A ``--config`` file that cannot be used; the message is one line for ``error: ...``."""


def read_config(path: str) -> dict[str, Any]:
    """The parameters in a ``--config`` YAML file (top level, or under ``params:``).

    An empty file means all defaults. A missing or binary file, bad YAML, a duplicate key
    (YAML keeps the last one silently) or a top level that is not a mapping is an error;
    the trainer never imports ``hpo``, so these few checks live here.
    """
    file = Path(path)
    if file.is_dir():
        raise ConfigFileError(f"{path} is a folder, not a YAML file")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError(f"no file {path}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path} is not a text file (not UTF-8)") from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read {path} ({exc.strerror or exc})") from None
    try:
        loaded = yaml.load(text, Loader=unique_key_loader())
    except ConfigFileError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        why = exc.problem or exc.context or "syntax error"
        raise ConfigFileError(f"{path}: invalid YAML{where}: {why}") from None
    except yaml.YAMLError as exc:  # e.g. a NUL byte; the message's second line is a position
        first = str(exc).partition("\n")[0]
        raise ConfigFileError(f"{path}: invalid YAML: {first}") from None
    if loaded is None:
        return {}
    if isinstance(loaded, dict) and "params" in loaded:
        loaded = loaded["params"]
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ConfigFileError(f"{path}: params must be a mapping of parameters")
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ConfigFileError(
            f"{path} must hold a mapping of parameters (or params: {{...}}), not a {kind}"
        )
    return loaded


def unique_key_loader() -> type:
    """A YAML 1.2 :class:`Yaml12Loader` that refuses a key given twice in one mapping."""

    class Loader(Yaml12Loader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base`: merged below, and its keys may be overridden
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # SafeLoader's own construct_mapping refuses it below
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise ConfigFileError(f"duplicate key {key!r} at line {line}")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return Loader
