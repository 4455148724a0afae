"""The shared contrastive trainer end to end, on small real data (BasicMotions, synthetic HAR)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import Tensor

from trainers import Pruned, RecordingReporter, resolve_trainer
from trainers.building import build_model
from trainers.cli_input import parse_set_value
from trainers.contrastive import PER_EPOCH_METRICS, main, train
from trainers.ema import EmaModel
from trainers.params import ContrastiveParams
from trainers.runtime import autocast_dtype, compile_step_model, fresh_compile
from trainers.schedules import warmup_cosine_factor

SMALL_HAR: dict[str, Any] = {
    "dataset": "synthetic_har",
    "synthetic_n_train": 240,
    "synthetic_n_test": 60,
    "dim": 32,
    "proj_dim": 32,
    "batch_size": 32,
    "epochs": 2,
}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_basicmotions_reports_every_epoch_and_returns_results() -> None:
    reporter = RecordingReporter()
    result = train({"dataset": "BasicMotions", "epochs": 3, "evaluate_test": True}, reporter)
    assert [step for step, _ in reporter.history] == [1, 2, 3]
    for _, metrics in reporter.history:
        assert set(PER_EPOCH_METRICS) <= set(metrics)
        assert all(np.isfinite(v) for v in metrics.values())
    expected = {
        "best_val_f1",
        "best_epoch",
        "final_val_f1",
        "val_accuracy",
        "train_loss",
        "n_params",
        "train_seconds",
        "test_f1",
        "test_accuracy",
    }
    assert expected <= set(result)
    assert 0.0 <= result["best_val_f1"] <= 1.0
    assert result["best_val_f1"] == max(m["val_f1"] for _, m in reporter.history)
    # The lowest validation loss so far: what a study ranks by once val F1 saturates.
    losses = [m["val_loss"] for _, m in reporter.history]
    assert [m["best_val_loss"] for _, m in reporter.history] == [
        min(losses[: i + 1]) for i in range(len(losses))
    ]
    assert result["best_val_loss"] == min(losses)


def test_same_seed_same_result_on_cpu() -> None:
    a = train({**SMALL_HAR, "seed": 3})
    b = train({**SMALL_HAR, "seed": 3})
    c = train({**SMALL_HAR, "seed": 4})
    keys = ("best_val_f1", "train_loss", "final_val_f1")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]


class _PruneAt:
    def __init__(self, step: int) -> None:
        self.step = step
        self.seen: list[int] = []

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.seen.append(step)
        if step >= self.step:
            raise Pruned(f"pruned at {step}")


def test_stops_when_the_reporter_prunes() -> None:
    reporter = _PruneAt(2)
    with pytest.raises(Pruned):
        train({**SMALL_HAR, "epochs": 5}, reporter)
    assert reporter.seen == [1, 2]


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": "triplet", "margin": 0.5},
        {"loss": "barlow_twins"},
        {"loss": "vicreg"},
        {"loss": "supcon"},
        {"loss": "cosine_mse", "loss_mix": "additive"},
        {"loss": "none"},
        {"contrastive_weight": 0.0},
        {
            "proto_init": "class_mean",
            "proto_proj": "mlp",
            "use_dim_reduction": True,
            "reduction_dim": 16,
        },
        {"n_heads": 8, "depth": 2, "use_cbam": False},
        {"model": "conv"},
        {"ema_decay": 0.9, "scheduler": "cosine_restarts", "t_0": 1},
        {"scheduler": "plateau", "label_smoothing": 0.1, "grad_accum": 2, "mixup_views": 0.2},
        {"augment": ["jitter", {"name": "time_warp", "p": 0.9}], "hard_negative_weight": 1.0},
    ],
)
def test_every_option_trains(overrides: dict[str, Any]) -> None:
    result = train({**SMALL_HAR, **overrides})
    assert np.isfinite(result["train_loss"])
    assert 0.0 <= result["best_val_f1"] <= 1.0


def test_ema_decay_warms_up_and_averages_the_batchnorm_statistics() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    torch.nn.init.constant_(model[0].weight, 1.0)
    ema = EmaModel(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    torch.nn.init.constant_(model[0].weight, 3.0)
    model[1].running_mean.fill_(2.0)
    model[1].num_batches_tracked.fill_(7)
    ema.update(model)
    # by hand: 0.1 * 1 + 0.9 * 3 = 2.8; running mean 0.1 * 0 + 0.9 * 2 = 1.8; the count copied
    assert float(ema.model[0].weight) == pytest.approx(2.8)
    assert float(ema.model[1].running_mean) == pytest.approx(1.8)
    assert int(ema.model[1].num_batches_tracked) == 7
    ema.updates = 10_000
    assert ema.current_decay() == 0.999  # warmed up: the configured decay


def test_a_high_ema_decay_is_not_judged_on_the_random_init() -> None:
    """With a fixed 0.999 from the first step the 18 steps here scored F1 0.08 against 0.63."""
    plain = train({**SMALL_HAR, "epochs": 3})
    averaged = train({**SMALL_HAR, "epochs": 3, "ema_decay": 0.999})
    assert averaged["best_val_f1"] > 0.5 and averaged["best_val_f1"] >= plain["best_val_f1"] - 0.1


@pytest.mark.parametrize("monitor", ["val_auc", "val_accuracy"])
def test_the_monitored_metric_picks_the_kept_epoch(monitor: str) -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 3, "monitor": monitor, "evaluate_test": True}, reporter)
    curve = [m[monitor] for _, m in reporter.history]
    assert result["best_epoch"] == 1 + curve.index(max(curve))
    assert result[monitor] == pytest.approx(max(curve))
    assert result[f"best_{monitor}"] == pytest.approx(max(curve))
    assert 0.5 < result["val_auc"] <= 1.0 and 0.0 <= result["test_auc"] <= 1.0


def test_early_stopping() -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 30, "early_stopping_patience": 1, "lr": 1e-6}, reporter)
    assert result["epochs_run"] < 30
    assert len(reporter.history) == result["epochs_run"]


def test_artifacts_written(tmp_path: Path) -> None:
    train({**SMALL_HAR, "artifact_dir": str(tmp_path / "a")})
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"checkpoint.pt", "confusion_matrix.npy", "val_embeddings.npz"}
    cm = np.load(tmp_path / "a" / "confusion_matrix.npy")
    assert cm.shape == (6, 6)
    emb = np.load(tmp_path / "a" / "val_embeddings.npz")
    assert emb["z"].shape[0] == emb["y"].shape[0] == cm.sum()
    state = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and state["model"]


class _CutShort(Exception):
    """A write stopped part way, as a trial's timeout stops one."""


