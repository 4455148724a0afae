"""Output that cannot be written (a closed pipe, a full disk) never stops a study.

Real ``hpo`` processes writing into real pipes whose reading end is already closed (what
``| head`` leaves once it has its lines) and into /dev/full; the displays' own rules on
real trials of a real SQLite study.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hpo import validate_study_data
from hpo.console import BestEffortConsole
from hpo.progress import ProgressDisplay
from hpo.workers.budget import RETRIED_ATTR, SURPLUS_ATTR
from hpo.workers.display import SupervisorDisplay, WorkerRow
from tests.conftest import analytic_study
from tests.hpo.test_workers import HPO, assert_finished_exactly, hpo_env, load, worker_study

NEEDS_DEV_FULL = pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="needs Linux's /dev/full"
)
CANNOT_WRITE = "error: cannot write the output: Broken pipe"


@contextmanager
def closed_pipe() -> Iterator[int]:
    """The writing end of a pipe nobody reads any more: every write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.close(write_end)


def run_hpo(
    *args: str, stdout: int | None = None, stderr: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``hpo ARGS`` with the given descriptors; the other stream is captured."""
    return subprocess.run(
        [*HPO, *args],
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=120,
        env=hpo_env(),
    )


# -- bug: a broken progress pipe or a full disk ended the study ----------------------------


def test_a_closed_progress_pipe_does_not_stop_the_study(tmp_path: Path) -> None:
    """``hpo run ... 2>&1 | head -2``: rich's SystemExit(1) ended the run after a trial."""
    path = worker_study(tmp_path, name="pipe", n_trials=8, sleep=0.0)
    with closed_pipe() as broken:
        result = run_hpo("run", str(path), stdout=broken, stderr=broken)
    assert result.returncode == 1
    assert_finished_exactly(load("pipe", f"sqlite:///{tmp_path / 'hpo.db'}"), 8)


def test_lost_progress_keeps_the_summary_and_exits_1(tmp_path: Path) -> None:
    """Only stderr is gone: the study runs, its summary still reaches stdout, exit 1."""
    path = worker_study(tmp_path, name="halfpipe", n_trials=6, sleep=0.0)
    with closed_pipe() as broken:
        result = run_hpo("run", str(path), stderr=broken)
    assert result.returncode == 1
    assert "complete / pruned / failed" in result.stdout
    assert_finished_exactly(load("halfpipe", f"sqlite:///{tmp_path / 'hpo.db'}"), 6)


def test_a_closed_stdout_is_reported_after_the_study(tmp_path: Path) -> None:
    path = worker_study(tmp_path, name="outpipe", n_trials=6, sleep=0.0)
    with closed_pipe() as broken:
        result = run_hpo("run", str(path), stdout=broken)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("trial ") >= 6, result.stderr  # the progress went on
    assert result.stderr.strip().splitlines()[-1] == CANNOT_WRITE
    assert_finished_exactly(load("outpipe", f"sqlite:///{tmp_path / 'hpo.db'}"), 6)


def test_a_closed_pipe_does_not_make_the_supervisor_kill_its_workers(tmp_path: Path) -> None:
    """With workers, the SystemExit left a trial RUNNING and the budget unfinished."""
    path = worker_study(tmp_path, name="suppipe", n_trials=8, sleep=0.0)
    with closed_pipe() as broken:
        result = run_hpo(
            "run", str(path), "--workers", "2", "--gpus", "none", stdout=broken, stderr=broken
        )
    assert result.returncode == 1
    assert_finished_exactly(load("suppipe", f"sqlite:///{tmp_path / 'hpo.db'}"), 8)


@NEEDS_DEV_FULL
@pytest.mark.parametrize("workers", [[], ["--workers", "2", "--gpus", "none"]])
def test_a_full_disk_under_the_progress_does_not_stop_the_study(
    tmp_path: Path, workers: list[str]
) -> None:
    path = worker_study(tmp_path, name="full", n_trials=6, sleep=0.0)
    with open("/dev/full", "w") as full:
        result = run_hpo("run", str(path), *workers, stderr=full.fileno())
    assert result.returncode == 1
    assert "complete / pruned / failed" in result.stdout
    assert_finished_exactly(load("full", f"sqlite:///{tmp_path / 'hpo.db'}"), 6)


@NEEDS_DEV_FULL
def test_a_display_on_a_full_disk_turns_itself_off() -> None:
    """The displays' own guard, for a plain rich console a caller passed in."""
    cfg = validate_study_data(analytic_study("plain"))
    # write-through: a failed write keeps nothing back for close() to fail on again
    with io.TextIOWrapper(io.FileIO("/dev/full", "w"), write_through=True) as full:
        console = Console(file=full)
        display = SupervisorDisplay(cfg, console)
        display.event("worker 0 (cpu) started")  # raised OSError out of the supervisor
        assert console.quiet
        display.event("worker 1 (cpu) started")
        done = create_trial(state=TrialState.COMPLETE, value=1.0)
        display.update([done], [WorkerRow(0, "cpu", 1, "running", 0)])


def test_a_display_survives_a_plain_consoles_broken_pipe_exit(tmp_path: Path) -> None:
    """A plain rich console (``Supervisor``'s default) raises SystemExit(1) on a broken
    pipe; the display takes it as the lost output it is. In a process of its own: rich
    also points fd 1 at /dev/null."""
    script = tmp_path / "plain.py"
    script.write_text(
        "import os, sys\n"
        "from rich.console import Console\n"
        "from hpo import validate_study_data\n"
        "from hpo.workers.display import SupervisorDisplay\n"
        "from tests.conftest import analytic_study\n"
        "read_end, write_end = os.pipe()\n"
        "os.close(read_end)\n"
        "console = Console(file=os.fdopen(write_end, 'w', buffering=1))\n"
        "display = SupervisorDisplay(validate_study_data(analytic_study('p')), console)\n"
        "display.event('worker 0 (cpu) started')\n"
        "display.event('worker 1 (cpu) started')\n"
        "sys.stderr.write(f'still here, quiet={console.quiet}\\n')\n"
        "sys.stderr.flush()\n"
        "os._exit(0)  # the pipe's file still holds the line it could not write\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [HPO[0], str(script)], capture_output=True, text=True, timeout=120, env=hpo_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "still here, quiet=True\n"


# -- bug: a closed stdout ended commands silently ------------------------------------------


@pytest.mark.parametrize("command", ["validate", "status"])
def test_a_closed_stdout_says_so(tmp_path: Path, command: str) -> None:
    """``hpo validate a.yaml | head -1`` exited 1 without a word, unlike ``hpo best``."""
    path = worker_study(tmp_path, name="said", n_trials=2, sleep=0.0)
    if command == "status":
        assert run_hpo("run", str(path)).returncode == 0
    with closed_pipe() as broken:
        result = run_hpo(command, str(path), stdout=broken)
    assert result.returncode == 1
    assert result.stderr.strip() == CANNOT_WRITE


@pytest.mark.parametrize("command", ["validate", "best"])
def test_a_closed_buffered_stdout_exits_1_not_120(tmp_path: Path, command: str) -> None:
    """Block-buffered stdout (no PYTHONUNBUFFERED): what failed once must not fail again
    at exit, where Python prints ``Exception ignored ...`` and exits 120."""
    path = worker_study(tmp_path, name="buffered", n_trials=2, sleep=0.0)
    if command == "best":
        assert run_hpo("run", str(path)).returncode == 0
    with closed_pipe() as broken:
        result = subprocess.run(
            [*HPO, command, str(path)],
            stdout=broken,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            env=hpo_env(PYTHONUNBUFFERED=""),
        )
    assert result.returncode == 1
    assert result.stderr.strip() == CANNOT_WRITE


# -- bug: surplus starts counted as retried, and shown by ``hpo worker`` -------------------


def _study_with_a_retry_and_a_surplus(tmp_path: Path) -> optuna.Study:
    study = optuna.create_study(
        study_name="mixed", storage=f"sqlite:///{tmp_path / 'mixed.db'}", direction="maximize"
    )
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5))
    study.add_trial(create_trial(state=TrialState.FAIL, system_attrs={RETRIED_ATTR: True}))
    study.add_trial(
        create_trial(
            state=TrialState.COMPLETE,
            value=0.7,
            system_attrs={"retry_history": [1], "failed_trial": 1},
        )
    )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            system_attrs={SURPLUS_ATTR: True},
            user_attrs={"fail_reason": "surplus"},
        )
    )
    return study


