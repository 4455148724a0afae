"""``ContrastiveParams.unused_params``: what it names, checked by training both values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from trainers import resolve_trainer
from trainers.augment import POLICIES
from trainers.contrastive import train
from trainers.losses import LOSS_KWARGS, loss_kwargs
from trainers.params import (
    FINETUNE_FIELDS,
    PRETRAIN_ONLY_FIELDS,
    ContrastiveParams,
    CrossFieldError,
)
from trainers.reporter import TrainingFailed
from trainers.runtime import cuda_index_problem, resolve_device

TINY_HAR: dict[str, Any] = {
    "dataset": "synthetic_har",
    "synthetic_n_train": 160,
    "synthetic_n_test": 20,
    "length": 32,
    "dim": 16,
    "proj_dim": 16,
    "batch_size": 32,
    "epochs": 1,
    "seed": 3,
}
RESULT_KEYS = ("train_loss", "best_val_f1", "final_val_f1", "val_loss")


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _unused(**params: Any) -> frozenset[str]:
    return ContrastiveParams.model_validate(params).unused_params()


def test_each_loss_leaves_the_other_losses_knobs_unread() -> None:
    assert _unused(loss="vicreg") == (LOSS_KWARGS - loss_kwargs("vicreg")) | {
        "reduction_dim",
        "t_0",
        "t_mult",
        "plateau_patience",
        "plateau_factor",
        *FINETUNE_FIELDS,
        *PRETRAIN_ONLY_FIELDS,
    }
    assert "temperature" in _unused(loss="vicreg")
    assert "temperature" not in _unused(loss="infonce")
    assert "margin" not in _unused(loss="triplet")
    assert {"vicreg_var_weight", "temperature"} <= _unused(loss="triplet")


def test_without_a_contrastive_term_no_loss_knob_is_read() -> None:
    off = _unused(contrastive_weight=0.0, loss="vicreg")
    assert LOSS_KWARGS | {"loss", "loss_mix"} <= off
    assert "contrastive_weight" not in off, "0 is what turns the term off"
    assert {"contrastive_weight", "loss_mix"} <= _unused(loss="none")
    assert "loss" not in _unused(loss="none")
    # pretraining has no cross-entropy: the SSL loss is the whole objective
    assert "temperature" not in _unused(mode="pretrain", loss="infonce", contrastive_weight=0.0)


def test_architecture_knobs_the_model_does_not_have() -> None:
    assert "reduction_dim" in _unused()
    assert "reduction_dim" not in _unused(use_dim_reduction=True)
    conv = _unused(model="conv")
    assert {"n_heads", "depth", "mlp_ratio", "use_dim_reduction", "n_prototypes"} <= conv
    assert not {"n_heads", "depth"} & _unused(model="crossformer")


def test_finetuning_reads_the_architecture_from_its_checkpoint() -> None:
    # an explicit reduction_dim that differs from the checkpoint's is an error, not a no-op
    tuned = _unused(mode="finetune", init_from="encoder.pt", loss="vicreg", model="conv")
    assert not {"reduction_dim", "n_heads", "depth"} & tuned
    assert "temperature" in tuned


@pytest.mark.parametrize(
    "mode",
    [{}, {"mode": "pretrain"}, {"mode": "align", "dataset": "a.npz", "loss": "mse"}],
    ids=["supervised", "pretrain", "align"],
)
def test_fine_tuning_knobs_are_unread_outside_finetune(mode: dict[str, Any]) -> None:
    # a study that forgot mode: finetune trained from scratch, and two trials that differ
    # only in init_from or freeze counted as different configurations
    unused = _unused(**mode, init_from="runs/ssl/0", freeze=True)
    assert set(FINETUNE_FIELDS) <= unused
    assert resolve_trainer("contrastive").unused_params({**mode, "init_from": "x"}) >= {
        "init_from",
        "freeze",
    }
    # not refused: a space may search mode over supervised and finetune beside a fixed init_from
    assert ContrastiveParams.model_validate({**mode, "init_from": "/no/such/run"})


def test_fine_tuning_knobs_are_read_in_finetune_and_only_there_is_init_from_needed() -> None:
    assert not set(FINETUNE_FIELDS) & _unused(mode="finetune", init_from="encoder.pt")
    assert ContrastiveParams(init_from="/no/such/run").missing_inputs() == {}
    finetune = ContrastiveParams(mode="finetune", init_from="/no/such/run")
    assert list(finetune.missing_inputs()) == ["init_from"]


def test_a_schema_method_that_raises_means_nothing_is_unread() -> None:
    from pydantic import BaseModel

    from trainers.registry import TrainerSpec

    class Broken(BaseModel):
        x: int = 0

        def unused_params(self) -> frozenset[str]:
            raise RuntimeError("user bug")

    spec = TrainerSpec(name="mine", fn=train, params_schema=Broken)
    assert spec.unused_params({"x": 1}) == frozenset()


def test_each_scheduler_leaves_the_others_knobs_unread() -> None:
    assert {"t_0", "t_mult", "plateau_patience"} <= _unused()
    assert not {"warmup_epochs", "min_lr_ratio"} & _unused()
    assert {"warmup_epochs", "min_lr_ratio", "t_0"} <= _unused(scheduler="plateau")
    assert not {"plateau_patience", "plateau_factor"} & _unused(scheduler="plateau")
    assert not {"t_0", "t_mult", "min_lr_ratio"} & _unused(scheduler="cosine_restarts")
    assert {"warmup_epochs", "plateau_factor"} <= _unused(scheduler="cosine_restarts")


def test_every_name_is_a_field() -> None:
    for params in ({}, {"loss": "none"}, {"model": "conv"}, {"contrastive_weight": 0.0}):
        assert _unused(**params) <= ContrastiveParams.model_fields.keys()


def test_the_registry_reads_it_through_the_schema() -> None:
    spec = resolve_trainer("contrastive")
    assert "temperature" in spec.unused_params({"loss": "vicreg"})
    assert spec.unused_params({"loss": "no_such_loss"}) == frozenset(), "invalid: cannot tell"
    assert resolve_trainer("analytic").unused_params({"x": 1.0}) == frozenset()


@pytest.mark.parametrize(
    ("base", "name", "values"),
    [
        ({"loss": "vicreg"}, "temperature", (0.05, 0.5)),
        ({"loss": "infonce"}, "margin", (0.1, 0.9)),
        ({"loss": "triplet"}, "vicreg_var_weight", (5.0, 50.0)),
        ({"contrastive_weight": 0.0}, "loss", ("vicreg", "triplet")),
        ({"loss": "none"}, "contrastive_weight", (0.1, 0.3)),
        ({}, "reduction_dim", (8, 16)),
        ({"model": "conv"}, "n_heads", (2, 8)),
        ({"model": "conv"}, "proto_init", ("xavier", "class_mean")),
        ({}, "t_0", (1, 7)),
        ({"scheduler": "plateau"}, "warmup_epochs", (0, 2)),
        ({"scheduler": "cosine_restarts"}, "plateau_factor", (0.1, 0.9)),
        ({}, "init_from", (None, "/no/such/run")),
        ({}, "freeze", (False, True)),
        ({}, "knn_k", (1, 50)),
        ({}, "probe_epochs", (5, 300)),
        ({}, "collapse_std", (0.0, 0.1)),
        ({}, "eval_every", (1, 3)),
    ],
)
def test_an_unused_knob_trains_exactly_alike(
    base: dict[str, Any], name: str, values: tuple[Any, Any]
) -> None:
    """The independent check: train both values at one seed and compare the results."""
    assert name in _unused(**base)
    first, second = (train({**TINY_HAR, **base, name: value}) for value in values)
    assert [first[k] for k in RESULT_KEYS] == [second[k] for k in RESULT_KEYS]


def test_prototype_init_and_patience_where_a_mode_never_reads_them() -> None:
    assert "proto_init" in _unused(mode="pretrain", loss="infonce")
    assert "proto_init" in _unused(mode="finetune", init_from="encoder.pt")
    assert "proto_init" not in _unused()
    assert "early_stopping_patience" in _unused(mode="align", dataset="a.npz", loss="mse")
    assert "early_stopping_patience" not in _unused(mode="pretrain", loss="vicreg")
    pretrain = {**TINY_HAR, "mode": "pretrain", "loss": "vicreg"}
    first, second = (train({**pretrain, "proto_init": v}) for v in ("xavier", "class_mean"))
    assert [first[k] for k in ("ssl_loss", "best_probe_f1")] == [
        second[k] for k in ("ssl_loss", "best_probe_f1")
    ]


def test_a_knob_that_is_read_changes_the_result() -> None:
    """The same comparison tells a read knob apart: the check above can fail."""
    assert "temperature" not in _unused(loss="infonce")
    first, second = (train({**TINY_HAR, "loss": "infonce", "temperature": t}) for t in (0.05, 0.5))
    assert first["train_loss"] != second["train_loss"]


@pytest.mark.parametrize(
    ("fields", "width"),
    [
        ({"n_heads": 3}, "dim=64"),
        ({"n_heads": 4, "use_dim_reduction": True, "reduction_dim": 30}, "reduction_dim=30"),
    ],
)
def test_heads_must_divide_the_attention_width(fields: dict[str, Any], width: str) -> None:
    # it failed in the model's constructor, after the study and the trial had started
    with pytest.raises(ValueError, match=f"must divide the attention width \\({width}\\)"):
        ContrastiveParams(**fields)


def test_heads_are_not_checked_where_there_is_no_attention() -> None:
    ContrastiveParams(model="conv", n_heads=3)
    ContrastiveParams(n_heads=3, dim=48)
    ContrastiveParams(n_heads=3, use_dim_reduction=True, reduction_dim=48)


def test_missing_inputs_name_the_field_and_the_remedy(tmp_path: Any) -> None:
    assert ContrastiveParams().missing_inputs() == {}  # BasicMotions ships with aeon
    assert ContrastiveParams(dataset="synthetic_har").missing_inputs() == {}
    assert ContrastiveParams(dataset="nope.npz").missing_inputs() == {
        # relative data paths are read from the current folder, not beside the study file
        "dataset": f"no file or folder nope.npz in the current folder {Path.cwd()}, and not a "
        "dataset bundled with aeon (no downloads are attempted)"
    }
    align = ContrastiveParams(mode="align", loss="mse", dataset="x.npz", data_dir=str(tmp_path))
    assert align.missing_inputs()["dataset"].startswith(f"mode: align: no file {tmp_path}/x.npz")
    (tmp_path / "x.npz").write_bytes(b"")
    assert align.missing_inputs() == {}
    finetune = ContrastiveParams(mode="finetune", init_from=str(tmp_path))
    assert finetune.missing_inputs() == {
        "init_from": f"no encoder checkpoint at {tmp_path}/encoder.pt; point it at the "
        "encoder.pt (or the save_dir) written by a mode: pretrain run"
    }


def _one_error(**params: Any) -> str:
    """The single validation message, as ``hpo validate`` shows it (``field: message``)."""
    with pytest.raises(ValidationError) as info:
        ContrastiveParams.model_validate(params)
    errors = info.value.errors()
    assert len(errors) == 1, errors
    loc = ".".join(str(x) for x in errors[0]["loc"])
    return f"{loc}: {str(errors[0]['msg']).removeprefix('Value error, ')}"


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps", "xpu:1"])
def test_device_forms_are_accepted_without_a_gpu(device: str) -> None:
    # validation may run where the workers' GPU is absent: only the form is checked
    assert ContrastiveParams(device=device).device == device


@pytest.mark.parametrize("device", ["xyz", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", " cpu"])
def test_an_unknown_device_is_refused_up_front(device: str) -> None:
    # it passed and every trial failed later with a RuntimeError from torch.device
    assert _one_error(device=device) == (
        f"device: must be auto, cpu, cuda, cuda:N, mps or xpu (got {device!r})"
    )


def test_a_gpu_index_this_process_does_not_see_is_a_clear_error() -> None:
    # "invalid device ordinal" at the first tensor was recorded as a generic exception
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(TrainingFailed) as info:
        resolve_device(f"cuda:{count}")
    assert info.value.reason == "no_cuda"
    if count == 0:
        assert str(info.value) == f"device 'cuda:{count}' requested but CUDA is not available"
    else:
        assert str(info.value) == cuda_index_problem(f"cuda:{count}", count, count)
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    ("index", "count", "seen"),
    [(1, 1, "1 CUDA device(s) (cuda:0)"), (4, 2, "2 CUDA device(s) (cuda:0 to cuda:1)")],
)
def test_a_gpu_index_names_the_devices_a_worker_sees(index: int, count: int, seen: str) -> None:
    assert cuda_index_problem(f"cuda:{index}", index, count) == (
        f"device 'cuda:{index}' requested but this process sees {seen}; each hpo worker "
        "sees only its own GPU(s), numbered from cuda:0, so use device: cuda or auto"
    )
    assert cuda_index_problem("cuda:0", 0, 1) is None
    assert cuda_index_problem(f"cuda:{count - 1}", count - 1, count) is None


@pytest.mark.parametrize(
    ("augment", "message"),
    [
        ("nosuch", "augment: unknown augmentation policy 'nosuch'; allowed: default, none"),
        (["nosuch"], "augment: unknown augmentation 'nosuch'; allowed: blockout"),
        (
            [{"name": "jitter", "bogus": 1}],
            "augment: unknown augmentation keys ['bogus']; allowed: name, p, strength",
        ),
        ([{"p": 0.5}], "augment: augmentation entry {'p': 0.5} has no 'name'"),
        ([{"name": "jitter", "p": 2}], "augment: jitter: p must be in [0, 1], got 2.0"),
        ([{"name": "jitter", "p": "often"}], "augment: jitter: p and strength must be numbers"),
    ],
)
def test_an_unknown_augmentation_is_refused_up_front(augment: Any, message: str) -> None:
    # these passed validation and failed every trial in Augmenter.from_config
    assert _one_error(augment=augment).startswith(message)


@pytest.mark.parametrize(
    "augment",
    [
        *POLICIES,
        [],
        ["jitter", "flip"],
        [{"name": "jitter", "p": 0.3, "strength": 2.0}, "time_warp"],
    ],
)
def test_every_policy_and_explicit_list_the_augmenter_takes_passes(augment: Any) -> None:
    assert ContrastiveParams(augment=augment).augment == augment


def test_the_schema_does_not_import_the_model_code() -> None:
    """``hpo validate`` imports the schema; checking augmentations must not pull in more."""
    import subprocess
    import sys

    code = (
        "import sys, trainers.params; "
        "print(sorted(m for m in sys.modules if m.startswith('trainers.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "trainers.contrastive" not in out and "trainers.models" not in out


def test_a_cross_field_error_names_the_fields_its_check_reads() -> None:
    """``hpo validate`` pins it on those fields (hpo/checks/_trainer_params.py), even across processes."""
    import pickle

    with pytest.raises(ValidationError) as info:
        ContrastiveParams(n_heads=3)
    for errors in (info.value.errors(), pickle.loads(pickle.dumps(info.value)).errors()):
        error = errors[0]["ctx"]["error"]
        assert isinstance(error, CrossFieldError)
        assert {"n_heads", "dim"} <= error.fields and "loss" not in error.fields
        assert str(error).startswith("n_heads=3 must divide the attention width (dim=64)")


def test_align_refuses_a_proj_dim_other_than_the_targets_width(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "a.npz"
    np.savez(path, X=np.zeros((6, 2, 8), np.float32), Z=np.zeros((6, 5), np.float32))
    align: dict[str, Any] = {"mode": "align", "dataset": str(path), "loss": "mse"}
    assert ContrastiveParams.model_validate(align).input_misfits() == {}  # proj_dim taken from Z
    assert ContrastiveParams.model_validate({**align, "proj_dim": 5}).input_misfits() == {}
    assert ContrastiveParams.model_validate({**align, "proj_dim": 6}).input_misfits() == {
        "proj_dim": f"the targets Z in {path} have 5 dimensions, and mode: align predicts "
        "them: proj_dim must be 5 (or left out: it is taken from Z)"
    }
    np.savez(path, X=np.zeros((6, 2, 8), np.float32), Z=np.zeros(6, np.float32))
    assert ContrastiveParams.model_validate({**align, "proj_dim": 6}).input_misfits() == {
        "dataset": "Z must be a numeric 2-D (n, dim) array, got shape (6,)"
    }


def test_a_subject_split_needs_subjects_and_a_mode_that_reads_it() -> None:
    with pytest.raises(ValidationError, match="val_split: subject is read by mode: supervised"):
        ContrastiveParams(val_split="subject", mode="align", dataset="a.npz")
    assert ContrastiveParams(dataset="synthetic_har", val_split="subject").input_misfits() == {}
    misfits = ContrastiveParams(dataset="BasicMotions", val_split="subject").input_misfits()
    assert list(misfits) == ["val_split"]
    assert misfits["val_split"].startswith("this source does not say who recorded each series")


def _cross_field_error(**params: Any) -> CrossFieldError:
    with pytest.raises(ValidationError) as info:
        ContrastiveParams.model_validate(params)
    error = info.value.errors()[0]["ctx"]["error"]
    assert isinstance(error, CrossFieldError)
    return error


def test_collapse_std_must_be_below_what_normalised_projections_can_reach() -> None:
    # per_dim_std of L2-normalised projections is at most 1/sqrt(proj_dim): a larger
    # collapse_std stopped every pretraining trial at epoch 1 as collapse
    error = _cross_field_error(mode="pretrain", collapse_std=0.2)
    assert str(error) == (
        "collapse_std=0.2 must be below 1/sqrt(proj_dim) = 0.125 (proj_dim=64, the default): "
        "the per-dimension std of the normalised projections never exceeds it, so every "
        "epoch would stop as collapse; 0 turns the check off"
    )
    assert error.fields == {"collapse_std", "proj_dim", "mode"}
    error = _cross_field_error(mode="pretrain", proj_dim=16, collapse_std=0.25)
    assert "collapse_std=0.25 must be below 1/sqrt(proj_dim) = 0.25 (proj_dim=16):" in str(error)
    assert ContrastiveParams(mode="pretrain", proj_dim=16, collapse_std=0.2).collapse_std == 0.2
    assert ContrastiveParams(mode="pretrain", proj_dim=8192).collapse_std == 1e-3  # the default
    assert ContrastiveParams(collapse_std=0.5).collapse_std == 0.5  # read by pretrain only
