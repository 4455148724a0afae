"""Malformed study files, ``--set`` overrides, storage variables and trainer params.

Property: whatever a user (or a hostile file) feeds the CLI either validates, or ends with
exit code 2 and one ``error: FIELD: problem`` line per problem on stderr: never a Python
traceback, never another exit code, and never a study (or SQLite file) in the storage.

Hypothesis mutates the real ``studies/*.yaml`` files and a small analytic-trainer study
(nothing trains: rejected files stop before a study exists, valid ones are only
validated). Most checks drive the typer app in-process; a few go through a real
``python -m hpo.cli`` process. ``pytest -s tests/hpo/test_bad_input.py`` prints how many
malformed inputs were tried and how many were handled cleanly.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hpo.cli import app
from tests.conftest import analytic_study, pretrain_conv_encoder

REPO = Path(__file__).resolve().parents[2]
STUDY_FILES = sorted((REPO / "studies").glob("*.yaml"))
ANALYTIC_TEXT = yaml.safe_dump(analytic_study(), sort_keys=False)
BASE_TEXTS: dict[str, str] = {
    "analytic": ANALYTIC_TEXT,
    **{p.name: p.read_text(encoding="utf-8") for p in STUDY_FILES},
}
BASES: dict[str, Any] = {name: yaml.safe_load(text) for name, text in BASE_TEXTS.items()}

# One ``error: LOCATION: problem`` line per problem. LOCATION is a dotted field path,
# ``(top level)``, ``--set '...'`` or the file (for YAML syntax errors).
ERROR_LINE = re.compile(r"^error: \S.*?: \S")

COUNTS: Counter[str] = Counter()
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
    derandomize=True,  # the same inputs every run, so the tally below is a stable figure
)

runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    """Print the tally (visible with ``pytest -s``) for docs/reliability.md."""
    COUNTS.clear()
    yield
    tried, clean = COUNTS["tried"], COUNTS["clean"]
    print(
        f"\nbad input: {tried} malformed inputs tried, {clean} handled cleanly "
        f"({COUNTS['rejected']} rejected with exit 2 and one line per problem, "
        f"{COUNTS['valid']} still valid after mutation; "
        f"{COUNTS['run_rejected']} of the rejected also refused by `hpo run` with no study created)"
    )


# --------------------------------------------------------------------------- the property


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def check_clean(
    text: str | bytes,
    *extra: str,
    also_run: bool = False,
    expect_invalid: bool = False,
) -> list[str]:
    """Validate ``text`` through the CLI in a fresh folder; assert the bad-input contract.

    ``also_run``: when it is rejected, ``hpo run`` must reject it too and leave the folder
    as it was (no SQLite file, no journal: relative storage URLs resolve next to the study
    file). Returns the error lines (empty when the file validated).
    """
    COUNTS["tried"] += 1
    with tempfile.TemporaryDirectory(prefix="hpo-bad-") as tmp:
        folder = Path(tmp)
        study = folder / "study.yaml"
        if isinstance(text, bytes):
            study.write_bytes(text)
        else:
            study.write_text(text, encoding="utf-8")
        result = runner.invoke(app, ["validate", str(study), *extra])
        _assert_contract(result, text, extra, str(study))
        lines = _error_lines(result.stderr) if result.exit_code == 2 else []
        if expect_invalid:
            assert result.exit_code == 2, f"accepted: {text!r:.300} {extra}"
        if result.exit_code == 0:
            COUNTS["valid"] += 1
        else:
            COUNTS["rejected"] += 1
            if also_run:
                run = runner.invoke(app, ["run", str(study), *extra])
                _assert_contract(run, text, extra, str(study))
                assert run.exit_code == 2, run.stderr
                left = sorted(p.name for p in folder.iterdir())
                assert left == ["study.yaml"], f"a study was created: {left}"
                COUNTS["run_rejected"] += 1
    COUNTS["clean"] += 1
    return lines


_FIELDS = (
    "name",
    "storage",
    "seed",
    "objective",
    "sampler",
    "pruner",
    "budget",
    "trainer",
    "space",
    "workers",
    "artifacts",
)


def names_a_field(line: str, source: str) -> bool:
    """The line starts with a study field, the file (YAML errors), an override or a new key."""
    where = line.removeprefix("error: ")
    first = re.split(r"[.:]", where, maxsplit=1)[0]
    return (
        first in _FIELDS
        or where.startswith(("(top level)", "--", source))
        or ": unknown key" in where
        or ": Keys should be strings" in where
    )


def _assert_contract(result: Any, text: str | bytes, extra: tuple[str, ...], source: str) -> None:
    where = f"input {text!r:.300} {extra}"
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), (
        f"{where}: raised {type(exc).__name__}: {exc}"
    )
    assert result.exit_code in (0, 2), f"{where}: exit {result.exit_code}\n{result.stderr}"
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, where
    if result.exit_code == 2:
        lines = _error_lines(result.stderr)
        assert lines, f"{where}: exit 2 but nothing on stderr"
        for line in lines:
            assert ERROR_LINE.match(line), (
                f"{where}: not one 'error: FIELD: problem' line: {line!r}"
            )
            assert names_a_field(line, source), f"{where}: names no field: {line!r}"


# --------------------------------------------------------------------------- mutations

# Values of the wrong type, out of range, huge, empty, unicode, markup-like.
WEIRD_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**64, -(2**64), 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, -0.0]),
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(
        [
            "",
            " ",
            "x" * 100_000,
            "[/x]",
            "[bold]boom[/bold]",
            "line\nbreak",
            "tab\there",
            "nul\x00byte",
            "\u202eevil",
            "😀",
            "ﬁ",
            "${UNSET_HPO_FUZZ_VAR}",
            "sqlite:///x.db",
            "journal:///x.log",
            "os:system",
            ":",
            "../../etc/passwd",
            "1e400",
            "30x",
            "-5m",
        ]
    ),
)
WEIRD_VALUES = st.one_of(
    WEIRD_SCALARS,
    st.lists(WEIRD_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), WEIRD_SCALARS, max_size=3),
    st.sampled_from([[], {}, [[[[]]]], {"name": {"name": {}}}]),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location in a parsed study: mapping keys and list indices."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


def _mutate(data: Any, draw: st.DrawFn) -> tuple[Any, tuple[Any, ...]]:
    """One structural mutation of a copy of ``data``; returns it and the path touched."""
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy
    paths = [p for p in _paths(data) if p]
    path = draw(st.sampled_from(paths))
    parent = _get(data, path[:-1])
    key = path[-1]
    kind = draw(
        st.sampled_from(
            ["replace", "delete", "unknown_key", "wrap_list", "wrap_dict", "move", "empty"]
        )
    )
    if kind == "replace":
        parent[key] = draw(WEIRD_VALUES)
    elif kind == "delete":
        del parent[key]
    elif kind == "unknown_key":
        target = _get(data, path) if isinstance(_get(data, path), dict) else parent
        if isinstance(target, dict):
            target[draw(st.text(min_size=1, max_size=12))] = draw(WEIRD_SCALARS)
        else:
            parent[key] = {"unexpected": 1}
    elif kind == "wrap_list":
        parent[key] = [parent[key]]
    elif kind == "wrap_dict":
        parent[key] = {draw(st.sampled_from(["value", "name", "type", "x"])): parent[key]}
    elif kind == "move":  # the right value at the wrong nesting level
        other = draw(st.sampled_from(paths))
        try:
            parent[key] = yaml.safe_load(yaml.safe_dump(_get(data, other)))
        except (KeyError, IndexError, TypeError):
            parent[key] = None
    else:
        value = parent[key]
        parent[key] = type(value)() if isinstance(value, dict | list | str) else None
    return data, path


@st.composite
def mutated_studies(draw: st.DrawFn) -> tuple[str, str, tuple[Any, ...]]:
    name = draw(st.sampled_from(sorted(BASES)))
    data = BASES[name]
    path: tuple[Any, ...] = ()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        data, path = _mutate(data, draw)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()))
    return name, text, path


@st.composite
def broken_texts(draw: st.DrawFn) -> str:
    """Text-level damage to a real study file: truncation, stray characters, bad indentation."""
    text = BASE_TEXTS[draw(st.sampled_from(sorted(BASE_TEXTS)))]
    lines = text.splitlines(keepends=True)
    kind = draw(
        st.sampled_from(
            ["truncate", "insert", "drop_line", "duplicate_line", "indent", "dedent", "replace"]
        )
    )
    if kind == "truncate":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    if kind == "insert":
        at = draw(st.integers(min_value=0, max_value=len(text)))
        junk = draw(
            st.one_of(
                st.text(max_size=5),
                st.sampled_from(
                    [":", "- ", "{", "]", "&a ", "*a", "!!python/object:os.system ", "\t", "\x01"]
                ),
            )
        )
        return text[:at] + junk + text[at:]
    if not lines:
        return text
    i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
    if kind == "drop_line":
        del lines[i]
    elif kind == "duplicate_line":  # duplicate keys
        lines.insert(i, lines[i])
    elif kind == "indent":
        lines[i] = "   " + lines[i]
    elif kind == "dedent":
        lines[i] = lines[i].lstrip()
    else:
        lines[i] = draw(st.text(max_size=40)) + "\n"
    return "".join(lines)


@given(mutated_studies())
@PROPERTY
def test_mutated_study_files_validate_or_exit_2(case: tuple[str, str, tuple[Any, ...]]) -> None:
    base, text, _path = case
    check_clean(text, also_run=base == "analytic")


@given(broken_texts())
@PROPERTY
def test_broken_yaml_text_validates_or_exits_2(text: str) -> None:
    check_clean(text)


@given(st.binary(max_size=200))
@settings(max_examples=25, deadline=None, database=None, derandomize=True)
def test_arbitrary_bytes_exit_2(data: bytes) -> None:
    check_clean(data)


# --------------------------------------------------------------------------- edge cases


def _edit(*changes: tuple[str, Any]) -> str:
    """The analytic study with ``("a.b.c", value)`` changes, as YAML text."""
    data = analytic_study()
    for dotted, value in changes:
        *head, last = dotted.split(".")
        node = data
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


EDGE_TEXTS = {
    "empty file": "",
    "only a comment": "# nothing here\n",
    "a bare scalar": "42\n",
    "a list": "- name: x\n",
    "two documents": "name: a\n---\nname: b\n",
    "tab indentation": "name: x\nbudget:\n\tn_trials: 3\n",
    "control character": "name: \x07bell\n",
    "python tag": "name: !!python/object/apply:os.system ['true']\n",
    "unhashable key": "? [a, b]\n: 1\n",
    "deep nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
    "deep mappings": "name: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n",
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{k}: &{k} [{', '.join([f'*{p}'] * 10)}]\n"
            for p, k in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "name: *i\n"
    ),
    "huge string": "name: " + "n" * 2_000_000 + "\n",
    "many keys": "".join(f"k{i}: {i}\n" for i in range(2_000)),
    "duplicate top-level key": ANALYTIC_TEXT + "name: again\n",
    "duplicate nested key": ANALYTIC_TEXT.replace(
        "  x:\n", "  x: {type: int, low: 0, high: 1}\n  x:\n", 1
    ),
    "markup in a key": _edit(("[/x]", 1)),
    "newline in a key": _edit(("bad\nkey", 1)),
    "newline in a parameter name": _edit(("space.a\nb", {"type": "int", "low": 0, "high": 1})),
    "NUL in storage": _edit(("storage", "sqlite:///a\x00b.db")),
    "NUL in a key": _edit(("trainer.params.a\x00", 1)),
    "NaN bound": _edit(("space.x.low", math.nan)),
    "infinite bound": _edit(("space.x.high", math.inf)),
    "NaN step": _edit(("space.x.step", math.nan)),
    "NaN choice": _edit(("space.choice.choices", ["a", math.nan])),
    "infinite timeout": _edit(("budget.timeout", math.inf)),
    "NaN timeout": _edit(("budget.timeout", math.nan)),
    "huge timeout": _edit(("budget.timeout", 1e300)),
    "integer timeout beyond a float": _edit(("budget.timeout", 10**400)),
    "integer trial timeout beyond a float": _edit(("budget.trial_timeout", 10**400)),
    "threshold bound beyond a float": _edit(("pruner", {"name": "threshold", "lower": 10**400})),
    "int tag on a word": ANALYTIC_TEXT.replace("n_trials: 12", "n_trials: !!int abc"),
    "a set of choices": ANALYTIC_TEXT.replace(
        "choices:\n    - a\n    - b\n    - c\n", "choices: !!set {a, b, c}\n"
    ),
    "float tag on a word": ANALYTIC_TEXT.replace("n_trials: 12", "n_trials: !!float abc"),
    "bool tag on a word": ANALYTIC_TEXT.replace("n_trials: 12", "n_trials: !!bool maybe"),
    "timestamp tag on a word": ANALYTIC_TEXT.replace("n_trials: 12", "n_trials: !!timestamp x"),
    "boolean bound": _edit(("space.x.low", True)),
    "boolean trial count": _edit(("budget.n_trials", True)),
    "boolean seed": _edit(("seed", True)),
    "boolean GPU index": _edit(("workers", {"gpus": [True]})),
    "grace shorter than two heartbeats": _edit(
        ("workers", {"heartbeat_interval": 30, "grace_period": 2})
    ),
    "nested choice": _edit(("space.choice.choices", [["a"], {"b": 1}, "c"])),
    "empty choices": _edit(("space.choice.choices", [])),
    "empty trainer module": _edit(("trainer.name", ":")),
    "relative trainer module": _edit(("trainer.name", ".nope:train")),
    "missing trainer module": _edit(("trainer.name", "no_such_module_xyz:train")),
    "wrong-typed sampler argument": _edit(("sampler.n_startup_trials", "four")),
    "wrong-typed pruner argument": _edit(("pruner.n_warmup_steps", 2.5)),
    "code-only sampler argument": _edit(("sampler.gamma", "os:system")),
    "wrong-typed wrapped pruner argument": _edit(
        ("pruner", {"name": "patient", "patience": 2, "wrapped": {"name": "median", "x": 1}})
    ),
    "grouped pruner without wrapped": _edit(("pruner", {"name": "grouped", "by": ["x"]})),
    "grouped pruner by an unsearched name": _edit(
        ("pruner", {"name": "grouped", "by": ["lr"], "wrapped": {"name": "median"}})
    ),
    "grouped pruner by a bare string": _edit(
        ("pruner", {"name": "grouped", "by": "x", "wrapped": {"name": "median"}})
    ),
    "grouped pruner in a grouped pruner": _edit(
        ("pruner", {"name": "grouped", "by": ["x"], "wrapped": {"name": "grouped", "by": ["x"]}})
    ),
    "sqlite URL without a file": _edit(("storage", "sqlite://")),
    "empty variable reference": _edit(("storage", "postgresql://u:${}@h/db")),
    "storage folder missing": _edit(("storage", "sqlite:///no/such/folder/x.db")),
    "unknown storage scheme": _edit(("storage", "redis://localhost")),
    "huge integer bound": _edit(("space.n", {"type": "int", "low": 0, "high": 10**20})),
    "huge seed": _edit(("seed", 2**64)),
    "negative budget": _edit(("budget.n_trials", -1)),
    "no budget": _edit(("budget", {})),
    "huge name": _edit(("name", "s" * 100_000)),
    "empty name": _edit(("name", "")),
    "terminal escape in the name": _edit(("name", "\x1b[31mred\nsecond line")),
}


@pytest.mark.parametrize("name", sorted(EDGE_TEXTS))
def test_edge_case_files_exit_2(name: str) -> None:
    check_clean(EDGE_TEXTS[name], also_run=True, expect_invalid=True)


def test_oversized_file_is_refused_before_parsing() -> None:
    lines = check_clean("# " + "x" * (11 * 1024 * 1024) + "\n", expect_invalid=True)
    assert "a study file is at most" in lines[0]


def test_unreadable_inputs(tmp_path: Path) -> None:
    for args in (["validate", str(tmp_path)], ["validate", str(tmp_path / "missing.yaml")]):
        COUNTS["tried"] += 1
        result = runner.invoke(app, args)
        _assert_contract(result, args[1], (), args[1])
        assert result.exit_code == 2
        COUNTS["rejected"] += 1
        COUNTS["clean"] += 1


# --------------------------------------------------------------------------- --set overrides

SEGMENTS = st.one_of(
    st.sampled_from(
        ["name", "budget", "n_trials", "space", "x", "low", "trainer", "params", "epochs", "seed"]
    ),
    st.text(max_size=6),
)


@st.composite
def overrides(draw: st.DrawFn) -> str:
    key = ".".join(draw(st.lists(SEGMENTS, min_size=0, max_size=4)))
    sep = draw(st.sampled_from(["=", "=", "=", "", "=="]))
    value = draw(
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(
                ["", "[1", "{a: 1, a: 2}", ".nan", "-.inf", "1e999", "[" * 200, "!!binary x"]
            ),
            WEIRD_SCALARS.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
        )
    )
    return f"{key}{sep}{value}"


@given(st.lists(overrides(), min_size=1, max_size=3))
@PROPERTY
def test_set_overrides_validate_or_exit_2(sets: list[str]) -> None:
    args = [arg for text in sets for arg in ("--set", text)]
    check_clean(ANALYTIC_TEXT, *args, also_run=True)


@given(
    st.sampled_from(sorted(p for p in _paths(BASES["analytic"]) if p)),
    WEIRD_SCALARS.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
)
@PROPERTY
def test_set_type_mismatch_names_the_field(path: tuple[Any, ...], value: str) -> None:
    key = ".".join(str(p) for p in path)
    if "..." in value or "\n" in value:  # yaml's document end marker / multi-line dumps
        value = value.split("\n", 1)[0].removesuffix("...").strip()
    check_clean(ANALYTIC_TEXT, "--set", f"{key}={value}", also_run=True)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("budget.n_trials", "--set 'budget.n_trials': expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("budget..n_trials=3", "empty segment"),
        ("name.sub=1", "name is a str, not a mapping"),
        ("space.choice.choices.0=a", "choices is a list, not a mapping"),
        ("budget.n_trials=[1", "budget.n_trials: Input should be a valid integer"),
        ("budget.n_trials=two", "budget.n_trials:"),
        ("budget.n_trails=3", "budget.n_trails: unknown key"),
        ("space.x.low=.nan", "space.x.low: Input should be a finite number"),
        ("space.x={a: 1, a: 2}", "duplicate key 'a'"),
        ("space.x=" + "[" * 300 + "]" * 300, "nested"),
        ("budget.\nn_trials=3", "printable"),
        ("trainer.params.epochs=-1", "trainer.params.epochs:"),
        ("trainer.params.epochz=3", "trainer.params.epochz: unknown parameter"),
        ("workers.gpus=[-1]", "workers.gpus"),
    ],
)
def test_bad_overrides_name_the_key(override: str, expected: str) -> None:
    lines = check_clean(ANALYTIC_TEXT, "--set", override, also_run=True, expect_invalid=True)
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize("gpus", ["two", "0,,x", "-1", "", "1.5", "all,0"])
def test_bad_gpus_flag_exits_2_without_a_study(gpus: str, tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(ANALYTIC_TEXT, encoding="utf-8")
    COUNTS["tried"] += 1
    result = runner.invoke(app, ["run", str(study), "--gpus", gpus])
    _assert_contract(result, gpus, (), str(study))
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
    COUNTS["rejected"] += 1
    COUNTS["clean"] += 1


# --------------------------------------------------------------------------- storage variables

VAR_NAMES = st.from_regex(r"\AHPO_FUZZ_[A-Z0-9_]{1,12}\Z")


@given(VAR_NAMES, st.sampled_from(["sqlite:///{}.db", "postgresql://hpo:{}@db/hpo", "{}"]))
@PROPERTY
def test_unset_storage_variable_is_named(var: str, template: str) -> None:
    os.environ.pop(var, None)
    storage = template.format("${" + var + "}")
    text = ANALYTIC_TEXT + f"storage: '{storage}'\n"
    lines = check_clean(text, also_run=True, expect_invalid=True)
    assert f"error: storage: environment variable {var} is not set" in lines


@given(
    st.sampled_from(["${", "${}", "${1A}", "${A-B}", "${A B}", "$", "${A", "sqlite://", "x"]),
    st.sampled_from(["sqlite:///{}.db", "postgresql://hpo:{}@db/hpo", "{}"]),
)
@settings(max_examples=20, deadline=None, database=None, derandomize=True)
def test_malformed_storage_references(ref: str, template: str) -> None:
    text = ANALYTIC_TEXT + f"storage: {yaml.safe_dump(template.format(ref)).strip()}\n"
    check_clean(text.replace("\n...\n", "\n"), also_run=True)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30))
@PROPERTY
def test_storage_variable_with_any_value(value: str) -> None:
    os.environ["HPO_FUZZ_VALUE"] = value
    try:
        check_clean(ANALYTIC_TEXT + "storage: 'sqlite:///${HPO_FUZZ_VALUE}.db'\n", also_run=True)
    finally:
        del os.environ["HPO_FUZZ_VALUE"]


def test_password_of_a_set_variable_is_masked_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPO_FUZZ_PW", "s3cret")
    text = ANALYTIC_TEXT + "storage: 'nosuch://hpo:${HPO_FUZZ_PW}@db/hpo'\n"
    lines = check_clean(text, also_run=True, expect_invalid=True)
    assert lines and not any("s3cret" in line for line in lines)


# --------------------------------------------------------------------------- trainer params

ANALYTIC_FIELDS = ["x", "y", "choice", "margin", "epochs", "seed", "sleep_per_epoch", "fail"]


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (  # with dim fixed at 64, 3 heads fail every trial
            {"n_heads": {"type": "categorical", "choices": [2, 4, 3]}},
            ["space.n_heads: value 3 is never allowed: n_heads=3 must divide"],
        ),
        (
            {"dataset": {"type": "categorical", "choices": ["BasicMotions", "data/nope.npz"]}},
            ["space.dataset: value 'data/nope.npz': no file or folder data/nope.npz"],
        ),
        (  # the ends 16.0 and 128.0 pass as ints; every value between fails the trial
            {"batch_size": {"type": "float", "low": 16, "high": 128, "log": True}},
            ["space.batch_size: a float range samples values like 58.78"],
        ),
        (  # a step that keeps every value whole is fine for an int field
            {"batch_size": {"type": "float", "low": 16, "high": 128, "step": 16}},
            [],
        ),
        (  # 3 heads fit dim 48: a sampler can pair them, so nothing is refused
            {
                "dim": {"type": "categorical", "choices": [48, 64]},
                "n_heads": {"type": "categorical", "choices": [3, 4]},
            },
            [],
        ),
    ],
)
def test_space_values_that_fail_every_trial_are_named(
    space: dict[str, Any], expected: list[str]
) -> None:
    data = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])
    data["space"] = space
    lines = check_clean(yaml.safe_dump(data), expect_invalid=bool(expected))
    assert [line for line in lines if any(e in line for e in expected)] == lines


def test_a_checkpoint_that_does_not_fit_is_refused_before_the_study(tmp_path: Path) -> None:
    """Pretrained on 9 channels, fine-tuned on 6 without an adapter: every trial failed."""
    encoder = pretrain_conv_encoder(tmp_path / "pretrained")
    data = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])  # BasicMotions: 6 channels
    data["trainer"]["params"].update({"mode": "finetune", "init_from": str(encoder)})
    data["space"] = {"channel_adapter": {"type": "categorical", "choices": ["none", "conv1x1"]}}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert _error_lines(result.stderr) == [
        f"error: space.channel_adapter: value 'none': {encoder}/encoder.pt was pretrained on "
        "9 channels (synthetic_har), BasicMotions has 6; set channel_adapter: conv1x1 to learn "
        "a mapping of the channels"
    ]
    # read-only commands do not read the data for this (status must stay quick)
    from hpo import load_study_config

    assert load_study_config(study).trainer.params["mode"] == "finetune"
    # a value that fails only beside another is fine while the space offers a way out
    data["space"] = {
        "channel_adapter": {"type": "categorical", "choices": ["none", "conv1x1"]},
        "dataset": {"type": "categorical", "choices": ["BasicMotions", "synthetic_har"]},
    }
    study.write_text(yaml.safe_dump(data))
    assert runner.invoke(app, ["validate", str(study)]).exit_code == 0
    # a fixed input that is missing is said once, not once per searched value
    data["trainer"]["params"]["init_from"] = str(tmp_path / "gone")
    study.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(study)])
    assert _error_lines(result.stderr) == [
        f"error: trainer.params.init_from: no encoder checkpoint at {tmp_path}/gone; "
        "point it at the encoder.pt (or the save_dir) written by a mode: pretrain run"
    ]
    data["space"] = {}
    data["trainer"]["params"].update({"init_from": str(encoder), "channel_adapter": "conv1x1"})
    study.write_text(yaml.safe_dump(data))
    assert runner.invoke(app, ["validate", str(study)]).exit_code == 0


def test_data_without_labels_is_refused_where_labels_are_needed(tmp_path: Path) -> None:
    """A classifier, or a pretraining study judged by its probe, failed every trial there."""
    import numpy as np

    np.savez(tmp_path / "x.npz", X=np.random.default_rng(0).normal(size=(40, 2, 16)))
    data = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])
    data["trainer"]["params"]["dataset"] = str(tmp_path / "x.npz")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert _error_lines(result.stderr) == [
        "error: trainer.params.dataset: has no labels (no array y); only mode: pretrain "
        "trains without labels"
    ]
    data["trainer"]["params"].update({"mode": "pretrain", "loss": "infonce"})
    data["trainer"]["params"].pop("monitor", None)  # read by the classifier modes only
    data["space"] = {"temperature": {"type": "float", "low": 0.05, "high": 0.2}}
    data["objective"] = {"metric": "best_probe_f1", "prune_on": "probe_f1"}
    study.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(study)])
    why = (
        f"{tmp_path}/x.npz has no labels (no array y), so pretraining has nothing to probe; "
        "judge it by best_rankme (the embeddings' effective rank; prune on rankme) or add labels"
    )
    assert result.exit_code == 2
    assert _error_lines(result.stderr) == [
        f"error: objective.metric: best_probe_f1: {why}",
        f"error: objective.prune_on: probe_f1: {why}",
    ]
    data["objective"] = {"metric": "best_rankme", "prune_on": "rankme"}
    study.write_text(yaml.safe_dump(data))
    assert runner.invoke(app, ["validate", str(study)]).exit_code == 0
    # a metric of another mode, or a test score with no test split, failed after training
    data["objective"] = {"metric": "best_val_auc"}
    data["trainer"]["params"]["evaluate_test"] = True
    study.write_text(yaml.safe_dump(data))
    lines = _error_lines(runner.invoke(app, ["validate", str(study)]).stderr)
    assert (
        lines[0]
        == f"error: trainer.params.evaluate_test: {tmp_path}/x.npz has no test split (X_test, y_test)"
    )
    assert lines[1].startswith(
        "error: objective.metric: best_val_auc: mode: pretrain does not report it; it reports "
        "best_probe_f1, probe_f1,"
    )
    assert len(lines) == 2


def test_labels_a_classifier_cannot_train_on_are_refused(tmp_path: Path) -> None:
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 2, 16))
    labels = np.tile([0.0, 1.0, np.nan, np.nan], 10)
    np.savez(tmp_path / "nan.npz", X=x, y=labels)
    np.savez(tmp_path / "notest.npz", X=x, y=np.tile([0, 1], 20), X_test=x[:4])
    data = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])
    study = tmp_path / "study.yaml"
    for name, why in [
        (
            "nan.npz",
            "20 of 40 labels in y are NaN; only mode: pretrain takes series without a label",
        ),
    ]:
        data["trainer"]["params"]["dataset"] = str(tmp_path / name)
        study.write_text(yaml.safe_dump(data))
        result = runner.invoke(app, ["validate", str(study)])
        assert result.exit_code == 2
        assert _error_lines(result.stderr) == [f"error: trainer.params.dataset: {why}"]
    # a test split is read only to be scored: without evaluate_test its labels are no matter
    data["trainer"]["params"]["dataset"] = str(tmp_path / "notest.npz")
    study.write_text(yaml.safe_dump(data))
    assert runner.invoke(app, ["validate", str(study)]).exit_code == 0
    data["trainer"]["params"]["evaluate_test"] = True
    study.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["validate", str(study)])
    assert result.exit_code == 2
    assert _error_lines(result.stderr) == [
        f"error: trainer.params.evaluate_test: {tmp_path / 'notest.npz'} has X_test but no "
        "labels y_test for it"
    ]
    data["trainer"]["params"].update({"dataset": "BasicMotions", "mode": "pretrain"})
    data["trainer"]["params"].update({"loss": "infonce", "monitor": "val_auc"})
    data["objective"] = {"metric": "best_probe_f1"}
    data["space"] = {}
    study.write_text(yaml.safe_dump(data))
    assert _error_lines(runner.invoke(app, ["validate", str(study)]).stderr) == [
        "error: trainer.params: monitor is read by mode: supervised and finetune; mode: "
        "pretrain keeps the epoch with the best probe_f1 (rankme without labels)"
    ]


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(ANALYTIC_FIELDS), st.text(min_size=1, max_size=10)),
        WEIRD_SCALARS,
        min_size=1,
        max_size=3,
    )
)
@PROPERTY
def test_trainer_params_validate_or_exit_2(params: dict[str, Any]) -> None:
    data = analytic_study()
    data["trainer"]["params"] = {**data["trainer"]["params"], **params}
    text = yaml.safe_dump(data, sort_keys=False)
    lines = check_clean(text, also_run=True)
    for line in lines:
        assert line.startswith(("error: trainer.params.", "error: space.", "error: (top")), line


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"epochs": "ten"}, "trainer.params.epochs: Input should be a valid integer"),
        ({"epochs": 0}, "trainer.params.epochs: Input should be greater than or equal to 1"),
        ({"x": 1e9}, "trainer.params.x: Input should be less than or equal to 10"),
        ({"choice": "d"}, "trainer.params.choice: Input should be 'a', 'b' or 'c'"),
        ({"epochz": 3}, "trainer.params.epochz: unknown parameter"),
        ({"x": [1, 2]}, "trainer.params.x: Input should be a valid number"),
    ],
)
def test_bad_trainer_params_name_the_parameter(params: dict[str, Any], expected: str) -> None:
    data = analytic_study()
    data["trainer"]["params"] = {**data["trainer"]["params"], **params}
    lines = check_clean(yaml.safe_dump(data), also_run=True, expect_invalid=True)
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"loss": "infonc"}, "trainer.params.loss"),
        ({"lr": -1}, "trainer.params.lr"),
        ({"batch_size": "big"}, "trainer.params.batch_size"),
        ({"dropuot": 0.1}, "trainer.params.dropuot: unknown parameter"),
        ({"val_fraction": 1.5}, "trainer.params.val_fraction"),
        # quickstart searches n_heads but not dim: a fixed dim of 60 fails the 8 heads
        ({"dim": 60}, "space.n_heads: value 8 is never allowed: n_heads=8 must divide"),
        # a missing input fails every trial, and they count: found before the study exists
        ({"dataset": "data/nope.npz"}, "trainer.params.dataset: no file or folder data/nope.npz"),
        (
            {"mode": "finetune", "init_from": "runs/none"},
            "trainer.params.init_from: no encoder checkpoint at runs/none",
        ),
    ],
)
def test_bad_contrastive_params_name_the_parameter(params: dict[str, Any], expected: str) -> None:
    data = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])
    data["trainer"]["params"].update(params)
    lines = check_clean(yaml.safe_dump(data), also_run=True, expect_invalid=True)
    assert any(expected in line for line in lines), lines


@given(
    st.dictionaries(
        st.one_of(st.sampled_from(ANALYTIC_FIELDS), st.text(min_size=1, max_size=10)),
        WEIRD_SCALARS,
        min_size=1,
        max_size=3,
    )
)
@settings(max_examples=30, deadline=None, database=None, derandomize=True)
def test_hpo_train_bad_params_exit_2(params: dict[str, Any]) -> None:
    from pydantic import ValidationError

    from trainers.analytic import AnalyticParams

    try:
        AnalyticParams.model_validate(params)
    except ValidationError:
        pass
    else:
        return  # valid params would really train; only malformed ones are of interest here
    COUNTS["tried"] += 1
    with tempfile.TemporaryDirectory(prefix="hpo-bad-") as tmp:
        config = Path(tmp) / "run.yaml"
        config.write_text(yaml.safe_dump({"trainer": "analytic", "params": params}))
        result = runner.invoke(app, ["train", str(config)])
    _assert_contract(result, str(params), (), "params.")
    assert result.exit_code == 2
    assert all(line.startswith("error: params.") for line in _error_lines(result.stderr))
    COUNTS["rejected"] += 1
    COUNTS["clean"] += 1


# --------------------------------------------------------------------------- real processes


def _hpo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "hpo.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("command", "text", "extra", "expected"),
    [
        ("validate", ANALYTIC_TEXT + "space: {}\n", [], "duplicate key 'space'"),
        (
            "run",
            ANALYTIC_TEXT.replace("name: analytic", "name: '[/x]'\nn_trails: 3", 1),
            [],
            "n_trails: unknown key",
        ),
        (
            "run",
            ANALYTIC_TEXT + "storage: 'sqlite:///${HPO_FUZZ_NEVER_SET}.db'\n",
            [],
            "environment variable HPO_FUZZ_NEVER_SET is not set",
        ),
        ("run", ANALYTIC_TEXT, ["--set", "space.x.low=.nan"], "space.x.low"),
    ],
)
def test_real_process(command: str, text: str, extra: list[str], expected: str) -> None:
    COUNTS["tried"] += 1
    with tempfile.TemporaryDirectory(prefix="hpo-bad-") as tmp:
        folder = Path(tmp)
        (folder / "study.yaml").write_text(text, encoding="utf-8")
        result = _hpo(command, "study.yaml", *extra, cwd=folder)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        lines = _error_lines(result.stderr)
        assert lines and all(ERROR_LINE.match(line) for line in lines), lines
        assert all(names_a_field(line, "study.yaml") for line in lines), lines
        assert any(expected in line for line in lines), lines
        assert sorted(p.name for p in folder.iterdir()) == ["study.yaml"]
    COUNTS["rejected"] += 1
    COUNTS["run_rejected"] += command == "run"
    COUNTS["clean"] += 1


def test_markup_like_names_and_choices_run_cleanly(tmp_path: Path) -> None:
    """A valid but odd name (rich markup, unicode) is printed literally, tables included."""
    study = tmp_path / "study.yaml"
    data = analytic_study(name="[/x] [bold]😀", budget={"n_trials": 2})
    data["trainer"]["params"]["epochs"] = 2
    study.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    for command in ("validate", "run", "status"):
        result = runner.invoke(app, [command, str(study)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            command,
            result.exception,
        )
        assert result.exit_code == 0, (command, result.stderr)
    assert "[/x]" in runner.invoke(app, ["validate", str(study)]).stdout


def test_data_files_no_trial_could_read_are_refused_before_the_study(tmp_path: Path) -> None:
    """They passed validation, then every trial failed with fail_reason data."""
    import numpy as np

    (tmp_path / "bad.npz").write_text("x\n")
    np.savez(tmp_path / "flat.npz", X=np.zeros((10, 5)), y=np.zeros(10))
    (tmp_path / "empty").mkdir()
    (tmp_path / "har" / "train").mkdir(parents=True)
    base = yaml.safe_load(BASE_TEXTS["quickstart.yaml"])
    study = tmp_path / "study.yaml"
    expected = {
        "bad.npz": f"{tmp_path}/bad.npz is not a readable .npz file (numpy.savez writes one)",
        "flat.npz": f"{tmp_path}/flat.npz: X has shape (10, 5), not (n, channels, length)",
        "empty": f"{tmp_path}/empty is not a UCI HAR folder (nor a folder with "
        "<Name>_TRAIN.ts): missing train/Inertial Signals/body_acc_x_train.txt",
    }
    for name, why in expected.items():
        base["trainer"]["params"]["dataset"] = str(tmp_path / name)
        study.write_text(yaml.safe_dump(base))
        result = runner.invoke(app, ["validate", str(study)])
        assert result.exit_code == 2, name
        assert _error_lines(result.stderr) == [f"error: trainer.params.dataset: {why}"]
    base["trainer"]["params"].update({"dataset": "uci_har", "data_dir": str(tmp_path / "har")})
    study.write_text(yaml.safe_dump(base))
    result = runner.invoke(app, ["validate", str(study)])
    assert _error_lines(result.stderr) == [
        f"error: trainer.params.dataset: {tmp_path}/har is not a UCI HAR folder (nor a folder "
        "with <Name>_TRAIN.ts): missing train/Inertial Signals/body_acc_x_train.txt"
    ]
