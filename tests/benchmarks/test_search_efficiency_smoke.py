"""The search-efficiency benchmark runs once in its ``--quick`` size; figures are never asserted."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from benchmarks import search_efficiency
from hpo.duplicates import reuses_duplicates
from hpo.pruners import study_pruner
from hpo.samplers import build_sampler, study_startup


@pytest.mark.timeout(300)
def test_search_efficiency_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert search_efficiency.main(["--quick", "--quiet", "--out", str(out)]) == 0

    html = out / "search_efficiency.html"
    assert html.is_file() and html.stat().st_size > 0
    assert "plotly" in html.read_text(encoding="utf-8")[:2_000_000].lower()
    for name in ("search_efficiency_curves.csv", "search_efficiency_summary.csv"):
        assert (out / name).is_file()

    with (out / "search_efficiency_curves.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["method"] for row in rows} == set(search_efficiency.METHODS)
    assert all(int(row["epochs"]) >= 0 for row in rows)
    # the warm arm tries the manual sweep's start point (the trainer defaults) first
    warm = [row for row in rows if row["method"] == "tpe_hyperband_warm"]
    first = min(warm, key=lambda row: int(row["trial"]))
    start = search_efficiency.trainer_defaults(search_efficiency.QUICK_SPACE)
    assert json.loads(first["params"]) == start

    printed = capsys.readouterr().out
    assert "manual one-knob sweep" in printed
    assert "TPE + Hyperband" in printed


def test_manual_budget_counts_each_configuration_once() -> None:
    space = {"a": [1, 2, 3], "b": [10, 20], "c": ["x", "y", "z"]}
    start = {"a": 1, "b": 10, "c": "x"}
    # 3 for the first grid, then every value but the incumbent's: 1 + 2
    assert search_efficiency.manual_budget(space, start, epochs=4) == (3 + 1 + 2) * 4


def _record(method: str, values: list[float], budget: int = 40) -> search_efficiency.RunRecord:
    run = search_efficiency.RunRecord("synthetic_har", method, 0, budget=budget)
    for number, value in enumerate(values):
        run.trials.append(search_efficiency.TrialRecord(number, "COMPLETE", 10, value, {}, 1.0))
    return run


def test_tolerance_counts_near_misses_for_every_method() -> None:
    manual = _record("manual", [0.80, 0.85, 0.84, 0.90])
    default = _record("tpe_hyperband", [0.88, 0.86, 0.87, 0.89])
    strict = {r.method: r for r in search_efficiency.summarize([manual, default])}
    assert strict["manual"].to_reach == [40]
    assert strict["tpe_hyperband"].to_reach == [None]
    near = {r.method: r for r in search_efficiency.summarize([manual, default], tolerance=0.02)}
    assert near["manual"].to_reach == [40]  # 0.88 is first reached by the manual sweep at 40
    assert near["tpe_hyperband"].to_reach == [10]
    assert near["tpe_hyperband"].ratio_vs_manual == [0.25]


def test_a_retired_arm_in_an_old_curves_file_is_still_reported() -> None:
    manual = _record("manual", [0.80, 0.90])
    reuse = _record("tpe_hyperband_reuse", [0.91])
    assert "tpe_hyperband_reuse" not in search_efficiency.ALL_METHODS, "no longer run"
    rows = {r.method: r for r in search_efficiency.summarize([manual, reuse])}
    assert rows["tpe_hyperband_reuse"].to_reach == [10]
    table = search_efficiency.markdown_table(list(rows.values()))
    assert search_efficiency.METHOD_LABELS["tpe_hyperband_reuse"] in table


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (
            "manual,tpe_hyperband_balanced",
            "error: --methods: tpe_hyperband_balanced was retired: the default tpe_hyperband "
            "now runs it",
        ),
        (
            "tpe_hyperband_reuse",
            "error: --methods: tpe_hyperband_reuse was retired: the default tpe_hyperband "
            "now runs it",
        ),
        (
            "manual,no_such_arm",
            "error: --methods: unknown method 'no_such_arm'; use one of manual,",
        ),
        (
            "tpe_hyperband_balanced,x,y",
            "error: --methods: tpe_hyperband_balanced was retired: the default tpe_hyperband "
            "now runs it; unknown methods 'x', 'y'; use one of manual,",
        ),
    ],
)
def test_methods_that_cannot_run_exit_2_with_one_error_line(
    methods: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # exit status 2 and one line, as benchmarks/search_replay.py for bad input; nothing runs
    out = tmp_path / "out"
    assert search_efficiency.main(["--quick", "--methods", methods, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1 and captured.err.startswith(message), captured.err
    assert not out.exists()


def test_every_retired_arm_names_a_runnable_replacement() -> None:
    assert set(search_efficiency.REPLACED_BY) == set(search_efficiency.RETIRED_METHODS)
    assert set(search_efficiency.REPLACED_BY.values()) <= set(search_efficiency.ALL_METHODS)
    assert not set(search_efficiency.RETIRED_METHODS) & set(search_efficiency.ALL_METHODS)


def test_val_fraction_reaches_the_trainer_for_synthetic_har_only() -> None:
    args = search_efficiency.resolve_args(
        search_efficiency.build_parser().parse_args(["--val-fraction", "0.7"])
    )
    assert search_efficiency.fixed_params(args, "synthetic_har")["val_fraction"] == 0.7
    # BasicMotions keeps its own split: half of its 40 training series
    assert search_efficiency.fixed_params(args, "BasicMotions")["val_fraction"] == 0.5
    args.val_fraction = None
    assert "val_fraction" not in search_efficiency.fixed_params(args, "synthetic_har")


def test_screening_arm_enqueues_the_defaults_then_each_one_knob_change(tmp_path: Path) -> None:
    space: dict[str, list[Any]] = {"batch_size": [32, 64, 128], "n_heads": [4, 8]}
    start = {"batch_size": 32, "n_heads": 4}
    assert search_efficiency.one_knob_changes(space, start) == [
        {"batch_size": 32, "n_heads": 4},
        {"batch_size": 64, "n_heads": 4},
        {"batch_size": 128, "n_heads": 4},
        {"batch_size": 32, "n_heads": 8},
    ]
    setup = search_efficiency.Setup(
        dataset="synthetic_har",
        epochs=2,
        fixed={"dataset": "synthetic_har", "epochs": 2},
        space=space,
        start=start,
        budget=8,
        tpe_startup=5,
        hb_min_resource=None,
        hb_reduction=3,
        threads=1,
    )
    cfg = search_efficiency.study_config(setup, "tpe_hyperband_screen", 0, str(tmp_path))
    assert [dict(c) for c in cfg.enqueue] == search_efficiency.one_knob_changes(space, start)
    assert cfg.duplicates == "reuse"
    assert cfg.pruner.name == "hyperband"


def _arm_setup(space: dict[str, list[Any]], patience: int = 3) -> search_efficiency.Setup:
    """30-epoch runs with 3 warmup epochs: the service's Hyperband starts at epoch 4."""
    return search_efficiency.Setup(
        dataset="synthetic_har",
        epochs=30,
        fixed={"dataset": "synthetic_har", "epochs": 30, "warmup_epochs": 3},
        space=space,
        start={name: values[0] for name, values in space.items()},
        budget=60,
        tpe_startup=5,
        hb_min_resource=None,
        hb_reduction=3,
        threads=1,
        patience=patience,
    )


