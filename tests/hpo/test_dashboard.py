"""optuna-dashboard on real studies: over HTTP, beside a running study, and in Chromium."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from hpo import load_study_config, run_study
from hpo.cli import app
from hpo.config import StudyConfig
from hpo.dashboard import (
    create_server,
    dashboard_storage,
    exposure_warning,
    is_loopback,
    serve_in_background,
)
from hpo.errors import HpoError, StorageError
from tests.conftest import analytic_study, fresh_database, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard.png"


def _get(url: str) -> tuple[int, bytes, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read(), response.headers.get("Content-Type", "")


def _get_json(url: str) -> Any:
    return json.loads(_get(url)[1])


def _journal_mode(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory: pytest.TempPathFactory) -> StudyConfig:
    """A small finished study with a learning-curve PNG on every trial."""
    folder = tmp_path_factory.mktemp("dash")
    data = analytic_study(
        name="dash-study",
        budget={"n_trials": 4},
        trainer={"name": "analytic", "params": {"epochs": 3}},
        pruner={"name": "none"},
        artifacts={"enabled": True},
    )
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    cfg = load_study_config(path)
    run_study(cfg)
    return cfg


@pytest.fixture
def dashboard(finished_study: StudyConfig) -> Iterator[str]:
    handle = serve_in_background(finished_study, port=0)
    try:
        yield handle.url
    finally:
        handle.stop()


def _base(url: str) -> str:
    return url.removesuffix("/dashboard")


def test_api_serves_study_trials_and_artifact_images(dashboard: str) -> None:
    assert dashboard.startswith("http://127.0.0.1:")
    status, _, ctype = _get(dashboard)
    assert status == 200 and "text/html" in ctype
    summaries = _get_json(_base(dashboard) + "/api/studies")["study_summaries"]
    (study,) = [s for s in summaries if s["study_name"] == "dash-study"]
    detail = _get_json(_base(dashboard) + f"/api/studies/{study['study_id']}?after=0")
    trials = detail["trials"]
    assert len(trials) == 4
    first = trials[0]
    assert {p["name"] for p in first["params"]} == {"x", "y", "choice"} | (
        {"margin"} if any(p["name"] == "margin" for p in first["params"]) else set()
    )
    assert [v["step"] for v in first["intermediate_values"]] == [1, 2, 3]
    (png,) = [a for a in first["artifacts"] if a["filename"] == "learning_curves.png"]
    status, body, ctype = _get(
        _base(dashboard)
        + f"/artifacts/{study['study_id']}/{first['trial_id']}/{png['artifact_id']}"
    )
    assert status == 200 and ctype == "image/png"
    assert body.startswith(b"\x89PNG")


def test_stop_frees_the_port(finished_study: StudyConfig) -> None:
    handle = serve_in_background(finished_study, port=0)
    port = handle.port
    handle.stop()
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/api/studies")
    again = create_server(finished_study, port=port)
    again.stop()


def test_port_in_use_is_a_clear_error(finished_study: StudyConfig) -> None:
    handle = serve_in_background(finished_study, port=0)
    try:
        with pytest.raises(HpoError, match=f"cannot listen on 127.0.0.1:{handle.port}"):
            create_server(finished_study, port=handle.port)
    finally:
        handle.stop()


def test_journal_mode_is_left_alone(tmp_path: Path, write_study: Callable[..., Path]) -> None:
    db = tmp_path / "plain.db"
    study = optuna.create_study(study_name="plain", storage=f"sqlite:///{db}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert _journal_mode(db) == "delete"
    cfg = load_study_config(write_study(analytic_study(name="plain", storage="sqlite:///plain.db")))
    with serve_in_background(cfg, port=0) as handle:
        summaries = _get_json(_base(handle.url) + "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["plain"]
        _get_json(_base(handle.url) + f"/api/studies/{summaries[0]['study_id']}?after=0")
    assert _journal_mode(db) == "delete", "the dashboard must not switch a file to WAL"
    assert not Path(f"{db}-wal").exists()


def test_missing_storage_is_an_error_unless_a_run_will_create_it(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = load_study_config(write_study(analytic_study()))
    with pytest.raises(StorageError, match="does not exist yet; run the study first"):
        dashboard_storage(cfg)
    assert not (tmp_path / "hpo.db").exists()
    with serve_in_background(cfg, port=0) as handle:
        assert _get_json(_base(handle.url) + "/api/studies")["study_summaries"] == []
    assert _journal_mode(tmp_path / "hpo.db") == "wal"


def test_a_sqlite_file_without_optuna_tables_is_left_as_it_is(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """It may be another program's database: one error line, no tables, no WAL switch."""
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE notes (body TEXT)")
    cfg = load_study_config(write_study(analytic_study(storage="sqlite:///other.db")))
    with pytest.raises(StorageError, match=r"^storage: cannot open sqlite:///"):
        dashboard_storage(cfg)
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["notes"]
    assert _journal_mode(db) == "delete"


@pytest.mark.postgres
def test_a_dashboard_on_an_empty_database_creates_the_tables(
    write_study: Callable[..., Path], postgres_url: str
) -> None:
    """A team's dashboard is often started before its first worker (docker compose)."""
    with fresh_database(postgres_url) as url:
        cfg = load_study_config(write_study(analytic_study(storage=url)))
        with create_server(cfg, port=0).start() as handle:  # as `hpo dashboard` opens it
            assert _get_json(_base(handle.url) + "/api/studies")["study_summaries"] == []
        run_study(cfg)
        with serve_in_background(cfg, port=0) as handle:
            summaries = _get_json(_base(handle.url) + "/api/studies")["study_summaries"]
            assert [s["study_name"] for s in summaries] == [cfg.name]


