"""mode: finetune from a pretrained encoder: frozen/linear eval, LR split, channel adapter."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from trainers import RecordingReporter, TrainingFailed
from trainers.checkpoints import ENCODER_FILE, STATE_FILE, load_encoder
from trainers.contrastive import LoopHooks, train, train_supervised
from trainers.finetune import ChannelAdapter, _build, _optimizer, _train_mode, finetune_params
from trainers.params import ContrastiveParams

HAR: dict[str, Any] = {
    "dataset": "synthetic_har",
    "synthetic_n_train": 240,
    "synthetic_n_test": 60,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A save_dir holding encoder.pt from one epoch of SimCLR pretraining (dim 24)."""
    out = tmp_path_factory.mktemp("pretrain")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train(
        {
            **HAR,
            "mode": "pretrain",
            "model": "conv",
            "dim": 24,
            "proj_dim": 16,
            "batch_size": 32,
            "epochs": 1,
            "save_dir": str(out),
        }
    )
    torch.set_num_threads(threads)
    return out


def _finetune(init_from: Path, **overrides: Any) -> dict[str, Any]:
    return {
        **HAR,
        "mode": "finetune",
        "init_from": str(init_from),
        "contrastive_weight": 0.0,
        "batch_size": 32,
        "epochs": 2,
        **overrides,
    }


def test_finetune_reports_like_supervised(pretrained: Path) -> None:
    reporter = RecordingReporter()
    result = train(_finetune(pretrained, evaluate_test=True), reporter)
    assert {"best_val_f1", "final_val_f1", "val_accuracy", "test_f1"} <= set(result)
    assert {"val_f1", "best_val_f1", "train_loss"} <= set(reporter.history[-1][1])


def test_architecture_comes_from_the_checkpoint(pretrained: Path) -> None:
    ckpt = load_encoder(pretrained)
    p = finetune_params(ContrastiveParams.model_validate(_finetune(pretrained)), ckpt)
    assert (p.model, p.dim) == ("conv", 24)
    with pytest.raises(TrainingFailed, match="dim=64 \\(checkpoint: 24\\)"):
        train(_finetune(pretrained, dim=64))


def test_frozen_encoder_is_untouched_and_stays_in_eval_mode(pretrained: Path) -> None:
    ckpt = load_encoder(pretrained)
    p = finetune_params(ContrastiveParams.model_validate(_finetune(pretrained, freeze=True)), ckpt)
    seen: dict[str, Any] = {}

    def build(p: ContrastiveParams, data: Any, device: torch.device) -> torch.nn.Module:
        model = _build(ckpt, p, data, device)
        seen["model"] = model
        return model

    def train_mode(model: torch.nn.Module) -> None:
        _train_mode(model, freeze=True)
        seen["encoder_training"] = model.encoder.training

    train_supervised(p, RecordingReporter(), LoopHooks(build, _optimizer, train_mode))
    encoder = seen["model"].encoder.state_dict()
    for key, value in ckpt.state.items():  # weights *and* BatchNorm statistics
        torch.testing.assert_close(encoder[key], value, msg=key)
    assert seen["encoder_training"] is False


def test_encoder_learns_at_a_scaled_rate(pretrained: Path) -> None:
    ckpt = load_encoder(pretrained)
    params = _finetune(pretrained, lr=1e-3, encoder_lr_scale=0.1)
    p = finetune_params(ContrastiveParams.model_validate(params), ckpt)
    model = _build(ckpt, p, _splits(p), torch.device("cpu"))
    optimizer = _optimizer(model, p, torch.device("cpu"))
    encoder_ids = {id(t) for t in model.encoder.parameters()}
    for group in optimizer.param_groups:
        in_encoder = {id(t) in encoder_ids for t in group["params"]}
        assert len(in_encoder) == 1
        assert group["lr"] == pytest.approx(1e-4 if in_encoder.pop() else 1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def _splits(p: ContrastiveParams) -> Any:
    from trainers.building import load_splits

    return load_splits(p).to_tensors("cpu")


def test_other_channel_count_is_a_clear_error(pretrained: Path) -> None:
    with pytest.raises(TrainingFailed, match=r"9 channels, data has 6.*channel_adapter") as info:
        train(_finetune(pretrained, dataset="BasicMotions", epochs=1))
    assert info.value.reason == "channel_mismatch"


@pytest.mark.parametrize("freeze", [True, False])
def test_channel_adapter_bridges_basicmotions(pretrained: Path, freeze: bool) -> None:
    result = train(
        _finetune(
            pretrained,
            dataset="BasicMotions",
            channel_adapter="conv1x1",
            freeze=freeze,
            batch_size=8,
        )
    )
    assert 0.0 <= result["best_val_f1"] <= 1.0


def test_channel_adapter_starts_as_identity_on_shared_channels() -> None:
    adapter = ChannelAdapter(6, 9)
    x = torch.randn(2, 6, 10)
    y = adapter(x)
    torch.testing.assert_close(y[:, :6], x)
    assert y[:, 6:].abs().max() == 0


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match="no encoder checkpoint"):
        train(_finetune(tmp_path / "nowhere"))