def test_patient_arm_asks_hyperband_only_after_the_epoch_f1_stops_rising(tmp_path: Path) -> None:
    setup = _arm_setup({"n_heads": [4, 8]}, patience=2)
    cfg = search_efficiency.study_config(setup, "tpe_hyperband_patient", 0, str(tmp_path))
    # the best-so-far F1 never falls, so patience would never let Hyperband judge on it
    assert cfg.objective.pruning_metric == "val_f1"
    assert cfg.pruner.name == "patient"
    assert cfg.pruner.kwargs == {
        "patience": 2,
        "wrapped": {"name": "hyperband", "reduction_factor": 3},
    }
    pruner = study_pruner(cfg)
    assert isinstance(pruner, optuna.pruners.PatientPruner)
    inner = pruner._wrapped_pruner
    assert isinstance(inner, optuna.pruners.HyperbandPruner)
    assert (inner._min_resource, inner._max_resource) == (4, 30)  # after warmup, to the end


def test_grouped_arm_runs_hyperband_within_each_loss(tmp_path: Path) -> None:
    from hpo.pruners import GroupedPruner

    setup = _arm_setup({"loss": ["infonce", "vicreg"]})
    cfg = search_efficiency.study_config(setup, "tpe_hyperband_grouped", 0, str(tmp_path))
    assert cfg.pruner.kwargs == {
        "by": ["loss"],
        "wrapped": {"name": "hyperband", "reduction_factor": 3},
    }
    pruner = study_pruner(cfg)
    assert isinstance(pruner, GroupedPruner) and pruner.by == ("loss",)
    inner = pruner.wrapped_pruner
    assert isinstance(inner, optuna.pruners.HyperbandPruner)
    assert (inner._min_resource, inner._max_resource) == (4, 30)


