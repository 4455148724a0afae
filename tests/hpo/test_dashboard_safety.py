"""The dashboard's edges: files it must not create, downloads that are gone, foreign hosts.

Real SQLite and journal files, real runs of the analytic trainer, a real optuna-dashboard
server over HTTP.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner

from hpo import load_study_config, run_study
from hpo.artifacts import (
    CHECKPOINT_ATTR,
    artifacts_location,
    kept_checkpoints,
    removed_artifact_ids,
)
from hpo.cli import app
from hpo.config import StudyConfig
from hpo.dashboard import (
    ALLOWED_HOSTS_ENV,
    allowed_host_names,
    create_server,
    host_name,
    parse_allowed_hosts,
    serve_in_background,
)
from hpo.errors import HpoError, StorageError
from hpo.results import load_existing_study
from tests.conftest import analytic_study


def _request(
    port: int,
    path: str,
    host_header: str | None = None,
    method: str = "GET",
    body: Any = None,
) -> tuple[int, bytes, str]:
    """One request to 127.0.0.1:``port`` with the given ``Host`` header (default: the real
    one) and ``body`` sent as JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host_header is not None)
        if host_header is not None:
            conn.putheader("Host", host_header)
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def _api(port: int, path: str) -> Any:
    status, body, _ = _request(port, path)
    assert status == 200, body
    return json.loads(body)


def test_a_missing_journal_file_is_an_error_and_is_not_created(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """It was created (with artifacts/) and served as an empty storage."""
    path = write_study(analytic_study(storage="journal:///hpo.log", artifacts={"enabled": True}))
    with pytest.raises(StorageError) as info:
        create_server(load_study_config(path), port=0).stop()
    assert info.value.problems == [
        f"storage: {tmp_path / 'hpo.log'} does not exist yet; run the study first"
    ]
    assert not (tmp_path / "hpo.log").exists()
    assert not (tmp_path / "artifacts").exists()


def test_run_dashboard_refused_by_the_run_checks_leaves_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """The dashboard made hpo.db (and said something else) before the run's checks ran."""
    (tmp_path / "afile").write_text("")
    data = analytic_study(artifacts={"enabled": True, "dir": str(tmp_path / "afile" / "art")})
    path = write_study(data)
    plain = CliRunner().invoke(app, ["run", str(path)])
    beside = CliRunner().invoke(app, ["run", str(path), "--dashboard", "--dashboard-port", "0"])
    assert plain.exit_code == beside.exit_code == 2, (beside.stderr, beside.exception)
    assert "artifacts.dir: cannot create" in plain.stderr
    assert beside.stderr == plain.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "study.yaml"]


