"""The balanced start-up design: its coverage, its config checks, and a real study using it."""

from __future__ import annotations

import inspect
import math
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from hpo import ConfigError, load_study_config, run_study, validate_study_data
from hpo.config import CategoricalParam, FloatParam, IntParam, ParamSpec
from hpo.confirm import confirmation_config
from hpo.samplers import balanced_design, describe_startup, study_startup
from hpo.samplers._startup_design import MAX_DESIGN_ROWS
from hpo.storages import storage_url
from tests.conftest import analytic_study, open_at_once


def _space(raw: dict[str, dict[str, object]]) -> dict[str, ParamSpec]:
    kinds: dict[object, type[ParamSpec]] = {
        "categorical": CategoricalParam,
        "float": FloatParam,
        "int": IntParam,
    }
    return {name: kinds[spec["type"]].model_validate(spec) for name, spec in raw.items()}


LOSSES = ["infonce", "triplet", "barlow_twins", "vicreg"]


def test_every_choice_appears_as_evenly_as_n_allows() -> None:
    space = _space(
        {
            "loss": {"type": "categorical", "choices": LOSSES},
            "heads": {"type": "categorical", "choices": [4, 8]},
            "temperature": {"type": "categorical", "choices": [0.05, 0.07, 0.1, 0.15]},
        }
    )
    for n in (2, 4, 5, 9):
        design = balanced_design(space, n, seed=3)
        assert len(design) == n
        for name, choices in (("loss", LOSSES), ("heads", [4, 8])):
            counts = Counter(row[name] for row in design)
            assert set(counts) <= set(choices)
            assert len(counts) == min(n, len(choices)), (name, n)
            assert max(counts.values()) - min(counts.values()) <= 1


def test_a_range_gets_one_draw_in_each_stratum_on_its_scale_and_grid() -> None:
    space = _space(
        {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "weight": {"type": "float", "low": 0.05, "high": 0.3, "step": 0.05},
            "batch": {"type": "int", "low": 16, "high": 256, "step": 16},
            "depth": {"type": "int", "low": 1, "high": 64, "log": True},
        }
    )
    n = 6
    design = balanced_design(space, n, seed=0)
    strata = sorted(
        math.floor(n * (math.log(r["lr"]) - math.log(1e-4)) / (math.log(1e-1) - math.log(1e-4)))
        for r in design
    )
    assert strata == list(range(n))
    for row in design:
        assert 0.05 <= row["weight"] <= 0.3
        assert row["weight"] == pytest.approx(round(row["weight"] / 0.05) * 0.05)
        assert (
            isinstance(row["batch"], int) and 16 <= row["batch"] <= 256 and row["batch"] % 16 == 0
        )
        assert isinstance(row["depth"], int) and 1 <= row["depth"] <= 64


def test_the_design_is_the_seeds_and_leaves_out_inactive_parameters() -> None:
    space = validate_study_data(analytic_study()).space  # margin only when choice == "c"
    assert balanced_design(space, 5, seed=1) == balanced_design(space, 5, seed=1)
    assert balanced_design(space, 5, seed=1) != balanced_design(space, 5, seed=2)
    for row in balanced_design(space, 9, seed=1):
        assert ("margin" in row) == (row["choice"] == "c")


def test_a_conditional_parameter_is_balanced_over_the_rows_that_ask_it() -> None:
    space = _space(
        {
            "loss": {"type": "categorical", "choices": ["ntxent", "triplet", "supcon"]},
            "miner": {
                "type": "categorical",
                "choices": ["hard", "semi"],
                "if": {"loss": "triplet"},
            },
        }
    )
    for seed in range(200):
        design = balanced_design(space, 6, seed)
        triplet = [row for row in design if row["loss"] == "triplet"]
        assert len(triplet) == 2
        assert {row["miner"] for row in triplet} == {"hard", "semi"}, seed
        assert all("miner" not in row for row in design if row["loss"] != "triplet")


def test_tiny_float_steps_stay_on_the_range() -> None:
    space = _space({"w": {"type": "float", "low": 1e-13, "high": 1e-12, "step": 1e-13}})
    for row in balanced_design(space, 10, seed=0):
        assert 1e-13 <= row["w"] <= 1e-12


def test_the_design_fills_the_start_up_the_file_leaves() -> None:
    cfg = validate_study_data(analytic_study(startup="balanced"))
    assert len(study_startup(cfg)) == 4  # the sampler's n_startup_trials
    # Optuna's own default when the file gives none
    cfg = validate_study_data(analytic_study(startup="balanced", sampler={"name": "tpe"}))
    optuna_default = inspect.signature(optuna.samplers.TPESampler).parameters["n_startup_trials"]
    assert len(study_startup(cfg)) == optuna_default.default == 10
    cfg = validate_study_data(analytic_study(startup="balanced", enqueue=[{"x": 0.5}]))
    assert len(study_startup(cfg)) == 3
    cfg = validate_study_data(analytic_study(startup="balanced", budget={"n_trials": 2}))
    assert len(study_startup(cfg)) == 2
    assert study_startup(validate_study_data(analytic_study(startup="random"))) == []
    # repeats are dropped, among the rows and against the file's own enqueue
    two = {"choice": {"type": "categorical", "choices": ["a", "b"]}}
    cfg = validate_study_data(
        analytic_study(
            startup="balanced",
            space=two,
            sampler={"name": "tpe", "n_startup_trials": 10},
            enqueue=[{"choice": "a"}],
        )
    )
    assert study_startup(cfg) == [{"choice": "b"}]
    assert describe_startup(cfg).startswith("balanced: 1 queued trial covering")
    # fewer rows than choices: not said to cover them all
    cfg = validate_study_data(
        analytic_study(startup="balanced", sampler={"name": "tpe", "n_startup_trials": 2})
    )
    assert describe_startup(cfg) == (
        "balanced: 2 queued trials spreading the choices and ranges evenly (with the file's "
        "enqueue, too few to hold every choice of choice)"
    )


