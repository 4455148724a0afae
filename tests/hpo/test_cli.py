"""The ``hpo`` command as users run it: real processes, exit codes, no tracebacks."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import analytic_study
from trainers.reporter import TrainingFailed

HPO = [sys.executable, "-m", "hpo.cli"]


def hpo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HPO, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_validate_prints_the_space(write_study: Callable[..., Path]) -> None:
    result = hpo("validate", str(write_study(analytic_study())))
    assert result.returncode == 0, result.stderr
    assert "analytic: valid" in result.stdout
    assert "margin: float in [0.1, 1.0]  (only when choice = 'c')" in result.stdout
    assert "start-up  balanced (auto): 4 queued trials covering every choice" in result.stdout
    assert "note" not in result.stdout


def test_validate_notes_repeats_trained_at_a_fixed_seed(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        trainer={"name": "analytic", "params": {"epochs": 8, "seed": 7}},
        space={"choice": {"type": "categorical", "choices": ["a", "b", "c"]}},
    )
    result = hpo("validate", str(write_study(data)))
    assert result.returncode == 0, result.stderr
    assert "repeats   reuse (auto: every trial trains at trainer.params.seed 7)" in result.stdout
    assert "  note  " not in result.stdout
    data["duplicates"] = "rerun"
    result = hpo("validate", str(write_study(data)))
    assert result.returncode == 0, result.stderr
    assert "note      trainer.params.seed is fixed (7) and duplicates is rerun" in result.stdout


def test_validate_names_what_tpe_ordinal_models_by_position(
    write_study: Callable[..., Path],
) -> None:
    data = analytic_study(
        sampler={"name": "tpe_ordinal", "seed": 0},
        space={
            "x": {"type": "categorical", "choices": [-1.0, 0.0, 1.0]},
            "y": {"type": "float", "low": -2.0, "high": 2.0},
            "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
        },
    )
    result = hpo("validate", str(write_study(data)))
    assert result.returncode == 0, result.stderr
    assert "sampler   tpe_ordinal {'seed': 0} (modelled by position: x)" in result.stdout


def test_bad_file_exits_2_with_one_line_per_problem(write_study: Callable[..., Path]) -> None:
    data = analytic_study(sampler={"name": "bayes"})
    data["space"]["x"] = {"type": "float", "low": 0.0, "high": 1.0, "log": True}
    path = write_study(data)
    result = hpo("run", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert (
        lines
        == [
            "error: space.x: low must be > 0 when log is true",
        ]
        or len(lines) == 2
    )
    assert not (path.parent / "hpo.db").exists(), "no study may be created for a bad file"


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = hpo("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml: file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_status_best_round_trip(write_study: Callable[..., Path], tmp_path: Path) -> None:
    path = write_study(analytic_study())
    result = hpo("run", str(path), "--set", "budget.n_trials=4", "--set", "trainer.params.epochs=3")
    assert result.returncode == 0, result.stderr
    assert "best trial" in result.stdout
    status = hpo("status", str(path))
    assert status.returncode == 0
    assert "complete" in status.stdout
    best_json = hpo("best", str(path), "--format", "json")
    data = json.loads(best_json.stdout)
    assert data["trainer"] == "analytic"
    assert data["params"]["epochs"] == 3  # the fixed params the study actually ran with
    assert set(data["params"]) >= {"x", "y", "choice", "seed"}
    best_yaml = hpo("best", str(path))
    config = tmp_path / "best.yaml"
    config.write_text(best_yaml.stdout)
    assert yaml.safe_load(best_yaml.stdout)["trial"] == data["trial"]
    retrain = hpo("train", str(config))
    assert retrain.returncode == 0, retrain.stderr
    assert yaml.safe_load(retrain.stdout)["result"]["best_score"] == data["values"]["best_score"]


def test_status_of_a_study_that_never_ran(write_study: Callable[..., Path]) -> None:
    result = hpo("status", str(write_study(analytic_study(name="never"))))
    assert result.returncode == 2
    assert "study 'never' not found" in result.stderr


def test_read_only_commands_on_a_missing_storage_file_create_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Opening the storage would create the SQLite or journal file: the study was never run."""
    sqlite = write_study(analytic_study(name="never"))
    journal = write_study(
        {**analytic_study(name="never"), "storage": "journal:///never.log"}, "journal.yaml"
    )
    before = sorted(tmp_path.iterdir())
    for args in (("status", sqlite), ("best", sqlite), ("status", journal), ("best", journal)):
        result = hpo(args[0], str(args[1]), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: study 'never' not found"), lines
        assert lines[0].endswith("; run it first")
    assert sorted(tmp_path.iterdir()) == before, "no hpo.db, never.log or WAL files"


def test_read_only_commands_leave_another_programs_sqlite_file_alone(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # Optuna's 13 tables were added and the file switched to WAL before "not found"
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "hpo.db")) as db:
        db.execute("CREATE TABLE foo (x)")
        db.commit()
    before = (tmp_path / "hpo.db").read_bytes()
    study = write_study(analytic_study(name="never"))
    for command in (["status"], ["best"], ["report"], ["compare", str(study)]):
        result = hpo(command[0], str(study), *command[1:], cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "study 'never' not found" in result.stderr
    assert (tmp_path / "hpo.db").read_bytes() == before
    assert not (tmp_path / "hpo.db-wal").exists()


def test_reading_a_study_needs_neither_the_trainer_nor_its_data(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # a laptop looking at a cluster's study has neither the team's package nor the data
    path = write_study(analytic_study(budget={"n_trials": 2}))
    assert hpo("run", str(path)).returncode == 0
    elsewhere = ["--set", "trainer.name=teampkg.train:run"]
    for command in (["status"], ["best"], ["report", "-o", str(tmp_path / "r.html")]):
        result = hpo(command[0], str(path), *command[1:], *elsewhere)
        assert result.returncode == 0, (command, result.stderr)
    result = hpo("validate", str(path), *elsewhere)  # a run still needs it
    assert result.returncode == 2 and "trainer.name: " in result.stderr


@pytest.mark.parametrize("command", ["run", "worker"])
def test_run_exits_1_when_no_trial_completes(
    write_study: Callable[..., Path], command: str
) -> None:
    """A batch job (Slurm, Kubernetes) whose every trial failed must not report success."""
    data = analytic_study(budget={"n_trials": 2})
    data["trainer"]["params"]["fail"] = "raise"
    result = hpo(command, str(write_study(data)))
    assert result.returncode == 1
    assert "no trial completed" in result.stderr


def test_train_says_what_the_trainer_raised_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer: analytic\nparams: {x: 1, epochs: 3, fail: raise}\n")
    result = hpo("train", str(config))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the trainer raised RuntimeError: injected failure at epoch 2 "
        "(-v shows the traceback)"
    )
    assert "Traceback" not in result.stderr and "│" not in result.stderr
    verbose = hpo("train", str(config), "-v")
    assert verbose.returncode == 1 and "injected failure" in verbose.stderr


def exiting_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """A trainer whose argument parsing calls sys.exit."""
    sys.exit(3)


def test_train_says_when_the_trainer_exits(tmp_path: Path) -> None:
    # exit 3 and not a word: the trainer's own status leaked out as hpo's
    config = tmp_path / "run.yaml"
    config.write_text(f"trainer: {__name__}:exiting_trainer\nparams: {{}}\n")
    result = hpo("train", str(config))
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the trainer called sys.exit(3) (-v shows the traceback)"
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_output_that_cannot_be_written_is_one_line(write_study: Callable[..., Path]) -> None:
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*HPO, "validate", str(write_study(analytic_study()))],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: cannot write the output: No space left on device"


