"""From a run's parameters to its parts: data, model, loss, optimizer and LR schedule.

Shared by every mode, so a parameter means the same in each. The data are cached once
per process (:func:`load_splits`): every trial of a study reads the same dataset.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from trainers.data import DataError, TimeSeriesSplits, load_dataset, source_fingerprint
from trainers.losses import ContrastiveLoss, build_contrastive_loss
from trainers.models import create_model
from trainers.params import ContrastiveParams
from trainers.reporter import TrainingFailed
from trainers.schedules import Schedule, build_schedule

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _cached_dataset(key: tuple[Any, ...]) -> TimeSeriesSplits:
    (name, data_dir, val_fraction, split_seed, length, policy, load_test, *rest) = key
    allow_unlabeled, unlabeled_label, n_train, n_test, noise, val_split, _files = rest
    synthetic = {"n_train": n_train, "n_test": n_test, "noise": noise, "seed": split_seed}
    return load_dataset(
        name,
        data_dir=data_dir,
        val_fraction=val_fraction,
        seed=split_seed,
        length=length,
        length_policy=policy,
        load_test=load_test,
        synthetic=synthetic,
        allow_unlabeled=allow_unlabeled,
        unlabeled_label=unlabeled_label,
        val_split=val_split,
    )


def load_splits(p: ContrastiveParams) -> TimeSeriesSplits:
    """Load (and cache per process, since every trial of a study reads the same data).

    Only pretraining takes series without labels; its probe scores the labelled ones.
    """
    key = (
        p.dataset,
        p.data_dir,
        p.val_fraction,
        p.split_seed,
        p.length,
        p.length_policy,
        p.evaluate_test,  # a test split nobody scores is not read: its problems stop no one
        p.mode == "pretrain",
        p.unlabeled_label,
        p.synthetic_n_train,
        p.synthetic_n_test,
        p.synthetic_noise,
        p.val_split,
        source_fingerprint(p.dataset, p.data_dir),  # in the key only: a rewritten file reloads
    )
    splits = _cached_dataset(key)
    if len(splits.y_val) == 0:  # each class keeps its one series in train
        raise DataError(
            p.dataset,
            f"no series left for validation: each of the {len(splits.class_names)} classes "
            "has a single training series; a trainer needs at least one class with two",
        )
    return splits


def build_model(p: ContrastiveParams, n_channels: int, n_classes: int) -> nn.Module:
    """The model named by ``p.model`` with the architecture parameters of ``p``."""
    return create_model(
        p.model,
        in_channels=n_channels,
        n_classes=n_classes,
        dim=p.dim,
        depth=p.depth,
        n_heads=p.n_heads,
        mlp_ratio=p.mlp_ratio,
        dropout=p.dropout,
        attn_dropout=p.attn_dropout,
        use_cbam=p.use_cbam,
        use_dim_reduction=p.use_dim_reduction,
        reduction_dim=p.reduction_dim,
        n_prototypes=p.n_prototypes,
        proto_proj=p.proto_proj,
        proj_dim=p.proj_dim,
        proj_hidden_dim=p.proj_hidden_dim,
        proj_depth=p.proj_depth,
        kernel_size=p.kernel_size,
        conv_layers=p.conv_layers,
    )


def build_loss(p: ContrastiveParams) -> ContrastiveLoss | None:
    """The contrastive term, or ``None`` when it is off (``loss: none`` or weight 0)."""
    if p.loss == "none" or (p.mode in ("supervised", "finetune") and p.contrastive_weight == 0.0):
        return None
    return build_contrastive_loss(
        p.loss,
        temperature=p.temperature,
        hard_negative_weight=p.hard_negative_weight,
        margin=p.margin,
        barlow_lambda=p.barlow_lambda,
        vicreg_sim_weight=p.vicreg_sim_weight,
        vicreg_var_weight=p.vicreg_var_weight,
        vicreg_cov_weight=p.vicreg_cov_weight,
        cosine_weight=p.cosine_weight,
        mse_weight=p.mse_weight,
    )


def build_optimizer(
    model: nn.Module,
    p: ContrastiveParams,
    device: torch.device,
    lr_scales: Sequence[tuple[nn.Module, float]] = (),
) -> torch.optim.Optimizer:
    """AdamW without weight decay on biases and norm/prototype parameters; fused on CUDA.

    ``lr_scales`` gives submodules their own learning rate, ``lr * scale`` (fine-tuning
    trains a pretrained encoder slower than a fresh head).
    """
    scale_of = {id(param): scale for module, scale in lr_scales for param in module.parameters()}
    buckets: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or "prototypes" in name
        buckets.setdefault((scale_of.get(id(param), 1.0), no_decay), []).append(param)
    groups = [
        {
            "params": params,
            "lr": p.lr * scale,
            "weight_decay": 0.0 if no_decay else p.weight_decay,
        }
        # base-lr groups first: reports read param_groups[0]["lr"] as "the" lr
        for (scale, no_decay), params in sorted(
            buckets.items(), key=lambda kv: (kv[0][0] != 1.0, *kv[0])
        )
    ]
    if not groups:
        raise TrainingFailed("bad_params", "the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=p.lr, fused=device.type == "cuda")


def make_schedule(
    p: ContrastiveParams, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Schedule:
    """The LR schedule named by ``p.scheduler``, stepped per optimizer step."""
    if p.scheduler == "warmup_cosine" and p.warmup_epochs >= p.epochs:
        logger.warning(
            "warmup_epochs=%d >= epochs=%d: the learning rate only warms up, never reaching "
            "its peak or decaying; lower warmup_epochs",
            p.warmup_epochs,
            p.epochs,
        )
    return build_schedule(
        p.scheduler,
        optimizer,
        steps_per_epoch=steps_per_epoch,
        epochs=p.epochs,
        warmup_epochs=p.warmup_epochs,
        min_lr_ratio=p.min_lr_ratio,
        t_0=p.t_0,
        t_mult=p.t_mult,
        plateau_patience=p.plateau_patience,
        plateau_factor=p.plateau_factor,
    )
