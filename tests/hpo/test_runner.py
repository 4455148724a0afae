"""The runner on real SQLite files: pruning, resume, failures, multi-objective, Optuna interop."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo import StudyMismatchError, load_study_config, open_study, run_study, validate_study_data
from hpo.objective import derive_seed, prune_study_name
from hpo.progress import describe_trial
from hpo.storages import storage_url
from tests.conftest import analytic_study


def _load(cfg_path: Path, name: str) -> optuna.Study:
    cfg = load_study_config(cfg_path)
    return optuna.load_study(study_name=name, storage=storage_url(cfg))


def test_pruning_happens_with_fewer_reported_steps(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 16}))
    summary = run_study(load_study_config(path))
    assert summary.n_complete + summary.n_pruned == 16
    assert summary.n_pruned > 0
    study = _load(path, "analytic")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert all(len(t.intermediate_values) < 8 for t in pruned)
    assert all(len(t.intermediate_values) == 8 for t in complete)
    assert all("pruned_at_step" in t.user_attrs for t in pruned)


def test_resume_continues_to_exactly_n_trials(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 5}))
    first = run_study(load_study_config(path))
    assert first.trials_run == 5
    bigger = load_study_config(path, ["budget.n_trials=8"])
    second = run_study(bigger)
    assert second.trials_run == 3
    third = run_study(bigger)
    assert third.trials_run == 0
    assert len(_load(path, "analytic").trials) == 8


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_resumed_run_proposes_new_parameters(
    write_study: Callable[..., Path], sampler: str
) -> None:
    # Seeded from the study seed again, a resumed run drew the first run's parameters
    # again (random search, and TPE's random start-up trials).
    path = write_study(
        analytic_study(
            budget={"n_trials": 2},
            sampler={"name": sampler, "seed": 0},
            startup="random",
            pruner={"name": "none"},
        )
    )
    run_study(load_study_config(path))
    run_study(load_study_config(path, ["budget.n_trials=4"]))
    params = [tuple(sorted(t.params.items())) for t in _load(path, "analytic").trials]
    assert len(params) == 4
    assert len(set(params)) == 4, params


def sharing_trainer(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
    """While this run's first trial trains, another machine's run finishes a trial."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.touch()
        other = optuna.load_study(study_name="shared", storage=params["url"])
        distribution = optuna.distributions.FloatDistribution(-1.0, 1.0)
        other.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.5}, distributions={"x": distribution}, value=0.5
            )
        )
    return {"best_score": float(params["x"])}


def test_trials_run_counts_this_runs_trials_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    data = analytic_study(
        name="shared",
        storage=url,
        budget={"n_trials": 3},
        pruner={"name": "none"},
        startup="random",
        trainer={
            "name": "tests.hpo.test_runner:sharing_trainer",
            "params": {"marker": str(tmp_path / "shared"), "url": url},
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    summary = run_study(validate_study_data(data))
    assert summary.n_complete == 3
    assert summary.trials_run == 2, "the other machine's trial is not this run's"


def test_changed_space_is_refused_unless_forced(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 2}))
    run_study(load_study_config(path))
    data = analytic_study(budget={"n_trials": 4})
    data["space"]["x"] = {"type": "float", "low": -1.0, "high": 1.0}
    changed = load_study_config(write_study(data))
    with pytest.raises(StudyMismatchError) as info:
        run_study(changed)
    assert info.value.problems == [
        "study 'analytic' exists with a different search space (changed: x); use --force (force=True) "
        "to continue it anyway, or give the study a new name"
    ]
    assert run_study(changed, force=True).trials_run == 2


