"""The start-up benchmark runs once in its ``--quick`` size; its timings are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import startup


@pytest.mark.slow
def test_startup_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "startup.json"
    assert startup.main(["--quick", "--no-parts", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ratio hpo run / trainer alone" in printed
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert len(figures["hpo_run_s"]) == len(figures["trainer_alone_s"]) == 1
    assert figures["hpo_run_s"][0] > 0 and figures["trainer_alone_s"][0] > 0


def test_startup_refuses_zero_repeats(capsys: pytest.CaptureFixture[str]) -> None:
    assert startup.main(["--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
