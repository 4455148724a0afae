"""The trial-packing benchmark runs once in its ``--quick`` size; throughput is never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import trial_packing
from benchmarks.trial_packing import PackingResult, suggested_per_gpu


@pytest.mark.slow
def test_trial_packing_quick_runs_real_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "packing.json"
    assert trial_packing.main(["--quick", "--seconds", "8", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trial packing on cpu" in printed
    assert "| workers | trials/hour (median) | per round | ratio vs 1 worker |" in printed
    assert "suggested per_gpu:" in printed
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert [r["workers"] for r in figures["results"]] == [1, 2]
    for r in figures["results"]:
        assert r["exit_code"] == 0 and r["epochs"] > 0 and r["trials_per_hour"] > 0
    assert figures["results"][0]["ratio_vs_one"] == 1.0


def _result(workers: int, per_hour: float) -> PackingResult:
    return PackingResult(workers, 10, 60.0, 5, per_hour, 1.0, 50.0, None, 0)


def test_suggestion_is_the_smallest_count_near_the_best() -> None:
    results = [_result(1, 100.0), _result(2, 180.0), _result(4, 195.0), _result(8, 200.0)]
    assert suggested_per_gpu(results) == 2
    assert suggested_per_gpu([_result(1, 100.0), _result(2, 120.0)]) == 2
    assert suggested_per_gpu([_result(1, 0.0)]) is None


def test_bad_worker_counts_are_refused() -> None:
    with pytest.raises(SystemExit, match="--workers"):
        trial_packing.main(["--workers", "0,2"])
    with pytest.raises(SystemExit, match="--workers"):
        trial_packing.main(["--workers", "two"])