def _write_part_then_fail(*args: Any, **kwargs: Any) -> None:
    """Stands in for ``torch.save(obj, f)``/``np.save(f, arr)``: a few bytes to ``f`` (a name or
    a handle), then fails."""
    file = next(a for a in args if hasattr(a, "write") or isinstance(a, str | Path))
    if hasattr(file, "write"):
        file.write(b"PK\x03\x04 only the start")
    else:
        Path(file).write_bytes(b"PK\x03\x04 only the start")
    raise _CutShort


_ARTIFACTS = ["checkpoint.pt", "confusion_matrix.npy", "val_embeddings.npz"]
"""In the order they are written."""


@pytest.mark.parametrize(
    ("module", "writer", "name"),
    [
        (torch, "save", "checkpoint.pt"),
        (np, "save", "confusion_matrix.npy"),
        (np, "savez_compressed", "val_embeddings.npz"),
    ],
    ids=_ARTIFACTS,
)
def test_an_artifact_write_cut_short_leaves_no_truncated_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: Any, writer: str, name: str
) -> None:
    # a truncated file under the final name, kept in a fixed artifact_dir, that no load reads
    monkeypatch.setattr(module, writer, _write_part_then_fail)
    with pytest.raises(_CutShort):
        train({**SMALL_HAR, "epochs": 1, "artifact_dir": str(tmp_path)})
    monkeypatch.undo()
    written = _ARTIFACTS[: _ARTIFACTS.index(name)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)  # no temporary file
    for done in written:  # the ones before it are whole
        if done.endswith(".pt"):
            torch.load(tmp_path / done, weights_only=True)
        else:
            np.load(tmp_path / done)


