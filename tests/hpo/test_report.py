"""``hpo report``: one offline HTML file, read back with an HTML parser."""

from __future__ import annotations

import json
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import load_study_config, run_study
from hpo.cli import app
from hpo.report import write_report
from hpo.results import best_config, load_existing_study
from tests.conftest import analytic_study

CHROMIUM = "/usr/bin/chromium"


class ReportParser(HTMLParser):
    """Collects scripts, figure JSON, tables and external references of a report."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.inline_js: list[str] = []
        self.figures: dict[str, Any] = {}
        self.plot_divs: set[str] = set()
        self.tables: dict[str, list[list[str]]] = {}
        self.unavailable: list[str] = []
        self._script: dict[str, str] | None = None
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._para_unavailable = False
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("script", "img", "iframe") and a.get("src"):
            self.external.append(a["src"])
        if tag == "link" and a.get("href"):
            self.external.append(a["href"])
        if tag == "script":
            self._script = a
            self._text = []
        if tag == "div" and a.get("class") == "plot":
            self.plot_divs.add(a["id"])
        if tag == "table":
            self._table = a.get("id", "")
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "p" and a.get("class") == "unavailable":
            self._para_unavailable = True
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            body = "".join(self._text)
            if self._script.get("type") == "application/json":
                self.figures[self._script["data-plot"]] = json.loads(body)
            else:
                self.inline_js.append(body)
            self._script = None
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None
        if tag == "p" and self._para_unavailable:
            self.unavailable.append("".join(self._text))
            self._para_unavailable = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._script is not None or self._para_unavailable:
            self._text.append(data)


def _parse(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("report")
    data = analytic_study(
        name="report-study",
        budget={"n_trials": 10},
        trainer={"name": "analytic", "params": {"epochs": 4, "fail_when_x_above": -1.0}},
        pruner={"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
        artifacts={"enabled": False},
    )
    data["space"]["fail"] = {"type": "categorical", "choices": ["none", "raise"]}
    study_file = folder / "study.yaml"
    import yaml

    study_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    cfg = load_study_config(study_file)
    run_study(cfg)
    out = write_report(cfg, folder / "out" / "report.html")
    return out, load_existing_study(cfg)


def test_report_is_self_contained(report: tuple[Path, Any]) -> None:
    path, _ = report
    parsed = _parse(path)
    assert parsed.external == [], "nothing may be fetched: the report must work offline"
    plotly_js = max(parsed.inline_js, key=len)
    assert len(plotly_js) > 1_000_000 and "plotly" in plotly_js[:2000].lower()


def test_report_has_every_figure_with_data(report: tuple[Path, Any]) -> None:
    path, study = report
    parsed = _parse(path)
    expected = {"history", "intermediate", "importances", "parallel", "slice"}
    assert {f"plot-{k}" for k in expected} == set(parsed.figures) == parsed.plot_divs
    for key, fig in parsed.figures.items():
        assert fig["data"], f"{key} has no traces"
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    history_points = sum(
        len(trace.get("x", [])) for trace in parsed.figures["plot-history"]["data"]
    )
    assert history_points >= len(complete)
    importances = parsed.figures["plot-importances"]["data"][0]
    assert set(importances["y"]) <= {"x", "y", "choice", "margin", "fail"}
    intermediate_traces = parsed.figures["plot-intermediate"]["data"]
    assert len(intermediate_traces) >= len(complete)
    slice_titles = json.dumps(parsed.figures["plot-slice"]["layout"])
    assert '"x"' in slice_titles and '"y"' in slice_titles


def test_report_counts_and_top_trials(report: tuple[Path, Any]) -> None:
    path, study = report
    parsed = _parse(path)
    counts = {row[0]: int(row[1]) for row in parsed.tables["counts"]}
    for state, key in [
        (TrialState.COMPLETE, "complete"),
        (TrialState.PRUNED, "pruned"),
        (TrialState.FAIL, "fail"),
    ]:
        assert counts[key] == sum(1 for t in study.trials if t.state == state)
    assert counts["complete"] and counts["pruned"] and counts["fail"], counts
    header, *rows = parsed.tables["top-trials"]
    assert header[:3] == ["rank", "trial", "best_score"]
    values = [float(r[2]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert int(rows[0][1]) == study.best_trial.number


def test_report_of_a_fresh_study_says_what_is_missing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(
        analytic_study(
            budget={"n_trials": 1},
            trainer={"name": "analytic", "params": {"epochs": 2, "fail": "raise"}},
            artifacts={"enabled": False},
        )
    )
    run_study(load_study_config(path))
    result = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.stderr
    assert "report written to" in result.stdout
    parsed = _parse(tmp_path / "r.html")
    assert parsed.unavailable, "plots that need completed trials explain why they are missing"
    assert {row[0]: row[1] for row in parsed.tables["counts"]}["fail"] == "1"


def test_report_of_one_completed_trial_draws_no_importances(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Optuna 5 draws one trial's importances as an even split (0.50 / 0.50)."""
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    run_study(load_study_config(path))
    result = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.stderr
    parsed = _parse(tmp_path / "r.html")
    assert "plot-importances" not in parsed.figures
    assert any("needs 2 completed trials (the study has 1)" in u for u in parsed.unavailable)
    assert "plot-history" in parsed.figures


