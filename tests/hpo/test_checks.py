"""``hpo validate`` pins each problem on the field that causes it (``hpo/checks/``).

Cross-field errors of the trainer (``n_heads`` must divide ``dim``) are blamed on the
searched fields they involve, not on whichever searched field was being checked, and are
still reported beside unrelated errors. ``mode: align``'s ``proj_dim`` is checked against
the width of the targets ``Z`` read from the ``.npz`` headers. Each test writes a real
study file and runs the real ``hpo validate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, model_validator
from typer.testing import CliRunner

from hpo.cli import app
from tests.conftest import pretrain_conv_encoder

runner = CliRunner()

HEADS_3 = "n_heads=3 must divide the attention width (dim=64); pick n_heads from the divisors of 64"


def _study(trainer_params: dict[str, Any], space: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "name": "checks",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "budget": {"n_trials": 4},
        "trainer": {"name": "contrastive", "params": trainer_params},
        "space": space,
        **top,
    }


def validate(tmp_path: Path, study: dict[str, Any]) -> tuple[int, list[str]]:
    """Exit code and stderr lines of ``hpo validate`` on ``study`` written in ``tmp_path``."""
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert "Traceback" not in result.output + result.stderr
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def choices(*values: Any) -> dict[str, Any]:
    return {"type": "categorical", "choices": list(values)}


# --------------------------------------------------------------------------- cross-field


@pytest.mark.parametrize("losses", [["infonce", "triplet"], ["triplet"]])
def test_a_heads_conflict_names_n_heads_not_the_field_beside_it(
    tmp_path: Path, losses: list[str]
) -> None:
    """It read 'space.loss: value 'triplet' is never allowed: n_heads=3 must divide...'."""
    study = _study({"dataset": "BasicMotions"}, {"loss": choices(*losses), "n_heads": choices(3)})
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.n_heads: value 3 is never allowed: {HEADS_3}"],
    )


def test_an_invalid_value_beside_it_neither_hides_nor_takes_the_blame(tmp_path: Path) -> None:
    """``infonc`` never reaches a trial: its own line, and n_heads is judged with triplet."""
    study = _study(
        {"dataset": "BasicMotions"}, {"loss": choices("infonc", "triplet"), "n_heads": choices(3)}
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 2
    assert lines[0].startswith("error: space.loss: value 'infonc' is not allowed: Input should be")
    assert lines[1] == f"error: space.n_heads: value 3 is never allowed: {HEADS_3}"


def test_a_cross_field_problem_is_still_said_beside_unrelated_failures(tmp_path: Path) -> None:
    """The review's file: a failed temperature entry and an unknown fixed key say nothing
    about n_heads and dim, so the heads check still runs (it once stayed silent)."""
    study = _study(
        {"dataset": "BasicMotions", "foo": 1},
        {
            "temperature": {"type": "float", "low": 0.0, "high": 0.5, "log": True},
            "loss": choices("infonc", "triplet"),
            "n_heads": choices(3),
        },
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert [line.split(":")[1].strip() for line in lines] == [
        "space.temperature",
        "trainer.params.foo",
        "space.loss",
        "space.n_heads",
    ]
    assert lines[-1] == f"error: space.n_heads: value 3 is never allowed: {HEADS_3}"


def test_a_failed_entry_the_check_reads_still_holds_it_back(tmp_path: Path) -> None:
    """dim's entry failed, so dim=64 would be a default, not the user's: nothing is claimed."""
    study = _study(
        {"dataset": "BasicMotions"},
        {"dim": choices(48, 60, 48), "n_heads": choices(3), "loss": choices("infonc")},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert not any("n_heads" in line for line in lines), lines


def test_each_searched_field_of_the_conflict_is_blamed_where_it_always_fails(
    tmp_path: Path,
) -> None:
    """dim 64 fails with the only n_heads; dim 48 takes it, so n_heads 3 is not refused."""
    study = _study({"dataset": "BasicMotions"}, {"dim": choices(48, 64), "n_heads": choices(3)})
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.dim: value 64 is never allowed: {HEADS_3}"],
    )


def test_a_mode_that_no_searched_loss_fits_is_blamed_on_the_mode(tmp_path: Path) -> None:
    study = _study(
        {"dataset": "BasicMotions"},
        {"mode": choices("pretrain", "supervised"), "loss": choices("supcon")},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert [line.split(": value")[0] for line in lines] == ["error: space.mode"]
    assert "value 'pretrain' is never allowed: loss 'supcon' needs labels" in lines[0]


@pytest.mark.parametrize(
    ("fixed", "space"),
    [
        # the first error involves a searched field and hides the fixed-only one behind it
        ({"mode": "finetune", "resume": True}, {"init_from": choices("a.pt", "b.pt")}),
        ({"unlabeled_label": 5, "resume": True}, {"mode": choices("pretrain")}),
        # infonce trials never draw dim: they run at the default 64
        (
            {"n_heads": 3},
            {
                "loss": choices("infonce", "triplet"),
                "dim": {**choices(48, 96), "if": {"loss": "triplet"}},
            },
        ),
        # too many combinations for the space's check to judge
        (
            {"n_heads": 3},
            {
                "model": choices("crossformer", "conv"),
                "batch_size": choices(8, 16, 32, 64, 128),
                "depth": choices(1, 2, 3, 4),
                "weight_decay": choices(0.0, 0.01, 0.1),
                "dropout": choices(0.0, 0.1, 0.2, 0.3),
                "mlp_ratio": choices(1.0, 2.0),
            },
        ),
    ],
)
def test_a_fixed_conflict_that_fails_trials_is_refused_whatever_is_searched(
    tmp_path: Path, fixed: dict[str, Any], space: dict[str, Any]
) -> None:
    """Fixed errors involving a searched field were once left to the space's check, which
    cannot judge these: every study here passed validation and its trials failed."""
    for name in ("a.pt", "b.pt"):
        (tmp_path / name).write_bytes(b"x")
    space = {
        k: {**v, "choices": [str(tmp_path / c) for c in v["choices"]]} if k == "init_from" else v
        for k, v in space.items()
    }
    code, lines = validate(tmp_path, _study({"dataset": "synthetic_har", **fixed}, space))
    assert code == 2, lines
    assert any(line.startswith("error: trainer.params") for line in lines), lines


def test_a_fixed_value_that_only_the_searched_default_refuses_passes(tmp_path: Path) -> None:
    """n_heads 3 fails at the default dim=64, which no trial takes: every trial runs."""
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, {"dim": choices(48, 96)})
    assert validate(tmp_path, study) == (0, [])


def test_a_fixed_value_the_space_replaces_in_every_trial_passes(tmp_path: Path) -> None:
    """Every trial draws n_heads from the space, so the fixed 3 reaches none of them."""
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, {"n_heads": choices(2, 4)})
    assert validate(tmp_path, study) == (0, [])


def test_a_fixed_value_that_some_searched_value_refuses_is_still_refused(tmp_path: Path) -> None:
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, {"dim": choices(48, 64)})
    assert validate(tmp_path, study) == (2, [f"error: trainer.params: {HEADS_3}"])


def test_a_range_is_not_settled_by_its_ends(tmp_path: Path) -> None:
    """dim 48 and 96 take n_heads 3, but dim 49 inside the range does not: the trial's
    error is said, not the fixed set's at the default dim=64."""
    study = _study(
        {"dataset": "BasicMotions", "n_heads": 3},
        {"dim": {"type": "int", "low": 48, "high": 96}},
    )
    heads_49 = HEADS_3.replace("64", "49")
    assert validate(tmp_path, study) == (2, [f"error: trainer.params: {heads_49}"])