def test_schema_rejects_typos_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="infonce"):
        ContrastiveParams.model_validate({"loss": "infonc"})
    with pytest.raises(ValidationError, match="extra"):
        ContrastiveParams.model_validate({"temprature": 0.1})
    with pytest.raises(ValidationError, match="needs labels"):
        ContrastiveParams.model_validate({"mode": "pretrain", "loss": "supcon"})


def test_registered_with_schema_and_metrics() -> None:
    spec = resolve_trainer("contrastive")
    assert spec.params_schema is ContrastiveParams
    assert {"best_val_f1", "val_f1", "test_f1"} <= set(spec.fn.result_metrics)  # type: ignore[attr-defined]


def test_bad_dataset_is_a_clear_error() -> None:
    from trainers.data import DataError

    with pytest.raises(DataError, match="NoSuchDataset"):
        train({"dataset": "NoSuchDataset", "epochs": 1})


def test_standalone_command(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "contrastive_weight" in help_text and "temperature" in help_text
    config = tmp_path / "run.yaml"
    config.write_text("params:\n  dataset: BasicMotions\n  epochs: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "best_val_f1" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--set", "loss=infonc"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "error: loss:" in bad.stderr


_CONFIGS: dict[str, tuple[bytes, str]] = {
    "syntax": (b"epochs: [1\n", "invalid YAML at line 2, column 1: expected ',' or ']'"),
    "list": (b"[1, 2]\n", "must hold a mapping of parameters (or params: {...}), not a list"),
    "scalar": (b"hello\n", "must hold a mapping of parameters (or params: {...}), not a str"),
    "params_list": (b"params: [1]\n", "params must be a mapping of parameters"),
    "duplicate": (b"epochs: 1\nlr: 0.1\nepochs: 2\n", "duplicate key 'epochs' at line 3"),
    "nested_duplicate": (b"params:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' at line 3"),
    "binary": (b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe", "is not a text file (not UTF-8)"),
    "nul": (b"a: 1\x00\n", "invalid YAML: unacceptable character #x0000"),
}


@pytest.mark.parametrize("case", sorted(_CONFIGS))
def test_standalone_bad_config_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    # a traceback before, or (list, scalar) silently trained with the defaults
    content, message = _CONFIGS[case]
    config = tmp_path / "run.yaml"
    config.write_bytes(content)
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --config: {config}"), err
    assert message in err


def test_standalone_missing_config_or_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"error: --config: no file {tmp_path}/nope.yaml\n"
    assert main(["--config", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --config: {tmp_path} is a folder, not a YAML file\n"


@pytest.mark.parametrize("content", ["", "# nothing yet\n", "params:\n"])
def test_standalone_empty_config_means_all_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(content)
    # epochs=0 stops it at validation: the only complaint is the --set value
    assert main(["--config", str(config), "--set", "epochs=0"]) == 2
    assert capsys.readouterr().err == "error: epochs: Input should be greater than or equal to 1\n"


def test_standalone_set_without_a_key_and_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--set", "epochs", "--set", "=3", "--set", "lr=0.1"]) == 2
    assert capsys.readouterr().err == (
        "error: --set: expected KEY=VALUE (got 'epochs')\n"
        "error: --set: expected KEY=VALUE (got '=3')\n"
    )


def test_standalone_validator_messages_read_like_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--set", "device=xyz", "--set", "augment=nosuch"]) == 2
    assert capsys.readouterr().err == (
        "error: device: must be auto, cpu, cuda, cuda:N, mps or xpu (got 'xyz')\n"
        "error: augment: unknown augmentation policy 'nosuch'; "
        "allowed: default, none, simclr_ts, strong, weak, or augmentations joined by '+' "
        "(blockout, channel_dropout, crop_resize, flip, freq_mask, jitter, magnitude_warp, "
        "scaling, sign_flip, smoothing, time_shift, time_warp)\n"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5),
        ("[4, 8]", [4, 8]),
        ("{seed}", "{seed}"),  # a save_dir placeholder, not a YAML mapping
        ("{seed}/run", "{seed}/run"),  # not YAML at all: a traceback before
        ("runs/{seed}", "runs/{seed}"),
    ],
)
def test_standalone_set_values(text: str, value: Any) -> None:
    assert parse_set_value(text) == value
    assert ContrastiveParams.model_validate({"lr": parse_set_value("1e-3")}).lr == 1e-3


def test_monitor_val_loss_keeps_the_lowest_loss_epoch() -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 4, "monitor": "val_loss"}, reporter)
    losses = [m["val_loss"] for _, m in reporter.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result["best_epoch"] == best + 1
    assert result["val_loss"] == pytest.approx(losses[best])
    assert result["best_val_loss"] == losses[best]
    assert result["best_val_f1"] == max(m["val_f1"] for _, m in reporter.history)


def _model_of_width(dim: int) -> torch.nn.Module:
    p = ContrastiveParams(dim=dim, proj_dim=8, proj_hidden_dim=16, n_heads=2, use_cbam=False)
    return build_model(p, 3, 4).eval()


def test_compile_is_a_cuda_option_and_the_cpu_trains_eagerly() -> None:
    model = _model_of_width(8)
    assert compile_step_model(model, True, torch.device("cpu")) is model
    assert compile_step_model(model, False, torch.device("cpu")) is model


def test_every_trial_in_a_worker_compiles_past_dynamo_recompile_limit() -> None:
    # A worker compiles one model per trial in one process. Without a reset, dynamo runs
    # ``forward`` eagerly from the (limit + 1)-th shape on, silently.
    from torch._dynamo import config as dynamo_config
    from torch._dynamo.utils import counters

    x = torch.randn(2, 3, 16)
    for dim in range(4, 4 * (dynamo_config.recompile_limit + 3), 4):
        model = _model_of_width(dim)
        counters.clear()
        with torch.no_grad():
            got = fresh_compile(model, backend="eager")(x)
            want = model(x)
        assert counters["stats"]["unique_graphs"] >= 1, f"dim {dim} ran uncompiled"
        torch.testing.assert_close(got.logits, want.logits)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_compiled_step_model_matches_eager_for_each_new_shape() -> None:
    x = torch.randn(4, 3, 16, device="cuda")
    for dim in (8, 16):
        model = _model_of_width(dim).cuda()
        step_model = compile_step_model(model, True, x.device)
        assert step_model is not model
        with torch.no_grad():
            torch.testing.assert_close(step_model(x).logits, model(x).logits, rtol=1e-4, atol=1e-4)


def test_gradient_accumulation_schedules_every_optimizer_step() -> None:
    # 192 training series in batches of 64: 3 batches, groups of 2 and 1, so 2 optimizer
    # steps an epoch. The cosine must span all 8 of them and end at the last one.
    reporter = RecordingReporter()
    params = {**SMALL_HAR, "batch_size": 64, "grad_accum": 2, "epochs": 4, "lr": 1e-3}
    train({**params, "warmup_epochs": 0, "min_lr_ratio": 0.0}, reporter)
    lrs = [metrics["lr"] for _, metrics in reporter.history]
    want = [1e-3 * warmup_cosine_factor(2 * epoch - 1, 0, 8, 0.0) for epoch in (1, 2, 3, 4)]
    assert lrs == pytest.approx(want, rel=1e-9)
    assert lrs[-1] > 0


def test_result_val_f1_is_the_kept_epochs_under_either_monitor() -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 4, "monitor": "val_loss"}, reporter)
    kept = dict(reporter.history)[int(result["best_epoch"])]
    assert result["val_f1"] == pytest.approx(kept["val_f1"])
    assert result["val_loss"] == pytest.approx(kept["val_loss"])
    assert result["best_val_f1"] == max(m["val_f1"] for _, m in reporter.history)