def test_a_resume_with_other_trainer_params_keeps_each_trials_own(
    write_study: Callable[..., Path],
) -> None:
    # the study kept only the latest run's fixed params: best/export showed epochs 8 for a
    # trial trained at 3, and duplicates: reuse took values trained at the other length
    from hpo import best_config
    from hpo.fixed_params import trial_fixed_params

    space = {"choice": {"type": "categorical", "choices": ["a", "b"]}}
    data = analytic_study(
        space=space,
        sampler={"name": "random", "seed": 0},
        pruner={"name": "none"},
        duplicates="reuse",
    )
    data["budget"] = {"n_trials": 3}
    data["trainer"]["params"] = {"epochs": 3}
    path = write_study(data)
    run_study(load_study_config(path))
    longer = load_study_config(path, ["trainer.params.epochs=8", "budget.n_trials=6"])
    run_study(longer)
    study = _load(path, "analytic")
    for trial in study.trials:
        source = study.trials[trial.user_attrs.get("duplicate_of", trial.number)]
        params = trial_fixed_params(study.user_attrs, trial, {})
        assert params["epochs"] == source.user_attrs["epochs_run"], trial.number
        assert params["epochs"] == (3 if trial.number < 3 else 8)
    best = best_config(longer)
    assert best["params"]["epochs"] == best["metrics"]["epochs_run"]


