"""Embedding alignment (``mode: align``): map each series to a target embedding given with it.

``dataset`` is an ``.npz`` with ``X`` ``(n, C, T)`` and ``Z`` ``(n, D)`` (optionally
``X_test``/``Z_test``); the model's projection head is the prediction, so its output
width is set to ``D`` from the data (an explicit, different ``proj_dim`` is an error).

Losses: ``mse``, ``cosine`` (1 - cos), ``cosine_mse`` (``cosine_weight * cosine +
mse_weight * mse``) and ``infonce`` (NT-Xent over the batch's predictions and targets, at
``temperature``; needs a batch of at least 16 for enough negatives). Their values live on
different scales, so studies compare loss types on the metrics, never on the loss:

* ``val_cosine`` / ``best_val_cosine`` — mean cosine similarity of prediction and target;
* ``val_mse`` — mean squared error;
* ``val_retrieval_acc`` — in-batch retrieval: the share of predictions whose nearest
  target among a batch of ``batch_size`` is their own, chance level ``retrieval_chance``
  = 1 / batch.

Make a small dataset with ``python -m trainers.align out.npz`` (series from synthetic HAR,
targets a fixed random projection of hand-crafted features).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.augment import Augmenter
from trainers.building import build_loss, build_model, build_optimizer, make_schedule
from trainers.checkpoints import TrainingCheckpoint, atomic_save, prepare_output_dirs
from trainers.data import AlignmentSplits, DataError, load_alignment_npz
from trainers.ema import EmaModel
from trainers.losses import ContrastiveLoss
from trainers.metrics import (
    EpochMeter,
    mean_cosine_similarity,
    retrieval_accuracy,
    retrieval_chance,
)
from trainers.models import count_parameters
from trainers.params import ALIGN_INFONCE_MIN_BATCH, ContrastiveParams
from trainers.reporter import Reporter, TrainingFailed
from trainers.runtime import (
    autocast_dtype,
    compile_step_model,
    peak_memory_mb,
    resolve_device,
    seed_everything,
)
from trainers.schedules import accumulation_group_size, optimizer_steps_per_epoch
from trainers.synthetic import make_synthetic_har

__all__ = ["block_retrieval_accuracy", "make_alignment_data", "train_align"]


@functools.lru_cache(maxsize=4)
def _cached_npz(
    path: str,
    mtime: float,
    size: int,
    val_fraction: float,
    seed: int,
    length: int | None,
    policy: str,
) -> AlignmentSplits:
    del mtime, size  # part of the key only: a regenerated file is read again
    return load_alignment_npz(
        path,
        val_fraction=val_fraction,
        seed=seed,
        length=length,
        length_policy=policy,  # type: ignore[arg-type]
    )


def alignment_file(dataset: str, data_dir: str | None) -> Path:
    """Where ``mode: align`` reads its ``.npz``: as given, or relative to ``data_dir``."""
    path = Path(dataset).expanduser()
    if not path.is_absolute() and data_dir:
        path = Path(data_dir).expanduser() / path
    return path


def missing_alignment_file(path: Path) -> str:
    return f"mode: align: no file {path}; make one with python -m trainers.align {path}"


def _load(p: ContrastiveParams) -> AlignmentSplits:
    path = alignment_file(p.dataset, p.data_dir)
    try:
        stat = path.stat()
    except OSError:
        raise TrainingFailed("data", missing_alignment_file(path)) from None
    try:
        return _cached_npz(
            str(path.resolve()),
            stat.st_mtime,
            stat.st_size,
            p.val_fraction,
            p.split_seed,
            p.length,
            p.length_policy,
        )
    except DataError as exc:
        raise TrainingFailed("data", str(exc)) from exc


ALIGN_PROTOTYPES = 6
"""Prototypes of the crossformer block when ``n_prototypes`` is unset (it means one per class)."""


def block_retrieval_accuracy(pred: Tensor, target: Tensor, block: int) -> Tensor:
    """In-batch retrieval over consecutive blocks of ``block`` rows (ragged tail dropped).

    Row ``i`` of a block is a hit when its nearest target (cosine) in the block is its own;
    chance is ``1 / block``. Batched as one ``bmm``: ``(n_blocks, block, block)``.
    """
    n_blocks = pred.shape[0] // block
    if n_blocks == 0:
        return retrieval_accuracy(pred, target)
    a = F.normalize(pred[: n_blocks * block].float(), dim=1).view(n_blocks, block, -1)
    b = F.normalize(target[: n_blocks * block].float(), dim=1).view(n_blocks, block, -1)
    nearest = torch.bmm(a, b.transpose(1, 2)).argmax(dim=2)
    own = torch.arange(block, device=pred.device)
    return (nearest == own).float().mean()


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int, amp_dtype: torch.dtype | None) -> Tensor:
    was_training = model.training
    model.eval()
    parts = []
    for start in range(0, x.shape[0], batch_size):
        with torch.autocast(
            x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            parts.append(model(x[start : start + batch_size]).projection.float())
    model.train(was_training)
    return torch.cat(parts)


def _scores(
    pred: Tensor, target: Tensor, loss_fn: ContrastiveLoss, block: int
) -> dict[str, Tensor]:
    if loss_fn.name == "infonce":  # a batch-level loss: mean over batch-sized blocks
        # whole blocks only (the ragged tail dropped, as in retrieval): a short block has
        # fewer negatives, and a one-row block a loss of 0, which would bias the mean
        kept = max(pred.shape[0] // block, 1) * block
        losses = [
            loss_fn(pc, tc)
            for pc, tc in zip(pred[:kept].split(block), target[:kept].split(block), strict=True)
        ]
        loss = torch.stack(losses).mean()
    else:
        loss = loss_fn(pred, target)
    return {
        "loss": loss,
        "cosine": mean_cosine_similarity(pred, target),
        "mse": F.mse_loss(pred.float(), target.float()),
        "retrieval_acc": block_retrieval_accuracy(pred, target, block),
    }


def train_align(p: ContrastiveParams, reporter: Reporter) -> dict[str, float]:
    """Train the projection head's output to match ``Z``; see the module docstring."""
    started = time.perf_counter()
    device = resolve_device(p.device)
    seed_everything(p.seed)
    splits = _load(p)
    data = splits.to_tensors(device)
    embed_dim = data.embed_dim
    if "proj_dim" in p.model_fields_set and p.proj_dim != embed_dim:
        raise TrainingFailed(
            "bad_params",
            f"proj_dim={p.proj_dim} but the targets Z in {p.dataset} have {embed_dim} "
            "dimensions; leave proj_dim unset in mode: align (it is taken from Z)",
        )
    # No classes here: "one prototype per class" would leave one key, whose attention
    # weight is always 1 (cross-attention a constant); take the block's own default.
    prototypes = ALIGN_PROTOTYPES if p.n_prototypes is None else p.n_prototypes
    p = p.model_copy(update={"proj_dim": embed_dim, "n_prototypes": prototypes})
    amp_dtype = autocast_dtype(p.precision, device)
    model = build_model(p, data.n_channels, 1).to(device)  # the classifier head is unused
    n_params = count_parameters(model)
    step_model = compile_step_model(model, p.compile, device)
    loss_fn = build_loss(p)
    assert loss_fn is not None  # the params validator allows only the alignment losses

    n_train = data.x_train.shape[0]
    batch_size = min(p.batch_size, n_train)
    if loss_fn.name == "infonce" and batch_size < ALIGN_INFONCE_MIN_BATCH:
        raise TrainingFailed(
            "bad_params",
            f"loss: infonce needs batches of at least {ALIGN_INFONCE_MIN_BATCH} (in-batch "
            f"negatives), but {p.dataset} has only {n_train} training series",
        )
    n_batches = max(n_train // batch_size, 1)
    steps_per_epoch = optimizer_steps_per_epoch(n_batches, p.grad_accum)
    val_block = min(batch_size, data.x_val.shape[0])
    augmenter = Augmenter.from_config(p.augment, strength=p.augment_strength, p=p.augment_p)
    generator = torch.Generator(device=device)
    generator.manual_seed(p.seed)
    optimizer = build_optimizer(model, p, device)
    schedule = make_schedule(p, optimizer, steps_per_epoch)
    ema = EmaModel(model, p.ema_decay) if p.ema_decay > 0 else None
    meter = EpochMeter()

    best_cosine = -math.inf
    best_retrieval = -math.inf
    best_epoch = 0
    best_state: dict[str, Tensor] | None = None
    last: dict[str, float] = {}
    best_metrics: dict[str, float] = {}
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
            best_cosine, best_retrieval = progress["best_cosine"], progress["best_retrieval"]
            best_epoch, best_state = progress["best_epoch"], progress["best_state"]
            last, best_metrics = progress["last"], progress["best_metrics"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    first_epoch = epoch + 1
    lr: float = optimizer.param_groups[0]["lr"]
    for epoch in range(first_epoch, p.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        meter.reset()
        order = torch.randperm(n_train, device=device, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, zb = augmenter(data.x_train[idx], generator), data.z_train[idx]
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                pred = step_model(xb).projection
                loss = loss_fn(pred, zb)
            (loss / accumulation_group_size(b, n_batches, p.grad_accum)).backward()
            if (b + 1) % p.grad_accum == 0 or b + 1 == n_batches:
                if p.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                lr = optimizer.param_groups[0]["lr"]  # the epoch's last step's, for the report
                schedule.step_batch()
                if ema is not None:
                    ema.update(model)
            meter.update("train_loss", loss.detach(), 1)
            meter.update("train_cosine", mean_cosine_similarity(pred.detach(), zb), 1)
            meter.update("retrieval_acc", retrieval_accuracy(pred.detach(), zb), 1)

        eval_model = ema.model if ema is not None else model
        val_pred = _predict(eval_model, data.x_val, p.eval_batch_size, amp_dtype)
        for name, value in _scores(val_pred, data.z_val, loss_fn, val_block).items():
            meter.update(f"val_{name}", value, 1)
        metrics = meter.compute()
        if not math.isfinite(metrics["train_loss"]):
            raise TrainingFailed(
                "nan", f"training loss is {metrics['train_loss']} at epoch {epoch}"
            )
        if not math.isfinite(metrics["val_cosine"]):  # a finite loss, then a non-finite step
            raise TrainingFailed(
                "nan", f"val_cosine is {metrics['val_cosine']} at epoch {epoch}: weights diverged"
            )
        schedule.step_epoch(metrics["val_cosine"])
        if metrics["val_cosine"] > best_cosine:
            best_cosine, best_epoch = metrics["val_cosine"], epoch
            best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
            best_metrics = {k: metrics[k] for k in ("val_loss", "val_mse", "val_retrieval_acc")}
        best_retrieval = max(best_retrieval, metrics["val_retrieval_acc"])
        metrics["best_val_cosine"] = best_cosine
        metrics["best_val_retrieval_acc"] = best_retrieval
        metrics["retrieval_chance"] = retrieval_chance(val_block)
        metrics["lr"] = lr
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        metrics["peak_memory_mb"] = peak_memory_mb(device)
        last = metrics
        if checkpoint is not None:
            checkpoint.save(
                epoch,
                {
                    "best_cosine": best_cosine,
                    "best_retrieval": best_retrieval,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "last": last,
                    "best_metrics": best_metrics,
                },
            )
        reporter.report(epoch, metrics)

    assert best_state is not None
    result: dict[str, float] = {
        "best_val_cosine": best_cosine,
        "best_val_retrieval_acc": best_retrieval,
        "best_epoch": float(best_epoch),
        "val_cosine": best_cosine,
        **best_metrics,
        "retrieval_chance": retrieval_chance(val_block),
        "train_loss": last["train_loss"],
        "train_cosine": last["train_cosine"],
        "n_params": float(n_params),
        "epochs_run": float(epoch),
    }
    if p.artifact_dir:
        # atomically: a fixed artifact_dir keeps what a run cut short (a timeout) wrote
        atomic_save(
            {
                # on the CPU, as save_encoder does: loading must not need (or fill) the GPU
                "model": {k: v.detach().cpu() for k, v in best_state.items()},
                "params": p.model_dump(),
                "epoch": best_epoch,
                "n_channels": data.n_channels,
                "length": data.length,
                "embed_dim": embed_dim,
            },
            Path(p.artifact_dir) / "checkpoint.pt",
            "artifact_dir",
        )
    if p.evaluate_test:
        if data.x_test is None or data.z_test is None:
            raise TrainingFailed("no_test_split", f"{p.dataset} has no X_test/Z_test")
        final = build_model(p, data.n_channels, 1).to(device)
        final.load_state_dict(best_state)
        test_pred = _predict(final, data.x_test, p.eval_batch_size, amp_dtype)
        test = _scores(test_pred, data.z_test, loss_fn, min(batch_size, data.x_test.shape[0]))
        result["test_cosine"] = float(test["cosine"].item())
        result["test_mse"] = float(test["mse"].item())
        result["test_retrieval_acc"] = float(test["retrieval_acc"].item())
    result["train_seconds"] = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- data generator


def _features(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Hand-crafted per-channel features ``(n, 6 C)``: mean, std, range, and three FFT bands."""
    x64 = x.astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x64 - x64.mean(axis=2, keepdims=True), axis=2))
    bands = np.array_split(spectrum[:, :, 1:], 3, axis=2)
    feats = [
        x64.mean(axis=2),
        x64.std(axis=2),
        x64.max(axis=2) - x64.min(axis=2),
        *(np.log1p(band.mean(axis=2)) for band in bands),
    ]
    return np.concatenate(feats, axis=1)


def make_alignment_data(
    n_train: int = 2000, n_test: int = 500, dim: int = 32, seed: int = 0
) -> dict[str, npt.NDArray[np.float32]]:
    """``X``/``Z`` (and ``X_test``/``Z_test``): synthetic HAR windows and their targets.

    ``Z = tanh(standardise(features(X)) @ W)`` with a fixed Gaussian ``W`` (seeded): a
    smooth, learnable but not linear-in-the-input target whose scale matters, so mse and
    cosine losses are not interchangeable. Standardisation uses the train statistics.
    """
    x_tr, _, x_te, _ = make_synthetic_har(n_train=n_train, n_test=n_test, seed=seed)
    f_tr, f_te = _features(x_tr), _features(x_te)
    mean, std = f_tr.mean(axis=0), f_tr.std(axis=0) + 1e-8
    w = np.random.default_rng(seed + 1).standard_normal((f_tr.shape[1], dim)) / math.sqrt(
        f_tr.shape[1]
    )

    def target(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        return np.tanh(((f - mean) / std) @ w).astype(np.float32)

    return {"X": x_tr, "Z": target(f_tr), "X_test": x_te, "Z_test": target(f_te)}


def main(argv: list[str] | None = None) -> int:
    """``python -m trainers.align out.npz [--n-train N] [--n-test N] [--dim D] [--seed S]``."""
    parser = argparse.ArgumentParser(
        prog="python -m trainers.align",
        description="Write an alignment dataset (X: synthetic HAR, Z: targets) for mode: align.",
    )
    parser.add_argument("out", help="output .npz path")
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--dim", type=int, default=32, help="target embedding dimension")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    arrays = make_alignment_data(args.n_train, args.n_test, args.dim, args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)  # type: ignore[arg-type]
    print(
        f"wrote {out}: X {arrays['X'].shape}, Z {arrays['Z'].shape}, test {arrays['X_test'].shape[0]}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