def test_a_range_whose_ends_fail_may_still_run_inside(tmp_path: Path) -> None:
    """dim 62 and 64 take neither 3 nor 7 heads, but 63 inside the range takes both: the
    ends are refused, each on its own line, and the space is not said to fail whole."""
    study = _study(
        {"dataset": "BasicMotions"},
        {"n_heads": choices(3, 7), "dim": {"type": "int", "low": 62, "high": 64}},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert [line.split(" is never allowed")[0] for line in lines] == [
        "error: space.dim: value 62",
        "error: space.dim: value 64",
    ]
    assert lines[0].endswith("(and with every other value of n_heads)")


def test_a_space_where_no_trial_runs_is_refused_in_one_line(tmp_path: Path) -> None:
    """Each combination fails with its own message, so no single value is refused."""
    study = _study({"dataset": "BasicMotions"}, {"n_heads": choices(3, 5), "dim": choices(64, 128)})
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert lines == [
        "error: space: no combination of n_heads, dim passes the trainer's checks, so every "
        f"trial would fail; e.g. n_heads=3, dim=64: {HEADS_3}"
    ]


def test_a_space_where_one_combination_runs_passes(tmp_path: Path) -> None:
    study = _study({"dataset": "BasicMotions"}, {"n_heads": choices(3, 4), "dim": choices(64, 96)})
    assert validate(tmp_path, study) == (0, [])


def test_a_conditional_field_left_out_counts_as_its_default(tmp_path: Path) -> None:
    """Triplet trials take dim 48 or 96; infonce trials leave dim at 64, which n_heads
    5 never divides, and dim 48 and 96 do not either: no trial runs."""
    study = _study(
        {"dataset": "BasicMotions"},
        {
            "n_heads": choices(5, 7),
            "loss": choices("infonce", "triplet"),
            "dim": {**choices(48, 96), "if": {"loss": "triplet"}},
        },
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: space: no combination of n_heads, dim")


@pytest.mark.parametrize(
    ("fixed", "space"),
    [
        # reduction_dim is read by the heads check only with use_dim_reduction: true
        (
            {"n_heads": 3},
            {"dim": choices(48, 96), "reduction_dim": {"type": "int", "low": 16, "high": 64}},
        ),
        # every step of the range takes 3 heads
        ({"n_heads": 3}, {"dim": {"type": "int", "low": 48, "high": 192, "step": 48}}),
        # Optuna narrows the range to its last step, 96: 98 is never sampled
        ({}, {"dim": {"type": "int", "low": 48, "high": 98, "step": 48}}),
        # infonce trials never draw dim: they run at 64, which 8 heads divide
        (
            {},
            {
                "loss": choices("infonce", "triplet"),
                "n_heads": choices(2, 8),
                "dim": {**choices(60), "if": {"loss": "triplet"}},
            },
        ),
    ],
)
def test_studies_whose_every_trial_runs_pass(
    tmp_path: Path, fixed: dict[str, Any], space: dict[str, Any]
) -> None:
    """The review's false refusals."""
    assert validate(tmp_path, _study({"dataset": "BasicMotions", **fixed}, space)) == (0, [])


def test_a_range_behind_another_fixed_error_is_still_probed(tmp_path: Path) -> None:
    """loss triplet hides the heads check from the fixed set; dim 49 fails 3 heads."""
    study = _study(
        {"dataset": "BasicMotions", "mode": "pretrain", "loss": "triplet", "n_heads": 3},
        {"loss": choices("infonce", "vicreg"), "dim": {"type": "int", "low": 48, "high": 96}},
    )
    study["objective"] = {"metric": "best_probe_f1", "direction": "maximize"}
    code, lines = validate(tmp_path, study)
    assert code == 2 and lines[0].startswith("error: trainer.params: "), lines


def test_settled_fixed_values_still_have_their_inputs_checked(tmp_path: Path) -> None:
    """Settling the heads error once skipped the input checks, which read the fixed set."""
    study = _study({"dataset": str(tmp_path / "nope.npz"), "n_heads": 3}, {"dim": choices(48, 96)})
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert lines == [
        f"error: trainer.params.dataset: no file or folder {tmp_path}/nope.npz, and not a "
        "dataset bundled with aeon (no downloads are attempted)"
    ]
    study = _study(
        {"dataset": "BasicMotions", "mode": "pretrain", "loss": "triplet"},
        {"loss": choices("infonce", "vicreg")},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: objective.metric: best_val_f1: mode: pretrain does not")


def test_an_unknown_key_no_longer_hides_a_conflict_of_the_others(tmp_path: Path) -> None:
    study = _study({"dataset": "BasicMotions", "resume": True, "foo": 1}, {"lr": choices(1e-3)})
    assert validate(tmp_path, study) == (
        2,
        [
            "error: trainer.params.foo: unknown parameter",
            "error: trainer.params: resume: true needs save_dir",
        ],
    )


WIDE_SPACE = {
    "temperature": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
    "contrastive_weight": {"type": "float", "low": 0.05, "high": 0.3, "step": 0.05},
    "lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
    "loss": choices("infonce", "barlow_twins", "triplet"),
    "margin": {"type": "float", "low": 0.1, "high": 1.0, "if": {"loss": "triplet"}},
    "batch_size": choices(32, 64, 128),
}
"""Too many combinations to try all (more than MAX_COMBINATIONS), none about the heads."""


def test_a_wide_space_in_which_no_trial_runs_is_refused(tmp_path: Path) -> None:
    """Only the fields the heads error reads are varied; the others cannot help."""
    space = {**WIDE_SPACE, "n_heads": choices(3, 5), "dim": choices(64, 128)}
    code, lines = validate(tmp_path, _study({"dataset": "BasicMotions"}, space))
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: space: no combination of n_heads, dim passes")


def test_a_wide_space_settles_a_fixed_value_only_the_default_refuses(tmp_path: Path) -> None:
    space = {**WIDE_SPACE, "dim": choices(48, 96)}
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, space)
    assert validate(tmp_path, study) == (0, [])
    space = {**WIDE_SPACE, "dim": choices(48, 64)}
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, space)
    assert validate(tmp_path, study) == (2, [f"error: trainer.params: {HEADS_3}"])


def test_a_wide_space_keeps_a_fixed_error_hidden_behind_another(tmp_path: Path) -> None:
    """resume is settled by the searched save_dir; behind it, 3 heads fail at dim 64,
    which the space offers, and no value's own line can judge that past 256."""
    space = {**WIDE_SPACE, "save_dir": choices("a", "b"), "dim": choices(48, 64)}
    study = _study({"dataset": "BasicMotions", "n_heads": 3, "resume": True}, space)
    assert validate(tmp_path, study) == (2, [f"error: trainer.params: {HEADS_3}"])


def test_two_settled_errors_still_have_their_inputs_checked(tmp_path: Path) -> None:
    """resume is settled by save_dir and the heads by dim: the missing file is still said."""
    study = _study(
        {"dataset": str(tmp_path / "nope.npz"), "resume": True, "n_heads": 3},
        {"save_dir": choices("a", "b"), "dim": choices(48, 96)},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: trainer.params.dataset: no file")


@pytest.mark.parametrize(
    ("wider", "expected"),
    [
        ({}, f"error: space.n_heads: value 3 is never allowed: {HEADS_3}"),
        # past 256 combinations for that value's own line: the space's line says it
        (
            {"depth": choices(1, 2, 3), "dropout": choices(0.0, 0.1, 0.2)},
            "error: space: no combination of n_heads passes the trainer's checks, so every "
            f"trial would fail; e.g. n_heads=3: {HEADS_3}",
        ),
    ],
)
def test_a_single_field_no_value_of_which_runs_in_a_wide_space(
    tmp_path: Path, wider: dict[str, Any], expected: str
) -> None:
    space = {**WIDE_SPACE, **wider, "n_heads": choices(3)}
    assert validate(tmp_path, _study({"dataset": "BasicMotions"}, space)) == (2, [expected])


def test_a_value_that_fails_beside_every_other_with_its_own_message_is_refused(
    tmp_path: Path,
) -> None:
    """5 heads fail at dim 48 and at dim 96, each message naming its dim."""
    study = _study({"dataset": "BasicMotions"}, {"dim": choices(48, 96), "n_heads": choices(3, 5)})
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: space.n_heads: value 5 is never allowed: n_heads=5 must")
    assert lines[0].endswith("(and with every other value of dim)")


@pytest.mark.parametrize(
    ("fixed", "space"),
    [
        # use_dim_reduction is drawn only at depth 2, inside the range: then 3 heads fit 48
        (
            {"dim": 64, "reduction_dim": 48},
            {
                "n_heads": choices(3, 4),
                "depth": {"type": "int", "low": 1, "high": 3},
                "use_dim_reduction": {**choices(True), "if": {"depth": 2}},
            },
        ),
        # every trial has a save_dir; 3 heads at dim 64 is one failing pair, not a rule
        (
            {"resume": True},
            {"save_dir": choices("a", "b"), "n_heads": choices(3, 4), "dim": choices(48, 64)},
        ),
    ],
)
def test_studies_most_of_whose_trials_run_pass(
    tmp_path: Path, fixed: dict[str, Any], space: dict[str, Any]
) -> None:
    assert validate(tmp_path, _study({"dataset": "BasicMotions", **fixed}, space)) == (0, [])


def test_the_error_every_trial_meets_is_said_not_the_fixed_set_s_first(tmp_path: Path) -> None:
    """The fixed loss triplet reaches no trial (loss is searched); resume does."""
    study = _study(
        {"dataset": "BasicMotions", "resume": True, "mode": "pretrain", "loss": "triplet"},
        {"loss": choices("infonce", "vicreg")},
    )
    study["objective"] = {"metric": "best_probe_f1", "direction": "maximize"}
    assert validate(tmp_path, study) == (
        2,
        ["error: trainer.params: resume: true needs save_dir"],
    )


def test_a_searched_evaluate_test_needs_a_test_split(tmp_path: Path) -> None:
    data = tmp_path / "no_test.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.normal(size=(40, 2, 16)), y=np.arange(40) % 2)
    study = _study({"dataset": str(data)}, {"evaluate_test": choices(True)})
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.evaluate_test: {data} has no test split (X_test, y_test)"],
    )


def test_a_subject_split_needs_a_source_that_names_subjects(tmp_path: Path) -> None:
    why = "this source does not say who recorded each series"
    fixed = _study({"dataset": "BasicMotions", "val_split": "subject"}, {})
    code, lines = validate(tmp_path, fixed)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: trainer.params.val_split: {why}")
    # searched: refused for the value no trial can run with, fine where a value can
    searched = _study({"dataset": "BasicMotions"}, {"val_split": choices("stratified", "subject")})
    code, lines = validate(tmp_path, searched)
    assert code == 2 and lines[0].startswith(f"error: space.val_split: value 'subject': {why}")
    har = _study({"dataset": "synthetic_har"}, {"val_split": choices("stratified", "subject")})
    assert validate(tmp_path, har)[0] == 0


def test_a_zero_step_beside_a_condition_on_it_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    space = {
        "dim": {"type": "int", "low": 48, "high": 96, "step": 0},
        "loss": {**choices("infonce"), "if": {"dim": 200}},
    }
    assert validate(tmp_path, _study({"dataset": "BasicMotions"}, space)) == (
        2,
        ["error: space.dim: step must be > 0"],
    )


def test_an_unrelated_failed_entry_does_not_block_settling(tmp_path: Path) -> None:
    space = {"dim": choices(48, 96), "temperature": {"type": "float", "low": 0.5, "high": 0.1}}
    study = _study({"dataset": "BasicMotions", "n_heads": 3}, space)
    assert validate(tmp_path, study) == (
        2,
        ["error: space.temperature: low (0.5) must be <= high (0.1)"],
    )


def test_a_bad_fixed_value_does_not_hide_a_conflict_of_the_others(tmp_path: Path) -> None:
    study = _study(
        {"dataset": "BasicMotions", "n_heads": 3, "lr": -1}, {"loss": choices("infonce")}
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert [line.split(":")[1].strip() for line in lines] == ["trainer.params.lr", "trainer.params"]
    assert lines[1] == f"error: trainer.params: {HEADS_3}"


def test_an_if_whose_fixed_part_fails_leaves_the_parameter_out(tmp_path: Path) -> None:
    """mode is drawn only with loss triplet (and depth 2, inside the range): every such
    trial pretrains with triplet, which needs labels."""
    space = {
        "loss": choices("infonce", "triplet"),
        "depth": {"type": "int", "low": 1, "high": 3},
        "mode": {**choices("pretrain"), "if": {"loss": "triplet", "depth": 2}},
    }
    code, lines = validate(tmp_path, _study({"dataset": "BasicMotions"}, space))
    assert code == 2
    assert lines[0].startswith("error: space.mode: value 'pretrain' is never allowed: loss")


def test_the_input_checks_skip_combinations_no_trial_runs_with(tmp_path: Path) -> None:
    """mode 'bogus' has its own line; the missing dataset is every trial's, said once."""
    study = _study({"dataset": "NoSuchSet"}, {"mode": choices("supervised", "bogus")})
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert lines[0].startswith("error: space.mode: value 'bogus' is not allowed")
    assert lines[1].startswith("error: trainer.params.dataset: no file or folder NoSuchSet")


def test_a_searched_evaluate_test_keeps_the_objective_check(tmp_path: Path) -> None:
    study = _study(
        {"dataset": "BasicMotions", "mode": "pretrain", "loss": "infonce"},
        {"evaluate_test": choices(True, False)},
    )
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert lines[0].startswith("error: objective.metric: best_val_f1: mode: pretrain does not")


def test_a_conflict_of_fixed_fields_only_names_trainer_params(tmp_path: Path) -> None:
    study = _study(
        {"dataset": "BasicMotions", "n_heads": 3},
        {"temperature": {"type": "float", "low": 0.1, "high": 0.5}},
    )
    assert validate(tmp_path, study) == (2, [f"error: trainer.params: {HEADS_3}"])


# --------------------------------------------------------------------------- mode: align


def _align_study(npz: Path, fixed: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    params = {"mode": "align", "dataset": str(npz), "loss": "mse", "epochs": 2, **fixed}
    study = _study(params, space)
    study["objective"] = {"metric": "best_val_cosine", "direction": "maximize"}
    return study


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    """Targets Z of 32 dimensions; saved compressed, as ``python -m trainers.align`` does."""
    rng = np.random.default_rng(0)
    path = tmp_path / "align.npz"
    np.savez_compressed(
        path,
        X=rng.standard_normal((40, 3, 16)).astype(np.float32),
        Z=rng.standard_normal((40, 32)).astype(np.float32),
    )
    return path


def _proj_dim_problem(npz: Path) -> str:
    return (
        f"the targets Z in {npz} have 32 dimensions, and mode: align predicts them: "
        "proj_dim must be 32 (or left out: it is taken from Z)"
    )


def test_align_refuses_a_fixed_proj_dim_other_than_z(tmp_path: Path, npz: Path) -> None:
    """Every trial failed with 'proj_dim=16 but the targets Z ... have 32 dimensions'."""
    study = _align_study(
        npz, {"proj_dim": 16}, {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}
    )
    assert validate(tmp_path, study) == (
        2,
        [f"error: trainer.params.proj_dim: {_proj_dim_problem(npz)}"],
    )


def test_align_refuses_a_searched_proj_dim_other_than_z(tmp_path: Path, npz: Path) -> None:
    study = _align_study(npz, {}, {"proj_dim": choices(16, 32)})
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.proj_dim: value 16: {_proj_dim_problem(npz)}"],
    )


def test_align_refuses_a_proj_dim_range_at_the_end_other_than_z(tmp_path: Path, npz: Path) -> None:
    """A range offers widths other than Z's: it is tried at its ends, like the others."""
    study = _align_study(npz, {}, {"proj_dim": {"type": "int", "low": 32, "high": 64}})
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.proj_dim: value 64: {_proj_dim_problem(npz)}"],
    )


@pytest.mark.parametrize(
    ("fixed", "space"),
    [
        ({"proj_dim": 32}, {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}),
        ({}, {"proj_dim": choices(32)}),
        ({}, {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}),  # taken from Z
    ],
)
def test_align_takes_a_proj_dim_that_matches_z(
    tmp_path: Path, npz: Path, fixed: dict[str, Any], space: dict[str, Any]
) -> None:
    code, lines = validate(tmp_path, _align_study(npz, fixed, space))
    assert (code, lines) == (0, [])


def test_a_searched_proj_dim_is_only_z_s_business_in_mode_align(tmp_path: Path, npz: Path) -> None:
    """With mode searched too, 16 suits the pretraining trials; the align ones all fail."""
    study = _align_study(npz, {}, {"proj_dim": choices(16), "mode": choices("align", "pretrain")})
    del study["trainer"]["params"]["mode"]
    study["objective"] = {"metric": "best_rankme", "direction": "maximize"}
    assert validate(tmp_path, study) == (
        2,
        [f"error: space.mode: value 'align': {_proj_dim_problem(npz)}"],
    )


def test_align_without_targets_is_refused_at_validation(tmp_path: Path) -> None:
    path = tmp_path / "no_z.npz"
    np.savez(path, X=np.zeros((10, 2, 8), dtype=np.float32))
    study = _align_study(path, {}, {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}})
    assert validate(tmp_path, study) == (
        2,
        ["error: trainer.params.dataset: missing array(s) ['Z']; found ['X']"],
    )