def test_trials_of_a_study_from_before_the_keys_keep_the_set_it_recorded(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    import sqlite3

    from hpo.fixed_params import trial_fixed_params

    data = analytic_study(budget={"n_trials": 2}, pruner={"name": "none"})
    data["trainer"]["params"] = {"epochs": 3}
    path = write_study(data)
    run_study(load_study_config(path))
    with sqlite3.connect(tmp_path / "hpo.db") as db:  # as the earlier version left it
        db.execute("DELETE FROM trial_user_attributes WHERE key = 'hpo:fixed'")
        db.execute("DELETE FROM study_user_attributes WHERE key LIKE 'hpo:fixed_params:%'")
    run_study(load_study_config(path, ["trainer.params.epochs=8", "budget.n_trials=3"]))
    study = _load(path, "analytic")
    epochs = [trial_fixed_params(study.user_attrs, t, {})["epochs"] for t in study.trials]
    assert epochs == [3, 3, 8]
    assert [t.user_attrs["epochs_run"] for t in study.trials] == epochs


@pytest.mark.parametrize(
    ("name", "spec", "what"),
    [
        ("choice", {"type": "categorical", "choices": ["c", "b", "a"]}, "choices"),
        ("x", {"type": "int", "low": -2, "high": 2}, "type"),
        ("margin", {"type": "float", "low": 0.1, "high": 1.0, "log": True}, "log scale"),
    ],
)
def test_changes_optuna_cannot_take_are_refused_even_with_force(
    write_study: Callable[..., Path], name: str, spec: dict[str, Any], what: str
) -> None:
    # with --force every later trial failed, with no reason recorded
    path = write_study(analytic_study(budget={"n_trials": 2}, enqueue=[{"choice": "c"}]))
    run_study(load_study_config(path))
    data = analytic_study(budget={"n_trials": 4})
    data["space"][name] = {**spec, **({"if": {"choice": "c"}} if name == "margin" else {})}
    changed = load_study_config(write_study(data))
    with pytest.raises(StudyMismatchError) as info:
        run_study(changed, force=True)
    assert any(
        f"space.{name} {what}:" in line and "not even with --force" in line
        for line in info.value.problems
    ), info.value.problems


class _FailingSampler(optuna.samplers.RandomSampler):
    """A real sampler whose draws fail in the study itself, as a sampler's bug or a library
    error would (the check's trial draws, on a throwaway study, pass)."""

    def sample_independent(self, study: optuna.Study, *args: Any, **kwargs: Any) -> Any:
        if study.study_name == "analytic":
            raise ValueError("this sampler cannot draw")
        return super().sample_independent(study, *args, **kwargs)


def test_a_sampler_error_is_the_trials_fail_reason(
    write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was raised outside the trainer's try: FAIL with no reason, visible only with -v
    from hpo import samplers

    monkeypatch.setitem(samplers.SAMPLERS, "failing", _FailingSampler)
    path = write_study(
        analytic_study(budget={"n_trials": 2}, sampler={"name": "failing"}, pruner={"name": "none"})
    )
    summary = run_study(load_study_config(path))
    assert summary.n_failed == 2
    for trial in _load(path, "analytic").trials:
        assert trial.user_attrs["fail_reason"] == "sampler"
        assert "ValueError: this sampler cannot draw" in trial.user_attrs["fail_message"]


def test_a_parameter_no_trial_holds_yet_may_change_with_force(
    write_study: Callable[..., Path],
) -> None:
    # margin is drawn only when choice is c: no trial holds it, so Optuna takes any change
    data = analytic_study(budget={"n_trials": 2}, enqueue=[{"choice": "a"}, {"choice": "b"}])
    run_study(load_study_config(write_study(data)))
    data = analytic_study(budget={"n_trials": 3})
    data["space"]["margin"]["log"] = True
    assert run_study(load_study_config(write_study(data)), force=True).trials_run == 1


def test_choices_read_as_text_by_an_earlier_version_say_how_to_continue(
    write_study: Callable[..., Path],
) -> None:
    # until 2026-12-07, 1e-3 in a study file was the text '1e-3'
    space = {"x": {"type": "categorical", "choices": ["1e-3", "1e-2"]}}  # quoted when written
    path = write_study(analytic_study(space=space, budget={"n_trials": 1}))
    run_study(load_study_config(path))
    space = {"x": {"type": "categorical", "choices": [1e-3, 1e-2]}}
    with pytest.raises(StudyMismatchError) as info:
        run_study(load_study_config(write_study(analytic_study(space=space))), force=True)
    (line,) = info.value.problems
    assert line.endswith("quote the choices, '1e-3', to continue this study)")


def test_a_storage_error_while_sampling_stays_the_storages() -> None:
    # an outage met by the sampler's read is storage_lost (retried), not a sampler failure
    from hpo.objective import _from_storage
    from hpo.storages import StorageUnavailableError

    try:
        try:
            raise ConnectionRefusedError("refused")
        except OSError as exc:
            raise StorageUnavailableError(["storage: unreachable"]) from exc
    except StorageUnavailableError as outage:
        assert _from_storage(outage)
    assert _from_storage(optuna.exceptions.StorageInternalError("lost"))
    assert not _from_storage(OverflowError("Range exceeds valid bounds"))


def test_changed_direction_is_refused_even_with_force(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}))
    run_study(load_study_config(path))
    data = analytic_study(objective={"metric": "best_score", "direction": "minimize"})
    with pytest.raises(StudyMismatchError):
        run_study(load_study_config(write_study(data)), force=True)


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        ("raise", "exception"),
        ("exit", "exception"),  # sys.exit in the trainer: was the end of the run
        ("nan", "nan"),
        ("missing", "missing_metric"),
        ("collapse", "collapse"),
    ],
)
def test_failing_trials_are_recorded_and_study_goes_on(
    write_study: Callable[..., Path], fail: str, reason: str
) -> None:
    data = analytic_study(budget={"n_trials": 8}, pruner={"name": "none"})
    data["trainer"]["params"].update({"fail": fail, "fail_when_x_above": 0.0})
    path = write_study(data)
    summary = run_study(load_study_config(path))
    study = _load(path, "analytic")
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(study.trials) == 8
    assert failed and summary.n_complete > 0
    for trial in failed:
        assert trial.params["x"] > 0.0
        assert trial.user_attrs["fail_reason"] == reason
        assert trial.user_attrs["fail_message"]
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def trainer_that_cannot_reach_its_database(
    params: dict[str, Any], reporter: Any = None
) -> dict[str, float]:
    raise RuntimeError("cannot reach postgresql://hpo:Secr3tPW@db.internal/metrics")


def test_a_password_in_a_trainers_error_is_masked(write_study: Callable[..., Path]) -> None:
    # the message reaches the dashboard, the trial's note, hpo status and the progress line
    from hpo.notes import _outcome

    data = analytic_study(
        budget={"n_trials": 1},
        trainer={"name": f"{__name__}:trainer_that_cannot_reach_its_database", "params": {}},
        space={"x": {"type": "float", "low": 0.0, "high": 1.0}},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    (trial,) = _load(path, "analytic").trials
    message = trial.user_attrs["fail_message"]
    assert "Secr3tPW" not in message and "postgresql://hpo:***@db.internal" in message
    old = {"fail_reason": "exception", "fail_message": "x postgresql://u:pw1@h/d"}
    assert "pw1" not in "\n".join(_outcome("FAIL", old))  # recorded by an older version


def test_metrics_and_seed_recorded(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 3}, pruner={"name": "none"}, seed=7))
    run_study(load_study_config(path))
    for trial in _load(path, "analytic").trials:
        assert trial.user_attrs["seed"] == derive_seed(7, trial.number)
        assert {"score", "best_score", "loss", "n_params", "wall_seconds"} <= set(trial.user_attrs)