def test_standalone_config_takes_merge_keys_and_refuses_duplicates(tmp_path: Path) -> None:
    from trainers.cli_input import ConfigFileError, read_config

    merged = tmp_path / "m.yaml"
    merged.write_text("base: &base {epochs: 3, lr: 0.1}\nparams: {<<: *base, lr: 0.01}\n")
    assert read_config(str(merged)) == {"epochs": 3, "lr": 0.01}  # the explicit key wins
    twice = tmp_path / "d.yaml"
    twice.write_text("params:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigFileError, match="duplicate key 'lr' at line 3"):
        read_config(str(twice))


def test_auto_precision_takes_bf16_only_where_the_device_has_it_natively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch's ``is_bf16_supported()`` says yes to emulated bf16 (pre-Ampere, slower than
    fp32) and asks the current device; the device's own compute capability decides."""
    asked: list[Any] = []
    capability = {"cuda:0": (8, 0), "cuda:1": (7, 5)}

    def get_device_capability(device: Any = None) -> tuple[int, int]:
        asked.append(device)
        return capability[str(device)]

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)
    assert autocast_dtype("auto", torch.device("cuda:1")) is None
    assert autocast_dtype("bf16", torch.device("cuda:1")) is None
    assert autocast_dtype("auto", torch.device("cuda:0")) is torch.bfloat16
    assert asked == [torch.device("cuda:1"), torch.device("cuda:1"), torch.device("cuda:0")]
    assert autocast_dtype("fp32", torch.device("cuda:0")) is None
    assert autocast_dtype("auto", torch.device("cpu")) is None


