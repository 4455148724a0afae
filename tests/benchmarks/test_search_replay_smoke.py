"""The curve table and the searches replayed on it, at the smoke size; figures never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import curve_table, search_efficiency, search_replay
from trainers.reporter import Pruned, RecordingReporter


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two quick tables (training seeds 0 and 1), collected for real."""
    folder = tmp_path_factory.mktemp("tables")
    paths = folder / "s0.jsonl", folder / "s1.jsonl"
    for seed, path in enumerate(paths):
        curve_table.collect(seed, path, jobs=1, quick=True)
    return paths


def test_a_table_holds_each_distinct_run_once(tables: tuple[Path, Path]) -> None:
    rows = [json.loads(line) for line in tables[0].read_text().splitlines()]
    # 64 configurations, and VICReg reads no temperature: 16 of them repeat a run
    assert len(search_efficiency.QUICK_SPACE["temperature"]) == 2
    assert len(rows) == 64 - 16
    assert all(len(r["val_f1"]) == len(r["best_val_f1"]) == 2 for r in rows)
    assert all(r["best_val_f1"][1] == max(r["val_f1"]) for r in rows)
    # collecting again resumes: nothing is trained or written twice
    assert curve_table.collect(0, tables[0], jobs=1, quick=True) == 48
    assert len(tables[0].read_text().splitlines()) == 48


def test_lookup_ignores_the_knobs_a_run_does_not_read(tables: tuple[Path, Path]) -> None:
    table = search_replay.CurveTable.load(tables[0], quick=True)
    config = {
        "temperature": 0.07,
        "contrastive_weight": 0.1,
        "batch_size": 32,
        "loss": "vicreg",
        "use_dim_reduction": False,
        "n_heads": 4,
    }
    assert table.row(config) is table.row({**config, "temperature": 0.1})
    infonce = {**config, "loss": "infonce"}
    assert table.row(infonce) is not table.row({**infonce, "temperature": 0.1})
    with pytest.raises(KeyError, match="no curve"):
        table.row({**config, "batch_size": 999})


def test_the_table_trainer_reports_each_epoch_and_stops_when_pruned(
    tables: tuple[Path, Path],
) -> None:
    table = search_replay.CurveTable.load(tables[0], quick=True)
    search_replay.use_table(table)
    config = json.loads(tables[0].read_text().splitlines()[5])["config"]
    params = {**table.fixed, **config, "seed": 0}
    reporter = RecordingReporter()
    result = search_replay.train(params, reporter)
    row = table.row(config)
    assert [step for step, _ in reporter.history] == [1, 2]
    assert [m["val_f1"] for _, m in reporter.history] == row["val_f1"]
    assert result["best_val_f1"] == table.final(config)

    class PruneAtOnce:
        def report(self, step: int, metrics: object) -> None:
            raise Pruned

    with pytest.raises(Pruned):
        search_replay.train(params, PruneAtOnce())
    with pytest.raises(ValueError, match="seed 0"):
        search_replay.train({**params, "seed": 7})


def test_a_replayed_study_scores_every_trial_as_the_table_does(tables: tuple[Path, Path]) -> None:
    table = search_replay.CurveTable.load(tables[0], quick=True)
    arm = search_replay.Arm.parse("tpe_hyperband")
    run = search_replay.replay_one(str(tables[0]), True, arm, seed=3)
    assert run.method == "tpe_hyperband" and run.trials
    assert run.epochs_used >= run.budget  # stopped by the epoch budget, as a real search
    for trial in run.trials:
        if trial.state == "COMPLETE":
            assert trial.value == pytest.approx(table.final(trial.params))
    manual = search_replay.replay_one(str(tables[0]), True, search_replay.Arm.parse("manual"), 0)
    assert manual.best_at(manual.budget) == max(table.final(t.params) for t in manual.trials)


def test_an_arm_passes_keyword_arguments_to_its_sampler(tables: tuple[Path, Path]) -> None:
    arm = search_replay.Arm.parse(
        "tpe_hyperband:sampler.n_ei_candidates=8,hb_reduction=2,sampler.multivariate=false"
    )
    table = search_replay.CurveTable.load(tables[0], quick=True)
    setup = search_replay.arm_setup(search_replay.base_setup(table, True), arm)
    assert setup.hb_reduction == 2
    assert setup.sampler_args == {"n_ei_candidates": 8, "multivariate": False}
    study = search_efficiency.study_config(setup, arm.method, 0, str(tables[0].parent))
    assert study.sampler.kwargs["n_ei_candidates"] == 8
    assert study.sampler.kwargs["multivariate"] is False
    run = search_replay.replay_one(str(tables[0]), True, arm, seed=1)
    assert run.method == arm.spec and run.trials


def test_main_prints_every_arm_with_picks_scored_on_the_check_table(
    tables: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--quick",
        "--table",
        str(tables[0]),
        "--check",
        str(tables[1]),
        "--arms",
        "random;tpe_hyperband:hb_reduction=2",
        "--replays",
        "2",
        "--jobs",
        "1",
        "--tolerance",
        "0.01",
        "--json",
        str(tmp_path / "runs.json"),
    ]
    assert search_replay.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| random | 2 |" in printed
    assert "| tpe_hyperband:hb_reduction=2 | 2 |" in printed
    assert "trained again" in printed and "training seed 1" in printed
    assert "median epochs to within 0.01 |" in printed
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [r["arm"] for r in runs] == ["manual"] + ["random"] * 2 + [
        "tpe_hyperband:hb_reduction=2"
    ] * 2


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ("nope", "unknown method 'nope'"),
        ("tpe_hyperband:colour=3", "'colour=3' is not one of"),
        ("tpe_hyperband:hb_reduction=x", "hb_reduction must be an integer"),
        ("tpe_hyperband_exact", "needs its own trainer"),
        ("tpe_hyperband:sampler.colour=1", "TPESampler has no argument 'colour'"),
        ("tpe_hyperband:sampler.n_ei_candidates=[1]", "must be a number, true/false or a word"),
        ("tpe_hyperband:sampler.n_ei_candidates='a", "must be a number, true/false or a word"),
        ("tpe_hyperband:sampler.seed=3", "sampler.seed cannot be set"),
        ("tpe_hyperband:sampler.name=random", "sampler.name cannot be set"),
        ("manual:sampler.n_ei_candidates=8", "the manual sweep has no sampler"),
        (
            "random;tpe_hyperband:sampler.group=true,sampler.multivariate=false",
            "TPESampler rejected its arguments",
        ),
    ],
)
def test_a_bad_arm_is_one_line_and_exit_2(
    tables: tuple[Path, Path], arms: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert search_replay.main(["--quick", "--table", str(tables[0]), "--arms", arms]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.filterwarnings("error::FutureWarning")  # one escaping a search fails the test
def test_a_deprecated_sampler_argument_is_noted_once_not_once_per_search(
    tables: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    arm = "tpe_hyperband:sampler.prior_weight=2.0"
    argv = ["--quick", "--table", str(tables[0]), "--arms", arm, "--replays", "2", "--jobs", "1"]
    assert search_replay.main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("deprecated") == 1 and err.startswith(f"note: arm '{arm}': ")
