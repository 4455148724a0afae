"""The soak benchmark runs once in its ``--quick`` size; memory figures are printed, not judged
(the verdict's arithmetic is tested on its own)."""

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
        "study's trials held in memory:",
        "ratio (end - study's trials since trial 1) / start:",
    ):
        assert line in printed, printed
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["trials"] == 3 and len(figures["rss_mib"]) == 3
    assert all(rss > 0 for rss in figures["rss_mib"])
    # the study's 3 trials were loaded again and take some memory, far from all of it
    assert figures["study_trials"] == 3
    assert 0 < figures["study_held_mib"] < figures["rss_end_mib"] / 10
    assert figures["verdict"] in ("flat", "GROWING")


def test_verdict_takes_the_studys_own_growth_off() -> None:
    # the 1000-trial analytic soak of docs/reliability.md: 99.1 -> 109.9 MiB, the study's
    # trials 4.1 KiB each; by the raw ratio it "grew", less the study it is flat
    assert soak.FLAT_RATIO < 109.9 / 99.1
    ratio, flat = soak.verdict(99.1, 109.9, 999 * 4.1 / 1024)
    assert ratio == pytest.approx(1.069, abs=1e-3) and flat == "flat"
    # a leak on top of the study still shows
    assert soak.verdict(99.1, 109.9 + 20.0, 999 * 4.1 / 1024)[1] == "GROWING"
    assert soak.verdict(100.0, 110.0, 0.0) == (pytest.approx(1.10), "flat")


def test_slope_is_per_hundred_trials() -> None:
    points = [(n, 100.0 + 0.5 * n) for n in range(1, 21)]
    assert soak.slope_per_100(points) == pytest.approx(50.0)
    assert soak.slope_per_100([(1, 1.0)]) != soak.slope_per_100([(1, 1.0)])  # NaN
