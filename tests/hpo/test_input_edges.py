"""Edge inputs that once crashed or passed validation and then failed every trial.

Each case writes a real study file and runs the real ``hpo validate`` (and, where a study
could be created, ``hpo run``): the contract is exit code 2, one line per problem naming
the field, no traceback and no study left behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hpo.cli import app
from tests.conftest import analytic_study

runner = CliRunner()


def _study(**top: Any) -> dict[str, Any]:
    """The analytic study, with ``space`` and other top-level keys replaced."""
    return analytic_study(name="edges", **top)


def refused(tmp_path: Path, study: dict[str, Any] | str, *, also_run: bool = True) -> list[str]:
    """The error lines of ``hpo validate`` on ``study``, which must refuse it cleanly;
    ``also_run``: ``hpo run`` refuses it too and leaves nothing beside the file."""
    folder = tmp_path / "study"
    folder.mkdir()
    path = folder / "study.yaml"
    text = study if isinstance(study, str) else yaml.safe_dump(study, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("error: ") for line in lines), lines
    if also_run:
        run = runner.invoke(app, ["run", str(path)])
        assert "Traceback" not in run.output, run.output
        assert run.exit_code == 2, run.output
        assert sorted(p.name for p in folder.iterdir()) == ["study.yaml"]
    return [line.removeprefix("error: ") for line in lines]


def accepted(tmp_path: Path, study: dict[str, Any]) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    return result.output


def fl(low: float, high: float, **extra: Any) -> dict[str, Any]:
    return {"type": "float", "low": low, "high": high, **extra}


# --------------------------------------------------------------------------- extreme steps

TOO_FINE = "splits [0.0, 1.0] into more than 10^15 steps"


@pytest.mark.parametrize(
    "top",
    [
        {"space": {"y": fl(0, 1, step=1e-30)}},  # decimal InvalidOperation
        {"space": {"y": fl(0, 1, step=5e-324), "x": fl(0, 1, **{"if": {"y": 0.5}})}},
        {"space": {"y": fl(0, 1, step=5e-324)}, "enqueue": [{"y": 0.5}]},  # OverflowError
        {"space": {"y": fl(0, 1, step=1e-30)}, "sampler": {"name": "bruteforce"}},
        {"space": {"y": fl(0, 1, step=1e-30)}, "sampler": {"name": "grid"}},
    ],
    ids=["decimal", "condition", "enqueue", "bruteforce", "grid"],
)
def test_a_step_too_fine_for_a_float_is_one_line(tmp_path: Path, top: dict[str, Any]) -> None:
    lines = refused(tmp_path, _study(**top))
    assert len(lines) == 1 and lines[0].startswith("space.y: step ") and TOO_FINE in lines[0]


def test_a_grid_too_wide_for_a_float_is_one_line(tmp_path: Path) -> None:
    """``high: 1e300, step: 1e-10`` raised OverflowError in grid_size."""
    study = _study(space={"y": fl(0, 1e300, step=1e-10)}, sampler={"name": "grid"})
    assert refused(tmp_path, study) == [
        "space.y: step 1e-10 splits [0.0, 1e+300] into more than 10^15 steps, more than a "
        "float can tell apart; use a larger step, or leave step out for a continuous range"
    ]


def test_grid_size_of_an_unbounded_step_count_is_a_grid_error() -> None:
    """A config built in code skips the file's range check; the grid still says one line."""
    from hpo.config import FloatParam
    from hpo.space import GridError, grid_size

    with pytest.raises(GridError, match=r"space\.y: step 1e-10 gives more grid values"):
        grid_size("y", FloatParam(type="float", low=0, high=1e300, step=1e-10))


@pytest.mark.parametrize(
    "spec", [fl(0, 1, step=1e-7), {"type": "int", "low": 0, "high": 8, "step": 1}]
)
def test_bruteforce_caps_the_values_of_a_parameter(tmp_path: Path, spec: dict[str, Any]) -> None:
    """With ten million values every trial failed (or crawled) in Optuna."""
    study = _study(space={"y": spec}, sampler={"name": "bruteforce"})
    if spec["type"] == "int":
        accepted(tmp_path, study)
        return
    assert refused(tmp_path, study) == [
        "space.y: more than 1000000 values, the most the bruteforce sampler is given for "
        "one parameter; use a larger step or another sampler"
    ]


def test_a_fine_but_representable_step_is_still_taken(tmp_path: Path) -> None:
    accepted(tmp_path, _study(space={"y": fl(0, 1, step=1e-12)}))


# --------------------------------------------------------------------------- paths

