"""What the ``hpo`` commands echo of their arguments: ``--set`` texts, ``-o`` paths, study
names, trainer results; each problem one line naming the option, no password, no traceback."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hpo import load_study_config, run_study
from hpo.cli import app
from hpo.errors import ConfigError
from hpo.export import export_best
from hpo.report import write_report
from tests.conftest import analytic_study

if TYPE_CHECKING:
    from typer.testing import Result

SECRET = "Zq8" + "k" * 45
"""A password long enough that a 77-character cut of a ``--set`` falls before its ``@``."""


def _hpo(*args: str) -> Result:
    """The real ``hpo`` command, invoked in-process (saves an interpreter start per call)."""
    return CliRunner().invoke(app, list(args))


def _one_error(result: Result) -> str:
    """The single error line of a refused command (exit code 2, no traceback)."""
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def ran_study(write_study: Callable[..., Path]) -> Path:
    """A study file whose study has one completed trial (fast analytic trainer)."""
    path = write_study(
        analytic_study(
            budget={"n_trials": 1},
            trainer={"name": "analytic", "params": {"epochs": 2}},
            artifacts={"enabled": False},
        )
    )
    run_study(load_study_config(path))
    return path


@pytest.mark.parametrize(
    ("command", "file_text", "override", "problem"),
    [
        (
            "run",
            "- a: 1\n",
            f"storage=postgresql+psycopg://hpo_user:{SECRET}@db.internal/hpo",
            "the study file is not a mapping",
        ),
        (
            "run",
            "- a: 1\n",
            f"name.x=postgresql+psycopg://u:{SECRET}@db/hpo",
            "the study file is not a mapping",
        ),
        (
            "validate",
            None,
            f"name.x=postgresql+psycopg://u:{SECRET}@db/hpo",
            "name is a str, not a mapping",
        ),
        (
            "validate",
            None,
            f"postgresql+psycopg://hpo_user:{SECRET}@db.internal/hpo",
            "expected KEY=VALUE",
        ),
        (  # the schema's own "(got ...)" cut at 60 characters before masking
            "validate",
            None,
            f"budget.n_trials=postgresql+psycopg://hpo_user:{SECRET}@db.internal/hpo",
            "budget.n_trials",
        ),
        (
            "validate",
            None,
            f"budget.timeout=postgresql+psycopg://hpo_user:{SECRET}@db.internal/hpo",
            "expected a duration",
        ),
    ],
)
def test_a_long_set_never_shows_a_storage_password(
    write_study: Callable[..., Path],
    command: str,
    file_text: str | None,
    override: str,
    problem: str,
) -> None:
    # the 77-character cut came before masking: cut before the "@", the password showed
    path = write_study(file_text if file_text is not None else analytic_study())
    line = _one_error(_hpo(command, str(path), "--set", override))
    assert problem in line and "***" in line, line
    assert "Zq8" not in line, line


def numpy_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, Any]:
    """A trainer returning what NumPy code returns: scalars and arrays of NumPy types."""
    return {
        "score": np.float64(-0.25),
        "epochs": np.int64(3),
        "converged": np.bool_(True),
        "curve": np.array([0.5, 0.75]),
        "shape": (2, 3),
    }


def test_train_prints_a_result_of_numpy_scalars(tmp_path: Path) -> None:
    # hpo run took this trainer; hpo train lost the finished run to a RepresenterError
    config = tmp_path / "np.yaml"
    config.write_text(f'trainer: "{__name__}:numpy_trainer"\nparams: {{x: 0.5}}\n')
    result = _hpo("train", str(config))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert yaml.safe_load(result.stdout) == {
        "result": {
            "score": -0.25,
            "epochs": 3,
            "converged": True,
            "curve": [0.5, 0.75],
            "shape": [2, 3],
        }
    }


@pytest.mark.parametrize("command", ["export", "report"])
def test_an_output_naming_a_folder_is_refused_in_one_line(
    ran_study: Path, tmp_path: Path, command: str
) -> None:
    # typer's Path dropped the "/": "-o newdir/" wrote a file named newdir
    example = "best.yaml" if command == "export" else "report.html"
    existing = tmp_path / "existing"
    existing.mkdir()
    before = sorted(tmp_path.rglob("*"))
    cases = {
        f"{tmp_path}/newdir/": f"{tmp_path}/newdir/ names a folder; give a file name, "
        f"e.g. {tmp_path}/newdir/{example}",
        f"{tmp_path}/newdir/.": f"{tmp_path}/newdir/. names a folder; give a file name, "
        f"e.g. {tmp_path}/newdir/{example}",
        str(existing): f"{existing} is a folder; give a file name in it, e.g. {existing}/{example}",
        f"{existing}/": f"{existing} is a folder; give a file name in it, "
        f"e.g. {existing}/{example}",
    }
    for output, message in cases.items():
        line = _one_error(_hpo(command, str(ran_study), "-o", output))
        assert line == f"error: -o/--output: {message}", output
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"


def test_export_best_and_write_report_refuse_a_folder_name_too(
    ran_study: Path, tmp_path: Path
) -> None:
    cfg = load_study_config(ran_study)
    with pytest.raises(ConfigError, match="newdir/ names a folder"):
        export_best(cfg, f"{tmp_path}/newdir/")
    with pytest.raises(ConfigError, match="newdir/ names a folder"):
        write_report(cfg, f"{tmp_path}/newdir/")
    assert not (tmp_path / "newdir").exists()


def test_export_prints_a_retrain_command_that_runs_as_shown(
    ran_study: Path, tmp_path: Path
) -> None:
    out = tmp_path / "my best's.yaml"
    exported = _hpo("export", str(ran_study), "-o", str(out))
    assert exported.exit_code == 0, exported.stderr
    command = exported.stdout.split("retrain with: ", 1)[1].strip()
    words = shlex.split(command)
    assert words == ["hpo", "train", str(out)]
    trained = _hpo(*words[1:])
    assert trained.exit_code == 0, trained.stderr


@pytest.fixture
def exported(ran_study: Path, tmp_path: Path) -> Path:
    """``ran_study``'s best trial as a trainer config (``hpo export``)."""
    best = tmp_path / "best.yaml"
    assert _hpo("export", str(ran_study), "-o", str(best)).exit_code == 0
    return best