def test_dashboard_beside_a_running_study_changes_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    data = analytic_study(
        budget={"n_trials": 6},
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 5, "sleep_per_epoch": 0.2}},
        artifacts={"enabled": False},
    )
    path = write_study(data)
    cfg = load_study_config(path)
    # Started first, as ``hpo run --dashboard`` does: it creates the file the way a run would.
    with serve_in_background(cfg, port=0) as handle:
        run = subprocess.Popen(
            [sys.executable, "-m", "hpo.cli", "run", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            seen: set[int] = set()

            def poll() -> bool:
                summaries = _get_json(_base(handle.url) + "/api/studies")["study_summaries"]
                for s in summaries:
                    detail = _get_json(_base(handle.url) + f"/api/studies/{s['study_id']}?after=0")
                    seen.add(len(detail["trials"]))
                return run.poll() is not None

            assert wait_for(poll, timeout=180, interval=0.05)
            _, stderr = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
    assert run.returncode == 0, stderr
    assert len(seen) >= 2, f"the dashboard was read while trials were written (saw {seen})"
    study = optuna.load_study(study_name="analytic", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 6
    assert _journal_mode(tmp_path / "hpo.db") == "wal"


def _dashboard_command(path: Path, *options: str) -> subprocess.Popen[str]:
    """``hpo dashboard PATH OPTIONS`` in a process of its own, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "dashboard", str(path), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_prints_the_url_and_serves(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    run_study(load_study_config(path))
    proc = _dashboard_command(path, "--port", "0")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("optuna-dashboard for analytic: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        summaries = _get_json(_base(url) + "/api/studies")["study_summaries"]
        assert summaries[0]["study_name"] == "analytic"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


@pytest.mark.browser
def test_dashboard_in_headless_chromium(dashboard: str) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    summaries = _get_json(_base(dashboard) + "/api/studies")["study_summaries"]
    study_id = summaries[0]["study_id"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(dashboard)
            page.get_by_text("dash-study").first.wait_for(timeout=30_000)

            page.goto(f"{dashboard}/studies/{study_id}/trials")
            page.get_by_text("Trial 1", exact=True).first.click()
            page.get_by_text("Intermediate Values").first.wait_for(timeout=30_000)
            page.get_by_text("Trial 1: complete").first.wait_for(timeout=30_000)  # the note
            body = page.inner_text("body")
            trial = _get_json(_base(dashboard) + f"/api/studies/{study_id}?after=0")["trials"][1]
            for value in trial["intermediate_values"]:
                assert str(value["value"])[:8] in body
            for param in trial["params"]:
                assert f"{param['name']} {param['param_external_value']}"[:12] in body

            image = page.locator('img[alt="learning_curves.png"]').first
            image.scroll_into_view_if_needed(timeout=30_000)
            page.wait_for_function(
                "() => { const i = document.querySelector('img[alt=\"learning_curves.png\"]');"
                " return i && i.complete && i.naturalWidth > 0; }",
                timeout=30_000,
            )
            assert image.is_visible()
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.parametrize("port", ["70000", "-1"])
@pytest.mark.parametrize(
    ("command", "option"),
    [(["dashboard"], "--port"), (["run", "--dashboard"], "--dashboard-port")],
)
def test_a_port_out_of_range_is_an_option_error(
    write_study: Callable[..., Path], command: list[str], option: str, port: str
) -> None:
    """Not an ``OverflowError`` traceback from ``bind()``: exit 2 before anything runs."""
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    result = CliRunner().invoke(app, [command[0], str(path), *command[1:], option, port])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.stderr and "OverflowError" not in result.stderr
    assert not (path.parent / "hpo.db").exists(), "nothing ran"


@pytest.mark.parametrize("port", [70000, -1])
def test_create_server_with_a_port_out_of_range_is_a_clear_error(
    finished_study: StudyConfig, port: int
) -> None:
    with pytest.raises(HpoError) as info:
        create_server(finished_study, port=port)
    assert info.value.problems == [
        f"dashboard: cannot listen on 127.0.0.1:{port}: the port must be 0-65535"
    ]


@pytest.mark.parametrize("host", ["", " "])
def test_an_empty_host_is_refused_not_read_as_every_interface(
    finished_study: StudyConfig, host: str
) -> None:
    with pytest.raises(HpoError) as info:
        create_server(finished_study, host=host, port=0)
    assert info.value.problems == [
        "dashboard: the host is empty; give 127.0.0.1 (this machine) or 0.0.0.0 (all)"
    ]


def test_the_api_warns_about_a_dashboard_other_machines_can_reach(
    finished_study: StudyConfig,
) -> None:
    import warnings

    with pytest.warns(UserWarning, match="without authentication"):
        create_server(finished_study, host="0.0.0.0", port=0).stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_server(finished_study, host="127.0.0.1", port=0).stop()
        create_server(finished_study, host="0.0.0.0", port=0, warn_exposure=False).stop()


def test_run_and_dashboard_warn_alike_about_a_dashboard_without_login(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    run = CliRunner().invoke(
        app,
        ["run", str(path), "--dashboard", "--dashboard-host", "0.0.0.0", "--dashboard-port", "0"],
    )
    assert run.exit_code == 0, (run.stderr, run.exception)
    proc = _dashboard_command(path, "--host", "0.0.0.0", "-p", "0")
    try:
        assert proc.stderr is not None
        served = ""
        for _ in range(20):  # a library's own warning may come first
            served = proc.stderr.readline().strip()
            if served.startswith("warning: serving") or not served:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    expected = f"warning: {exposure_warning('0.0.0.0')}"
    assert served == expected
    assert expected in " ".join(run.stderr.split()), run.stderr
    quiet = CliRunner().invoke(app, ["run", str(path), "--dashboard", "--dashboard-port", "0"])
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr, quiet.stderr
