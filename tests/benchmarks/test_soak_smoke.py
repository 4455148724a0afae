"""The soak benchmark runs once in its ``--quick`` size; memory figures are printed, not judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import soak


@pytest.mark.slow
def test_soak_quick_runs_the_contrastive_trainer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "soak.json"
    assert soak.main(["--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "soak: 3 trials of the contrastive trainer on cpu" in printed
    for line in (
        "RSS before the first trial:",
        "after trial    3:",
        "RSS end",
        "ratio end / start",
    ):
        assert line in printed, printed
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["trials"] == 3 and len(figures["rss_mib"]) == 3
    assert all(rss > 0 for rss in figures["rss_mib"])


def test_slope_is_per_hundred_trials() -> None:
    points = [(n, 100.0 + 0.5 * n) for n in range(1, 21)]
    assert soak.slope_per_100(points) == pytest.approx(50.0)
    assert soak.slope_per_100([(1, 1.0)]) != soak.slope_per_100([(1, 1.0)])  # NaN