def test_only_the_forward_pass_runs_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Views, mixup, the losses and retrieval_acc stay in fp32 under bf16 autocast (CPU
    autocast stands in for a GPU's: the trainer itself picks fp32 on the CPU)."""
    import trainers.contrastive as contrastive

    seen: dict[str, list[Any]] = {"mixup": [], "retrieval": [], "forward": []}
    real_mixup, real_retrieval = contrastive.mixup_views, contrastive.retrieval_accuracy

    def mixup(*args: Any, **kwargs: Any) -> Any:
        seen["mixup"].append(torch.is_autocast_enabled("cpu"))
        return real_mixup(*args, **kwargs)

    def retrieval(z1: Tensor, z2: Tensor, **kwargs: Any) -> Tensor:
        seen["retrieval"].append((torch.is_autocast_enabled("cpu"), z1.dtype, z2.dtype))
        return real_retrieval(z1, z2, **kwargs)

    real_build = contrastive.build_model

    def build(p: ContrastiveParams, n_channels: int, n_classes: int) -> torch.nn.Module:
        model = real_build(p, n_channels, n_classes)
        model.register_forward_pre_hook(
            lambda module, args: seen["forward"].append(torch.is_autocast_enabled("cpu"))
        )
        return model

    monkeypatch.setattr(contrastive, "autocast_dtype", lambda precision, device: torch.bfloat16)
    monkeypatch.setattr(contrastive, "mixup_views", mixup)
    monkeypatch.setattr(contrastive, "retrieval_accuracy", retrieval)
    monkeypatch.setattr(contrastive, "build_model", build)
    result = train({**SMALL_HAR, "epochs": 1, "device": "cpu", "mixup_views": 0.2})
    assert np.isfinite(result["train_loss"])
    assert seen["mixup"] and not any(seen["mixup"])
    assert seen["retrieval"] and set(seen["retrieval"]) == {(False, torch.float32, torch.float32)}
    assert seen["forward"] and all(seen["forward"]), "the forward pass should use autocast"


def test_checkpoint_tensors_are_saved_on_the_cpu(tmp_path: Path) -> None:
    train({**SMALL_HAR, "epochs": 1, "device": "cpu", "artifact_dir": str(tmp_path)})
    state = torch.load(tmp_path / "checkpoint.pt", map_location=None, weights_only=False)
    assert state["model"]
    assert {v.device.type for v in state["model"].values()} == {"cpu"}


def test_a_non_finite_last_step_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training loss was finite, the weights are not: no F1 of a NaN model is returned."""
    import torch

    from trainers.reporter import TrainingFailed

    steps = {"n": 0}
    clip = torch.nn.utils.clip_grad_norm_
    last = 2 * (192 // 32)  # 2 epochs of 6 steps (240 series, a fifth to validation)

    def overflowing(params: Any, *args: Any, **kwargs: Any) -> Any:
        params = list(params)
        steps["n"] += 1
        if steps["n"] == last:  # one gradient entry overflows on the run's last step
            next(p for p in params if p.grad is not None).grad.view(-1)[0] = float("inf")
        return clip(params, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", overflowing)
    with pytest.raises(TrainingFailed, match="validation loss is nan at epoch 2") as info:
        train({**SMALL_HAR, "warmup_epochs": 0})
    assert info.value.reason == "nan" and steps["n"] == last