def test_report_output_that_cannot_be_written_is_one_error_line(
    report: tuple[Path, Any], tmp_path: Path
) -> None:
    study_file = report[0].parent.parent / "study.yaml"
    (tmp_path / "file.txt").write_text("not a folder")
    cases = [
        (tmp_path, f"error: -o/--output: {tmp_path} is a folder; give a file name in it, e.g. "),
        (tmp_path / "file.txt" / "r.html", f"error: -o/--output: cannot write {tmp_path}"),
    ]
    if Path("/proc/self").is_dir():  # Linux: a folder where no file can be created
        cases.append((Path("/proc/r.html"), "error: -o/--output: cannot write /proc/r.html: "))
    before = sorted(tmp_path.rglob("*"))
    for output, expected in cases:
        result = CliRunner().invoke(app, ["report", str(study_file), "-o", str(output)])
        assert result.exit_code == 2, (output, result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
        assert "written" not in result.stdout
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"


def test_report_of_a_missing_database_creates_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(analytic_study(name="never"))
    result = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "out" / "r.html")])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: study 'never' not found in sqlite:///")
    assert sorted(tmp_path.iterdir()) == [path], "no hpo.db, no out/ folder"


def test_multi_objective_report_has_one_history_per_objective(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    data = analytic_study(
        budget={"n_trials": 5},
        objective={"metrics": ["best_score", "n_params"], "directions": ["maximize", "minimize"]},
        sampler={"name": "random", "seed": 0},
        trainer={"name": "analytic", "params": {"epochs": 3}},
        artifacts={"enabled": False},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    parsed = _parse(write_report(cfg, tmp_path / "multi.html"))
    assert {"plot-history-best_score", "plot-history-n_params", "plot-intermediate"} <= set(
        parsed.figures
    )
    assert parsed.figures["plot-intermediate"]["data"], "curves come from the pruning companion"


def test_companion_curves_are_named_by_the_study_trials(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # a reused duplicate makes no companion trial, so companion numbers drift from the
    # study's: the curves were labelled with the companion's (trial 7's as "Trial2")
    data = analytic_study(
        budget={"n_trials": 8},
        objective={"metrics": ["best_score", "n_params"], "directions": ["maximize", "minimize"]},
        sampler={"name": "random", "seed": 0},
        trainer={"name": "analytic", "params": {"epochs": 3, "seed": 7}},
        space={"choice": {"type": "categorical", "choices": ["a", "b", "c"]}},
        pruner={"name": "none"},
        artifacts={"enabled": False},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    trials = load_existing_study(cfg).trials
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert trained[-1].number != trained[-1].user_attrs["prune_companion_trial"]
    parsed = _parse(write_report(cfg, tmp_path / "curves.html"))
    traces = parsed.figures["plot-intermediate"]["data"]
    assert sorted(trace["name"] for trace in traces) == sorted(f"Trial{t.number}" for t in trained)
    assert "prune_companion_trial" not in best_config(cfg)["metrics"], "bookkeeping, no metric"


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report: tuple[Path, Any]) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    path, _ = report
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            context = browser.new_context(offline=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.as_uri())
            page.wait_for_function(
                "() => document.querySelectorAll('.plot .main-svg').length >= 5", timeout=60_000
            )
            assert errors == []
        finally:
            browser.close()


def study_with_a_retried_trial(folder: Path, name: str = "retried") -> Path:
    """A study whose first trial's process died mid-trial; the next run retried it.

    As after a crash or a killed ``hpo run``: the old trial ends FAIL (``worker_died``)
    and a retry with its parameters completes in its place.
    """

    import yaml

    from hpo.runner import open_study
    from hpo.workers.identity import mark_owner
    from tests.hpo.test_workers import dead_local_worker

    data = analytic_study(
        name=name,
        budget={"n_trials": 3},
        pruner={"name": "none"},
        artifacts={"enabled": False},
        startup="random",
    )
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    cfg = load_study_config(path)
    trial = open_study(cfg).ask()
    mark_owner(trial, dead_local_worker())
    trial.suggest_float("x", -2.0, 2.0)
    summary = run_study(cfg)
    assert (summary.n_complete, summary.n_retried, summary.n_failed) == (3, 1, 0)
    return path


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_report_counts_a_retried_trial_as_retried_not_failed(tmp_path: Path) -> None:
    path = study_with_a_retried_trial(tmp_path)
    status = CliRunner().invoke(app, ["status", str(path)])
    assert status.exit_code == 0, status.stderr
    assert "retried or surplus │ 1" in status.stdout, status.stdout
    out = write_report(load_study_config(path), tmp_path / "report.html")
    counts = {row[0]: int(row[1]) for row in _parse(out).tables["counts"]}
    assert counts == {"complete": 3, "pruned": 0, "fail": 0, "running": 0, "retried or surplus": 1}


def test_reused_duplicates_do_not_pad_the_top_trials(write_study: Callable[..., Path]) -> None:
    # at a fixed seed two configurations make six trials: four repeats of a trial above
    from hpo.report import top_trials

    data = analytic_study(
        trainer={"name": "analytic", "params": {"epochs": 2, "seed": 7}},
        space={"choice": {"type": "categorical", "choices": ["a", "b"]}},
        pruner={"name": "none"},
        budget={"n_trials": 6},
    )
    cfg = load_study_config(write_study(data))
    run_study(cfg)
    study = load_existing_study(cfg)
    assert sum("duplicate_of" in t.user_attrs for t in study.trials) == 4
    assert sorted(t.params["choice"] for t in top_trials(study)) == ["a", "b"]
