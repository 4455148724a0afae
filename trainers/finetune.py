"""Fine-tuning (``mode: finetune``): the supervised loop around a pretrained encoder.

The encoder comes from ``init_from`` (an ``encoder.pt`` written by ``mode: pretrain``, or
the ``save_dir`` holding it); its architecture (dim, depth, prototypes, ...) is taken
from the checkpoint, so a fine-tuning study does not repeat it. Then either

* ``freeze: true`` — linear evaluation: the encoder is frozen *and kept in eval mode*
  (BatchNorm statistics and dropout off) and only the heads train; or
* ``freeze: false`` — everything trains, the encoder at ``lr * encoder_lr_scale``.

Everything else (loss, schedule, EMA, metrics, resume) is the supervised loop's, so the
result has the same keys (``best_val_f1``, ...). Use ``contrastive_weight: 0`` for pure
cross-entropy.

Other channels than in pretraining (synthetic_har's 9 vs BasicMotions' 6) are an error
unless ``channel_adapter: conv1x1``, which puts a learned 1x1 convolution in front of the
encoder, mapping the data's channels to the pretrained ones. It starts as the identity on
the leading shared channels (zero elsewhere), so channels that line up (accelerometer x,
y, z, gyroscope x, y, z in both) start mapped to each other, and it always trains at the
full ``lr`` — also with ``freeze: true``, where it is the only part besides the head.
A fine-tuning run's ``encoder.pt`` keeps its adapter beside the encoder; fine-tuning from
it again on data with the adapter's channels starts from the learned mapping.
"""

from __future__ import annotations

import functools
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainers.building import build_model, build_optimizer
from trainers.checkpoints import (
    ENCODER_FILE,
    STATE_FILE,
    EncoderCheckpoint,
    encoder_file,
    load_encoder,
    resolve_save_dir,
)
from trainers.contrastive import LoopHooks, train_supervised
from trainers.data import DeviceSplits
from trainers.models import ModelOutput
from trainers.params import ENCODER_ARCH_FIELDS, SAVE_DIR_PLACEHOLDER, ContrastiveParams
from trainers.reporter import Reporter, TrainingFailed

__all__ = [
    "ChannelAdaptedModel",
    "ChannelAdapter",
    "checkpoint_misfit",
    "finetune_params",
    "save_dir_misfit",
    "train_finetune",
]


class ChannelAdapter(nn.Module):
    """Learned 1x1 conv ``(B, C_data, T) -> (B, C_pretrained, T)``, identity-initialised."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            assert self.conv.bias is not None
            self.conv.bias.zero_()
            shared = min(in_channels, out_channels)
            self.conv.weight[:shared, :shared, 0] = torch.eye(shared)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_data, T) -> (B, C_pretrained, T)."""
        out: Tensor = self.conv(x)
        return out


class ChannelAdaptedModel(nn.Module):
    """A model with a :class:`ChannelAdapter` in front; same interface as the models."""

    def __init__(self, adapter: ChannelAdapter, model: nn.Module) -> None:
        super().__init__()
        self.adapter = adapter
        self.inner = model

    @property
    def encoder(self) -> nn.Module:
        """The pretrained encoder (behind the adapter)."""
        encoder = self.inner.encoder
        assert isinstance(encoder, nn.Module)
        return encoder

    def embed(self, x: Tensor) -> Tensor:
        """(B, C_data, T) -> (B, dim)."""
        embed = self.inner.embed
        assert callable(embed)
        out: Tensor = embed(self.adapter(x))
        return out

    def forward(self, x: Tensor) -> ModelOutput:
        """(B, C_data, T) -> :class:`ModelOutput`."""
        out: ModelOutput = self.inner(self.adapter(x))
        return out


def finetune_params(p: ContrastiveParams, ckpt: EncoderCheckpoint) -> ContrastiveParams:
    """``p`` with the encoder architecture of the checkpoint; explicit conflicts are errors."""
    conflicts = [
        f"{name}={getattr(p, name)!r} (checkpoint: {ckpt.arch[name]!r})"
        for name in ENCODER_ARCH_FIELDS
        if name in p.model_fields_set
        and name in ckpt.arch
        and getattr(p, name) != ckpt.arch[name]
        and not (name == "n_prototypes" and ckpt.arch["model"] == "conv")
    ]
    if conflicts:
        raise TrainingFailed(
            "bad_params",
            f"init_from {ckpt.path}: the encoder was pretrained with another architecture: "
            f"{', '.join(conflicts)}; leave these unset to take them from the checkpoint",
        )
    update: dict[str, Any] = {k: v for k, v in ckpt.arch.items() if k in ENCODER_ARCH_FIELDS}
    return p.model_copy(update=update)


@functools.lru_cache(maxsize=4)
def _encoder_for_checks(file: str, size: int, mtime_ns: int) -> EncoderCheckpoint | TrainingFailed:
    """The checkpoint, or why it is none: a refused file is not read again either (a
    ``state.pt`` given as ``init_from`` is read whole before its format is seen)."""
    del size, mtime_ns  # part of the key only: a rewritten checkpoint is read again
    try:
        return load_encoder(file)
    except TrainingFailed as exc:
        return exc


def _checked_encoder(path: str) -> EncoderCheckpoint:
    """The checkpoint :func:`checkpoint_misfit` reads, once per file: ``hpo validate``
    asks for every combination of the searched values (up to 256)."""
    file = encoder_file(path)
    try:
        st = file.stat()
    except OSError:
        return load_encoder(path)  # says what is missing
    found = _encoder_for_checks(str(file.resolve()), st.st_size, st.st_mtime_ns)
    if isinstance(found, TrainingFailed):
        raise TrainingFailed(found.reason, str(found))
    return found