LONG = "a" * 300  # a path component longer than any file system's 255 bytes


@pytest.mark.parametrize(
    ("top", "field"),
    [
        ({"storage": f"sqlite:///{LONG}/x.db"}, "storage"),
        ({"storage": f"journal:///{LONG}"}, "storage"),
        ({"artifacts": {"dir": LONG}}, "artifacts.dir"),
        ({"artifacts": {"dir": f"{LONG}/b"}}, "artifacts.dir"),
    ],
)
def test_an_over_long_path_component_is_one_line(
    tmp_path: Path, top: dict[str, Any], field: str
) -> None:
    """They raised ``OSError: [Errno 36] File name too long`` (exit 1)."""
    lines = refused(tmp_path, _study(**top))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{field}: cannot use ") and "File name too long" in lines[0]


@pytest.mark.parametrize("command", ["export", "report"])
@pytest.mark.parametrize("output", [LONG, f"{LONG}/x.out"])
def test_an_over_long_output_path_is_one_line(tmp_path: Path, command: str, output: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_study(), sort_keys=False), encoding="utf-8")
    result = runner.invoke(app, [command, str(path), "-o", str(tmp_path / output)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: -o/--output: cannot write "), lines
    assert "File name too long" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_an_existing_artifacts_folder_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    """It passed (write access was tried only for a folder still to be made), and the run
    then lost every checkpoint. ``/proc`` refuses new files even to root."""
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    lines = refused(tmp_path, _study(artifacts={"dir": "/proc"}))
    assert len(lines) == 1 and lines[0].startswith("artifacts.dir: cannot write into /proc: ")


def test_a_writable_artifacts_folder_is_left_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "art"
    folder.mkdir()
    accepted(tmp_path, _study(artifacts={"dir": str(folder)}))
    assert list(folder.iterdir()) == []


# --------------------------------------------------------------------------- explicit grids

GRID_SPACE = {
    "x": fl(-1, 1),
    "choice": {"type": "categorical", "choices": ["a", "b"]},
    "y": {"type": "float", "low": 0, "high": 1, "step": 0.25},
}


def _grid(**values: list[Any]) -> dict[str, Any]:
    grid = {"x": [0.5], "choice": ["a"], "y": [0.5], **values}
    return _study(space=GRID_SPACE, sampler={"name": "grid", "search_space": grid})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"choice": ["z", "a"]},
            ["sampler.search_space.choice: 'z' is not in the space (it takes 'a', 'b')"],
        ),
        (
            {"x": [5, 0.0, 20]},
            [
                "sampler.search_space.x: 5 is not in the space (it takes -1.0, 1.0 range)",
                "sampler.search_space.x: 20 is not in the space (it takes -1.0, 1.0 range)",
            ],
        ),
        (
            {"x": [[1], {"a": 2}]},
            [
                "sampler.search_space.x: [1] is not in the space (it takes -1.0, 1.0 range)",
                "sampler.search_space.x: {'a': 2} is not in the space (it takes -1.0, 1.0 range)",
            ],
        ),
        (
            {"y": [0.25, 0.3]},
            ["sampler.search_space.y: 0.3 is off the step grid (low 0.0, step 0.25)"],
        ),
    ],
    ids=["choice", "range", "not-a-value", "step"],
)
def test_an_explicit_grid_value_outside_the_space_is_refused(
    tmp_path: Path, values: dict[str, list[Any]], expected: list[str]
) -> None:
    """Each passed validation, then every trial that drew it failed."""
    assert refused(tmp_path, _grid(**values)) == expected


def test_an_explicit_grid_inside_the_space_is_taken(tmp_path: Path) -> None:
    accepted(tmp_path, _grid(choice=["a", "b"], x=[-1, 0.5, 1], y=[0, 0.75]))


def test_an_explicit_grid_value_the_trainer_refuses_is_named(tmp_path: Path) -> None:
    """The space checks try a range's ends and first step; the grid's 3 is neither."""
    study = {
        "name": "grid_heads",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "budget": {"n_trials": 4},
        "sampler": {"name": "grid", "search_space": {"n_heads": [2, 3, 4]}},
        "trainer": {"name": "contrastive", "params": {"dataset": "BasicMotions"}},
        "space": {"n_heads": {"type": "int", "low": 1, "high": 8}},
    }
    assert refused(tmp_path, study, also_run=False) == [
        "sampler.search_space.n_heads: value 3 is not allowed: n_heads=3 must divide the "
        "attention width (dim=64); pick n_heads from the divisors of 64"
    ]