# --------------------------------------------------------------------------- mode: finetune


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conv encoder of width 16, pretrained for one epoch on synthetic HAR."""
    return pretrain_conv_encoder(tmp_path_factory.mktemp("pretrained"))


def _finetune_study(encoder: Path, space: dict[str, Any]) -> dict[str, Any]:
    fixed = {"mode": "finetune", "init_from": str(encoder), "dataset": "synthetic_har"}
    return _study({**fixed, "synthetic_n_train": 120, "epochs": 1}, space)


def test_finetune_refuses_a_searched_architecture_other_than_the_checkpoint(
    tmp_path: Path, encoder: Path
) -> None:
    """A supervised space copied into a fine-tuning study: dim 32 failed every trial."""
    study = _finetune_study(encoder, {"dim": choices(16, 32), "lr": choices(0.001, 0.01)})
    assert validate(tmp_path, study) == (
        2,
        [
            f"error: space.dim: value 32: init_from {encoder}/encoder.pt: the encoder was "
            "pretrained with another architecture: dim=32 (checkpoint: 16); leave these unset "
            "to take them from the checkpoint"
        ],
    )


def test_finetune_takes_the_checkpoint_s_own_architecture_searched(
    tmp_path: Path, encoder: Path
) -> None:
    study = _finetune_study(encoder, {"dim": choices(16), "model": choices("conv")})
    assert validate(tmp_path, study) == (0, [])


def test_architecture_is_checked_only_where_a_trial_fine_tunes(
    tmp_path: Path, encoder: Path
) -> None:
    """mode: [supervised, finetune]: dim 32 runs in the supervised trials."""
    study = _finetune_study(
        encoder, {"mode": choices("supervised", "finetune"), "dim": choices(16, 32)}
    )
    del study["trainer"]["params"]["mode"]
    assert validate(tmp_path, study) == (0, [])


def test_a_settled_fixed_set_is_still_checked_against_the_checkpoint(
    tmp_path: Path, encoder: Path
) -> None:
    """resume without save_dir is settled by the searched save_dir; dim 32 still misfits."""
    study = _finetune_study(
        encoder,
        {"save_dir": choices(str(tmp_path / "a"), str(tmp_path / "b"))},
    )
    study["trainer"]["params"].update({"resume": True, "dim": 32})
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: trainer.params.init_from: init_from ")
    assert "dim=32 (checkpoint: 16)" in lines[0]


def test_a_conditional_architecture_field_left_out_keeps_the_fixed_value(
    tmp_path: Path, encoder: Path
) -> None:
    """infonce trials never draw dim, so they fine-tune at the fixed 32: they all fail."""
    study = _finetune_study(
        encoder,
        {"loss": choices("infonce", "triplet"), "dim": {**choices(16), "if": {"loss": "triplet"}}},
    )
    study["trainer"]["params"]["dim"] = 32
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: space.loss: value 'infonce': init_from ")


def test_a_conditional_architecture_value_is_judged_where_its_if_holds(
    tmp_path: Path, encoder: Path
) -> None:
    study = _finetune_study(
        encoder,
        {
            "mode": choices("supervised", "finetune"),
            "dim": {**choices(16, 32), "if": {"mode": "finetune"}},
        },
    )
    del study["trainer"]["params"]["mode"]
    study["trainer"]["params"]["model"] = "conv"
    code, lines = validate(tmp_path, study)
    assert code == 2
    assert len(lines) == 1
    assert lines[0].startswith("error: space.dim: value 32: init_from ")


def test_the_checkpoint_is_read_once_for_all_combinations(
    tmp_path: Path, encoder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The misfit check tries every combination of the searched architecture values."""
    import trainers.finetune
    from hpo.checks import input_misfit_problems
    from hpo.config import validate_study_data

    reads: list[str] = []
    real = trainers.finetune.load_encoder
    monkeypatch.setattr(
        trainers.finetune, "load_encoder", lambda path: reads.append(str(path)) or real(path)
    )
    trainers.finetune._encoder_for_checks.cache_clear()
    study = _finetune_study(encoder, {"dim": choices(16, 32), "depth": choices(1, 2, 3)})
    problems = input_misfit_problems(validate_study_data(study))
    assert any(line.startswith("space.dim: value 32: init_from ") for line in problems)
    assert len(reads) == 1