def test_a_huge_start_up_count_queues_at_most_the_design_cap() -> None:
    """Before, ``n_startup_trials: 100000000`` with a time budget built (and compared, in
    quadratic time) a hundred million rows: minutes of ``hpo validate``, or MemoryError
    after ``hpo run`` had created the study."""
    cfg = validate_study_data(
        analytic_study(
            startup="balanced",
            sampler={"name": "tpe", "n_startup_trials": 100_000_000},
            budget={"timeout": "1h"},
        )
    )
    assert len(study_startup(cfg)) == MAX_DESIGN_ROWS
    assert describe_startup(cfg).startswith(f"balanced: {MAX_DESIGN_ROWS} queued trials")


def test_auto_is_balanced_where_the_sampler_has_random_start_up_trials() -> None:
    assert len(study_startup(validate_study_data(analytic_study()))) == 4
    gp = validate_study_data(analytic_study(sampler={"name": "gp", "n_startup_trials": 3}))
    assert len(study_startup(gp)) == 3
    for sampler in ({"name": "random"}, {"name": "qmc"}, {"name": "nsga2"}):
        cfg = validate_study_data(analytic_study(sampler=sampler))
        assert study_startup(cfg) == [], sampler
        assert describe_startup(cfg).endswith(
            "(auto: the sampler has no start-up trials to replace)"
        )
    cfg = validate_study_data(analytic_study())
    assert describe_startup(cfg).startswith("balanced (auto): 4 queued trials")


def test_a_sampler_without_start_up_trials_is_one_line_naming_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        validate_study_data(analytic_study(startup="balanced", sampler={"name": "random"}))
    (line,) = err.value.problems
    assert line.startswith("startup: balanced") and "random has none" in line and "tpe" in line
    # a wrong n_startup_trials is the sampler check's one line, not a crash of this one
    with pytest.raises(ConfigError) as err:
        validate_study_data(
            analytic_study(startup="balanced", sampler={"name": "tpe", "n_startup_trials": "ten"})
        )
    assert err.value.problems == [
        "sampler.n_startup_trials: TPESampler expects an integer (got 'ten')"
    ]
    with pytest.raises(ConfigError) as err:
        validate_study_data(analytic_study(startup="latin"))
    assert any(p.startswith("startup:") and "balanced" in p for p in err.value.problems)


def test_a_confirmation_study_has_no_start_up_design() -> None:
    cfg = validate_study_data(analytic_study(startup="balanced"))
    assert confirmation_config(cfg, 6).startup == "random"


def test_a_study_runs_its_design_first_and_a_resume_queues_nothing(
    write_study: Callable[..., Path],
) -> None:
    path = write_study(analytic_study(startup="balanced", budget={"n_trials": 6}))
    cfg = load_study_config(path)
    design = study_startup(cfg)
    run_study(cfg)
    study = optuna.load_study(study_name="analytic", storage=storage_url(cfg))
    assert [t.params for t in study.trials[:4]] == design
    assert {t.params["choice"] for t in study.trials[:4]} == {"a", "b", "c"}
    run_study(load_study_config(path, ["budget.n_trials=8"]))
    study = optuna.load_study(study_name="analytic", storage=storage_url(cfg))
    assert len(study.trials) == 8
    assert sum(t.params == design[0] for t in study.trials) == 1


def test_machines_creating_one_study_at_once_queue_its_design_once(postgres_url: str) -> None:
    storage = postgres_url
    name = f"race-{uuid.uuid4().hex[:12]}"
    data = analytic_study(name, storage=storage, startup="balanced")
    design = study_startup(validate_study_data(data))
    machines = 6
    assert open_at_once(data, machines) == [0] * machines
    study = optuna.load_study(study_name=name, storage=storage)
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    queued = [t.system_attrs["fixed_params"] for t in waiting]
    assert sorted(map(repr, queued)) == sorted(map(repr, design))


def test_a_new_study_says_its_first_trials_are_queued_and_a_bare_one_is_waited_for_then_not(
    write_study: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo import open_study, runner

    path = write_study(analytic_study(startup="balanced"))
    study = open_study(load_study_config(path))
    assert study._storage.get_study_system_attrs(study._study_id)[runner.QUEUED_ATTR] is True
    assert runner._wait_for_queue(study)
    # a study whose creator died between creating it and queueing: waited for, briefly
    monkeypatch.setattr(runner, "QUEUE_WAIT_S", 0.3)
    bare = optuna.create_study(study_name="bare", storage=study._storage)
    assert not runner._wait_for_queue(bare)