def test_train_evaluate_test_names_the_option(exported: Path) -> None:
    # the analytic trainer has no test split: the flag, not a params key, is at fault
    line = _one_error(_hpo("train", str(exported), "--evaluate-test"))
    assert line == "error: --evaluate-test: trainer 'analytic' has no test split"


def test_train_set_example_is_one_train_takes(ran_study: Path, exported: Path) -> None:
    # hpo train has no budget: its example must be one it takes, and it does take it
    line = _one_error(_hpo("train", str(exported), "--set", "bogus"))
    assert line == "error: --set 'bogus': expected KEY=VALUE, e.g. params.epochs=3"
    taken = _hpo("train", str(exported), "--set", "params.epochs=3")
    assert taken.exit_code == 0, taken.stderr
    # a study file keeps its own example
    line = _one_error(_hpo("validate", str(ran_study), "--set", "bogus"))
    assert line == "error: --set 'bogus': expected KEY=VALUE, e.g. budget.n_trials=3"


NAME = "\x1b[31mred\n2nd line"


def test_a_study_name_with_line_breaks_or_terminal_escapes_is_refused(
    write_study: Callable[..., Path],
) -> None:
    """Before, ``validate``, ``status`` and ``compare`` printed it raw: a recoloured
    terminal, a summary split over lines."""
    path = write_study(analytic_study(name=NAME))
    validated = _hpo("validate", str(path))
    assert validated.exit_code == 2
    assert _one_error(validated).startswith("error: name: must be printable text on one line")
    by_set = _hpo("validate", str(write_study(analytic_study())), "--set", "name=a\tb\x1b[2J")
    assert by_set.exit_code == 2
    assert "\x1b" not in by_set.stderr
