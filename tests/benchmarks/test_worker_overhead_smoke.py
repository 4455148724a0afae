"""The multi-worker overhead benchmark runs once at its smoke size; figures never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import worker_overhead


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_overhead_quick_runs_real_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "workers.json"
    assert worker_overhead.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| workers | worker-ms per trial (median) |" in printed
    figures = json.loads(out.read_text(encoding="utf-8"))["figures"]
    assert [f["workers"] for f in figures] == [1, 2]
    for f in figures:
        (run,) = f["per_round"]
        assert run["exit_code"] == 0 and run["trials"] == 40 and run["ms_per_trial"] > 0
    assert figures[0]["ratio_vs_one"] == 1.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_worker_overhead_runs_on_a_journal_file(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--storage", "journal", "--workers", "2", "--trials", "8", "--window", "2"]
    assert worker_overhead.main([*argv, "--rounds", "1", "--epochs", "3"]) == 0
    assert "storage journal" in capsys.readouterr().out


def test_per_trial_cost_is_worker_seconds_between_completions() -> None:
    # 2 workers, completions at 1..8 s: 2 worker-seconds per trial throughout
    whole, early, late = worker_overhead.per_trial_ms([1.0 * k for k in range(1, 9)], 2, 2)
    assert (whole, early, late) == (2000.0, 2000.0, 2000.0)
    # the last trials twice as far apart: growth 2
    _, early, late = worker_overhead.per_trial_ms([1, 2, 3, 4, 6, 8], 1, 2)
    assert (early, late) == (1000.0, 2000.0)


def test_a_bad_count_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_overhead.main(["--workers", "0,2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers takes counts >= 1, like 1,4"