_CHECKPOINT_MISFITS = ("bad_params", "bad_checkpoint")
"""What :func:`load_encoder` and :func:`finetune_params` refuse, which every trial would."""


def checkpoint_misfit(p: ContrastiveParams) -> str | None:
    """Why ``init_from`` cannot fine-tune on ``p`` as configured, known before any trial.

    A file that is no encoder checkpoint, an explicit architecture field that differs
    from the checkpoint, or data with other channels and no adapter, fails every trial at
    its start; ``hpo validate`` asks here (:meth:`ContrastiveParams.input_misfits`).
    Unreadable data are left to the checks that report them.
    """
    from trainers.building import load_splits
    from trainers.data import DataError

    if not p.init_from:
        return None
    try:
        ckpt = _checked_encoder(p.init_from)
        finetune_params(p, ckpt)
    except TrainingFailed as exc:
        if exc.reason not in _CHECKPOINT_MISFITS:
            return None
        return str(exc).removeprefix("init_from: ")  # the field is the key it is filed under
    try:
        channels = load_splits(p).n_channels
    except (DataError, TrainingFailed, OSError):
        return None
    fits = channels in (ckpt.in_channels, ckpt.adapter_channels)
    if fits or p.channel_adapter == "conv1x1":
        return None
    return (
        f"{ckpt.path} was pretrained on {ckpt.in_channels} channels ({ckpt.dataset}), "
        f"{p.dataset} has {channels}; set channel_adapter: conv1x1 to learn a mapping of "
        "the channels"
    )


def _save_dir_clash(p: ContrastiveParams, checkpoint: Path) -> str | None:
    """Why ``save_dir`` would write over ``checkpoint`` (the file ``init_from`` names).

    The run writes its ``encoder.pt`` and ``state.pt`` there: the pretrained encoder was
    replaced, and the next trial fine-tuned the last one's encoder.
    """
    save_dir = resolve_save_dir(p)
    if save_dir is None:
        return None
    folder = save_dir.resolve()
    # the folder named, and the one a linked file is in: either one's encoder.pt is replaced
    if folder not in (checkpoint.parent.resolve(), checkpoint.resolve().parent):
        return None
    return (
        f"save_dir {p.save_dir!r} is init_from's folder {folder}: fine-tuning would write "
        f"its {ENCODER_FILE} and {STATE_FILE} over the pretrained run's; use another save_dir"
    )


def save_dir_misfit(p: ContrastiveParams) -> str | None:
    """:func:`_save_dir_clash`, where the params alone decide it (``hpo validate``).

    A placeholder the user left at its default is not: every trial passes its own
    ``seed``, so ``runs/{seed}`` is judged per trial, at the start of the run.
    """
    if not p.init_from or not p.save_dir:
        return None
    if not set(SAVE_DIR_PLACEHOLDER.findall(p.save_dir)) <= p.model_fields_set:
        return None
    try:
        return _save_dir_clash(p, encoder_file(p.init_from))
    except TrainingFailed:  # an unknown placeholder: the schema refuses it
        return None


def _build(
    ckpt: EncoderCheckpoint, p: ContrastiveParams, data: DeviceSplits, device: torch.device
) -> nn.Module:
    fine_tuned_adapter = ckpt.adapter if ckpt.adapter_channels == data.n_channels else None
    adapt = data.n_channels != ckpt.in_channels and (
        fine_tuned_adapter is not None or p.channel_adapter == "conv1x1"
    )
    channels = ckpt.in_channels if adapt else data.n_channels
    model = build_model(p, channels, data.n_classes)
    try:
        model.load_encoder_state_dict(ckpt.state)  # type: ignore[operator]
    except ValueError as exc:
        hint = (
            "; set channel_adapter: conv1x1 to learn a mapping of the channels"
            if data.n_channels != ckpt.in_channels
            else ""
        )
        raise TrainingFailed(
            "channel_mismatch" if hint else "bad_checkpoint",
            f"init_from {ckpt.path} (pretrained on {ckpt.dataset}) does not fit "
            f"{p.dataset}: {exc}{hint}",
        ) from exc
    if adapt:
        adapter = ChannelAdapter(data.n_channels, ckpt.in_channels)
        if fine_tuned_adapter is not None:
            adapter.load_state_dict(fine_tuned_adapter)
        model = ChannelAdaptedModel(adapter, model)
    encoder = model.encoder
    assert isinstance(encoder, nn.Module)
    if p.freeze:
        encoder.requires_grad_(False)
    return model.to(device)


def _optimizer(
    model: nn.Module, p: ContrastiveParams, device: torch.device
) -> torch.optim.Optimizer:
    encoder = model.encoder
    assert isinstance(encoder, nn.Module)
    return build_optimizer(model, p, device, lr_scales=[(encoder, p.encoder_lr_scale)])


def _train_mode(model: nn.Module, *, freeze: bool) -> None:
    model.train()
    encoder = model.encoder
    if freeze and isinstance(encoder, nn.Module):
        encoder.eval()


def train_finetune(p: ContrastiveParams, reporter: Reporter) -> dict[str, float]:
    """Fine-tune (or linearly evaluate) the encoder in ``p.init_from`` on ``p.dataset``."""
    if not p.init_from:
        raise TrainingFailed("bad_params", "mode: finetune needs init_from")
    ckpt = load_encoder(p.init_from)
    clash = _save_dir_clash(p, ckpt.path)
    if clash is not None:
        raise TrainingFailed("bad_params", clash)
    p_ft = finetune_params(p, ckpt)
    hooks = LoopHooks(
        build_model=partial(_build, ckpt),
        build_optimizer=_optimizer,
        train_mode=partial(_train_mode, freeze=p.freeze),
    )
    return train_supervised(p_ft, reporter, hooks)