def test_the_supervisor_headline_tells_retried_from_surplus(tmp_path: Path) -> None:
    study = _study_with_a_retry_and_a_surplus(tmp_path)
    cfg = validate_study_data(analytic_study("mixed", budget={"n_trials": 2}))
    display = SupervisorDisplay(cfg, Console(file=io.StringIO()))
    display.trials = study.get_trials(deepcopy=False)
    assert display.headline() == (
        "2/2 done: 2 complete, 0 pruned, 0 failed, 0 running, 0 queued, 1 retried, 1 surplus"
    )


def test_a_workers_progress_neither_shows_nor_counts_a_surplus_start(tmp_path: Path) -> None:
    study = _study_with_a_retry_and_a_surplus(tmp_path)
    cfg = validate_study_data(analytic_study("mixed", budget={"n_trials": 2}))
    text = io.StringIO()
    display = ProgressDisplay(cfg, console=BestEffortConsole(file=text, width=200))
    trials = study.get_trials(deepcopy=False)
    display(study, trials[3])  # the surplus start: was "trial 3 fail (surplus) [2/2, ...]"
    assert text.getvalue() == ""
    assert display.done_here == 0
    display(study, trials[2])
    assert text.getvalue().startswith("trial 2 complete 0.7  [2/2, best 0.7 (#2)]")
    assert display.done_here == 1


def test_a_command_after_one_that_lost_its_output_writes_again(
    write_study: Callable[..., Path],
) -> None:
    """The consoles are the module's: in one process (a notebook, a test runner) every
    command after a broken pipe printed nothing and exited 1."""
    import errno as errno_module

    from typer.testing import CliRunner

    from hpo.cli import app
    from hpo.cli_common import out

    out.lost(BrokenPipeError(errno_module.EPIPE, "Broken pipe"))  # as the last command met
    result = CliRunner().invoke(app, ["validate", str(write_study(analytic_study()))])
    assert result.exit_code == 0, result.stderr
    assert "valid" in result.stdout
