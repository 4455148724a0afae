"""The strict YAML loader: merge keys, YAML 1.2 floats, duplicate keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hpo import load_study_config
from hpo.cli import app
from hpo.config import CategoricalParam, FloatParam
from hpo.errors import ConfigError
from hpo.overrides import parse_override
from hpo.yaml_loader import load_yaml_text, load_yaml_value

BASE = "v: &base {type: float, low: 0.0, high: 1.0}\n"


@pytest.mark.parametrize(
    "text",
    [
        BASE + "w: {<<: *base, high: 2.0}\n",
        BASE + "w:\n  <<: *base\n  high: 2.0\n",
        BASE + "w:\n  high: 2.0\n  <<: *base\n",
        BASE + "u: &other {step: 0.5}\nw: {<<: [*base, *other], high: 2.0}\n",
    ],
)
def test_an_explicit_key_overrides_a_merged_one(text: str) -> None:
    """YAML's merge-key rule: the mapping's own key wins; that is no duplicate."""
    data = load_yaml_text(text)
    assert data["v"] == {"type": "float", "low": 0.0, "high": 1.0}
    assert data["w"]["high"] == 2.0 and data["w"]["low"] == 0.0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            BASE + "w:\n  <<: *base\n  high: 2.0\n  high: 3.0\n",
            "FILE: line 5: duplicate key 'high' (first defined on line 4)",
        ),
        (
            "w: &base {high: 1.0, high: 2.0}\n",
            "FILE: line 1: duplicate key 'high' (first defined on line 1)",
        ),
        (  # a duplicate inside a mapping that is only ever merged
            "w: {<<: {high: 1.0, high: 2.0}}\n",
            "FILE: line 1: duplicate key 'high' (first defined on line 1)",
        ),
        (
            BASE + "w:\n  <<: *base\n  <<: *base\n",
            "FILE: line 4: duplicate key '<<' (first defined on line 3)",
        ),
    ],
)
def test_duplicates_among_explicit_keys_are_still_errors(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml_text(text, source="FILE")
    assert caught.value.problems == [problem]


def test_a_study_file_with_merge_keys_validates(write_study: Callable[..., Path]) -> None:
    path = write_study(
        """\
name: merged
objective: {metric: best_score, direction: maximize}
budget: {n_trials: 2}
trainer: {name: analytic, params: {epochs: 2}}
space:
  x: &unit {type: float, low: -2.0, high: 2.0}
  y:
    <<: *unit
    high: 1.0
"""
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "y: float in [-2.0, 1.0]" in result.stdout
    y = load_study_config(path).space["y"]
    assert isinstance(y, FloatParam) and y.high == 1.0


def test_x_keys_hold_anchors_and_are_ignored(write_study: Callable[..., Path]) -> None:
    path = write_study(
        """name: anchored
x-unit: &unit {type: float, low: -2.0, high: 2.0}
x-trainer: &fixed {epochs: 2}
objective: {metric: best_score, direction: maximize}
budget: {n_trials: 2}
trainer: {name: analytic, params: {<<: *fixed, seed_noise: 0.1}}
space:
  x: *unit
  y: {<<: *unit, high: 1.0}
"""
    )
    cfg = load_study_config(path)
    assert cfg.trainer.params == {"epochs": 2, "seed_noise": 0.1}
    assert set(cfg.space) == {"x", "y"}
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_study_config(
            write_study("name: a\nbase: 1\nobjective: {metric: m}\nbudget: {n_trials: 1}\n")
        )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-3", 0.001),
        ("1E5", 100000.0),
        ("-2.5e+3", -2500.0),
        ("+1e2", 100.0),
        ("3e-4", 0.0003),
        ("-.5", -0.5),
        ("1.5", 1.5),
        ("1.0e-3", 0.001),
        ("6.", 6.0),
    ],
)
def test_yaml_1_2_floats(text: str, value: float) -> None:
    """``1e-3`` (no dot) is a float, as in YAML 1.2, not the string PyYAML's 1.1 rules give."""
    loaded = load_yaml_text(f"v: {text}")["v"]
    assert isinstance(loaded, float) and loaded == value
    assert load_yaml_value(text, "--set") == value