# --------------------------------------------------------------------------- a schema's own bug


class _ModuloParams(BaseModel):
    """A user's schema whose check divides by a searched value (its own bug at 0)."""

    model_config = ConfigDict(extra="forbid")
    dim: int = 64
    n_heads: int = 4
    seed: int | None = None

    @model_validator(mode="after")
    def _heads_divide(self) -> _ModuloParams:
        if self.dim % self.n_heads:
            raise ValueError("n_heads must divide dim")
        return self


def modulo_trainer(params: dict[str, Any], reporter: Any = None) -> dict[str, float]:
    return {"score": float(_ModuloParams.model_validate(params).n_heads)}


modulo_trainer.params_schema = _ModuloParams  # type: ignore[attr-defined]


def test_a_schema_that_raises_its_own_exception_is_one_line(tmp_path: Path) -> None:
    """Before, ZeroDivisionError from the schema was a traceback (exit 1) in validate and run."""
    study = {
        "name": "checks",
        "objective": {"metric": "score", "direction": "maximize"},
        "budget": {"n_trials": 2},
        "trainer": {"name": "tests.hpo.test_checks:modulo_trainer"},
        "space": {"n_heads": choices(0, 2, 4)},
    }
    assert validate(tmp_path, study) == (
        2,
        [
            "error: space.n_heads: value 0 is never allowed: the trainer's schema failed "
            "(ZeroDivisionError: integer modulo by zero)"
        ],
    )


def test_pruning_on_a_contrastive_metric_without_a_contrastive_term_is_refused(
    tmp_path: Path,
) -> None:
    """``retrieval_acc`` is measured on the contrastive term's views: with
    ``contrastive_weight: 0`` no epoch reports it, so no trial could ever be pruned."""
    study = _study(
        {"dataset": "synthetic_har", "epochs": 2, "contrastive_weight": 0},
        {"temperature": choices(0.07, 0.1)},
        objective={"metric": "best_val_f1", "direction": "maximize", "prune_on": "retrieval_acc"},
    )
    assert validate(tmp_path, study) == (
        2,
        [
            "error: objective.prune_on: retrieval_acc: loss: infonce with contrastive_weight: 0 "
            "trains on cross-entropy alone, so there is no contrastive term to measure"
        ],
    )
    study["trainer"]["params"]["contrastive_weight"] = 0.1
    assert validate(tmp_path, study)[0] == 0
    del study["trainer"]["params"]["contrastive_weight"]  # searched: some trials have one
    study["space"]["contrastive_weight"] = choices(0.0, 0.1)
    assert validate(tmp_path, study)[0] == 0
