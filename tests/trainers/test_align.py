"""mode: align: every loss trains, metrics and chance level, proj_dim from the data, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from trainers import RecordingReporter, TrainingFailed
from trainers.align import block_retrieval_accuracy, make_alignment_data
from trainers.align import main as align_main
from trainers.contrastive import train
from trainers.metrics import retrieval_accuracy


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("align") / "align.npz"
    np.savez(path, **make_alignment_data(n_train=200, n_test=40, dim=12, seed=0))  # type: ignore[arg-type]
    return path


def _align(npz: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "mode": "align",
        "dataset": str(npz),
        "model": "conv",
        "dim": 16,
        "batch_size": 16,
        "epochs": 2,
        "device": "cpu",
        "augment": "weak",
        **overrides,
    }


@pytest.mark.parametrize(
    "loss",
    [
        {"loss": "mse"},
        {"loss": "cosine"},
        {"loss": "cosine_mse", "cosine_weight": 0.5, "mse_weight": 2.0},
        {"loss": "infonce", "temperature": 0.07},
    ],
    ids=lambda d: d["loss"],
)
def test_every_alignment_loss_trains(npz: Path, loss: dict[str, Any]) -> None:
    reporter = RecordingReporter()
    result = train(_align(npz, evaluate_test=True, **loss), reporter)
    for _, metrics in reporter.history:
        assert {
            "val_cosine",
            "val_mse",
            "val_retrieval_acc",
            "train_loss",
            "best_val_cosine",
        } <= set(metrics)
        assert metrics["retrieval_chance"] == pytest.approx(1 / 16)
        assert -1.0 <= metrics["val_cosine"] <= 1.0
    assert result["best_val_cosine"] == max(m["val_cosine"] for _, m in reporter.history)
    assert {"test_cosine", "test_mse", "test_retrieval_acc", "val_mse"} <= set(result)


def test_training_moves_predictions_toward_targets(npz: Path) -> None:
    reporter = RecordingReporter()
    train(_align(npz, loss="cosine", epochs=4, lr=3e-3, warmup_epochs=0), reporter)
    cosines = [m["val_cosine"] for _, m in reporter.history]
    assert cosines[-1] > cosines[0]


def test_proj_dim_is_taken_from_the_targets(npz: Path) -> None:
    train(_align(npz, epochs=1))  # Z has 12 dims, the default proj_dim is 64
    with pytest.raises(TrainingFailed, match=r"proj_dim=64 but the targets Z .* have 12"):
        train(_align(npz, epochs=1, proj_dim=64))


def test_infonce_needs_a_batch_of_16() -> None:
    with pytest.raises(ValidationError, match="batch_size >= 16"):
        train({"mode": "align", "dataset": "x.npz", "loss": "infonce", "batch_size": 8})


def test_other_losses_and_datasets_are_refused() -> None:
    with pytest.raises(ValidationError, match="mse, cosine, cosine_mse, infonce"):
        train({"mode": "align", "dataset": "x.npz", "loss": "vicreg"})
    with pytest.raises(ValidationError, match=r"\.npz with X"):
        train({"mode": "align", "dataset": "BasicMotions", "loss": "mse"})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match=r"python -m trainers\.align"):
        train({"mode": "align", "dataset": str(tmp_path / "none.npz"), "loss": "mse"})


def test_block_retrieval_matches_per_block_retrieval() -> None:
    torch.manual_seed(0)
    pred, target = torch.randn(40, 5), torch.randn(40, 5)
    blocks = [retrieval_accuracy(pred[i : i + 8], target[i : i + 8]) for i in range(0, 40, 8)]
    expected = torch.stack(blocks).mean()
    torch.testing.assert_close(block_retrieval_accuracy(pred, target, 8), expected)
    torch.testing.assert_close(block_retrieval_accuracy(target, target, 8), torch.tensor(1.0))


def test_data_generator_command(tmp_path: Path) -> None:
    out = tmp_path / "d.npz"
    assert align_main([str(out), "--n-train", "60", "--n-test", "12", "--dim", "8"]) == 0
    data = np.load(out)
    assert data["X"].shape == (60, 9, 128) and data["Z"].shape == (60, 8)
    assert data["X_test"].shape[0] == data["Z_test"].shape[0] == 12
    assert np.isfinite(data["Z"]).all() and data["Z"].std() > 0.1


def test_infonce_validation_loss_is_the_mean_over_whole_blocks() -> None:
    # 273 rows in blocks of 16: 17 whole blocks; chunk() made 16 of 17 rows and one of 1
    from trainers.align import _scores
    from trainers.losses import build_contrastive_loss

    torch.manual_seed(0)
    pred, target = torch.randn(273, 8), torch.randn(273, 8)
    loss_fn = build_contrastive_loss("infonce", temperature=0.1)
    blocks = [loss_fn(pred[i : i + 16], target[i : i + 16]) for i in range(0, 272, 16)]
    expected = torch.stack(blocks).mean()
    torch.testing.assert_close(_scores(pred, target, loss_fn, 16)["loss"], expected)


def test_the_crossformer_gets_several_prototypes_without_classes(npz: Path) -> None:
    # "one per class" with no classes left one key: attention weight 1, a constant output
    from trainers.align import ALIGN_PROTOTYPES
    from trainers.checkpoints import STATE_FILE

    save = npz.parent / "proto-run"
    train(_align(npz, epochs=1, model="crossformer", n_heads=4, save_dir=str(save)))
    state = torch.load(save / STATE_FILE, weights_only=True)
    assert state["params"]["n_prototypes"] == ALIGN_PROTOTYPES
    prototypes = [v for k, v in state["model"].items() if k.endswith("prototypes")]
    assert prototypes and all(v.shape[0] == ALIGN_PROTOTYPES for v in prototypes)


def test_an_align_checkpoint_from_before_the_prototype_default_resumes(npz: Path) -> None:
    # it was written with n_prototypes None, which align built as 1 prototype
    from trainers.checkpoints import STATE_FILE, atomic_save

    for model, extra in (("crossformer", {"n_heads": 4}), ("conv", {})):
        save = npz.parent / f"old-{model}"
        params = _align(npz, epochs=1, model=model, save_dir=str(save), **extra)
        train({**params, "n_prototypes": 1} if model == "crossformer" else params)
        state = torch.load(save / STATE_FILE, weights_only=True)
        state["params"]["n_prototypes"] = None  # as the older trainer wrote it
        atomic_save(state, save / STATE_FILE)
        resume = {**params, "epochs": 2, "resume": True}
        if model == "crossformer":
            with pytest.raises(TrainingFailed, match=r"n_prototypes: 1 -> 6"):
                train(resume)
            resume["n_prototypes"] = 1
        assert train(resume)["epochs_run"] == 2


@pytest.mark.parametrize("field", ["save_dir", "artifact_dir"])
def test_a_folder_that_cannot_be_made_stops_before_the_first_epoch(
    npz: Path, tmp_path: Path, field: str
) -> None:
    # a raw NotADirectoryError from mkdir, after the first epoch or after the whole run
    (tmp_path / "afile").write_text("x")
    reporter = RecordingReporter()
    with pytest.raises(TrainingFailed) as info:
        train(_align(npz, **{field: str(tmp_path / "afile" / "sub")}), reporter)
    assert info.value.reason == "bad_params"
    assert str(info.value).startswith(f"{field}: cannot create the folder {tmp_path}/afile/sub")
    assert reporter.history == []


def test_the_align_checkpoint_is_saved_on_the_cpu(npz: Path, tmp_path: Path) -> None:
    train(_align(npz, epochs=1, artifact_dir=str(tmp_path)))
    state = torch.load(tmp_path / "checkpoint.pt", map_location=None, weights_only=False)
    assert state["model"]
    assert {v.device.type for v in state["model"].values()} == {"cpu"}


def test_an_align_checkpoint_write_cut_short_leaves_no_file(
    npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a truncated checkpoint.pt, kept in a fixed artifact_dir, that torch.load cannot read
    class CutShort(Exception):
        """A write stopped part way, as a trial's timeout stops one."""

    def write_part_then_fail(obj: Any, file: Any, *args: Any, **kwargs: Any) -> None:
        if hasattr(file, "write"):
            file.write(b"PK\x03\x04 only the start")
        else:
            Path(file).write_bytes(b"PK\x03\x04 only the start")
        raise CutShort

    monkeypatch.setattr(torch, "save", write_part_then_fail)
    with pytest.raises(CutShort):
        train(_align(npz, epochs=1, artifact_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []  # neither checkpoint.pt nor a temporary file
    monkeypatch.undo()
    train(_align(npz, epochs=1, artifact_dir=str(tmp_path)))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["embed_dim"] == 12