def test_train_rejects_bad_params(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer: analytic\nparams: {x: 1, epochz: 3}\n")
    result = hpo("train", str(config))
    assert result.returncode == 2
    assert "params.epochz: unknown parameter" in result.stderr


def test_train_points_a_study_file_and_a_bare_set_to_what_works(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    study = write_study(analytic_study())
    result = hpo("train", str(study))
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: {study} is a study file; hpo train runs")
    config = tmp_path / "best.yaml"
    config.write_text("trainer: analytic\nparams: {x: 1}\n")
    result = hpo("train", str(config), "--set", "epochs=2")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: --set epochs: {config} holds trainer: and params:, so set params.epochs"
    )


def test_run_with_dashboard_beside_it(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 2}))
    result = hpo("run", str(path), "--dashboard", "--dashboard-port", "0")
    assert result.returncode == 0, result.stderr
    assert "dashboard: http://127.0.0.1:" in result.stderr


def test_a_budget_used_up_by_failed_trials_says_so(write_study: Callable[..., Path]) -> None:
    data = analytic_study(budget={"n_trials": 2}, pruner={"name": "none"})
    data["trainer"]["params"].update({"fail": "raise"})
    path = write_study(data)
    first = hpo("run", str(path))
    assert first.returncode == 1 and "hint:" not in first.stderr
    again = hpo("run", str(path))  # the cause fixed, say, but the budget is spent
    assert again.returncode == 1
    assert "no trial completed" in again.stderr
    assert "earlier runs' 2 failed trials used up budget.n_trials" in " ".join(again.stderr.split())
    status = hpo("status", str(path))  # the hint sends the user here: it must say why
    assert status.returncode == 0, status.stderr
    assert "fail: exception" in status.stdout and "injected failure" in status.stdout


