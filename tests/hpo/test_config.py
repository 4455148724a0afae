"""Every validation rule of the study file, with its exact message."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
from pydantic import BaseModel, ConfigDict

from hpo import ConfigError, load_study_config
from hpo.config import parse_duration
from hpo.samplers import build_sampler
from tests.conftest import analytic_study


def problems_of(
    write_study: Callable[..., Path], data: dict[str, Any] | str, *sets: str
) -> list[str]:
    path = write_study(data)
    with pytest.raises(ConfigError) as info:
        load_study_config(path, list(sets))
    return [p.replace(str(path), "FILE") for p in info.value.problems]


def test_valid_study_loads_with_defaults(write_study: Callable[..., Path]) -> None:
    cfg = load_study_config(write_study(analytic_study()))
    assert cfg.name == "analytic"
    assert cfg.objective.names == ["best_score"]
    assert cfg.objective.pruning_metric == "best_score"
    assert list(cfg.space) == ["x", "y", "choice", "margin"]
    assert cfg.space["margin"].condition == {"choice": "c"}


def test_left_out_sampler_is_tpe_after_five_random_trials(
    write_study: Callable[..., Path],
) -> None:
    """The benchmarked default (docs/search_efficiency.md); ``{name: tpe}`` stays Optuna's."""
    data = analytic_study()
    del data["sampler"]
    cfg = load_study_config(write_study(data))
    sampler = build_sampler(cfg.sampler.name, cfg.sampler.kwargs, seed=0, space=cfg.space)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 5
    cfg = load_study_config(write_study(analytic_study(sampler={"name": "tpe"})))
    sampler = build_sampler(cfg.sampler.name, cfg.sampler.kwargs, seed=0, space=cfg.space)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 10


def test_yaml_syntax_error_has_line_number(write_study: Callable[..., Path]) -> None:
    text = "name: x\nbudget: {n_trials: 3\nobjective: {metric: a}\n"
    (line,) = problems_of(write_study, text)
    assert line.startswith("FILE: invalid YAML at line 3, column 1")


def test_duplicate_keys_are_rejected(write_study: Callable[..., Path]) -> None:
    text = (
        "name: a\nobjective: {metric: best_score}\nbudget: {n_trials: 2}\n"
        "space:\n  x: {type: float, low: 0, high: 1}\n  x: {type: float, low: 0, high: 2}\n"
    )
    assert problems_of(write_study, text) == [
        "FILE: line 6: duplicate key 'x' (first defined on line 5)"
    ]


def test_unknown_keys_name_what_is_allowed(write_study: Callable[..., Path]) -> None:
    data = analytic_study(n_trails=5)
    data["budget"] = {"n_trials": 3, "timeot": "5m"}
    lines = problems_of(write_study, data)
    assert "budget.timeot: unknown key; allowed: n_trials, timeout, trial_timeout" in lines
    assert any(
        line.startswith(
            "n_trails: unknown key; allowed: artifacts, budget, confirm, duplicates, enqueue, name, objective"
        )
        for line in lines
    )