def test_adapted_fine_tune_exports_its_encoder_and_adapter(
    pretrained: Path, tmp_path: Path
) -> None:
    """A fine-tuned encoder behind a channel adapter is saved (it used to write nothing)."""
    ckpt = load_encoder(pretrained)
    first = tmp_path / "bm"
    train(
        _finetune(
            pretrained,
            dataset="BasicMotions",
            channel_adapter="conv1x1",
            batch_size=8,
            save_dir=str(first),
        )
    )
    tuned = load_encoder(first)
    assert (tuned.in_channels, tuned.adapter_channels, tuned.dataset) == (9, 6, "BasicMotions")
    assert tuned.state.keys() == ckpt.state.keys()
    assert not torch.equal(tuned.adapter["conv.weight"][:6, :6, 0], torch.eye(6))  # type: ignore[index]

    # Again on BasicMotions: the learned mapping is the starting point, no option needed.
    p = finetune_params(
        ContrastiveParams.model_validate(_finetune(first, dataset="BasicMotions")), tuned
    )
    model = _build(tuned, p, _splits(p), torch.device("cpu"))
    torch.testing.assert_close(model.adapter.conv.weight, tuned.adapter["conv.weight"])  # type: ignore[index]
    for key, value in tuned.state.items():
        torch.testing.assert_close(model.encoder.state_dict()[key], value, msg=key)

    # On the encoder's own channels the adapter is left out.
    p = finetune_params(ContrastiveParams.model_validate(_finetune(first)), tuned)
    assert not hasattr(_build(tuned, p, _splits(p), torch.device("cpu")), "adapter")


def test_plain_fine_tune_exports_no_adapter(pretrained: Path, tmp_path: Path) -> None:
    train(_finetune(pretrained, epochs=1, save_dir=str(tmp_path / "har")))
    tuned = load_encoder(tmp_path / "har")
    assert (tuned.in_channels, tuned.adapter, tuned.adapter_channels) == (9, None, None)


def test_misfits_are_known_before_any_trial(pretrained: Path) -> None:
    """``hpo validate`` and a run read them from input_misfits; every trial failed at its
    start. ``missing_inputs`` stays cheap: every load of a study asks it."""

    def misfit(**overrides: Any) -> dict[str, str]:
        params = ContrastiveParams.model_validate(_finetune(pretrained, **overrides))
        assert params.missing_inputs() == {}
        return params.input_misfits()

    assert misfit() == {}
    (other_channels,) = misfit(dataset="BasicMotions").values()
    assert "pretrained on 9 channels (synthetic_har), BasicMotions has 6" in other_channels
    assert other_channels.endswith(
        "set channel_adapter: conv1x1 to learn a mapping of the channels"
    )
    assert misfit(dataset="BasicMotions", channel_adapter="conv1x1") == {}
    assert "dim=64 (checkpoint: 24)" in misfit(dim=64)["init_from"]


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (STATE_FILE, "is not an encoder checkpoint (encoder.pt)"),
        ("notes.txt", "is not a checkpoint written by this trainer (not a torch file)"),
    ],
    ids=["state_file", "text"],
)
def test_an_init_from_that_is_no_encoder_checkpoint_is_a_misfit(
    pretrained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, why: str
) -> None:
    # it passed validation and every trial failed at its start with bad_checkpoint
    import trainers.finetune as finetune

    path = tmp_path / source
    if source == STATE_FILE:
        shutil.copy(pretrained / STATE_FILE, path)
    else:
        path.write_text("not a checkpoint")
    reads: list[str] = []

    def counted(file: Any) -> Any:
        reads.append(str(file))
        return load_encoder(file)

    monkeypatch.setattr(finetune, "load_encoder", counted)
    params = ContrastiveParams.model_validate(_finetune(path))
    assert params.missing_inputs() == {}
    assert params.input_misfits() == {"init_from": f"{path} {why}"}
    assert params.input_misfits() == {"init_from": f"{path} {why}"}
    assert len(reads) == 1, "hpo validate asks once per combination: the refusal is cached"
    with pytest.raises(TrainingFailed, match=re.escape(why)) as info:
        train(_finetune(path))
    assert info.value.reason == "bad_checkpoint"


def test_a_fine_tune_into_its_init_from_folder_is_refused(pretrained: Path, tmp_path: Path) -> None:
    # it overwrote the pretrained encoder.pt, and the next trial fine-tuned the last one's
    run = tmp_path / "3"
    shutil.copytree(pretrained, run)
    (tmp_path / "link").symlink_to(run)
    before = (run / ENCODER_FILE).read_bytes()
    refused = [
        _finetune(run, save_dir=str(run)),
        _finetune(run / ENCODER_FILE, save_dir=str(run) + "/"),
        _finetune(run, save_dir=str(tmp_path / "{seed}"), seed=3),
        _finetune(tmp_path / "link", save_dir=str(run)),
    ]
    for params in refused:
        with pytest.raises(TrainingFailed, match=r"^save_dir .* is init_from's folder") as info:
            train(params)
        assert info.value.reason == "bad_params"
        misfits = ContrastiveParams.model_validate(params).input_misfits()
        assert list(misfits) == ["save_dir"]
        assert misfits["save_dir"] == (
            f"save_dir {params['save_dir']!r} is init_from's folder {run}: fine-tuning would "
            "write its encoder.pt and state.pt over the pretrained run's; use another save_dir"
        )
    assert (run / ENCODER_FILE).read_bytes() == before
    # runs/{seed} with the seed each trial passes: not known before the trial
    per_trial = _finetune(run, save_dir=str(tmp_path / "{seed}"))
    assert ContrastiveParams.model_validate(per_trial).input_misfits() == {}
    # a folder of its own is fine
    own = _finetune(run, save_dir=str(run / "finetune"), epochs=1)
    assert ContrastiveParams.model_validate(own).input_misfits() == {}
    assert train(own)["epochs_run"] == 1
    assert (run / ENCODER_FILE).read_bytes() == before