def test_a_dashboard_option_alone_serves_the_dashboard(write_study: Callable[..., Path]) -> None:
    """Not silently ignored: asking for a port or a host means asking for the dashboard."""
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    result = CliRunner().invoke(app, ["run", str(path), "--dashboard-port", "0"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "dashboard: http://127.0.0.1:" in result.stderr, result.stderr
    # the host alone: the default port 8080, which something else on this machine may hold
    result = CliRunner().invoke(app, ["run", str(path), "--dashboard-host", "127.0.0.1"])
    served = "dashboard: http://127.0.0.1:8080/dashboard" in result.stderr
    assert served or "dashboard: cannot listen on 127.0.0.1:8080" in result.stderr, result.stderr


@pytest.fixture
def pruned_checkpoints(write_study: Callable[..., Path]) -> tuple[StudyConfig, optuna.Study]:
    """A finished study whose keep_best_k=1 removed some checkpoints from the store."""
    data = analytic_study(
        budget={"n_trials": 6},
        sampler={"name": "random", "seed": 1},
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        artifacts={"keep_best_k": 1, "plots": False, "notes": False},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    study = load_existing_study(cfg)
    assert removed_artifact_ids(study), "the fixture needs a removed checkpoint"
    return cfg, study


def test_a_checkpoint_keep_best_k_removed_is_a_short_404(
    pruned_checkpoints: tuple[StudyConfig, optuna.Study], capfd: pytest.CaptureFixture[str]
) -> None:
    """It was a 500 with a traceback on the server's stderr; a kept one downloads as bytes."""
    cfg, study = pruned_checkpoints
    removed = removed_artifact_ids(study)
    (kept_number, kept_id), *_ = kept_checkpoints(study).items()
    gone = next(t for t in study.trials if t.user_attrs.get(CHECKPOINT_ATTR) in removed)
    with serve_in_background(cfg, port=0) as handle:
        url = f"/artifacts/{study._study_id}/{gone._trial_id}/{gone.user_attrs[CHECKPOINT_ATTR]}"
        status, body, ctype = _request(handle.port, url)
        kept = study.trials[kept_number]
        ok, data, kept_type = _request(
            handle.port, f"/artifacts/{study._study_id}/{kept._trial_id}/{kept_id}"
        )
    assert status == 404 and ctype.startswith("text/plain"), (status, body)
    assert b"removed by keep_best_k" in body and len(body) < 200
    assert "Traceback" not in capfd.readouterr().err
    assert ok == 200 and json.loads(data)["result"]["best_score"] == kept.values[0]
    assert kept_type == "application/octet-stream"


def _copy_database(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite file (its WAL included), as `sqlite3 .backup` makes."""
    with sqlite3.connect(src) as source, sqlite3.connect(dst) as target:
        source.backup(target)


def test_a_database_copied_without_its_artifacts_is_served_with_a_warning(
    write_study: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = analytic_study(
        budget={"n_trials": 2},
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        artifacts={"keep_best_k": 1, "notes": False},
    )
    run_study(load_study_config(write_study(data)))
    copy = tmp_path / "copy"
    copy.mkdir()
    _copy_database(tmp_path / "hpo.db", copy / "hpo.db")
    shutil.copy(tmp_path / "study.yaml", copy / "study.yaml")
    cfg = load_study_config(copy / "study.yaml")
    with caplog.at_level(logging.WARNING, logger="hpo.dashboard"):
        server = create_server(cfg, port=0).start()
    try:
        (summary,) = _api(server.port, "/api/studies")["study_summaries"]
        detail = _api(server.port, f"/api/studies/{summary['study_id']}?after=0")
    finally:
        server.stop()
    assert len(detail["trials"]) == 2
    assert not (copy / "artifacts").exists(), "no empty folder in place of the real one"
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "hpo.dashboard"]
    assert warning == (
        f"artifact folder {copy / 'artifacts'} is missing: "
        "trial pictures and checkpoints are unavailable until it is created"
    )


def test_host_names_from_headers_and_binds() -> None:
    assert host_name("LOCALHOST:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert allowed_host_names("127.0.0.1") == frozenset()
    assert allowed_host_names("gpu-box.lan") == frozenset({"gpu-box.lan"})
    assert allowed_host_names("0.0.0.0") is None and allowed_host_names("::") is None
    assert allowed_host_names("0.0.0.0", {"gpu-box.lan"}) == frozenset({"gpu-box.lan"})
    assert allowed_host_names("10.0.0.5", {"a.lan"}) == frozenset({"10.0.0.5", "a.lan"})


@pytest.fixture
def served_study(write_study: Callable[..., Path]) -> StudyConfig:
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    cfg = load_study_config(path)
    run_study(cfg)
    return cfg


def test_a_loopback_dashboard_refuses_foreign_host_headers(served_study: StudyConfig) -> None:
    """DNS rebinding: a page on evil.example rebound to 127.0.0.1 must not drive the API."""
    with serve_in_background(served_study, port=0) as handle:
        port = handle.port
        for header in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
            assert _request(port, "/api/studies", header)[0] == 200, header
        (summary,) = _api(port, "/api/studies")["study_summaries"]
        status, body, _ = _request(port, "/api/studies", f"evil.example:{port}")
        assert status == 403 and b"evil.example" in body and b"DNS rebinding" in body
        gone, _, _ = _request(
            port, f"/api/studies/{summary['study_id']}", f"evil.example:{port}", "DELETE"
        )
        assert gone == 403
        assert _api(port, "/api/studies")["study_summaries"] == [summary], "not deleted"


def test_a_dashboard_bound_to_every_interface_skips_the_host_check(
    served_study: StudyConfig,
) -> None:
    server = create_server(served_study, host="0.0.0.0", port=0, warn_exposure=False).start()
    try:
        assert _request(server.port, "/api/studies", "gpu-box.lan:8080")[0] == 200
    finally:
        server.stop()


def test_deleting_a_study_keep_best_k_thinned_deletes_it_with_its_artifacts(
    pruned_checkpoints: tuple[StudyConfig, optuna.Study], capfd: pytest.CaptureFixture[str]
) -> None:
    """The first checkpoint keep_best_k had removed stopped the deletion: a 500 with a
    traceback on the server's stderr, and the study stayed."""
    cfg, study = pruned_checkpoints
    folder = Path(artifacts_location(cfg))
    assert any(folder.iterdir()), "the kept checkpoint is there"
    server = create_server(cfg, port=0).start()  # as `hpo dashboard` serves it
    try:
        status, body, _ = _request(
            server.port,
            f"/api/studies/{study._study_id}",
            method="DELETE",
            body={"remove_associated_artifacts": True},
        )
        summaries = _api(server.port, "/api/studies")["study_summaries"]
    finally:
        server.stop()
    assert status == 204, body
    assert summaries == []
    assert not any(folder.iterdir()), "the kept checkpoint went with its study"
    assert "Traceback" not in capfd.readouterr().err


def test_a_dashboard_started_before_the_artifact_folder_serves_it_once_made(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """docker compose starts the dashboard before the workers on a fresh volume: every trial
    page said "Cannot access to the artifacts." until the dashboard was restarted."""
    data = analytic_study(
        budget={"n_trials": 1},
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        artifacts={"keep_best_k": 1, "notes": False, "embeddings": False},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    folder, aside = tmp_path / "artifacts", tmp_path / "uploaded-later"
    folder.rename(aside)
    server = create_server(cfg, port=0).start()
    try:
        assert not folder.exists(), "the dashboard does not make the folder"
        (summary,) = _api(server.port, "/api/studies")["study_summaries"]
        (trial,) = _api(server.port, f"/api/studies/{summary['study_id']}?after=0")["trials"]
        (png,) = [a for a in trial["artifacts"] if a["filename"] == "learning_curves.png"]
        url = f"/artifacts/{summary['study_id']}/{trial['trial_id']}/{png['artifact_id']}"
        before = _request(server.port, url)
        aside.rename(folder)  # the workers' first upload makes the folder
        after = _request(server.port, url)
    finally:
        server.stop()
    assert before[0] == 404 and before[2].startswith("text/plain"), before
    assert after[0] == 200 and after[1].startswith(b"\x89PNG"), after[:1]


def test_run_dashboard_on_a_port_in_use_leaves_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """The dashboard made hpo.db and artifacts/ before it found its port taken."""
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": True}))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["run", str(path), "--dashboard-port", str(port)])
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert f"error: dashboard: cannot listen on 127.0.0.1:{port}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


@pytest.mark.parametrize("tables", [[], ["CREATE TABLE notes (body TEXT)"]])
def test_run_dashboard_takes_a_sqlite_file_without_optuna_tables_as_a_run_does(
    write_study: Callable[..., Path], tmp_path: Path, tables: list[str]
) -> None:
    """``touch b.db; hpo run --dashboard``: "no such table: version_info", where plain
    ``hpo run`` creates the tables."""
    with sqlite3.connect(tmp_path / "b.db") as con:
        for statement in tables:
            con.execute(statement)
    data = analytic_study(
        budget={"n_trials": 1},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        storage="sqlite:///b.db",
    )
    result = CliRunner().invoke(app, ["run", str(write_study(data)), "--dashboard-port", "0"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "dashboard: http://127.0.0.1:" in result.stderr
    study = optuna.load_study(study_name="analytic", storage=f"sqlite:///{tmp_path / 'b.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]


_ALLOWED = ("localhost:8080", "gpu-box.lan:8080", "10.0.0.5", "other.example:80")


def test_allowed_hosts_keep_the_host_check_on_every_interface(
    served_study: StudyConfig,
) -> None:
    """A container binds 0.0.0.0 behind a port published on 127.0.0.1: with names allowed,
    a DNS-rebinding page's own name still gets a 403."""
    server = create_server(
        served_study,
        host="0.0.0.0",
        port=0,
        warn_exposure=False,
        allowed_hosts=["gpu-box.lan", " 10.0.0.5 ,Other.Example"],
    ).start()
    try:
        allowed = {name: _request(server.port, "/api/studies", name)[0] for name in _ALLOWED}
        status, body, _ = _request(server.port, "/api/studies", "evil.example:8080")
    finally:
        server.stop()
    assert allowed == dict.fromkeys(_ALLOWED, 200)
    assert status == 403 and b"allowed hosts" in body


def test_allowed_hosts_from_the_environment(
    served_study: StudyConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What docker-compose sets for ``hpo dashboard``; ``hpo run --dashboard`` reads it too."""
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "gpu-box.lan")
    with serve_in_background(served_study, host="0.0.0.0", port=0, warn_exposure=False) as h:
        answers = [_request(h.port, "/api/studies", name)[0] for name in _ALLOWED[:2]]
        refused = _request(h.port, "/api/studies", "evil.example")[0]
    assert answers == [200, 200] and refused == 403
    monkeypatch.setenv(ALLOWED_HOSTS_ENV, "gpu-box.lan, *")
    with pytest.raises(HpoError) as info:
        create_server(served_study, port=0)
    assert info.value.problems == [
        f"{ALLOWED_HOSTS_ENV}: '*' is not a host name or address (e.g. localhost, "
        "gpu-box.lan, 10.0.0.5)"
    ]


def test_bad_allowed_host_names_are_one_line_each_and_start_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": True}))
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(path),
            "--dashboard-allowed-host",
            "*",
            "--dashboard-allowed-host",
            "ok.lan,http://x.lan/",
        ],
    )
    assert result.exit_code == 2, (result.stderr, result.exception)
    assert result.stderr.splitlines() == [
        f"error: --dashboard-allowed-host: {bad!r} is not a host name or address (e.g. "
        "localhost, gpu-box.lan, 10.0.0.5)"
        for bad in ("*", "http://x.lan/")
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]
    assert parse_allowed_hosts(["[::1]:8080", "GPU-Box.lan:80", ""]) == {"::1", "gpu-box.lan"}


def test_hpo_dashboard_takes_allowed_hosts_on_its_command_line(
    served_study: StudyConfig,
) -> None:
    """``hpo dashboard --host 0.0.0.0 --allowed-host NAME``: the Host check stays on."""
    assert served_study.source is not None
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "hpo.cli", "dashboard", served_study.source),
            *("--host", "0.0.0.0", "--port", "0", "--allowed-host", "gpu-box.lan"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.rsplit(":", 1)[1].split("/", 1)[0])  # ...: http://0.0.0.0:PORT/...
        answers = [_request(port, "/api/studies", name)[0] for name in _ALLOWED[:2]]
        refused = _request(port, "/api/studies", "evil.example")[0]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert answers == [200, 200] and refused == 403, line
