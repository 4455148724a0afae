"""The standalone trainer's ``--config`` and ``--set`` read YAML 1.2 numbers, as ``hpo`` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.yaml_loader import load_yaml_text, load_yaml_value
from trainers.cli_input import parse_set_value, read_config
from trainers.contrastive import main

# text, its YAML 1.2 value (PyYAML's YAML 1.1 reading in the comment)
YAML_1_2_SCALARS: list[tuple[str, Any]] = [
    ("010", 10),  # 8 (octal)
    ("[07, 08, 09]", [7, 8, 9]),  # [7, '08', '09']
    ("0o17", 15),  # '0o17'
    ("0x1F", 31),
    ("1e-3", 0.001),  # '1e-3'
    ("-2.5e+3", -2500.0),
    (".inf", float("inf")),
    ("1:30", "1:30"),  # 90 (base 60)
    ("1_000", "1_000"),  # 1000
    ("2024-06-01", "2024-06-01"),  # datetime.date(2024, 6, 1)
    ("yes", True),  # booleans stay YAML 1.1's, as in hpo
    ("off", False),
    ("null", None),
]


@pytest.mark.parametrize(("text", "value"), YAML_1_2_SCALARS, ids=[t for t, _ in YAML_1_2_SCALARS])
def test_set_values_are_yaml_1_2(text: str, value: Any) -> None:
    loaded = parse_set_value(text)
    assert loaded == value and type(loaded) is type(value)


@pytest.mark.parametrize(("text", "value"), YAML_1_2_SCALARS, ids=[t for t, _ in YAML_1_2_SCALARS])
def test_config_values_are_yaml_1_2(tmp_path: Path, text: str, value: Any) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"seed: {text}\nparams_nested: {{v: {text}}}\n")
    loaded = read_config(str(config))
    assert loaded == {"seed": value, "params_nested": {"v": value}}
    assert loaded == load_yaml_text(config.read_text())  # a study file reads it alike
    assert type(loaded["seed"]) is type(value)
    config.write_text(f"params:\n  seed: {text}\n")
    assert read_config(str(config)) == {"seed": value}


@pytest.mark.parametrize(("text", "value"), YAML_1_2_SCALARS, ids=[t for t, _ in YAML_1_2_SCALARS])
def test_the_trainer_and_hpo_read_the_same_text_alike(text: str, value: Any) -> None:
    assert load_yaml_value(text, "--set") == parse_set_value(text) == value
    assert load_yaml_text(f"v: {text}")["v"] == value


def test_plain_pyyaml_reads_these_otherwise() -> None:
    """The cases above test something: YAML 1.1 (``yaml.safe_load``) gives other values."""
    assert yaml.safe_load("[010, 1:30, 1e-3]") == [8, 90, "1e-3"]
    assert parse_set_value("[010, 1:30, 1e-3]") == [10, "1:30", 0.001]


def test_the_config_file_seed_010_trains_with_seed_10(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through ``main``: ``seed: 010`` and ``--set`` reach ``train`` as YAML 1.2."""
    import trainers.contrastive as contrastive

    seen: dict[str, Any] = {}

    def fake_train(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
        seen.update(params)
        return {"best_val_f1": 1.0}

    monkeypatch.setattr(contrastive, "train", fake_train)
    config = tmp_path / "run.yaml"
    config.write_text("params:\n  seed: 010\n  lr: 1e-3\n")
    assert main(["--config", str(config), "--set", "epochs=010", "--set", "save_dir=1:30"]) == 0
    assert seen["seed"] == 10 and seen["epochs"] == 10
    assert seen["lr"] == 0.001 and seen["save_dir"] == "1:30"
