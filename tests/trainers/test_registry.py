"""``resolve_trainer`` turns every way a user's trainer module can fail into one line.

A module that exits or parses the command line while being imported, or a callable that
cannot take ``(params, reporter)``, is refused by ``hpo validate`` with exit code 2 rather
than ending it with the module's own exit code or failing every trial with a TypeError.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from tests.conftest import analytic_study
from trainers.registry import TrainerNotFound, resolve_trainer

runner = CliRunner()

MODULES = {
    "exits_at_import": "import sys\nsys.exit(0)\ndef train(params, reporter=None):\n    return {}\n",
    "parses_argv_at_import": (
        "import argparse\np = argparse.ArgumentParser()\np.add_argument('--lr', type=float)\n"
        "args = p.parse_args()\ndef train(params, reporter=None):\n    return {}\n"
    ),
    "no_arguments": "def main():\n    return {}\n",
    "one_argument": "def train(params):\n    return {}\n",
    "keyword_reporter": "def train(params, *, reporter=None):\n    return {}\n",
    "flexible": "def train(*args, **kwargs):\n    return {}\n",
}


@pytest.fixture()
def modules(tmp_path: Path) -> Iterator[Path]:
    for name, text in MODULES.items():
        (tmp_path / f"{name}.py").write_text(text, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in MODULES:
        sys.modules.pop(name, None)


def _validate(folder: Path, trainer: str) -> tuple[int, list[str], str]:
    study = analytic_study(trainer={"name": trainer, "params": {}}, space={})
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines, result.output


def test_a_module_that_exits_at_import_is_one_line(modules: Path) -> None:
    """It made ``hpo validate`` exit 0 and print nothing."""
    code, lines, output = _validate(modules, "exits_at_import:train")
    assert code == 2, output
    assert lines == [
        "error: trainer.name: importing module 'exits_at_import' called sys.exit(0); "
        "a trainer module must not exit when imported"
    ]


def test_a_module_that_parses_argv_at_import_is_one_line(
    modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It printed argparse's ``usage: ... unrecognized arguments: validate study.yaml``."""
    # the module parses sys.argv: as `hpo validate` gives it, not as pytest was started
    monkeypatch.setattr(sys, "argv", ["hpo", "validate", str(modules / "study.yaml")])
    code, lines, output = _validate(modules, "parses_argv_at_import:train")
    assert code == 2, output
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        "error: trainer.name: importing module 'parses_argv_at_import' parsed the command line"
    )
    assert "unrecognized arguments" in lines[0] and "__main__" in lines[0]
    assert "usage:" not in output


@pytest.mark.parametrize("target", ["no_arguments:main", "one_argument:train", "json:dumps"])
def test_a_callable_that_cannot_take_params_and_reporter_is_refused(
    modules: Path, target: str
) -> None:
    """It validated, then every trial failed with a TypeError."""
    code, lines, output = _validate(modules, target)
    assert code == 2, output
    assert lines == [
        f"error: trainer.name: {target} must accept (params, reporter): every trial calls "
        "it with the parameters dict and a reporter"
    ]


def test_the_reporter_must_be_positional(modules: Path) -> None:
    """Trials pass the reporter by position, so a keyword-only one would fail each."""
    with pytest.raises(TrainerNotFound, match=r"must accept \(params, reporter\)"):
        resolve_trainer("keyword_reporter:train")


def test_a_catch_all_signature_resolves(modules: Path) -> None:
    assert resolve_trainer("flexible:train").fn({}, None) == {}


def test_a_callable_without_a_signature_is_taken() -> None:
    """Some C callables have no signature to inspect: they are given the benefit of doubt."""
    from trainers.registry import _takes_params_and_reporter

    assert _takes_params_and_reporter(object()) is True
