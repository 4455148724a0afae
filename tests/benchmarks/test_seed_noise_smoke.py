"""The seed-noise benchmark runs once in its ``--quick`` size; its figures are never asserted."""

from __future__ import annotations

import pytest

from benchmarks import seed_noise


@pytest.mark.slow
def test_seed_noise_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert seed_noise.main(["--quick", "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "| defaults |" in printed and "| loss=triplet |" in printed
    assert "signal / noise:" in printed