def test_rerun_arm_is_the_default_with_repeats_trained_again(tmp_path: Path) -> None:
    setup = _arm_setup({"loss": ["infonce", "vicreg"]})
    default = search_efficiency.study_config(setup, "tpe_hyperband", 0, str(tmp_path))
    rerun = search_efficiency.study_config(setup, "tpe_hyperband_rerun", 0, str(tmp_path))
    assert (default.duplicates, rerun.duplicates) == ("auto", "rerun")
    assert reuses_duplicates(default), "every run trains at the search's seed"
    assert not reuses_duplicates(rerun)
    assert rerun.enqueue == default.enqueue == []
    assert (rerun.sampler, rerun.pruner) == (default.sampler, default.pruner)
    # Hyperband's brackets hash the study name: the same name, the same brackets
    assert rerun.name == default.name
    assert rerun.storage != default.storage


def test_exact_arm_is_the_default_on_a_trainer_that_reads_every_knob(tmp_path: Path) -> None:
    from hpo.pruners import study_pruner
    from trainers.registry import resolve_trainer

    setup = _arm_setup({"loss": ["infonce", "vicreg"], "temperature": [0.05, 0.1]})
    default = search_efficiency.study_config(setup, "tpe_hyperband", 0, str(tmp_path))
    exact = search_efficiency.study_config(setup, "tpe_hyperband_exact", 0, str(tmp_path))
    assert exact.trainer.name == search_efficiency.EXACT_REPEATS_TRAINER
    assert exact.trainer.params == default.trainer.params
    assert (exact.sampler, exact.name) == (default.sampler, default.name)
    # the same Hyperband, first rung after the warmup included
    assert vars(study_pruner(exact)) == vars(study_pruner(default))
    assert exact.duplicates == default.duplicates and reuses_duplicates(exact)
    vicreg = {**exact.trainer.params, "loss": "vicreg", "temperature": 0.05}
    assert resolve_trainer(default.trainer.name).unused_params(vicreg) >= {"temperature"}
    assert resolve_trainer(exact.trainer.name).unused_params(vicreg) == frozenset()


def test_gp_arms_swap_only_the_sampler(tmp_path: Path) -> None:
    setup = _arm_setup({"loss": ["infonce", "vicreg"], "n_heads": [4, 8]})
    default = search_efficiency.study_config(setup, "tpe_hyperband", 0, str(tmp_path))
    gp_pruned = search_efficiency.study_config(setup, "gp_hyperband", 0, str(tmp_path))
    gp = search_efficiency.study_config(setup, "gp", 0, str(tmp_path))
    for cfg in (gp_pruned, gp):
        assert cfg.sampler.name == "gp"
        assert cfg.sampler.kwargs == {"n_startup_trials": 5}
        assert cfg.duplicates == default.duplicates and cfg.enqueue == []
    assert gp_pruned.pruner == default.pruner
    assert gp_pruned.name == default.name, "the same Hyperband brackets as the default"
    assert gp.pruner.name == "none"

    sampler = build_sampler(gp.sampler.name, gp.sampler.kwargs, seed=gp.seed, space=gp.space)
    assert isinstance(sampler, optuna.samplers.GPSampler)


def test_ordinal_arm_swaps_only_the_sampler(tmp_path: Path) -> None:
    from hpo.samplers import OrdinalTPESampler

    setup = _arm_setup({"loss": ["infonce", "vicreg"], "temperature": [0.05, 0.07, 0.1]})
    default = search_efficiency.study_config(setup, "tpe_hyperband", 0, str(tmp_path))
    ordinal = search_efficiency.study_config(setup, "tpe_hyperband_ordinal", 0, str(tmp_path))
    assert ordinal.sampler.name == "tpe_ordinal"
    assert ordinal.sampler.kwargs == default.sampler.kwargs == {"n_startup_trials": 5}
    assert (ordinal.pruner, ordinal.name) == (default.pruner, default.name)
    assert (ordinal.duplicates, ordinal.enqueue, ordinal.space) == (
        default.duplicates,
        default.enqueue,
        default.space,
    )
    sampler = build_sampler(
        ordinal.sampler.name, ordinal.sampler.kwargs, seed=ordinal.seed, space=ordinal.space
    )
    assert isinstance(sampler, OrdinalTPESampler)