# --------------------------------------------------------------------------- sampler arguments


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        (
            {"name": "tpe", "prior_weight": -1},
            "sampler.prior_weight: TPESampler fails when it samples with prior_weight=-1, so "
            "every trial would fail (ValueError: A non-negative value must be specified for "
            "prior_weight, but got -1.)",
        ),
        (
            {"name": "tpe", "n_ei_candidates": 0, "n_startup_trials": 20},
            "sampler.n_ei_candidates: TPESampler fails when it samples with n_ei_candidates=0, "
            "so every trial would fail (",
        ),
        (
            {"name": "tpe_ordinal", "n_ei_candidates": -3, "seed": 1},
            "sampler.n_ei_candidates: OrdinalTPESampler fails when it samples with "
            "n_ei_candidates=-3, so every trial would fail (",
        ),
    ],
)
def test_sampler_arguments_that_fail_only_when_sampling_are_refused(
    tmp_path: Path, sampler: dict[str, Any], expected: str
) -> None:
    """Optuna's constructors took these; then every trial failed (Optuna's own words
    after the parenthesis depend on the space)."""
    lines = refused(tmp_path, _study(sampler=sampler))
    assert len(lines) == 1 and lines[0].startswith(expected), lines


@pytest.mark.parametrize(
    "sampler",
    [
        {"name": "tpe", "n_ei_candidates": 1, "multivariate": True, "group": True},
        {"name": "random", "seed": 3},
        {"name": "qmc"},
        {"name": "nsga2", "population_size": 2},
        {"name": "cmaes", "n_startup_trials": 1},
    ],
)
def test_samplers_that_sample_are_taken_and_nothing_is_left(
    tmp_path: Path, sampler: dict[str, Any]
) -> None:
    accepted(tmp_path, _study(sampler=sampler))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


# --------------------------------------------------------------------------- unions


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (
            {"workers": {"gpus": "some"}},
            [
                "workers.gpus: expected all, none, or GPU indices like [0, 1], 0 or '0,1' "
                "(got 'some')"
            ],
        ),
        (
            {"workers": {"gpus": 1.5}},
            ["workers.gpus: expected all, none, or GPU indices like [0, 1], 0 or '0,1' (got 1.5)"],
        ),
        (
            {"workers": {"gpus": [0, "a"]}},
            [
                "workers.gpus.1: Input should be a valid integer, unable to parse string as an "
                "integer (got 'a')"
            ],
        ),
        (
            {"enqueue": [{"x": [1]}]},
            ["enqueue.0.x: expected true/false, an integer, a number, a string or null (got [1])"],
        ),
    ],
    ids=["gpus-word", "gpus-float", "gpus-item", "enqueue"],
)
def test_a_value_that_fits_no_member_of_a_union_is_one_line(
    tmp_path: Path, top: dict[str, Any], expected: list[str]
) -> None:
    """``workers: {gpus: 0}`` gave ``workers.gpus.literal['all','none']: ...`` and
    ``workers.gpus.list[int]: ...``; ``enqueue: [{x: [1]}]`` four lines (.bool, .int, ...)."""
    assert refused(tmp_path, _study(**top)) == expected


@pytest.mark.parametrize(("gpus", "ids"), [(0, [0]), ("0,1", [0, 1]), ("2", [2]), ([1], [1])])
def test_gpus_take_what_the_flag_takes(gpus: Any, ids: list[int]) -> None:
    from hpo import validate_study_data

    cfg = validate_study_data(_study(workers={"gpus": gpus}))
    assert cfg.workers.gpus == ids


# --------------------------------------------------------------------------- conditions


@pytest.mark.parametrize(("wanted", "shown"), [(0.5, "0.5"), ([0.5, 1.0], "any of [0.5, 1.0]")])
def test_an_equality_on_a_continuous_float_is_refused(
    tmp_path: Path, wanted: Any, shown: str
) -> None:
    """It was accepted, and the conditional parameter was never searched."""
    space = {"x": fl(-1, 1), "y": fl(-1, 1, **{"if": {"x": wanted}})}
    assert refused(tmp_path, _study(space=space)) == [
        f"space.y.if.x: x is a continuous float range, so it never equals {shown}; give x a "
        "step or make it categorical"
    ]


@pytest.mark.parametrize("x", [fl(-1, 1, step=0.5), fl(0.5, 0.5)])
def test_an_equality_on_a_float_that_can_hold_it_is_taken(tmp_path: Path, x: Any) -> None:
    accepted(tmp_path, _study(space={"x": x, "y": fl(-1, 1, **{"if": {"x": 0.5}})}))
