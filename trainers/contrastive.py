"""The shared contrastive trainer: CE + weighted contrastive loss on time series.

``train(params, reporter)`` is what every trial of a study calls. It never imports
Optuna: it reports per-epoch metrics to an optional reporter and stops when the
reporter raises :class:`trainers.Pruned`. Also runs alone:
``python -m trainers.contrastive --config run.yaml``.

Hot path: the whole dataset lives on the device, batches are index slices, the two
augmented views are made by batched tensor ops, and metrics accumulate on the device
with a single host transfer per epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.augment import Augmenter, mixup_views
from trainers.building import build_loss, build_model, build_optimizer, load_splits, make_schedule
from trainers.checkpoints import (
    ENCODER_FILE,
    TrainingCheckpoint,
    atomic_save,
    encoder_arch,
    encoder_part,
    make_dir,
    prepare_output_dirs,
    save_encoder,
    write_atomically,
)
from trainers.data import DeviceSplits
from trainers.ema import EmaModel
from trainers.metrics import (
    EpochMeter,
    accuracy,
    confusion_matrix,
    macro_f1,
    mean_pairwise_cosine,
    retrieval_accuracy,
    roc_auc,
)
from trainers.models import count_parameters
from trainers.params import RESULT_METRICS, ContrastiveParams
from trainers.reporter import (
    USER_ERROR_REASONS,
    NullReporter,
    Reporter,
    TrainingFailed,
    one_line,
)
from trainers.runtime import (
    autocast_dtype,
    compile_step_model,
    peak_memory_mb,
    resolve_device,
    seed_everything,
)
from trainers.schedules import accumulation_group_size, optimizer_steps_per_epoch

PER_EPOCH_METRICS = (
    "train_loss",
    "train_ce",
    "train_contrastive",
    "retrieval_acc",
    "val_loss",
    "val_accuracy",
    "val_f1",
    "val_auc",
    "best_val_f1",
    "best_val_loss",
    "best_val_accuracy",
    "best_val_auc",
    "embedding_diversity",
    "lr",
    "epoch_seconds",
    "peak_memory_mb",
)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Validation (or test) outputs of one pass, still on the device."""

    loss: Tensor
    accuracy: Tensor
    f1: Tensor
    auc: Tensor
    diversity: Tensor
    preds: Tensor
    embeddings: Tensor


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_classes: int,
    batch_size: int,
    amp_dtype: torch.dtype | None,
) -> Evaluation:
    """Batched forward pass in eval mode; nothing leaves the device."""
    was_training = model.training
    model.eval()
    logits_parts, emb_parts = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start : start + batch_size]
        with torch.autocast(
            x.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            out = model(xb)
        logits_parts.append(out.logits.float())
        emb_parts.append(out.embedding.float())
    model.train(was_training)
    logits = torch.cat(logits_parts)
    embeddings = torch.cat(emb_parts)
    preds = logits.argmax(dim=1)
    return Evaluation(
        loss=F.cross_entropy(logits, y),
        accuracy=accuracy(preds, y),
        f1=macro_f1(preds, y, n_classes),
        auc=roc_auc(logits.log_softmax(dim=1), y, n_classes),
        diversity=mean_pairwise_cosine(embeddings[:2048]),
        preds=preds,
        embeddings=embeddings,
    )


# --------------------------------------------------------------------------------------
# the training loop
# --------------------------------------------------------------------------------------


def _combine(ce: Tensor, contrastive: Tensor | None, p: ContrastiveParams) -> Tensor:
    if contrastive is None:
        return ce
    w = p.contrastive_weight
    if p.loss_mix == "convex":
        return (1.0 - w) * ce + w * contrastive
    return ce + w * contrastive


def _write_artifacts(
    directory: Path,
    best_state: Mapping[str, Tensor],
    best_eval: Evaluation,
    data: DeviceSplits,
    p: ContrastiveParams,
    best_epoch: int,
) -> None:
    """Each file atomically: a fixed ``artifact_dir`` keeps what an interrupted run wrote."""
    make_dir(directory, "artifact_dir")
    atomic_save(
        {
            # on the CPU, as save_encoder does: loading must not need (or fill) the GPU
            "model": {k: v.detach().cpu() for k, v in best_state.items()},
            "params": p.model_dump(),
            "epoch": best_epoch,
            "class_names": data.class_names,
            "n_channels": data.n_channels,
            "length": data.length,
        },
        directory / "checkpoint.pt",
        "artifact_dir",
    )
    cm = confusion_matrix(best_eval.preds, data.y_val, data.n_classes).cpu().numpy()
    write_atomically(directory / "confusion_matrix.npy", lambda fh: np.save(fh, cm))
    z = best_eval.embeddings.cpu().numpy().astype(np.float32)
    y, names = data.y_val.cpu().numpy(), np.array(data.class_names)
    write_atomically(
        directory / "val_embeddings.npz",
        lambda fh: np.savez_compressed(fh, z=z, y=y, class_names=names),
    )


def train(params: Mapping[str, Any], reporter: Reporter | None = None) -> dict[str, float]:
    """Train once with ``params`` and return the result metrics (see ``RESULT_METRICS``)."""
    p = ContrastiveParams.model_validate(dict(params))
    if p.mode != "supervised":
        from trainers.modes import train_mode

        return train_mode(p, reporter or NullReporter())
    return train_supervised(p, reporter or NullReporter())


def _default_model(p: ContrastiveParams, data: DeviceSplits, device: torch.device) -> nn.Module:
    model = build_model(p, data.n_channels, data.n_classes).to(device)
    init_prototypes = getattr(model, "init_prototypes_from_class_means", None)
    if p.proto_init == "class_mean" and callable(init_prototypes):
        init_prototypes(data.x_train, data.y_train)
    return model


def _train_all(model: nn.Module) -> None:
    model.train()


@dataclass(frozen=True)
class LoopHooks:
    """What another mode changes in the supervised loop, so it reuses the loop as is.

    Fine-tuning builds the model around a pretrained encoder, gives the encoder its own
    learning rate, and keeps a frozen encoder in eval mode (BatchNorm statistics fixed).
    """

    build_model: Callable[[ContrastiveParams, DeviceSplits, torch.device], nn.Module] = (
        _default_model
    )
    build_optimizer: Callable[
        [nn.Module, ContrastiveParams, torch.device], torch.optim.Optimizer
    ] = build_optimizer
    train_mode: Callable[[nn.Module], None] = _train_all


def _finite_or_nan(value: float) -> float:
    """A best that was never set (no defined AUC yet) is reported as NaN, not -inf."""
    return value if math.isfinite(value) else math.nan


def _evaluation_to_cpu(ev: Evaluation) -> dict[str, Tensor]:
    return {k: getattr(ev, k).detach().cpu() for k in Evaluation.__dataclass_fields__}


def _evaluation_from(state: Mapping[str, Tensor], device: torch.device) -> Evaluation:
    values = {k: v.to(device) for k, v in state.items()}
    values.setdefault("auc", torch.tensor(math.nan, device=device))  # saved before it existed
    return Evaluation(**values)


def train_supervised(
    p: ContrastiveParams, reporter: Reporter, hooks: LoopHooks | None = None
) -> dict[str, float]:
    """Cross-entropy plus a weighted contrastive term between two augmented views.

    With ``save_dir`` the full training state is checkpointed after every epoch, and
    ``resume: true`` continues from it with the same result as an uninterrupted run.
    """
    hooks = hooks or LoopHooks()
    started = time.perf_counter()
    device = resolve_device(p.device)
    seed_everything(p.seed)
    splits = load_splits(p)
    data = splits.to_tensors(device)
    n_classes = data.n_classes
    amp_dtype = autocast_dtype(p.precision, device)

    model = hooks.build_model(p, data, device)
    n_params = count_parameters(model)
    step_model = compile_step_model(model, p.compile, device)

    contrastive = build_loss(p)
    augmenter = Augmenter.from_config(p.augment, strength=p.augment_strength, p=p.augment_p)
    generator = torch.Generator(device=device)
    generator.manual_seed(p.seed)

    n_train = data.x_train.shape[0]
    batch_size = min(p.batch_size, n_train)
    n_batches = max(
        n_train // batch_size, 1
    )  # drop the ragged tail: BN and contrastive need full batches
    steps_per_epoch = optimizer_steps_per_epoch(n_batches, p.grad_accum)
    optimizer = hooks.build_optimizer(model, p, device)
    schedule = make_schedule(p, optimizer, steps_per_epoch)
    ema = EmaModel(model, p.ema_decay) if p.ema_decay > 0 else None
    meter = EpochMeter()

    best_f1 = -math.inf
    best_loss = math.inf  # lowest validation CE: still ranks runs once val F1 saturates
    best_accuracy = -math.inf
    best_auc = -math.inf  # stays so while the validation split has a single class
    best_epoch = 0
    best_state: dict[str, Tensor] | None = None
    best_eval: Evaluation | None = None
    last: dict[str, float] = {}
    epochs_without_improvement = 0
    epoch = 0
    stopped_early = False
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
            best_f1, best_epoch = progress["best_f1"], progress["best_epoch"]
            best_loss = progress.get("best_loss", math.inf)
            best_state = progress["best_state"]
            best_eval = _evaluation_from(progress["best_eval"], device)
            # a checkpoint written before these were tracked: the kept epoch's stand in
            best_accuracy = progress.get("best_accuracy", float(best_eval.accuracy.item()))
            best_auc = progress.get("best_auc", -math.inf)
            last = progress["last"]
            epochs_without_improvement = progress["epochs_without_improvement"]
            stopped_early = progress["stopped_early"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    first_epoch = p.epochs + 1 if stopped_early else epoch + 1
    lr: float = optimizer.param_groups[0]["lr"]
    for epoch in range(first_epoch, p.epochs + 1):
        epoch_start = time.perf_counter()
        hooks.train_mode(model)
        meter.reset()
        order = torch.randperm(n_train, device=device, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            xb, yb = data.x_train[idx], data.y_train[idx]
            # Only the forward pass runs under autocast (as in pretrain and align): the
            # views, the losses and the retrieval metric stay in fp32.
            if contrastive is None:
                views = augmenter(xb, generator)
            else:
                v1, v2 = augmenter(xb, generator), augmenter(xb, generator)
                if p.mixup_views > 0:
                    v1, v2 = mixup_views(v1, v2, p.mixup_views, generator)
                views = torch.cat([v1, v2])
            with torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                out = step_model(views)
            if contrastive is None:
                ce = F.cross_entropy(out.logits.float(), yb, label_smoothing=p.label_smoothing)
                con = None
            else:
                ce = F.cross_entropy(
                    out.logits.float(), torch.cat([yb, yb]), label_smoothing=p.label_smoothing
                )
                z1, z2 = out.projection.float().chunk(2)
                con = contrastive(z1, z2, yb)
                meter.update("retrieval_acc", retrieval_accuracy(z1.detach(), z2.detach()), 1)
            loss = _combine(ce, con, p)
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
            meter.update("train_ce", ce.detach(), 1)
            if con is not None:
                meter.update("train_contrastive", con.detach(), 1)

        eval_model = ema.model if ema is not None else model
        ev = evaluate(eval_model, data.x_val, data.y_val, n_classes, p.eval_batch_size, amp_dtype)
        meter.update("val_loss", ev.loss, 1)
        meter.update("val_accuracy", ev.accuracy, 1)
        meter.update("val_f1", ev.f1, 1)
        meter.update("val_auc", ev.auc, 1)
        meter.update("embedding_diversity", ev.diversity, 1)
        metrics = meter.compute()  # the one device->host sync of the epoch
        if not math.isfinite(metrics["train_loss"]):
            raise TrainingFailed(
                "nan", f"training loss is {metrics['train_loss']} at epoch {epoch}"
            )
        if not math.isfinite(metrics["val_loss"]):  # a finite loss, then a non-finite step
            raise TrainingFailed(
                "nan",
                f"validation loss is {metrics['val_loss']} at epoch {epoch}: weights diverged",
            )
        val_f1, val_loss = metrics["val_f1"], metrics["val_loss"]
        val_accuracy, val_auc = metrics["val_accuracy"], metrics["val_auc"]
        score, best_score = {  # higher is better; a NaN AUC never improves
            "val_f1": (val_f1, best_f1),
            "val_loss": (-val_loss, -best_loss),
            "val_accuracy": (val_accuracy, best_accuracy),
            "val_auc": (val_auc, best_auc),
        }[p.monitor]
        schedule.step_epoch(score)
        improved = best_state is None or score > best_score
        best_f1, best_loss = max(best_f1, val_f1), min(best_loss, val_loss)
        best_accuracy = max(best_accuracy, val_accuracy)
        best_auc = max(best_auc, val_auc) if math.isfinite(val_auc) else best_auc
        if improved:
            best_epoch, best_eval = epoch, ev
            best_state = {k: v.detach().clone() for k, v in eval_model.state_dict().items()}
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
        metrics["best_val_f1"] = best_f1
        metrics["best_val_loss"] = best_loss
        metrics["best_val_accuracy"] = best_accuracy
        metrics["best_val_auc"] = _finite_or_nan(best_auc)
        metrics["lr"] = lr
        metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        metrics["peak_memory_mb"] = peak_memory_mb(device)
        last = metrics
        stopped_early = bool(
            p.early_stopping_patience and epochs_without_improvement >= p.early_stopping_patience
        )
        if checkpoint is not None:
            assert best_eval is not None and best_state is not None
            checkpoint.save(
                epoch,
                {
                    "best_f1": best_f1,
                    "best_loss": best_loss,
                    "best_accuracy": best_accuracy,
                    "best_auc": best_auc,
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "best_eval": _evaluation_to_cpu(best_eval),
                    "last": last,
                    "epochs_without_improvement": epochs_without_improvement,
                    "stopped_early": stopped_early,
                },
            )
        reporter.report(epoch, metrics)
        if stopped_early:
            break

    assert best_state is not None and best_eval is not None
    result: dict[str, float] = {
        "best_val_f1": best_f1,
        "best_epoch": float(best_epoch),
        "final_val_f1": last["val_f1"],
        "val_f1": float(best_eval.f1.item()),  # the kept epoch's, as accuracy and loss
        "val_accuracy": float(best_eval.accuracy.item()),
        "val_loss": float(best_eval.loss.item()),
        "val_auc": float(best_eval.auc.item()),
        "best_val_loss": best_loss,
        "best_val_accuracy": best_accuracy,
        "best_val_auc": _finite_or_nan(best_auc),
        "train_loss": last["train_loss"],
        "n_params": float(n_params),
        "epochs_run": float(epoch),
    }
    if p.evaluate_test:
        if data.x_test is None or data.y_test is None:
            raise TrainingFailed("no_test_split", f"dataset {p.dataset!r} has no test split")
        final = copy.deepcopy(model)
        final.load_state_dict(best_state)
        test = evaluate(final, data.x_test, data.y_test, n_classes, p.eval_batch_size, amp_dtype)
        result["test_f1"] = float(test.f1.item())
        result["test_accuracy"] = float(test.accuracy.item())
        result["test_auc"] = float(test.auc.item())
    if p.artifact_dir:
        _write_artifacts(Path(p.artifact_dir), best_state, best_eval, data, p, best_epoch)
    if save_dir is not None:
        part = encoder_part(best_state)
        if part.encoder:
            save_encoder(
                save_dir / ENCODER_FILE,
                part.encoder,
                encoder_arch(model, p),
                in_channels=part.in_channels or data.n_channels,
                length=data.length,
                dataset=p.dataset,
                epoch=best_epoch,
                metrics={"val_f1": result["val_f1"], "val_loss": result["val_loss"]},
                adapter_state=part.adapter,
            )
    result["train_seconds"] = time.perf_counter() - started
    return result


train.params_schema = ContrastiveParams  # type: ignore[attr-defined]
train.result_metrics = RESULT_METRICS  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    """``python -m trainers.contrastive --config run.yaml [--set key=value ...]``."""
    import argparse
    import sys

    import yaml
    from pydantic import ValidationError

    from trainers.cli_input import ConfigFileError, parse_set_value, read_config

    fields = ContrastiveParams.model_fields
    epilog = "parameters (name: default — description):\n" + "\n".join(
        f"  {name}: {field.default!r}" + (f" — {field.description}" if field.description else "")
        for name, field in fields.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m trainers.contrastive",
        description="Train the shared contrastive time-series model once.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file of parameters (or {params: {...}})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    problems: list[str] = []
    params: dict[str, Any] = {}
    if args.config:
        try:
            params = read_config(args.config)
        except ConfigFileError as exc:
            problems.append(f"--config: {exc}")
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            problems.append(f"--set: expected KEY=VALUE (got {item!r})")
            continue
        params[key.strip()] = parse_set_value(value)
    if problems:
        for problem in problems:
            print(f"error: {one_line(problem)}", file=sys.stderr)
        return 2
    try:
        ContrastiveParams.model_validate(params)
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(params)"
            msg = str(err["msg"]).removeprefix("Value error, ")
            print(f"error: {one_line(f'{loc}: {msg}')}", file=sys.stderr)
        return 2

    class _Print:
        def report(self, step: int, metrics: Mapping[str, float]) -> None:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            print(f"epoch {step}: {shown}", file=sys.stderr)

    try:
        result = train(params, _Print())
    except TrainingFailed as exc:
        print(f"error: training failed ({exc.reason}): {one_line(str(exc))}", file=sys.stderr)
        return 2 if exc.reason in USER_ERROR_REASONS else 1
    print(yaml.safe_dump({"result": result}, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
