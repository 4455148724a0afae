"""Strict YAML: safe loading, duplicate keys rejected, errors with line numbers.

Plain PyYAML silently keeps the last of two equal keys; a study file with two
``temperature`` entries is almost always a mistake, so we refuse it. Input that would
crash a later step (nesting deep enough to overflow the stack, aliases that expand to
millions of values, NUL characters) is refused here too, with one line each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hpo.errors import ConfigError, short_repr
from trainers.cli_input import PLACEHOLDER_ONLY
from trainers.yaml12 import (
    FLOAT_1_2,
    FLOAT_FIRST,
    FLOAT_TAG,
    INT_1_2,
    INT_FIRST,
    INT_TAG,
    Yaml12Loader,
)

MAX_DEPTH = 64
"""How deeply a study file may nest mappings and lists (real files need about 5)."""
MAX_VALUES = 100_000
"""How many values (YAML aliases expanded) a study file may hold (real files: a few hundred)."""
MAX_FILE_BYTES = 10 * 1024 * 1024
"""Study files are a few kilobytes; anything this large is the wrong file."""


def printable(part: object) -> str:
    """A key as text on one line: odd keys (newlines, control characters, long) as a repr."""
    text = str(part)
    if text and text.isprintable() and text.strip() == text and len(text) <= 80:
        return text
    return short_repr(text, 80)


def format_loc(loc: Sequence[int | str]) -> str:
    """``a.b.0.c`` for a location inside the study, ``(top level)`` for the root."""
    return ".".join(printable(p) for p in loc) if loc else "(top level)"


def shape_problems(data: Any) -> list[str]:
    """Nesting deeper than :data:`MAX_DEPTH`, too many values, NUL characters.

    Walks iteratively (no recursion) and stops early, so a hostile file costs little. Deep
    nesting would overflow the stack of every recursive step after this one (copying,
    validation, printing); a NUL character makes file paths and database strings fail far
    from the study file.
    """
    problems: list[str] = []
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    seen = 0
    while stack:
        node, loc = stack.pop()
        seen += 1
        if len(loc) > MAX_DEPTH:
            return [f"{format_loc(loc[:3])}: nested more than {MAX_DEPTH} levels deep"]
        if seen > MAX_VALUES:
            return [f"(top level): more than {MAX_VALUES} values (YAML aliases expanded)"]
        if isinstance(node, str):
            if "\x00" in node:
                problems.append(f"{format_loc(loc)}: contains a NUL character (\\0)")
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and "\x00" in key:
                    problems.append(f"{format_loc((*loc, key))}: key contains a NUL character")
                stack.append((value, (*loc, str(key))))
        elif isinstance(node, list | tuple):
            stack.extend((value, (*loc, str(i))) for i, value in enumerate(node))
    return problems


_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"


class _StrictLoader(Yaml12Loader):
    """:class:`Yaml12Loader` (YAML 1.2 numbers, as the standalone trainer reads them) that
    records duplicate mapping keys instead of overwriting."""

    duplicates: list[str]
    checked: set[int]

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Check the mapping's own keys before merge keys (``<<``) pull in others.

        An explicit key may override a merged one (YAML's merge-key rule); only two explicit
        equal keys are a mistake. Checked once per node: flattening rewrites ``node.value``.
        """
        if id(node) not in self.checked:
            self.checked.add(id(node))
            self._record_duplicates(node)
        super().flatten_mapping(node)

    def _record_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag in (_MERGE_TAG, _VALUE_TAG):  # ``<<`` and ``=``: plain text keys
                key: Any = key_node.value
            else:
                key = self.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                self.duplicates.append(
                    f"line {line}: duplicate key {_short(key)} (first defined on line {seen[key]})"
                )
            else:
                seen[key] = line