def bracket_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Fails with a reason in brackets for one choice; scores the other."""
    if params["act"] == "[gelu]":
        raise TrainingFailed("[b]bad", "gelu is not wanted here")
    return {"best_score": 1.0 - float(params["x"]) ** 2}


def test_user_text_in_brackets_is_printed_as_written(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Rich markup must not eat ``[...]`` in names, choices, params or fail reasons."""
    path = write_study(
        {
            "name": "ét ude/1 [x]",
            "objective": {"metric": "best_score", "direction": "maximize"},
            "pruner": {"name": "none"},
            "budget": {"n_trials": 4},
            "trainer": {"name": "tests.hpo.test_cli:bracket_trainer", "params": {"note": "[b]x"}},
            "space": {
                "x": {"type": "float", "low": -1.0, "high": 1.0},
                "act": {"type": "categorical", "choices": ["[gelu]", "[relu]"]},
            },
            "artifacts": {"enabled": False},
        }
    )
    root = str(Path(__file__).resolve().parents[2])  # the trainer lives in this test module
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": root}

    def run(*args: str) -> str:
        result = subprocess.run(
            [*HPO, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout + result.stderr

    shown = run("validate", str(path))
    assert "ét ude/1 [x]: valid" in shown
    assert "act: one of '[gelu]', '[relu]'" in shown
    assert "'note': '[b]x'" in shown
    ran = run("run", str(path))
    assert "(fail) ([b]bad)" not in ran and "fail ([b]bad)" in ran, ran
    assert "│ study                      │ ét ude/1 [x]" in ran, ran
    assert "│   act                      │ [relu]" in ran, ran
    status = run("status", str(path))
    assert "ét ude/1 [x]" in status and "'act': '[relu]'" in status, status
    assert "'[relu]'" in run("best", str(path))
    assert "report written to r[x].html" in run("report", str(path), "-o", "r[x].html")
    assert (tmp_path / "r[x].html").is_file()
    assert "best trial written to b[1].yaml" in run("export", str(path), "-o", "b[1].yaml")
    compared = run("compare", str(path), str(path))
    assert "ét ude/1 [x]" in compared, compared
