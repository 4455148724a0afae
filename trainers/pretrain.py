"""Self-supervised pretraining (``mode: pretrain``): two augmented views, no labels.

The encoder learns from NT-Xent/InfoNCE (SimCLR), Barlow Twins or VICReg between two
augmented views of each series. Labels are used only to *judge* the frozen embeddings:
a linear probe and a cosine k-NN fit on the labelled train series and scored on the
labelled validation series every ``eval_every`` epochs, so a study can maximise probe F1
with pruning. Series may lack labels (an ``.npz`` without ``y``, NaN, ``unlabeled_label``):
they train the encoder all the same. With no labels to probe, the embeddings' effective
rank (RankMe) judges them instead, and picks the best epoch.

``grad_accum`` enlarges the batch the loss sees, not just the batch the gradient
averages over: micro-batches are embedded without gradients, the loss runs on all of
them at once, and each micro-batch is then re-run with the gradient of its slice of the
loss (the GradCache trick, Gao et al. 2021). The gradient is the big-batch gradient
(BatchNorm aside, which normalises per micro-batch as multi-GPU training does), at the
memory of one micro-batch and the cost of one extra forward pass. When the batches of an
epoch do not fill the last group, that shorter group steps too (as in supervised
training), so every whole batch trains each epoch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from trainers.augment import Augmenter, mixup_views
from trainers.building import build_loss, build_model, build_optimizer, load_splits, make_schedule
from trainers.checkpoints import (
    ENCODER_FILE,
    LAST_ENCODER_FILE,
    TrainingCheckpoint,
    encoder_arch,
    make_dir,
    prepare_output_dirs,
    save_encoder,
    write_atomically,
)
from trainers.data import DataError, DeviceSplits
from trainers.ema import EmaModel
from trainers.losses import (
    BarlowTwinsLoss,
    ContrastiveLoss,
    NTXentLoss,
    VICRegLoss,
    nt_xent_chance_level,
)
from trainers.metrics import (
    EpochMeter,
    knn_scores,
    linear_probe,
    mean_pairwise_cosine,
    per_dim_std,
    rankme,
    retrieval_accuracy,
    retrieval_chance,
    silhouette_score,
)
from trainers.models import count_parameters
from trainers.params import ContrastiveParams
from trainers.reporter import Pruned, Reporter, TrainingFailed
from trainers.runtime import (
    autocast_dtype,
    compile_step_model,
    peak_memory_mb,
    resolve_device,
    seed_everything,
)
from trainers.schedules import optimizer_steps_per_epoch

__all__ = ["encode", "encoder_of", "ssl_chance_level", "ssl_scores", "train_pretrain"]

_DIVERSITY_SAMPLES = 2048
PROTOTYPES_WITHOUT_CLASSES = 6
"""Prototypes of the crossformer block on unlabelled data when ``n_prototypes`` is unset
(it means one per class); as in ``mode: align``."""
ARTIFACT_CHECKPOINT = "checkpoint.pt"
"""Name the hpo artifact hook uploads; here it holds the best encoder in encoder.pt form."""


def ssl_chance_level(loss: ContrastiveLoss, n_pairs: int, proj_dim: int) -> float:
    """The loss of a collapsed encoder (all embeddings equal): the bar learning must beat.

    NT-Xent: ``ln(2N - 1)``, every candidate equally likely. Random unit embeddings at a
    small temperature score *higher* (about ``ln(2N - 2) + 1 / (2 D tau^2)``), so an early
    loss above this value is expected. Barlow Twins: ``D`` (no correlation at all).
    VICReg: the variance hinge alone, ``var_weight * (1 - sqrt(eps))``. NaN for the
    regression losses (cosine, mse), whose optimum *is* collapse.
    """
    inner = loss.loss
    if isinstance(inner, NTXentLoss):
        return nt_xent_chance_level(n_pairs)
    if isinstance(inner, BarlowTwinsLoss):
        return float(proj_dim)
    if isinstance(inner, VICRegLoss):
        return inner.var_weight * max(0.0, 1.0 - math.sqrt(inner.eps))
    return math.nan


@torch.no_grad()
def encode(
    model: nn.Module, x: Tensor, batch_size: int, amp_dtype: torch.dtype | None
) -> tuple[Tensor, Tensor]:
    """Embeddings ``(N, dim)`` and projections ``(N, proj_dim)`` in eval mode, fp32, on device."""
    was_training = model.training
    model.eval()
    emb, proj = [], []
    for start in range(0, x.shape[0], batch_size):
        with torch.autocast(
            x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            out = model(x[start : start + batch_size])
        emb.append(out.embedding.float())
        proj.append(out.projection.float())
    model.train(was_training)
    return torch.cat(emb), torch.cat(proj)


def ssl_scores(
    train_z: Tensor,
    train_y: Tensor,
    query_z: Tensor,
    query_y: Tensor,
    n_classes: int,
    p: ContrastiveParams,
) -> dict[str, Tensor]:
    """Linear-probe and k-NN accuracy/F1 of frozen embeddings (0-d tensors, on device)."""
    probe = linear_probe(
        train_z, train_y, query_z, query_y, n_classes, epochs=p.probe_epochs, seed=p.seed
    )
    knn = knn_scores(train_z, train_y, query_z, query_y, n_classes, k=p.knn_k)
    return {
        "probe_f1": probe["macro_f1"],
        "probe_accuracy": probe["accuracy"],
        "knn_f1": knn["macro_f1"],
        "knn_accuracy": knn["accuracy"],
    }


def encoder_of(model: nn.Module) -> nn.Module:
    """``model.encoder``, typed (every registered model has one)."""
    encoder = model.encoder
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"{type(model).__name__} has no encoder submodule")
    return encoder


@dataclass(frozen=True)
class _Labelled:
    """The labelled series of each split: only they can judge the embeddings."""

    train: Tensor
    val: Tensor
    y_train: Tensor
    y_val: Tensor
    probing: bool  # >= 2 classes to fit a probe on, and a validation series to score it

    @classmethod
    def of(cls, data: DeviceSplits) -> _Labelled:
        train = (data.y_train >= 0).nonzero().squeeze(1)  # two syncs a trial, not per epoch
        val = (data.y_val >= 0).nonzero().squeeze(1)
        y_train, y_val = data.y_train[train], data.y_val[val]
        classes = int(torch.unique(y_train).numel())
        return cls(train, val, y_train, y_val, classes >= 2 and val.numel() > 0)


def _check_test_split(data: DeviceSplits, labelled: _Labelled, dataset: str) -> None:
    """``evaluate_test`` probes the best encoder on the test split: it needs labels there."""
    if data.x_test is None or data.y_test is None:
        raise TrainingFailed("no_test_split", f"dataset {dataset!r} has no test split")
    if not labelled.probing or not bool((data.y_test >= 0).any()):
        raise DataError(
            dataset,
            "evaluate_test probes the embeddings, which needs labelled train, "
            "validation and test series of at least two classes",
        )


# --------------------------------------------------------------------------- one step


def _global_rng(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_global_rng(state: tuple[Tensor, Tensor | None], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


@dataclass
class _Stepper:
    """Forward/backward of one optimizer step on one or several micro-batches of views."""

    model: nn.Module
    step_model: nn.Module
    loss_fn: ContrastiveLoss
    device: torch.device
    amp_dtype: torch.dtype | None

    def _project(self, views: Tensor) -> Tensor:
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            out = self.step_model(views)
        projection: Tensor = out.projection.float()
        return projection

    def __call__(self, micro: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Accumulate the gradient of the loss over all micro-batches; (loss, retrieval)."""
        if len(micro) == 1:
            z1, z2 = self._project(micro[0]).chunk(2)
            loss = self.loss_fn(z1, z2)
            loss.backward()
            return loss.detach(), retrieval_accuracy(z1.detach(), z2.detach())
        return self._cached(micro)

    def _cached(self, micro: list[Tensor]) -> tuple[Tensor, Tensor]:
        # Pass 1: embed every micro-batch without a graph, remembering the dropout RNG;
        # BatchNorm running stats are put back so pass 2 updates them once, as usual.
        buffers = [b.detach().clone() for b in self.model.buffers()]
        rng_states, halves1, halves2 = [], [], []
        with torch.no_grad():
            for views in micro:
                rng_states.append(_global_rng(self.device))
                a, b = self._project(views).chunk(2)
                halves1.append(a)
                halves2.append(b)
        with torch.no_grad():
            for buf, saved in zip(self.model.buffers(), buffers, strict=True):
                buf.copy_(saved)
        z1 = torch.cat(halves1).requires_grad_()
        z2 = torch.cat(halves2).requires_grad_()
        loss = self.loss_fn(z1, z2)
        grad1, grad2 = torch.autograd.grad(loss, (z1, z2))
        # Pass 2: replay each micro-batch with its RNG state and push its slice of dL/dz.
        after = _global_rng(self.device)
        offset = 0
        for views, rng in zip(micro, rng_states, strict=True):
            n = views.shape[0] // 2
            _set_global_rng(rng, self.device)
            grad = torch.cat([grad1[offset : offset + n], grad2[offset : offset + n]])
            self._project(views).backward(grad)
            offset += n
        _set_global_rng(after, self.device)
        return loss.detach(), retrieval_accuracy(z1.detach(), z2.detach())