def test_every_problem_reported_at_once(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    del data["name"]
    data["objective"] = {"metric": "best_score", "direction": "up"}
    data["space"]["temperature"] = {"type": "float", "low": 0.0, "high": 0.5, "log": True}
    data["space"]["bad"] = {"type": "gaussian"}
    lines = problems_of(write_study, data)
    assert "name: required" in lines
    assert "objective.direction: Input should be 'maximize' or 'minimize' (got 'up')" in lines
    assert "space.bad.type: must be one of float, int, categorical (got 'gaussian')" in lines


def test_space_checks_reported_with_other_sections_errors(
    write_study: Callable[..., Path],
) -> None:
    data = analytic_study()
    del data["budget"]
    data["space"]["x"] = {"type": "float", "low": 2.0, "high": 1.0}
    data["space"]["choice"] = {"type": "categorical", "choices": "c"}
    assert problems_of(write_study, data) == [
        "budget: required",
        "space.choice.choices: Input should be a valid list (got 'c')",
        "space.x: low (2.0) must be <= high (1.0)",
    ]  # and no "unknown parameter 'choice'" for margin's condition on the unparsed choice


def test_log_range_needs_positive_low(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["x"] = {"type": "float", "low": 0.0, "high": 0.5, "log": True}
    assert problems_of(write_study, data) == ["space.x: low must be > 0 when log is true"]


def test_low_above_high(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["x"] = {"type": "float", "low": 2.0, "high": 1.0}
    assert problems_of(write_study, data) == ["space.x: low (2.0) must be <= high (1.0)"]


def test_step_and_log_together(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["x"] = {"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}
    assert problems_of(write_study, data) == ["space.x: step and log cannot be used together"]


def test_wrong_type_in_space(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["x"] = {"type": "float", "low": "small", "high": 1.0}
    assert problems_of(write_study, data) == [
        "space.x.low: Input should be a valid number, unable to parse string as a number (got 'small')"
    ]


def test_duplicate_categorical_choice(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["choice"] = {"type": "categorical", "choices": ["a", "b", "a"]}
    data["space"]["margin"]["if"] = {"choice": "b"}
    assert problems_of(write_study, data) == ["space.choice.choices: duplicate choice 'a'"]


def test_condition_on_unknown_parameter(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["margin"]["if"] = {"loss": "triplet"}
    assert problems_of(write_study, data) == [
        "space.margin.if.loss: unknown parameter 'loss'; parameters: x, y, choice"
    ]


def test_condition_with_impossible_value(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["margin"]["if"] = {"choice": "d"}
    assert problems_of(write_study, data) == [
        "space.margin.if.choice: choice can never be 'd' (it takes 'a', 'b', 'c')"
    ]


def test_condition_cycle(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["choice"]["if"] = {"margin": 0.5}
    lines = problems_of(write_study, data)
    assert "space: conditions form a cycle: choice -> margin -> choice" in lines


def test_unknown_sampler_and_pruner(write_study: Callable[..., Path]) -> None:
    data = analytic_study(sampler={"name": "bayes"}, pruner={"name": "asha"})
    assert problems_of(write_study, data) == [
        "sampler.name: unknown sampler 'bayes'; allowed: tpe, tpe_ordinal, random, gp, cmaes, "
        "qmc, grid, nsga2, nsga3, bruteforce",
        "pruner.name: unknown pruner 'asha'; allowed: median, percentile, successive_halving, "
        "hyperband, patient, grouped, wilcoxon, threshold, none",
    ]


def test_sampler_kwargs_checked_against_signature(write_study: Callable[..., Path]) -> None:
    data = analytic_study(sampler={"name": "tpe", "n_startup": 5})
    (line,) = problems_of(write_study, data)
    assert line.startswith("sampler.n_startup: TPESampler has no argument 'n_startup'; allowed: ")
    assert "n_startup_trials" in line


def test_pruner_kwargs_rejected_by_constructor(write_study: Callable[..., Path]) -> None:
    data = analytic_study(pruner={"name": "percentile", "percentile": 150.0})
    (line,) = problems_of(write_study, data)
    assert line.startswith("pruner: PercentilePruner rejected its arguments: ")


def test_grid_sampler_needs_steps_for_floats(write_study: Callable[..., Path]) -> None:
    data = analytic_study(sampler={"name": "grid"})
    assert problems_of(write_study, data) == [  # every one at once, not the first only
        f"space.{name}: the grid sampler needs a step (or categorical choices) for float parameters"
        for name in ("x", "y", "margin")
    ]


def test_a_grid_written_out_must_cover_the_space(write_study: Callable[..., Path]) -> None:
    """Without x, Optuna's grid sampler failed every trial."""
    grid = {"name": "grid", "search_space": {"y": [0.0, 1.0], "z": [1]}}
    space = {"x": {"type": "float", "low": -1.0, "high": 1.0}}
    space["y"] = {"type": "float", "low": 0.0, "high": 1.0}
    assert problems_of(write_study, analytic_study(sampler=grid, space=space)) == [
        "sampler.search_space: no values for the searched parameter 'x'",
        "sampler.search_space.z: not a searched parameter",
    ]


def test_a_grid_too_big_to_hold_is_refused(write_study: Callable[..., Path]) -> None:
    # Optuna's grid sampler lists every combination: validation ran out of memory
    space = {"n": {"type": "int", "low": 0, "high": 1_000_000_000}}
    data = analytic_study(sampler={"name": "grid"}, space=space)
    assert (
        "space.n: 1000000001 grid values, more than the grid sampler's limit of 1000000; "
        "use a larger step, fewer choices or another sampler"
    ) in problems_of(write_study, data)
    space = {n: {"type": "int", "low": 0, "high": 999} for n in ("a", "b", "c")}
    data = analytic_study(sampler={"name": "grid"}, space=space)
    problems = problems_of(write_study, data)
    assert any(p.startswith("space: 1000000000 grid combinations, more than") for p in problems)


_STEPPED = {
    "x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5},
    "choice": {"type": "categorical", "choices": ["a", "c"]},
    "margin": {"type": "float", "low": 0.1, "high": 0.3, "step": 0.1, "if": {"choice": "c"}},
}


def test_a_grid_refuses_a_conditional_parameter_with_several_values(
    write_study: Callable[..., Path],
) -> None:
    # Each margin value was a grid point of its own where choice is "a" too: the same
    # configuration trained three times
    why = (
        "space.margin: the grid sampler gives each of its 3 values a grid point even where its "
        "if: turns it off, so those configurations would train again; use sampler bruteforce, "
        "which follows conditions"
    )
    data = analytic_study(sampler={"name": "grid"}, space=_STEPPED)
    assert problems_of(write_study, data) == [why]
    written = {
        "name": "grid",
        "search_space": {"x": [0.0], "choice": ["a", "c"], "margin": [0.1, 0.2, 0.3]},
    }
    assert problems_of(write_study, analytic_study(sampler=written, space=_STEPPED)) == [why]
    one_value = {**_STEPPED, "margin": {**_STEPPED["margin"], "high": 0.1}}
    load_study_config(write_study(analytic_study(sampler={"name": "grid"}, space=one_value)))
    # a study a version before this check ran can still be read (status, best, report)
    path = write_study(analytic_study(sampler={"name": "grid"}, space=_STEPPED))
    assert load_study_config(path, for_reading=True).space.keys() == _STEPPED.keys()
    load_study_config(write_study(analytic_study(sampler={"name": "bruteforce"}, space=_STEPPED)))


def test_a_grid_runs_only_enqueued_configurations_that_set_every_parameter(
    write_study: Callable[..., Path],
) -> None:
    # Optuna's grid sampler failed the trial: "All parameters must be specified ..."
    space = {k: v for k, v in _STEPPED.items() if k != "margin"}
    enqueue = [{"x": 0.5, "choice": "a"}, {"x": 0.5}, {}]
    data = analytic_study(sampler={"name": "grid"}, space=space, enqueue=enqueue)
    assert problems_of(write_study, data) == [
        "enqueue.1: the grid sampler runs an enqueued configuration only when it sets every "
        "parameter; missing: choice",
        "enqueue.2: the grid sampler runs an enqueued configuration only when it sets every "
        "parameter; missing: x, choice",
    ]


def test_bruteforce_needs_steps_for_floats(write_study: Callable[..., Path]) -> None:
    # Optuna accepted the sampler and failed every trial: "FloatDistribution.step must be given"
    data = analytic_study(sampler={"name": "bruteforce"})
    assert problems_of(write_study, data) == [
        f"space.{name}: the bruteforce sampler tries every value, so a float needs a step "
        "(or categorical choices)"
        for name in ("x", "y", "margin")
    ]
    # a single point needs no step: Optuna never asks the sampler for it
    one_point = {"x": {"type": "float", "low": 0.5, "high": 0.5}}
    load_study_config(write_study(analytic_study(sampler={"name": "bruteforce"}, space=one_point)))


def test_the_grid_stops_at_high_when_the_step_does_not_divide_the_range() -> None:
    # round() gave 0.0, 0.6 and 1.2 for [0, 1] in steps of 0.6: 1.2 was trained
    from hpo.config import FloatParam
    from hpo.space import grid_values

    spec = FloatParam(type="float", low=0.0, high=1.0, step=0.6)
    assert grid_values("v", spec) == [0.0, 0.6]
    spec = FloatParam(type="float", low=0.0, high=1.0, step=0.1)  # 10 steps, in floats
    assert grid_values("v", spec)[-1] == 1.0 and len(grid_values("v", spec)) == 11


def test_unknown_trainer(write_study: Callable[..., Path]) -> None:
    data = analytic_study(trainer={"name": "nope"})
    assert problems_of(write_study, data) == [
        "trainer.name: unknown trainer 'nope'; use one of analytic, contrastive or "
        "'package.module:function'"
    ]


def test_trainer_import_path_not_found(write_study: Callable[..., Path]) -> None:
    data = analytic_study(trainer={"name": "no_such_pkg.mod:train"})
    (line,) = problems_of(write_study, data)
    assert line.startswith("trainer.name: cannot import module 'no_such_pkg.mod'")


def test_trainer_schema_catches_fixed_param_typos(write_study: Callable[..., Path]) -> None:
    data = analytic_study(trainer={"name": "analytic", "params": {"epochs": 5, "epoch": 3}})
    assert problems_of(write_study, data) == [
        "trainer.params.epoch: unknown parameter; did you mean 'epochs'?"
    ]


def test_trainer_schema_checks_every_space_value(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["choice"] = {"type": "categorical", "choices": ["a", "bb"]}
    data["space"]["margin"]["if"] = {"choice": "a"}
    data["space"]["lr"] = {"type": "float", "low": 0.001, "high": 0.1}
    assert problems_of(write_study, data) == [
        "space.choice: value 'bb' is not allowed: Input should be 'a', 'b' or 'c'",
        "space.lr: trainer 'analytic' has no parameter 'lr'",
    ]


def test_space_range_outside_trainer_schema(write_study: Callable[..., Path]) -> None:
    data = analytic_study()
    data["space"]["x"] = {"type": "float", "low": -20.0, "high": 2.0}
    assert problems_of(write_study, data) == [
        "space.x: value -20.0 is not allowed: Input should be greater than or equal to -10"
    ]


def test_objective_metric_must_be_reported(write_study: Callable[..., Path]) -> None:
    """Each line names the field that asks for the metric (before: ``objective`` for all)."""
    reported = "it reports: score, best_score, loss, n_params, epochs_run"
    data = analytic_study(objective={"metric": "best_val_f1", "direction": "maximize"})
    assert problems_of(write_study, data) == [
        f"objective.metric: trainer 'analytic' reports no metric 'best_val_f1'; {reported}"
    ]
    data = analytic_study(
        objective={"metric": "best_score", "direction": "maximize", "prune_on": "val_f1"}
    )
    assert problems_of(write_study, data) == [
        f"objective.prune_on: trainer 'analytic' reports no metric 'val_f1'; {reported}"
    ]


def test_an_unknown_key_of_an_optional_section_lists_the_allowed_ones(
    write_study: Callable[..., Path],
) -> None:
    assert problems_of(write_study, analytic_study(confirm={"topp": 3})) == [
        "confirm.topp: unknown key; allowed: seeds, top"
    ]


def test_multi_objective_forms(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        objective={"metrics": ["best_score", "n_params"], "directions": ["maximize"]}
    )
    assert problems_of(write_study, data) == [
        "objective: metrics has 2 entries but directions has 1"
    ]
    data["objective"] = {
        "metrics": ["best_score", "n_params"],
        "directions": ["maximize", "minimize"],
        "prune_on": "best_score",
    }
    cfg = load_study_config(write_study(data))
    assert cfg.objective.is_multi and cfg.objective.pruning_direction == "maximize"


def test_the_pruning_direction_defaults_to_the_objectives(
    write_study: Callable[..., Path],
) -> None:
    data = analytic_study(
        objective={"metric": "loss", "direction": "minimize", "prune_on": "score"}
    )
    cfg = load_study_config(write_study(data))
    assert cfg.objective.pruning_direction == "minimize"  # was "maximize"
    assert not cfg.uses_prune_companion
    data["objective"]["prune_direction"] = "maximize"
    assert load_study_config(write_study(data)).uses_prune_companion
    # nothing is pruned (hpo confirm's runs): the curves stay on the study's own trials
    data["pruner"] = {"name": "none"}
    assert not load_study_config(write_study(data)).uses_prune_companion
    data["objective"] = {"metric": "loss", "direction": "minimize", "prune_direction": "maximize"}
    assert problems_of(write_study, data) == [
        "objective: prune_direction is maximize but loss is optimized in direction minimize: "
        "leave prune_direction out"
    ]


def test_budget_must_end(write_study: Callable[..., Path]) -> None:
    data = analytic_study(budget={})
    assert problems_of(write_study, data) == [
        "budget: give n_trials, timeout, or both, so the study ends"
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("45s", 45.0), ("30m", 1800.0), ("2h", 7200.0), ("1.5h", 5400.0)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_bad_duration(write_study: Callable[..., Path]) -> None:
    data = analytic_study(budget={"n_trials": 3, "timeout": "soon"})
    assert problems_of(write_study, data) == [
        "budget.timeout: expected a duration such as 90, 45s, 30m, 2h; got 'soon'"
    ]


def test_overrides_apply_typed_values(write_study: Callable[..., Path]) -> None:
    cfg = load_study_config(
        write_study(analytic_study()),
        ["budget.n_trials=3", "trainer.params.epochs=2", "sampler={name: random, seed: 1}"],
    )
    assert cfg.budget.n_trials == 3
    assert cfg.trainer.params["epochs"] == 2
    assert cfg.sampler.name == "random"


def test_overrides_keep_placeholders_as_text() -> None:
    from hpo.overrides import parse_override

    assert parse_override("trainer.params.save_dir={seed}")[1] == "{seed}"
    assert parse_override("trainer.params.save_dir={seed}/art")[1] == "{seed}/art"
    assert parse_override("sampler={name: random}")[1] == {"name": "random"}


def test_override_of_a_left_out_sampler_changes_the_default(
    write_study: Callable[..., Path],
) -> None:
    """``sampler.seed=3`` on a file without ``sampler`` used to fail with "sampler.name: required"."""
    data = analytic_study()
    del data["sampler"]
    data.pop("pruner", None)
    path = write_study(data)
    cfg = load_study_config(path, ["sampler.seed=3", "pruner.reduction_factor=2"])
    assert (cfg.sampler.name, cfg.sampler.kwargs) == ("tpe", {"n_startup_trials": 5, "seed": 3})
    assert (cfg.pruner.name, cfg.pruner.kwargs) == ("hyperband", {"reduction_factor": 2})
    # a new name starts from nothing: the default's keys belong to TPE
    cfg = load_study_config(path, ["sampler.seed=4", "sampler.name=random"])
    assert (cfg.sampler.name, cfg.sampler.kwargs) == ("random", {"seed": 4})
    # a sampler the file gives is changed in place, never merged with the default
    cfg = load_study_config(
        write_study(analytic_study(sampler={"name": "tpe"})), ["sampler.seed=5"]
    )
    assert cfg.sampler.kwargs == {"seed": 5}
    # a new name for the file's sampler drops the old class's arguments ("GridSampler has
    # no argument 'n_startup_trials'"); the same name keeps them
    tpe = write_study(analytic_study(sampler={"name": "tpe", "n_startup_trials": 4}))
    cfg = load_study_config(tpe, ["sampler.name=random", "sampler.seed=6"])
    assert (cfg.sampler.name, cfg.sampler.kwargs) == ("random", {"seed": 6})
    cfg = load_study_config(tpe, ["sampler.name=tpe"])
    assert cfg.sampler.kwargs == {"n_startup_trials": 4}


def test_bad_overrides(write_study: Callable[..., Path]) -> None:
    lines = problems_of(write_study, analytic_study(), "budget", "name.sub=1")
    assert lines == [
        "--set 'budget': expected KEY=VALUE, e.g. budget.n_trials=3",
        "--set 'name.sub=1': name is a str, not a mapping",
    ]


def test_override_validated_like_the_file(write_study: Callable[..., Path]) -> None:
    assert problems_of(write_study, analytic_study(), "budget.n_trials=0") == [
        "budget.n_trials: Input should be greater than or equal to 1 (got 0)"
    ]


def test_storage_env_var_must_be_set(
    write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HPO_NO_SUCH_VAR", raising=False)
    data = analytic_study(storage="postgresql://u:${HPO_NO_SUCH_VAR}@localhost/db")
    assert problems_of(write_study, data) == [
        "storage: environment variable HPO_NO_SUCH_VAR is not set"
    ]


def test_storage_folder_must_exist(write_study: Callable[..., Path]) -> None:
    data = analytic_study(storage="sqlite:////nonexistent-dir-xyz/hpo.db")
    assert problems_of(write_study, data) == ["storage: folder /nonexistent-dir-xyz does not exist"]


def test_storage_scheme(write_study: Callable[..., Path]) -> None:
    data = analytic_study(storage="redis://localhost")
    (line,) = problems_of(write_study, data)
    assert line.startswith("storage: unsupported URL 'redis://localhost'")


def test_not_a_mapping(write_study: Callable[..., Path]) -> None:
    assert problems_of(write_study, "- a\n- b\n") == [
        "(top level): expected a mapping of study settings, got list"
    ]
    assert problems_of(write_study, "") == [
        "(top level): expected a mapping of study settings, got empty"
    ]


def test_an_enqueued_value_its_own_entry_switches_off(write_study: Callable[..., Path]) -> None:
    # margin is only sampled when choice is c: it was silently dropped
    enqueue = [{"choice": "a", "margin": 0.5}, {"choice": "c", "margin": 0.5}, {"margin": 0.5}]
    problems = problems_of(write_study, analytic_study(enqueue=enqueue))
    assert problems == [
        "enqueue.0.margin: never used, the entry's choice='a' leaves margin out "
        "(if: {'choice': 'c'})"
    ]


def test_enqueued_values_must_come_from_the_space(write_study: Callable[..., Path]) -> None:
    enqueue = [{"x": 0.5}, {"x": 9.0, "choice": "d", "nope": 1}]
    with pytest.raises(ConfigError) as info:
        load_study_config(write_study(analytic_study(enqueue=enqueue)))
    assert info.value.problems == [
        "enqueue.1.x: 9.0 is not in the space (it takes -2.0, 2.0 range)",
        "enqueue.1.choice: 'd' is not in the space (it takes 'a', 'b', 'c')",
        "enqueue.1.nope: not a parameter of the space; parameters: x, y, choice, margin",
    ]


def test_enqueued_values_must_sit_on_the_step_grid(write_study: Callable[..., Path]) -> None:
    space = {
        "x": {"type": "float", "low": 0.05, "high": 0.3, "step": 0.05},
        "seed": {"type": "int", "low": 2, "high": 8, "step": 2},
    }
    ok = analytic_study(space=space, enqueue=[{"x": 0.15, "seed": 6}])
    load_study_config(write_study(ok))
    bad = analytic_study(space=space, enqueue=[{"x": 0.12, "seed": 5}])
    with pytest.raises(ConfigError) as info:
        load_study_config(write_study(bad))
    assert info.value.problems == [
        "enqueue.0.x: 0.12 is off the step grid (low 0.05, step 0.05)",
        "enqueue.0.seed: 5 is off the step grid (low 2, step 2)",
    ]


def test_more_enqueued_configurations_than_trials_is_refused(
    write_study: Callable[..., Path],
) -> None:
    three = [{"x": 0.0}, {"x": 0.5}, {"x": 1.0}]
    load_study_config(write_study(analytic_study(budget={"n_trials": 3}, enqueue=three)))
    load_study_config(write_study(analytic_study(budget={"timeout": "1h"}, enqueue=three)))
    with pytest.raises(ConfigError) as info:
        load_study_config(write_study(analytic_study(budget={"n_trials": 2}, enqueue=three)))
    assert info.value.problems == [
        "enqueue: 3 configurations but budget.n_trials is 2; raise n_trials or enqueue at "
        "most that many (the rest would never run)"
    ]


@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        ([1, True], "space.c.choices: True equals the choice 1, and Optuna stores a choice"),
        ([0, False], "space.c.choices: False equals the choice 0"),
        ([1, 1.0], "space.c.choices: 1.0 equals the choice 1"),
        (["a", "a"], "space.c.choices: duplicate choice 'a'"),
    ],
)
def test_choices_python_calls_equal_are_refused(
    write_study: Callable[..., Path], choices: list[Any], expected: str
) -> None:
    # the trainer got True, the storage (by index) said 1: best and export were wrong
    data = analytic_study(space={"x": {"type": "float", "low": 0.0, "high": 1.0}})
    data["space"]["c"] = {"type": "categorical", "choices": choices}
    assert any(line.startswith(expected) for line in problems_of(write_study, data))


def test_a_range_too_wide_for_a_float_is_refused(write_study: Callable[..., Path]) -> None:
    data = analytic_study(space={"x": {"type": "float", "low": -1.0e308, "high": 1.0e308}})
    assert problems_of(write_study, data) == [
        "space.x: high - low must be a finite float (the range is too wide)"
    ]


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"type": "int", "low": 1, "high": 4}, 2.5, "n can never be 2.5"),
        (
            {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5},
            0.3,
            "n can never be 0.3: it is off the step grid (low 0.0, step 0.5)",
        ),
    ],
)
def test_conditions_on_values_the_parameter_never_takes(
    write_study: Callable[..., Path], spec: dict[str, Any], value: float, expected: str
) -> None:
    space = {"n": spec, "x": {"type": "float", "low": 0.0, "high": 1.0, "if": {"n": value}}}
    data = analytic_study(space=space)
    assert f"space.x.if.n: {expected}" in " | ".join(problems_of(write_study, data))


def test_an_enqueued_whole_number_of_a_float_parameter_is_a_float(
    write_study: Callable[..., Path],
) -> None:
    # Optuna handed the enqueued 1 to the trainer as an int
    cfg = load_study_config(write_study(analytic_study(enqueue=[{"x": 1, "choice": "a"}])))
    assert cfg.enqueue == [{"x": 1.0, "choice": "a"}]
    assert type(cfg.enqueue[0]["x"]) is float


def test_study_names_leave_room_for_their_companion_studies(postgres_url: str) -> None:
    """The longest allowed name and its ``::confirm`` companion fit a real server."""
    from hpo.config import STUDY_NAME_LENGTH, validate_study_data

    room = STUDY_NAME_LENGTH - len("::confirm")
    longest = f"{uuid.uuid4().hex}{'n' * (room - 32)}"
    validate_study_data(analytic_study(longest, storage=postgres_url))
    for name in (longest, f"{longest}::confirm"):
        optuna.create_study(study_name=name, storage=postgres_url)
    with pytest.raises(ConfigError) as info:
        validate_study_data(analytic_study(longest + "n", storage=postgres_url))
    assert info.value.problems == [
        f"name: at most {room} characters here (got {room + 1}), so that the companion "
        f"study '<name>::confirm' fits the storage's {STUDY_NAME_LENGTH}"
    ]


def test_only_servers_limit_the_name(tmp_path: Path) -> None:
    """SQLite and journal files take any length: studies with such names exist."""
    from hpo.config import validate_study_data

    for storage in (f"sqlite:///{tmp_path}/hpo.db", f"journal:///{tmp_path}/hpo.log", None):
        validate_study_data(analytic_study("n" * 510, storage=storage))
    multi = analytic_study(
        "m" * 495,
        storage="mysql+pymysql://root@127.0.0.1:1/x",  # validation reaches no server
        objective={"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
    )
    with pytest.raises(ConfigError, match=r"at most 493 .*'<name>::prune::best_score'"):
        validate_study_data(multi)


class _SeedlessParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = 2


def seedless_trainer(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
    """A user's trainer whose schema forgot the seed the service passes to every trial."""
    return {"best_score": 1.0}


seedless_trainer.params_schema = _SeedlessParams  # type: ignore[attr-defined]


def test_a_schema_that_refuses_the_seed_is_refused_before_the_study() -> None:
    from hpo.config import validate_study_data

    data = analytic_study(trainer={"name": "tests.hpo.test_config:seedless_trainer"})
    data["space"] = {"epochs": {"type": "int", "low": 1, "high": 3}}
    with pytest.raises(ConfigError) as info:
        validate_study_data(data)
    assert info.value.problems == [
        "trainer.name: every trial passes its seed as params.seed, which _SeedlessParams "
        "refuses; give it a field seed: int | None = None"
    ]


def test_one_validation_lists_problems_of_every_section(write_study: Callable[..., Path]) -> None:
    """A bad range used to hide the sampler's, pruner's and trainer's problems until fixed,
    and a bad fixed parameter hid the searched values' (four runs of `hpo validate`)."""
    data = {
        "name": "many",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "budget": {"n_trials": 3},
        "sampler": {"name": "tpe", "n_startup": 3},
        "pruner": {"name": "hyperband", "min_resouce": 2},
        "trainer": {"name": "contrastive", "params": {"dataset": "BasicMotions", "lrr": 0.1}},
        "space": {
            "temperature": {"type": "float", "low": 0.5, "high": 0.1},
            "loss": {"type": "categorical", "choices": ["infonc", "triplet"]},
        },
    }
    problems = problems_of(write_study, data)
    assert [p.split(":")[0] for p in problems] == [
        "space.temperature",
        "sampler.n_startup",
        "pruner.min_resouce",
        "trainer.params.lrr",
        "space.loss",
    ]


def test_a_partial_check_claims_nothing_about_what_it_could_not_see(
    write_study: Callable[..., Path],
) -> None:
    """With an entry or a fixed field dropped, defaults stood in: 'n_heads 3 is never
    allowed (dim=64)' for a space whose own dim (48) takes it."""
    base = {
        "name": "partial",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "budget": {"n_trials": 3},
        "trainer": {"name": "contrastive", "params": {"dataset": "BasicMotions"}},
    }
    duplicate = {
        **base,
        "space": {
            "dim": {"type": "categorical", "choices": [48, 60, 48]},
            "n_heads": {"type": "categorical", "choices": [3, 4]},
        },
    }
    assert problems_of(write_study, duplicate) == ["space.dim.choices: duplicate choice 48"]
    wide = {**base, "space": {"n_heads": {"type": "categorical", "choices": [3, 4]}}}
    wide["trainer"] = {"name": "contrastive", "params": {"dataset": "BasicMotions", "dim": 5000}}
    assert problems_of(write_study, wide) == [
        "trainer.params.dim: Input should be less than or equal to 4096"
    ]


def test_a_grace_period_shorter_than_two_heartbeats_is_refused(
    write_study: Callable[..., Path],
) -> None:
    """Before, ``grace_period: 2`` beside 30 s heartbeats validated, then failed live trials."""
    data = analytic_study(workers={"n_workers": 2, "heartbeat_interval": 30, "grace_period": 2})
    with pytest.raises(ConfigError) as info:
        load_study_config(write_study(data))
    assert info.value.problems == [
        "workers: grace_period (2 s) must be at least twice heartbeat_interval (30 s), or a "
        "live trial whose heartbeat is a little late is failed and run again"
    ]
    data["workers"]["grace_period"] = 60
    assert load_study_config(write_study(data)).workers.grace_period == 60


@pytest.mark.parametrize(
    "entry",
    [{"type": "flaot", "low": -2.0, "high": 2.0}, {"type": "float", "low": 3.0, "high": 2.0}],
    ids=["type", "range"],
)
def test_an_entry_that_failed_its_own_check_gets_no_second_line(
    write_study: Callable[..., Path], entry: dict[str, Any]
) -> None:
    """Before, ``enqueue`` and a grid's ``search_space`` also called it "not a parameter"."""
    data = analytic_study(enqueue=[{"x": 0.5, "choice": "a"}])
    data["space"]["x"] = entry
    (own,) = problems_of(write_study, data)
    assert own.startswith("space.x")
    grid = {"name": "grid", "search_space": {"x": [0.5], "y": [0.0], "choice": ["a"]}}
    data = analytic_study(sampler=grid, space={**data["space"]})
    del data["space"]["margin"]
    (own,) = problems_of(write_study, data)
    assert own.startswith("space.x")


def test_a_key_that_is_not_a_name_is_said_to_be_the_problem(
    write_study: Callable[..., Path],
) -> None:
    """Before: ``enqueue.0.1: expected true/false, an integer...`` (the key read as a value)."""
    assert problems_of(write_study, analytic_study(enqueue=[{1: 0.5}])) == [
        "enqueue.0: keys must be names, got 1"
    ]
    data = analytic_study()
    data["space"]["margin"]["if"] = {1: "c"}
    assert problems_of(write_study, data) == ["space.margin.if: keys must be names, got 1"]


def test_a_condition_its_parents_own_conditions_contradict_is_refused(
    write_study: Callable[..., Path],
) -> None:
    """Before, ``y`` validated and no trial of the study ever searched it."""
    data = analytic_study()
    data["space"]["margin"]["step"] = 0.1
    data["space"]["y"] = {
        "type": "float",
        "low": -1.0,
        "high": 1.0,
        "if": {"choice": "a", "margin": 0.5},
    }
    assert problems_of(write_study, data) == [
        "space.y.if: can never hold: it needs choice to be 'a' (its own if) and 'c' (the if "
        "of margin, which it needs)"
    ]
    data["space"]["y"]["if"] = {"choice": ["a", "c"], "margin": 0.5}  # c: it can hold
    assert load_study_config(write_study(data)).space["y"].condition is not None


def test_an_unusable_artifact_store_is_said_with_the_files_other_problems(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Before, it came only once the rest of the file was fixed: one more try per problem."""
    (tmp_path / "afile").write_text("")
    store = {"enabled": True, "dir": str(tmp_path / "afile" / "sub")}
    expected = f"artifacts.dir: cannot create {tmp_path / 'afile' / 'sub'}: "
    for broken in (
        {"sampler": {"name": "tpe", "n_ei_candidates": 0}},  # a check beyond the schema
        {"space": {"x": {"type": "flaot", "low": 0.0, "high": 1.0}}},  # a space entry
    ):
        problems = problems_of(write_study, analytic_study(artifacts=store, **broken))
        assert len(problems) == 2 and problems[1].startswith(expected), problems
