"""The incumbent re-evaluation runs on a quick search's output; figures are never asserted."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from benchmarks import incumbent_quality, search_efficiency


def _run(
    trials: list[tuple[str, int, float | None, dict[str, int]]],
) -> search_efficiency.RunRecord:
    run = search_efficiency.RunRecord("synthetic_har", "tpe_sha_warm", 0, budget=30)
    for number, (state, epochs, value, params) in enumerate(trials):
        run.trials.append(search_efficiency.TrialRecord(number, state, epochs, value, params, 1.0))
    return run


def test_incumbent_is_the_first_best_completed_trial_within_the_epochs() -> None:
    run = _run(
        [
            ("COMPLETE", 10, 0.80, {"a": 1}),
            ("PRUNED", 2, None, {"a": 2}),
            ("COMPLETE", 0, 0.80, {"a": 1}),  # a reused duplicate: a tie keeps the first
            ("COMPLETE", 10, 0.90, {"a": 3}),
        ]
    )
    assert incumbent_quality.incumbent(run, 12) == ({"a": 1}, 0.80)
    assert incumbent_quality.incumbent(run, 22) == ({"a": 3}, 0.90)
    assert incumbent_quality.incumbent(_run([("PRUNED", 2, None, {})]), 30) is None

    # what hpo confirm would take: distinct configurations, best first, within the epochs
    assert [json.loads(k) for k in incumbent_quality.finalists(run, 22, 3)] == [{"a": 3}, {"a": 1}]
    assert [json.loads(k) for k in incumbent_quality.finalists(run, 12, 3)] == [{"a": 1}]

    picks = incumbent_quality.picks([run], [Fraction(1, 3), Fraction(1)])
    assert [(p.fraction, json.loads(p.params), p.seen_f1) for p in picks] == [
        (Fraction(1, 3), {"a": 1}, 0.80),
        (Fraction(1), {"a": 3}, 0.90),
    ]


@pytest.mark.timeout(300)
def test_incumbent_quality_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    argv = ["--quick", "--quiet", "--methods", "manual,tpe_sha_warm", "--out", str(out)]
    assert search_efficiency.main(argv) == 0
    capsys.readouterr()

    report = tmp_path / "iq.json"
    argv = ["--from", str(out), "--reeval-seeds", "1", "--jobs", "1", "--json", str(report)]
    assert incumbent_quality.main([*argv, "--confirm", "2x1"]) == 0
    printed = capsys.readouterr().out
    assert "manual one-knob sweep" in printed
    assert "tpe_sha_warm: its pick after 1/3 of the budget minus the manual sweep's" in printed
    # quick budget 14 epochs, confirmation 2 x 1 x 2 epochs: 10 searched at equal compute
    assert "tpe_sha_warm: its pick after 5/7 of the budget confirmed (2x1" in printed
    assert "tpe_sha_warm: its pick after the full budget confirmed (2x1" in printed

    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["seeds"] == [incumbent_quality.REEVAL_SEED_BASE]
    picked = {json.dumps(p["params"], sort_keys=True) for p in data["picks"]}
    scored = {json.dumps(s["params"], sort_keys=True) for s in data["scores"]}
    assert picked == scored  # every configuration picked was trained again


def test_a_bad_confirm_request_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "search_efficiency_curves.csv").write_text("dataset\n", encoding="utf-8")
    recorded = {
        "args": vars(
            search_efficiency.resolve_args(search_efficiency.build_parser().parse_args(["--quick"]))
        )
    }
    (tmp_path / "search_efficiency.json").write_text(json.dumps(recorded), encoding="utf-8")
    assert incumbent_quality.main(["--from", str(tmp_path), "--confirm", "3x0"]) == 2
    assert "--confirm: give TOPxSEEDS" in capsys.readouterr().err


def test_a_replot_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "search_efficiency_curves.csv").write_text("dataset\n", encoding="utf-8")
    recorded = {"args": {"replot": "elsewhere.csv"}}
    (tmp_path / "search_efficiency.json").write_text(json.dumps(recorded), encoding="utf-8")
    assert incumbent_quality.main(["--from", str(tmp_path)]) == 2
    assert "not of a --replot" in capsys.readouterr().err
