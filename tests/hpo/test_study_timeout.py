"""``budget.timeout`` under a supervisor: one deadline for every worker and restart."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

from hpo import load_study_config
from hpo.runner import open_study
from hpo.workers.gpus import plan_workers
from hpo.workers.supervisor import Supervisor
from hpo.workers.worker import run_worker
from hpo.workers.worker_main import DEADLINE_ENV
from tests.conftest import analytic_study
from tests.hpo.test_workers import load, sqlite_url

TIMEOUT_S = 10


def deadline_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Reports the deadline its worker was given; the first trial kills its worker."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: the slot is restarted after 1 s
    time.sleep(0.3)
    return {"best_score": float(params["x"]), "deadline": float(os.environ.get(DEADLINE_ENV, -1))}


def _study(tmp_path: Path) -> Path:
    data = analytic_study(
        name="deadline",
        budget={"n_trials": 10_000, "timeout": TIMEOUT_S},
        pruner={"name": "none"},
        startup="random",
        trainer={
            "name": "tests.hpo.test_study_timeout:deadline_trainer",
            "params": {"marker": str(tmp_path / "killed")},
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    path = tmp_path / "deadline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_every_worker_and_restart_stops_at_the_supervisors_deadline(tmp_path: Path) -> None:
    """Each worker counted ``budget.timeout`` from its own start (after its imports), and a
    restart got what was left when its predecessor died, spawned after the backoff: the
    study ran on past its timeout."""
    path = _study(tmp_path)
    cfg = load_study_config(path)
    supervisor = Supervisor(
        cfg, path, plan_workers("none", n_workers=2), console=Console(file=io.StringIO())
    )
    result = supervisor.run()
    deadline = supervisor._deadline_at
    assert deadline is not None
    trials = load("deadline", sqlite_url(path)).get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done and result.restarts == 1
    assert [t.user_attrs["deadline"] for t in done] == pytest.approx([deadline] * len(done))
    # the restart (after its 1 s backoff and start-up) runs trials only if time is left:
    # on a loaded machine it may find the deadline passed, and it is then not started
    latest = max(t.datetime_start.timestamp() for t in trials if t.datetime_start is not None)
    assert latest <= deadline + 0.5, f"a trial started {latest - deadline:.1f} s past it"


def test_a_worker_started_past_the_deadline_runs_nothing(tmp_path: Path) -> None:
    path = _study(tmp_path)
    (tmp_path / "killed").touch()
    cfg = load_study_config(path)
    open_study(cfg)  # made by the supervisor
    summary = run_worker(cfg, deadline_at=time.time() - 1)
    assert summary.trials_run == 0