def _no_sets(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """``!!set {a, b}`` has no order, so choices or metrics would differ between workers."""
    raise yaml.constructor.ConstructorError(
        None, None, "a !!set has no order; write a list, e.g. [a, b]", node.start_mark
    )


_StrictLoader.add_constructor("tag:yaml.org,2002:set", _no_sets)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes text either YAML version reads as a number or a date (``'1e-3'``,
    ``'010'``, ``'2024-06-01'``), so this loader and plain PyYAML both read it back as text."""


_Dumper.yaml_implicit_resolvers = {
    first: list(resolvers) for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
_Dumper.add_implicit_resolver(INT_TAG, INT_1_2, INT_FIRST)
_Dumper.add_implicit_resolver(FLOAT_TAG, FLOAT_1_2, FLOAT_FIRST)


def dump_yaml(data: Any, **options: Any) -> str:
    """``yaml.safe_dump`` whose output :func:`load_yaml_text` reads back to ``data``."""
    text: str = yaml.dump(data, Dumper=_Dumper, **options)
    return text


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    """Build mappings eagerly; duplicate keys are found in :meth:`_StrictLoader.flatten_mapping`."""
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _short(value: object, limit: int = 60) -> str:
    return short_repr(value, limit)


def _codepoint(character: object) -> str:
    if isinstance(character, int):
        return f"U+{character:04X}"
    if isinstance(character, str) and len(character) == 1:
        return f"U+{ord(character):04X}"
    return repr(character)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse(text: str, source: str) -> Any:
    """Parse one YAML document strictly; :class:`ConfigError` on any failure."""
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text)  # the reader rejects non-printable characters here
        loader.duplicates = []
        loader.checked = set()
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = _one_line(exc.problem or str(exc))
        raise ConfigError([f"{source}: invalid YAML at {where}: {problem}"]) from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            [
                f"{source}: invalid YAML: character {_codepoint(exc.character)} at position "
                f"{exc.position} is not allowed ({_one_line(exc.reason)})"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: invalid YAML: {_one_line(str(exc))}"]) from None
    except (ValueError, KeyError, AttributeError, TypeError, OverflowError) as exc:
        # an explicit tag on a value it cannot read: ``!!int abc``, ``!!bool maybe``
        raise ConfigError(
            [
                f"{source}: invalid YAML: a value its explicit tag (!!int, !!float, !!bool, "
                f"...) cannot read: {_one_line(str(exc))}"
            ]
        ) from None
    except RecursionError:
        raise ConfigError(
            [f"{source}: invalid YAML: nested too deeply (at most {MAX_DEPTH} levels)"]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if loader.duplicates:
        raise ConfigError([f"{source}: {d}" for d in loader.duplicates])
    return data


def load_yaml_text(text: str, source: str = "<string>") -> Any:
    """Parse YAML text strictly; raise :class:`ConfigError` with located problems."""
    data = _parse(text, source)
    problems = shape_problems(data)
    if problems:  # located by field path, like every other problem inside the file
        raise ConfigError(problems)
    return data


def load_yaml_value(text: str, source: str) -> Any:
    """A ``--set`` value: YAML-typed (``5`` is an int), plain text when it is not YAML.

    Duplicate keys, deep nesting and NUL characters are errors, as in a study file.
    """
    if not text.strip():
        return ""
    if PLACEHOLDER_ONLY.fullmatch(text.strip()):
        return text  # a trainer's `{seed}` placeholder, not a YAML mapping
    try:
        data = _parse(text, source)
    except ConfigError as exc:
        if any("duplicate key" in p or "nested too deeply" in p for p in exc.problems):
            raise
        return text
    problems = shape_problems(data)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    return data


def load_yaml_file(path: str | Path) -> Any:
    """Read and strictly parse a YAML file, with a clear error when it cannot be read."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(
                [f"{p}: {p.stat().st_size} bytes; a study file is at most {MAX_FILE_BYTES}"]
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{p}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{p}: is a directory, expected a YAML file"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read file ({exc.strerror or exc})"]) from None
    except ValueError as exc:  # a path with a NUL character
        raise ConfigError([f"{_source(p)}: cannot read file ({exc})"]) from None
    return load_yaml_text(text, source=_source(p))


def _source(path: Path) -> str:
    text = str(path)
    return text if text.isprintable() else repr(text)