def test_random_start_arm_is_the_default_without_its_start_up_design(tmp_path: Path) -> None:
    setup = _arm_setup({"loss": ["infonce", "vicreg"], "temperature": [0.05, 0.07, 0.1]})
    default = search_efficiency.study_config(setup, "tpe_hyperband", 0, str(tmp_path))
    old = search_efficiency.study_config(setup, "tpe_hyperband_random_start", 0, str(tmp_path))
    assert len(study_startup(default)) == 5 and study_startup(old) == []
    assert (old.sampler, old.pruner, old.name, old.duplicates, old.enqueue) == (
        default.sampler,
        default.pruner,
        default.name,
        default.duplicates,
        default.enqueue,
    )


def _manual_setup(passes: int, budget_runs: int) -> search_efficiency.Setup:
    space = {"a": [1, 2, 3], "b": [10, 20, 30]}
    return search_efficiency.Setup(
        dataset="synthetic_har",
        epochs=5,
        fixed={},
        space=space,
        start={"a": 1, "b": 10},
        budget=budget_runs * 5,
        tpe_startup=5,
        hb_min_resource=None,
        hb_reduction=3,
        threads=1,
        passes=passes,
        verbose=False,
    )


def _score(params: dict[str, Any]) -> float:
    # b's best value depends on a: one round from (1, 10) finds a=3 first, then b=20;
    # a second round finds a=2 better at b=20, then b=30 at a=2
    table = {
        (1, 10): 0.50, (2, 10): 0.55, (3, 10): 0.60,
        (3, 20): 0.70, (3, 30): 0.65,
        (1, 20): 0.60, (2, 20): 0.75,
        (2, 30): 0.80,
    }  # fmt: skip
    return table.get((params["a"], params["b"]), 0.0)


def _analytic_train(params: dict[str, Any], reporter: Any) -> dict[str, float]:
    for epoch in range(5):
        reporter.report(epoch, {"val_f1": _score(params)})
    return {search_efficiency.METRIC: _score(params)}


def test_manual_sweep_goes_round_the_knobs_again_within_its_budget() -> None:
    one = search_efficiency.run_manual(_manual_setup(1, 5), seed=0, train=_analytic_train)
    assert [(t.params["a"], t.params["b"]) for t in one.trials] == [
        (1, 10), (2, 10), (3, 10), (3, 20), (3, 30)
    ]  # fmt: skip
    assert one.best_at(one.budget) == 0.70

    two = search_efficiency.run_manual(_manual_setup(2, 10), seed=0, train=_analytic_train)
    # round 2 from (3, 20): a=1 and a=2 are new, a=3 is the incumbent; then b=10 was
    # trained in round 1 at a=2, b=30 is new; never a configuration twice
    assert [(t.params["a"], t.params["b"]) for t in two.trials][5:] == [(1, 20), (2, 20), (2, 30)]
    assert two.best_at(two.budget) == 0.80
    assert two.epochs_used == 40

    # a third round trains (1, 30) only and changes nothing: a fourth would repeat it
    rounds = search_efficiency.run_manual(_manual_setup(5, 20), seed=0, train=_analytic_train)
    assert [(t.params["a"], t.params["b"]) for t in rounds.trials][8:] == [(1, 30)]

    capped = search_efficiency.run_manual(_manual_setup(2, 6), seed=0, train=_analytic_train)
    assert len(capped.trials) == 6 and capped.epochs_used == 30  # the budget stops it


def test_arms_are_judged_at_what_the_sweep_actually_trained() -> None:
    # two rounds nominally give 50 epochs, but the sweep's second round skipped what it
    # had trained and spent 40: an arm reaching the target at 45 had more compute
    manual = _record("manual", [0.80, 0.85, 0.84, 0.90], budget=50)
    late = _record("tpe_hyperband", [0.1, 0.2, 0.3, 0.4, 0.95], budget=50)
    early = _record("random", [0.1, 0.95, 0.2, 0.3, 0.4], budget=50)
    runs = search_efficiency.at_equal_compute([manual, late, early])
    assert [r.budget for r in runs] == [40, 40, 40]
    rows = {r.method: r for r in search_efficiency.summarize(runs)}
    assert rows["tpe_hyperband"].to_reach == [None]
    assert rows["random"].to_reach == [20] and rows["random"].ratio_vs_sweep == [0.5]


def test_median_curve_ranks_seeds_without_a_completed_run_lowest() -> None:
    seeds = [0.5, 0.7, 0.9, None, None]
    assert search_efficiency._median_worst_first(seeds) == 0.5
    assert search_efficiency._median_worst_first([0.5, None, None]) is None
    assert search_efficiency._median_worst_first([0.6, 0.8]) == pytest.approx(0.7)