# --------------------------------------------------------------------------- the loop


def _write_artifacts(
    directory: Path,
    encoder_state: Mapping[str, Tensor],
    val_z: Tensor,
    data: DeviceSplits,
    p: ContrastiveParams,
    arch: Mapping[str, Any],
    best_epoch: int,
    metrics: Mapping[str, float],
) -> None:
    """``checkpoint.pt`` (an encoder export, usable as ``init_from``) and the embeddings."""
    make_dir(directory, "artifact_dir")
    save_encoder(
        directory / ARTIFACT_CHECKPOINT,
        encoder_state,
        arch,
        in_channels=data.n_channels,
        length=data.length,
        dataset=p.dataset,
        epoch=best_epoch,
        metrics=metrics,
    )
    z = val_z.cpu().numpy().astype(np.float32)
    y, names = data.y_val.cpu().numpy(), np.array(data.class_names)
    # under a temporary name first: a trial stopped mid-write leaves no truncated file
    write_atomically(
        directory / "val_embeddings.npz",
        lambda fh: np.savez_compressed(fh, z=z, y=y, class_names=names),
    )


def train_pretrain(p: ContrastiveParams, reporter: Reporter) -> dict[str, float]:
    """SSL pretraining judged by linear probe and k-NN; see the module docstring."""
    started = time.perf_counter()
    device = resolve_device(p.device)
    seed_everything(p.seed)
    data = load_splits(p).to_tensors(device)
    n_classes = data.n_classes
    labelled = _Labelled.of(data)
    if p.n_prototypes is None and n_classes < 2:  # "one per class" needs classes
        p = p.model_copy(update={"n_prototypes": PROTOTYPES_WITHOUT_CLASSES})
    n_classes = max(n_classes, 1)  # the classifier head pretraining never trains
    if p.evaluate_test:  # found now, not after the whole run
        _check_test_split(data, labelled, p.dataset)
    amp_dtype = autocast_dtype(p.precision, device)

    model = build_model(p, data.n_channels, n_classes).to(device)
    n_params = count_parameters(model)
    step_model = compile_step_model(model, p.compile, device)
    loss_fn = build_loss(p)
    if loss_fn is None or loss_fn.needs_labels:  # the params validator refuses both
        raise TrainingFailed("bad_params", f"mode: pretrain cannot train with loss {p.loss!r}")
    augmenter = Augmenter.from_config(p.augment, strength=p.augment_strength, p=p.augment_p)
    generator = torch.Generator(device=device)
    generator.manual_seed(p.seed)

    n_train = data.x_train.shape[0]
    batch_size = min(p.batch_size, n_train)
    if batch_size < 2:
        raise TrainingFailed("bad_params", f"pretraining needs >= 2 training series, got {n_train}")
    n_batches = n_train // batch_size  # ragged tail dropped: the loss compares whole batches
    accum = min(p.grad_accum, n_batches)
    # a shorter last group of micro-batches steps too: every whole batch trains each epoch
    steps_per_epoch = optimizer_steps_per_epoch(n_batches, accum)
    effective_batch = batch_size * accum
    chance = ssl_chance_level(loss_fn, effective_batch, p.proj_dim)
    optimizer = build_optimizer(model, p, device)
    schedule = make_schedule(p, optimizer, steps_per_epoch)
    ema = EmaModel(model, p.ema_decay) if p.ema_decay > 0 else None
    stepper = _Stepper(model, step_model, loss_fn, device, amp_dtype)
    meter = EpochMeter()
    arch = encoder_arch(model, p)
    # Collapse is read off the spread of validation projections; one series has none, so a
    # tiny validation split is measured on (a sample of) the training series instead.
    spread_x = data.x_val if len(data.y_val) >= 2 else data.x_train[:_DIVERSITY_SAMPLES]

    best_score = -math.inf  # probe F1, or RankMe where there are no labels to probe
    best_knn_f1 = -math.inf
    best_rankme = -math.inf
    best_epoch = 0
    best_encoder: dict[str, Tensor] | None = None
    last: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    stopped_early = False
    epoch = 0
    save_dir = prepare_output_dirs(p)
    checkpoint = None
    if save_dir is not None:
        checkpoint = TrainingCheckpoint(
            save_dir,
            p,
            device,
            model=model,
            optimizer=optimizer,
            schedule=schedule,
            generator=generator,
            ema_model=ema.model if ema is not None else None,
            steps_per_epoch=steps_per_epoch,
        )
    if checkpoint is not None and p.resume:
        restored = checkpoint.load()
        if restored is not None:
            epoch, progress = restored
            if ema is not None:  # one EMA update per optimizer step: its warm-up goes on
                ema.updates = epoch * steps_per_epoch
            best_score = progress.get("best_score", progress.get("best_probe_f1", -math.inf))
            best_knn_f1 = progress["best_knn_f1"]
            # a checkpoint written before RankMe existed: its last epoch stands in
            best_rankme = progress.get("best_rankme", progress["last"].get("rankme", -math.inf))
            best_epoch, best_encoder = progress["best_epoch"], progress["best_encoder"]
            last, last_eval = progress["last"], progress["last_eval"]
            stopped_early = progress["stopped_early"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def views_of(idx: Tensor) -> Tensor:
        xb = data.x_train[idx]
        v1, v2 = augmenter(xb, generator), augmenter(xb, generator)
        if p.mixup_views > 0:
            v1, v2 = mixup_views(v1, v2, p.mixup_views, generator)
        return torch.cat([v1, v2])

    first_epoch = p.epochs + 1 if stopped_early else epoch + 1
    lr: float = optimizer.param_groups[0]["lr"]
    for epoch in range(first_epoch, p.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        meter.reset()
        order = torch.randperm(n_train, device=device, generator=generator)
        for step in range(steps_per_epoch):
            first = step * accum
            micro = [
                views_of(order[(first + j) * batch_size : (first + j + 1) * batch_size])
                for j in range(min(accum, n_batches - first))
            ]
            optimizer.zero_grad(set_to_none=True)
            loss, hits = stepper(micro)
            if p.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
            optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the epoch's last step's, for the report
            schedule.step_batch()
            if ema is not None:
                ema.update(model)
            meter.update("ssl_loss", loss, 1)
            meter.update("retrieval_acc", hits, 1)
        # A diverged run has NaN weights: say so now, before the embeddings of the
        # evaluation (SVD, probe) fail on them with a less useful error. One sync an epoch.
        if steps_per_epoch and not bool(torch.isfinite(loss)):
            raise TrainingFailed("nan", f"SSL loss is {float(loss)} at epoch {epoch}")

        eval_model = ema.model if ema is not None else model
        val_z, val_proj = encode(eval_model, data.x_val, p.eval_batch_size, amp_dtype)
        spread_z, spread_proj = (
            (val_z, val_proj)
            if spread_x is data.x_val
            else encode(eval_model, spread_x, p.eval_batch_size, amp_dtype)
        )
        meter.update("embedding_diversity", mean_pairwise_cosine(spread_z[:_DIVERSITY_SAMPLES]), 1)
        meter.update("per_dim_std", per_dim_std(spread_proj), 1)
        meter.update("rankme", rankme(spread_z[:_DIVERSITY_SAMPLES]), 1)
        if labelled.probing:
            val_labelled = val_z[labelled.val]
            silhouette = silhouette_score(val_labelled, labelled.y_val, n_classes=n_classes)
            meter.update("silhouette", silhouette, 1)
        evaluating = epoch % p.eval_every == 0 or epoch == p.epochs
        if evaluating and labelled.probing:
            train_z, _ = encode(eval_model, data.x_train, p.eval_batch_size, amp_dtype)
            for name, value in ssl_scores(
                train_z[labelled.train],
                labelled.y_train,
                val_labelled,
                labelled.y_val,
                n_classes,
                p,
            ).items():
                meter.update(name, value, 1)
        metrics = meter.compute()  # one device->host transfer (the probe syncs on its own)
        if not math.isfinite(metrics["ssl_loss"]):
            raise TrainingFailed("nan", f"SSL loss is {metrics['ssl_loss']} at epoch {epoch}")
        metrics["ssl_chance_loss"] = chance
        metrics["retrieval_chance"] = retrieval_chance(effective_batch)
        metrics["lr"] = lr
        if evaluating:
            if labelled.probing:
                last_eval = {
                    k: metrics[k] for k in ("probe_f1", "probe_accuracy", "knn_f1", "knn_accuracy")
                }
                best_knn_f1 = max(best_knn_f1, metrics["knn_f1"])
            best_rankme = max(best_rankme, metrics["rankme"])
            score = metrics["probe_f1"] if labelled.probing else metrics["rankme"]
            schedule.step_epoch(score)  # plateau waits `patience` evaluations
            if score > best_score:
                best_score, best_epoch = score, epoch
                best_encoder = {
                    k: v.detach().clone() for k, v in encoder_of(eval_model).state_dict().items()
                }
                if save_dir is not None:
                    save_encoder(
                        save_dir / ENCODER_FILE,
                        best_encoder,
                        arch,
                        in_channels=data.n_channels,
                        length=data.length,
                        dataset=p.dataset,
                        epoch=epoch,
                        metrics=metrics,
                    )
            if labelled.probing:
                metrics["best_probe_f1"] = best_score
                metrics["best_knn_f1"] = best_knn_f1
            metrics["best_rankme"] = best_rankme
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        metrics["peak_memory_mb"] = peak_memory_mb(device)
        last = metrics

        if p.collapse_std > 0 and metrics["per_dim_std"] < p.collapse_std:
            with contextlib.suppress(Pruned):  # report the collapsed epoch, then stop anyway
                reporter.report(epoch, metrics)
            raise TrainingFailed(
                "collapse",
                f"representation collapsed at epoch {epoch}: per-dimension std of the "
                f"normalised projections is {metrics['per_dim_std']:.2e} < collapse_std "
                f"{p.collapse_std:g} (mean pairwise cosine {metrics['embedding_diversity']:.3f}, "
                f"ssl_loss {metrics['ssl_loss']:.4g} vs collapse level {chance:.4g})",
            )
        # patience counts epochs since the best score, judged on evaluated epochs only
        stopped_early = bool(
            evaluating
            and p.early_stopping_patience
            and epoch - best_epoch >= p.early_stopping_patience
        )
        if checkpoint is not None:
            checkpoint.save(
                epoch,
                {
                    "best_score": best_score,
                    "best_knn_f1": best_knn_f1,
                    "best_rankme": best_rankme,
                    "best_epoch": best_epoch,
                    "best_encoder": best_encoder,
                    "last": last,
                    "last_eval": last_eval,
                    "stopped_early": stopped_early,
                },
            )
        reporter.report(epoch, metrics)
        if stopped_early:
            break

    if best_encoder is None or (labelled.probing and not last_eval):
        raise TrainingFailed("no_evaluation", "pretraining ended before any evaluation")
    final_model = ema.model if ema is not None else model
    if save_dir is not None:
        save_encoder(
            save_dir / LAST_ENCODER_FILE,
            encoder_of(final_model).state_dict(),
            arch,
            in_channels=data.n_channels,
            length=data.length,
            dataset=p.dataset,
            epoch=epoch,
            metrics=last,
        )
    probe: dict[str, float] = {}
    if labelled.probing:
        probe = {
            "best_probe_f1": best_score,
            "best_knn_f1": best_knn_f1,
            **last_eval,
            "silhouette": last["silhouette"],
        }
    result: dict[str, float] = {
        **probe,
        "best_epoch": float(best_epoch),
        "best_rankme": best_rankme if math.isfinite(best_rankme) else math.nan,
        "rankme": last.get("rankme", math.nan),
        "ssl_loss": last["ssl_loss"],
        "ssl_chance_loss": chance,
        "retrieval_acc": last["retrieval_acc"],
        "per_dim_std": last["per_dim_std"],
        "embedding_diversity": last["embedding_diversity"],
        "effective_batch": float(effective_batch),
        "n_params": float(n_params),
        "epochs_run": float(epoch),
    }
    if p.evaluate_test or p.artifact_dir:
        best = build_model(p, data.n_channels, n_classes).to(device)
        encoder_of(best).load_state_dict(best_encoder)
        train_z, _ = encode(best, data.x_train, p.eval_batch_size, amp_dtype)
        if p.evaluate_test:
            assert data.x_test is not None and data.y_test is not None  # checked at the start
            test_labelled = (data.y_test >= 0).nonzero().squeeze(1)
            test_z, _ = encode(best, data.x_test[test_labelled], p.eval_batch_size, amp_dtype)
            test = ssl_scores(
                train_z[labelled.train],
                labelled.y_train,
                test_z,
                data.y_test[test_labelled],
                n_classes,
                p,
            )
            result["test_probe_f1"] = float(test["probe_f1"].item())
            result["test_knn_f1"] = float(test["knn_f1"].item())
        if p.artifact_dir:
            val_z, _ = encode(best, data.x_val, p.eval_batch_size, amp_dtype)
            _write_artifacts(
                Path(p.artifact_dir), best_encoder, val_z, data, p, arch, best_epoch, result
            )
    result["train_seconds"] = time.perf_counter() - started
    return result
