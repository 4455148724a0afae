"""A subset of the curve table trained with a setting changed, paired with the full table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import curve_table, paired_tables


def test_a_changed_setting_is_paired_run_for_run(tmp_path: Path) -> None:
    base, new = tmp_path / "base.jsonl", tmp_path / "new.jsonl"
    assert curve_table.main(["--quick", "--jobs", "1", "--out", str(base)]) == 0
    args = ["--quick", "--jobs", "1", "--every", "6", "--set", "attn_dropout=0.2"]
    assert curve_table.main([*args, "--out", str(new)]) == 0
    rows = [json.loads(line) for line in new.read_text().splitlines()]
    assert len(rows) == 8  # every 6th of the 48 distinct runs
    assert all(r["set"] == {"attn_dropout": 0.2} for r in rows)

    pairs = paired_tables.pair_rows([(base, new)])
    assert len(pairs) == 8
    summary = paired_tables.summarize(pairs)
    assert summary["pairs"] == 8 and list(summary["at"]) == [1, 2]
    last = summary["at"][2]
    assert last["diff_mean"] == pytest.approx(last["new_mean"] - last["base_mean"])
    out = tmp_path / "figures.json"
    assert paired_tables.main(["--pair", str(base), str(new), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["pairs"] == 8


def test_a_table_paired_with_itself_differs_by_nothing(tmp_path: Path) -> None:
    table = tmp_path / "t.jsonl"
    curve_table.collect(0, table, jobs=1, quick=True, every=12)
    summary = paired_tables.summarize(paired_tables.pair_rows([(table, table)]))
    for figures in summary["at"].values():
        assert figures["diff_mean"] == 0 and figures["spearman"] == pytest.approx(1.0)


def test_ranks_share_ties() -> None:
    assert paired_tables.ranks([0.3, 0.1, 0.3, 0.2]) == [3.5, 1.0, 3.5, 2.0]


def test_bad_settings_and_missing_tables_are_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.jsonl")
    argv = ["--quick", "--out", out, "--set", "attn_dropout=2", "--set", "nope=1", "--every", "0"]
    assert curve_table.main(argv) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [
        "error: --set attn_dropout: Input should be less than 1",
        "error: --set nope: Extra inputs are not permitted",
        "error: --every: must be >= 1, got 0",
    ]
    assert not Path(out).exists()
    assert (
        curve_table.main(["--quick", "--out", out, "--set", "loss=vicreg", "--set", "seed=3"]) == 2
    )
    assert capsys.readouterr().err.splitlines() == [
        "error: --set loss: set by the table itself (a knob of its space, or --seed)",
        "error: --set seed: set by the table itself (a knob of its space, or --seed)",
    ]
    assert paired_tables.main(["--pair", out, out]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --pair: no table at {out}"] * 2


def test_a_table_resumes_only_as_it_was_collected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.jsonl"
    args = ["--quick", "--jobs", "1", "--every", "24", "--out", str(table)]
    assert curve_table.main([*args, "--set", "attn_dropout=0.1"]) == 0
    before = table.read_text()
    capsys.readouterr()
    assert curve_table.main([*args, "--set", "attn_dropout=0.2"]) == 2
    assert curve_table.main([*args, "--seed", "1", "--set", "attn_dropout=0.1"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(e.startswith("error: --out: ") for e in errors)
    assert "resume it as it was collected" in errors[0]
    assert table.read_text() == before


def test_an_unreadable_table_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "t.jsonl"
    curve_table.collect(0, table, jobs=1, quick=True, every=24)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(table.read_text() + '{"config": {"loss": "vic')  # an interrupted write
    capsys.readouterr()  # the collection's progress lines
    assert paired_tables.main(["--pair", str(table), str(broken)]) == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: --pair: {broken} line 3: not a curve-table row")
    out = tmp_path / "missing" / "figures.json"
    assert paired_tables.main(["--pair", str(table), str(table), "--json", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: --json: ")


def test_the_early_reading_ranks_the_base_runs_best_by_hand() -> None:
    def row(curve: list[float], final: float) -> dict[str, object]:
        return {"val_f1": curve, "best_val_f1": [*curve[:-1], final]}

    # base: 3-epoch curves ending at final 0.9, 0.8, 0.7, 0.6; new: 2-epoch runs
    base = [row([0.1, 0.5, 0.9], 0.9), row([0.3, 0.6, 0.8], 0.8)]
    base += [row([0.2, 0.7, 0.7], 0.7), row([0.4, 0.4, 0.6], 0.6)]
    new = [row([0.2, 0.3], 0.3), row([0.1, 0.9], 0.9), row([0.3, 0.8], 0.8), row([0.5, 0.4], 0.4)]
    pairs = [paired_tables.Pair(b, n) for b, n in zip(base, new, strict=True)]
    early = paired_tables.early_ranking(pairs, top=2)
    assert early["epoch"] == 2 and early["top"] == 2
    # base at epoch 2: 0.5, 0.6, 0.7, 0.4 -> the two best finals (rows 0, 1) rank 3rd and 2nd
    assert early["base_at_epoch"]["top_ranks"] == [2, 3]
    # new at epoch 2: 0.3, 0.9, 0.8, 0.4 -> rows 0 and 1 rank 4th and 1st
    assert early["new_at_epoch"]["top_ranks"] == [1, 4]
    # Spearman by hand: final ranks (1 = lowest) 4, 3, 2, 1; base at epoch 2 ranks 2, 3, 4, 1
    # d = 2, 0, -2, 0 -> 1 - 6 * 8 / (4 * 15) = 0.2
    assert early["base_at_epoch"]["spearman"] == pytest.approx(0.2)
