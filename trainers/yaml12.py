"""YAML 1.2 core-schema numbers for PyYAML, so ``hpo`` and the standalone trainer agree.

PyYAML follows YAML 1.1: ``010`` is eight (octal), ``1:30`` is ninety (base 60),
``1_000`` is a thousand, ``1e-3`` is text and ``2024-06-01`` a date. A study file and
``python -m trainers.contrastive --config`` must read the same text as the same value, so
both load through :class:`Yaml12Loader`. Booleans stay YAML 1.1's (``yes``/``no``/``on``/
``off``), as ``hpo`` has always read them. The trainer never imports ``hpo``: ``hpo``
builds on this module.
"""

from __future__ import annotations

import re

import yaml

__all__ = [
    "FLOAT_1_2",
    "FLOAT_FIRST",
    "FLOAT_TAG",
    "INT_1_2",
    "INT_FIRST",
    "INT_TAG",
    "Yaml12Loader",
]

FLOAT_1_2 = re.compile(
    r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
"""YAML 1.2 core-schema floats: ``1e-3`` (no dot) too, but no ``1_000.5`` or ``1:30.5``.

A plain ``7`` matches too; the int resolver, tried first, takes it."""

INT_1_2 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
"""YAML 1.2 core-schema ints: decimal (``010`` is ten), ``0o`` octal and ``0x`` hex. YAML
1.1's ``010`` (eight), ``1:30`` (ninety) and ``1_000`` are text."""

INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

INT_FIRST = list("-+0123456789")
"""The first characters an int may start with: PyYAML indexes resolvers by them."""
FLOAT_FIRST = list("-+0123456789.")


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 ints and floats and no timestamps; subclass it for more."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """A YAML 1.2 int: PyYAML's own constructor reads ``010`` as octal eight."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


# Replace (not add to) the number resolvers, and drop timestamps (``2024-06-01`` is text,
# as in YAML 1.2): the first matching resolver wins.
Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp) for tag, regexp in resolvers if tag not in (INT_TAG, FLOAT_TAG, TIMESTAMP_TAG)
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(INT_TAG, INT_1_2, INT_FIRST)
Yaml12Loader.add_implicit_resolver(FLOAT_TAG, FLOAT_1_2, FLOAT_FIRST)
Yaml12Loader.add_constructor(INT_TAG, _construct_int)