def test_per_trial_seeds_are_distinct_and_reproducible() -> None:
    seeds = [derive_seed(0, n) for n in range(200)]
    assert len(set(seeds)) == 200
    assert seeds == [derive_seed(0, n) for n in range(200)]
    assert derive_seed(1, 0) != derive_seed(0, 0)


def test_conditional_parameters_sampled_only_when_condition_holds(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(
        analytic_study(budget={"n_trials": 15}, sampler={"name": "random", "seed": 3})
    )
    run_study(load_study_config(path))
    for trial in _load(path, "analytic").trials:
        assert ("margin" in trial.params) == (trial.params["choice"] == "c")


def test_multi_objective_study_still_prunes(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        objective={
            "metrics": ["best_score", "n_params"],
            "directions": ["maximize", "minimize"],
            "prune_on": "best_score",
        },
        budget={"n_trials": 16},
    )
    path = write_study(data)
    cfg = load_study_config(path)
    summary = run_study(cfg)
    assert summary.n_pruned > 0 and summary.n_complete > 0
    study = _load(path, "analytic")
    assert len(study.directions) == 2
    assert not [t for t in study.trials if t.state == TrialState.FAIL]
    companion = optuna.load_study(study_name=prune_study_name(cfg), storage=storage_url(cfg))
    assert len(companion.trials) == 16
    by_number = {t.number: t for t in companion.trials}
    for trial in study.trials:
        mirror = by_number[trial.user_attrs["prune_companion_trial"]]
        assert mirror.state == trial.state
        expected_steps = (
            8 if trial.state == TrialState.COMPLETE else trial.user_attrs["pruned_at_step"]
        )
        assert len(mirror.intermediate_values) == expected_steps
    pruned = next(t for t in study.trials if t.state == TrialState.PRUNED)
    step = pruned.user_attrs["pruned_at_step"]
    assert describe_trial(pruned) == f"pruned at step {step}"  # was "at step None"


def test_pruning_against_the_objectives_direction_prunes_on_a_companion(
    write_study: Callable[..., Path],
) -> None:
    # loss = 1 - score: pruning on loss downwards must make the decisions pruning on score
    # upwards makes. Reported to the maximizing study, loss kept the worst trials instead.
    def run(objective: dict[str, Any], name: str) -> Path:
        data = analytic_study(
            name=name,
            objective={"metric": "best_score", "direction": "maximize", **objective},
            sampler={"name": "random", "seed": 0},
            budget={"n_trials": 16},
        )
        path = write_study(data, f"{name}.yaml")
        run_study(load_study_config(path))
        return path

    on_score = _load(run({"prune_on": "score"}, "score"), "score").trials
    path = run({"prune_on": "loss", "prune_direction": "minimize"}, "loss")
    on_loss = _load(path, "loss").trials
    assert TrialState.PRUNED in [t.state for t in on_score]
    assert [t.state for t in on_loss] == [t.state for t in on_score]
    cfg = load_study_config(path)
    companion = optuna.load_study(study_name=prune_study_name(cfg), storage=storage_url(cfg))
    assert companion.direction == optuna.study.StudyDirection.MINIMIZE
    # the objective's study ranks no pruned trial by a loss it would read upside down
    pruned = [t for t in on_loss if t.state == TrialState.PRUNED]
    assert all(not t.intermediate_values and t.value is None for t in pruned)


def test_a_changed_prune_direction_is_refused_on_resume(write_study: Callable[..., Path]) -> None:
    objective = {
        "metrics": ["best_score", "n_params"],
        "directions": ["maximize", "minimize"],
        "prune_on": "loss",
        "prune_direction": "minimize",
    }
    path = write_study(analytic_study(objective=objective, budget={"n_trials": 2}))
    run_study(load_study_config(path))
    objective["prune_direction"] = "maximize"
    path = write_study(analytic_study(objective=objective, budget={"n_trials": 4}))
    cfg = load_study_config(path)
    with pytest.raises(StudyMismatchError, match="prunes on loss in direction minimize, the file"):
        run_study(cfg)
    # refused where a supervisor opens the study, before any worker starts
    with pytest.raises(StudyMismatchError, match=r"objective\.prune_direction: "):
        open_study(cfg)
    assert len(_load(path, "analytic").trials) == 2


def trainer_reporting_what_it_does_not_return(
    params: dict[str, Any], reporter: Any = None
) -> dict[str, float]:
    """Reports ``val_acc`` every epoch; its result leaves it out."""
    score = 1.0 - (float(params["x"]) - 0.3) ** 2
    for epoch in range(1, 5):
        reporter.report(epoch, {"val_acc": score * epoch / 4})
    return {"best_score": score, "n_params": 1.0}


def test_a_pruning_metric_the_result_leaves_out_still_finishes_the_companion(
    write_study: Callable[..., Path],
) -> None:
    # Optuna refused to complete the companion trial without a value: every one stayed
    # RUNNING, no curve ever counted as finished, and nothing was pruned
    data = analytic_study(
        objective={
            "metrics": ["best_score", "n_params"],
            "directions": ["maximize", "minimize"],
            "prune_on": "val_acc",
            "prune_direction": "maximize",
        },
        trainer={"name": f"{__name__}:trainer_reporting_what_it_does_not_return", "params": {}},
        space={"x": {"type": "float", "low": -2.0, "high": 2.0}},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        sampler={"name": "random", "seed": 0},
        budget={"n_trials": 12},
    )
    path = write_study(data)
    cfg = load_study_config(path)
    run_study(cfg)
    companion = optuna.load_study(study_name=prune_study_name(cfg), storage=storage_url(cfg))
    states = [t.state for t in companion.trials]
    assert TrialState.RUNNING not in states and TrialState.PRUNED in states
    for trial in companion.trials:
        if trial.state == TrialState.COMPLETE:
            assert trial.value == trial.intermediate_values[4]  # its last report


def test_a_failed_trial_says_why_in_its_progress_line() -> None:
    """The reason alone ("exception") sent users to -v to learn what failed."""
    failed = optuna.trial.create_trial(
        state=TrialState.FAIL,
        user_attrs={"fail_reason": "exception", "fail_message": "ValueError: bad\nmore"},
    )
    assert describe_trial(failed) == "fail (exception): ValueError: bad"
    long = optuna.trial.create_trial(
        state=TrialState.FAIL, user_attrs={"fail_reason": "nan", "fail_message": "x" * 500}
    )
    assert describe_trial(long) == f"fail (nan): {'x' * 157}..."


def test_timeout_budget(write_study: Callable[..., Path]) -> None:
    data = analytic_study(budget={"timeout": 1.5}, pruner={"name": "none"})
    data["trainer"]["params"]["sleep_per_epoch"] = 0.05
    summary = run_study(load_study_config(write_study(data)))
    assert 1 <= summary.trials_run <= 6


def test_optuna_cli_reads_our_study(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 3}))
    cfg = load_study_config(path)
    run_study(cfg)
    optuna_cli = Path(sys.executable).with_name("optuna")
    result = subprocess.run(
        [
            str(optuna_cli),
            "trials",
            "--storage",
            storage_url(cfg),
            "--study-name",
            "analytic",
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.count('"number"') == 3


def test_grid_sampler_gets_its_grid_from_the_space(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        sampler={"name": "grid"},
        pruner={"name": "none"},
        budget={"n_trials": 6},
        space={
            "x": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
            "choice": {"type": "categorical", "choices": ["a", "b"]},
        },
    )
    path = write_study(data)
    run_study(load_study_config(path))
    seen = {(t.params["x"], t.params["choice"]) for t in _load(path, "analytic").trials}
    assert len(seen) == 6


def test_hung_trainer_is_ended_by_trial_timeout(write_study: Callable[..., Path]) -> None:
    data = analytic_study(budget={"n_trials": 3, "trial_timeout": "2s"}, pruner={"name": "none"})
    data["trainer"]["params"].update({"fail": "hang", "fail_when_x_above": 0.0, "epochs": 4})
    data["sampler"] = {"name": "random", "seed": 1}
    path = write_study(data)
    summary = run_study(load_study_config(path))
    study = _load(path, "analytic")
    assert len(study.trials) == 3
    hung = [t for t in study.trials if t.params["x"] > 0.0]
    assert hung, "the seed must produce at least one hanging trial"
    for trial in hung:
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_reason"] == "timeout"
    assert summary.n_complete == 3 - len(hung)


def test_the_last_epoch_is_never_pruned(write_study: Callable[..., Path]) -> None:
    # Hyperband's top rung sits at max_resource (= epochs): a trial told to stop there has
    # done all its work, so it completes instead of being thrown away.
    pruner = {"name": "hyperband", "min_resource": 1, "reduction_factor": 2}
    path = write_study(analytic_study(budget={"n_trials": 24}, pruner=pruner))
    cfg = load_study_config(path, ["trainer.params.epochs=4"])
    summary = run_study(cfg)
    assert summary.n_pruned > 0
    study = _load(path, "analytic")
    for trial in study.trials:
        if trial.state == TrialState.PRUNED:
            assert max(trial.intermediate_values) < 4, trial.number
        else:
            assert trial.state == TrialState.COMPLETE
            assert max(trial.intermediate_values) == 4


def test_the_last_epoch_is_never_pruned_when_epochs_is_the_trainers_default(
    write_study: Callable[..., Path],
) -> None:
    # Without epochs in the file the last epoch (the analytic trainer's default, 10) was
    # judged like any other, and most trials were thrown away with all their work done
    data = analytic_study(
        budget={"n_trials": 10},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 10},
        sampler={"name": "random", "seed": 0},
    )
    data["trainer"]["params"] = {}
    path = write_study(data)
    run_study(load_study_config(path))
    trials = _load(path, "analytic").trials
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert all(max(t.intermediate_values) == 10 for t in trials)


def test_enqueued_configurations_run_first_and_only_once(
    write_study: Callable[..., Path],
) -> None:
    enqueue = [{"x": 0.5, "y": -1.0, "choice": "c", "margin": 0.3}, {"x": 1.5}]
    path = write_study(analytic_study(budget={"n_trials": 4}, enqueue=enqueue))
    run_study(load_study_config(path))
    study = _load(path, "analytic")
    first, second = study.trials[0], study.trials[1]
    assert first.params == enqueue[0]
    assert second.params["x"] == 1.5 and {"y", "choice"} <= set(second.params)
    run_study(load_study_config(path, ["budget.n_trials=6"]))
    trials = _load(path, "analytic").trials
    assert len(trials) == 6
    assert sum(t.params.get("x") == 1.5 for t in trials) == 1, "a resumed study re-queues nothing"


def seed_reporting_trainer(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
    """The analytic trainer, whose result also names a seed and a wall time of its own."""
    from trainers.analytic import train as analytic_train

    return {**analytic_train(params, reporter), "seed": 7.0, "wall_seconds": -1.0}


def test_a_result_metric_never_overwrites_what_the_service_records(
    write_study: Callable[..., Path],
) -> None:
    # a trainer returning `seed` changed the seed that `hpo best` exports
    trainer = {"name": "tests.hpo.test_runner:seed_reporting_trainer", "params": {"epochs": 2}}
    path = write_study(analytic_study(budget={"n_trials": 2}, trainer=trainer))
    run_study(load_study_config(path))
    for trial in _load(path, "analytic").trials:
        assert trial.user_attrs["seed"] == derive_seed(0, trial.number)
        assert trial.user_attrs["wall_seconds"] >= 0.0