@pytest.mark.parametrize("text", ["e3", "1e", "1.2.3", "1.0.0", "1e3e", "._", "1e-", "123abc"])
def test_things_that_only_look_like_floats_stay_text(text: str) -> None:
    assert load_yaml_text(f"v: {text}")["v"] == text
    assert load_yaml_value(text, "--set") == text


def test_other_scalars_keep_their_yaml_types() -> None:
    data = load_yaml_text("v: [0x10, 0o17, 7, -3, +4, .inf, -.inf, true, null, '1e-3']")
    assert data["v"] == [16, 15, 7, -3, 4, float("inf"), float("-inf"), True, None, "1e-3"]
    assert all(type(v) is int for v in data["v"][:5])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1:30", "1:30"),  # YAML 1.1: 90 (base 60)
        ("1:30.5", "1:30.5"),
        ("010", 10),  # YAML 1.1: octal 8
        ("[07, 08, 09]", [7, 8, 9]),  # YAML 1.1: [7, '08', '09']
        ("1_000", "1_000"),
        ("1_000.5", "1_000.5"),
        ("0b101", "0b101"),
        ("0o8", "0o8"),
        ("2024-06-01", "2024-06-01"),  # YAML 1.1: datetime.date(2024, 6, 1)
        ("2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
    ],
)
def test_yaml_1_1_only_numbers_and_dates_are_yaml_1_2(text: str, value: Any) -> None:
    """The README promises YAML 1.2 numbers: ``timeout: 1:30`` was read as 90 seconds."""
    loaded = load_yaml_text(f"v: {text}")["v"]
    assert loaded == value and type(loaded) is type(value)
    assert load_yaml_value(text, "--set") == value


def test_a_sexagesimal_timeout_and_a_date_name_are_read_as_written(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(
        """\
name: 2024-06-01
objective: {metric: best_score, direction: maximize}
budget: {n_trials: 010, timeout: 1:30}
trainer: {name: analytic, params: {epochs: 2}}
space:
  x: {type: float, low: -2.0, high: 2.0}
"""
    )
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: budget.timeout: expected a duration such as 90, 45s, 30m, 2h; got '1:30'"
    ]
    path.write_text(path.read_text().replace("timeout: 1:30", "timeout: 90"))
    cfg = load_study_config(path)
    assert cfg.name == "2024-06-01" and cfg.budget.n_trials == 10


def test_dumped_text_that_yaml_1_1_reads_otherwise_stays_text_for_both() -> None:
    """``hpo export`` output read by plain PyYAML (YAML 1.1) as well as by this loader."""
    from hpo.yaml_loader import dump_yaml

    data = {"a": "010", "b": "2024-06-01", "c": "1:30", "d": "0x1F", "e": 10, "f": 1e-5}
    text = dump_yaml(data)
    assert load_yaml_text(text) == data and yaml.safe_load(text) == data


def test_exponent_choices_and_set_values_are_numbers(write_study: Callable[..., Path]) -> None:
    path = write_study(
        """\
name: lrs
objective: {metric: best_score, direction: maximize}
budget: {n_trials: 2}
trainer: {name: analytic, params: {epochs: 2}}
space:
  x: {type: float, low: -2.0, high: 2.0}
  margin: {type: categorical, choices: [1e-4, 3e-4, 1e-3]}
"""
    )
    cfg = load_study_config(path, ["space.x.low=-1e0", "trainer.params.seed_noise=1e-3"])
    margin, x = cfg.space["margin"], cfg.space["x"]
    assert isinstance(margin, CategoricalParam) and margin.choices == [0.0001, 0.0003, 0.001]
    assert isinstance(x, FloatParam) and x.low == -1.0
    assert cfg.trainer.params["seed_noise"] == 0.001
    assert parse_override("trainer.params.lr=1e-3") == (["trainer", "params", "lr"], 0.001)
    shown = CliRunner().invoke(app, ["validate", str(path)])
    assert shown.exit_code == 0, shown.stderr
    assert "margin: one of 0.0001, 0.0003, 0.001" in shown.stdout


def test_dumped_text_that_looks_like_a_number_reads_back_as_text() -> None:
    # `hpo best` wrote the choice "1e-3" unquoted, and `hpo train` read it back as 0.001
    from hpo.yaml_loader import dump_yaml

    data = {"lr": "1e-3", "wd": 1e-3, "name": "run 1e5", "n": 3}
    assert load_yaml_text(dump_yaml(data)) == data
