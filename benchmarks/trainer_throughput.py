"""Training throughput of the shared contrastive trainer against a hand-written baseline.

Both paths train the same model (``build_model`` with the default ``ContrastiveParams``)
with the same loss (cross-entropy + weighted InfoNCE on the projections of two
augmented views), the same optimizer (AdamW, grad clipping, warmup-cosine schedule)
and the same augmentation policy (``default``: jitter, scaling, time shift, magnitude
warp, blockout) on synthetic UCI-HAR-shaped data (9 channels x 128 steps), on the same
device. They differ only in how a batch of two views reaches the model:

``trainer``
    Exactly the training step of :func:`trainers.contrastive.train_supervised`: the
    split lives on the device, a batch is a slice of a ``randperm``, both views come
    from :class:`trainers.augment.Augmenter` (batched tensor ops), and metrics are
    summed on the device with one host transfer at the end (per epoch in the trainer).
``baseline``
    How hand-made scripts do it: a ``torch.utils.data.Dataset`` whose ``__getitem__``
    applies per-sample numpy versions of the same augmentations twice, a
    ``DataLoader(batch_size, shuffle=True)`` with ``num_workers`` 0 and 2 (reseeded
    per worker, persistent, pinned memory on CUDA, so it is not handicapped), batches
    copied to the device each step and the loss read back with ``.item()``.

Throughput is training samples per second (one sample = one series, i.e. two views
through the model). Each path is warmed up, then every repeat times ``--steps`` steps
of every path back to back (in rotated order), and the median over repeats is
reported, so background load affects all paths alike. Before each timed block the
batches that DataLoader workers prefetched meanwhile are taken untimed, so workers pay
for every timed batch. The input pipelines alone (augmentation and batching, no model)
are timed the same way to show where time goes.

Run ``python -m benchmarks.trainer_throughput --help``; ``--quick`` is the CI smoke size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, get_worker_info

from benchmarks._common import machine_line, median, spread
from trainers.augment import POLICIES, Augmenter
from trainers.building import (
    build_loss,
    build_model,
    build_optimizer,
    load_splits,
    make_schedule,
)
from trainers.contrastive import _combine
from trainers.data import TimeSeriesSplits
from trainers.losses import ContrastiveLoss
from trainers.metrics import EpochMeter, retrieval_accuracy
from trainers.models import count_parameters
from trainers.params import ContrastiveParams
from trainers.reporter import TrainingFailed
from trainers.runtime import autocast_dtype, fresh_compile, resolve_device
from trainers.schedules import Schedule

FloatArray = np.ndarray

# --------------------------------------------------------------------------------------
# per-sample numpy augmentations (the baseline's), one (C, T) float32 series at a time
# --------------------------------------------------------------------------------------


def np_jitter(x: FloatArray, rng: np.random.Generator, strength: float) -> FloatArray:
    """Gaussian noise with sigma ``0.1 * strength`` (as :func:`trainers.augment.jitter`)."""
    return x + rng.normal(0.0, 0.1 * strength, x.shape).astype(np.float32)


def np_scaling(x: FloatArray, rng: np.random.Generator, strength: float) -> FloatArray:
    """Per-channel factor ``1 + 0.1 * strength * z`` (as :func:`trainers.augment.scaling`)."""
    factor = 1.0 + 0.1 * strength * rng.standard_normal((x.shape[0], 1))
    return x * factor.astype(np.float32)


def np_time_shift(x: FloatArray, rng: np.random.Generator, strength: float) -> FloatArray:
    """Circular roll by a non-zero offset of at most ``0.1 * T * strength`` steps."""
    t = x.shape[1]
    m = min(max(1, round(0.1 * t * strength)), t // 2) if strength > 0 else 0
    if m == 0:
        return x.copy()
    shift = int(rng.integers(1, m + 1)) * (1 if rng.random() < 0.5 else -1)
    return np.roll(x, shift, axis=1)


def np_magnitude_warp(
    x: FloatArray, rng: np.random.Generator, strength: float, knots: int = 4
) -> FloatArray:
    """Multiply each channel by a curve through ``knots`` values ~ N(1, 0.2), via np.interp."""
    c, t = x.shape
    knot_t = np.linspace(0.0, t - 1, knots)
    steps = np.arange(t, dtype=np.float64)
    curve = np.empty((c, t), dtype=np.float32)
    for ch in range(c):
        values = 1.0 + 0.2 * strength * rng.standard_normal(knots)
        curve[ch] = np.interp(steps, knot_t, values)
    return x * curve


def np_blockout(x: FloatArray, rng: np.random.Generator, strength: float) -> FloatArray:
    """Zero a random time block of 1..``0.1 * T * strength`` steps in every channel."""
    t = x.shape[1]
    m = min(max(1, round(0.1 * t * strength)), t) if strength > 0 else 0
    out = x.copy()
    if m == 0:
        return out
    length = int(rng.integers(1, m + 1))
    start = int(rng.integers(0, t - length + 1))
    out[:, start : start + length] = 0.0
    return out


NUMPY_AUGMENTATIONS: dict[str, Callable[[FloatArray, np.random.Generator, float], FloatArray]] = {
    "jitter": np_jitter,
    "scaling": np_scaling,
    "time_shift": np_time_shift,
    "magnitude_warp": np_magnitude_warp,
    "blockout": np_blockout,
}


PREFETCH_FACTOR = 2
"""DataLoader's default: batches each worker keeps ready."""


class NumpyAugmentDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """``__getitem__`` returns two independently augmented views of one series and its label.

    The augmentations, their order and probabilities come from the trainer's policy
    (``trainers.augment.POLICIES[policy]``); each step is drawn per sample with numpy.
    """

    def __init__(self, x: FloatArray, y: np.ndarray, policy: str = "default", seed: int = 0):
        self.x = x
        self.y = y
        self.steps = [
            (NUMPY_AUGMENTATIONS[spec.name], spec.p, spec.strength) for spec in POLICIES[policy]
        ]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def _augment(self, x: FloatArray) -> FloatArray:
        for fn, p, strength in self.steps:
            if self.rng.random() < p:
                x = fn(x, self.rng, strength)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, int]:
        x = self.x[i]
        v1 = torch.from_numpy(self._augment(x).copy())
        v2 = torch.from_numpy(self._augment(x).copy())
        return v1, v2, int(self.y[i])


def _reseed_worker(worker_id: int) -> None:
    """Give every worker its own numpy stream (forked copies would repeat the same draws)."""
    info = get_worker_info()
    if info is not None:
        info.dataset.rng = np.random.default_rng(info.seed % 2**32)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# the two training paths
# --------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Shared:
    """What both paths are built from."""

    p: ContrastiveParams
    splits: TimeSeriesSplits
    device: torch.device
    amp_dtype: torch.dtype | None
    compile: bool
    backend: str = "inductor"
    steps_per_epoch: int = field(init=False)

    def __post_init__(self) -> None:
        n_train = self.splits.x_train.shape[0]
        self.steps_per_epoch = max(n_train // min(self.p.batch_size, n_train), 1)

    def model_and_optimizer(
        self,
    ) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, Schedule, ContrastiveLoss]:
        """Identically initialised model, its (maybe compiled) step model, optimizer, schedule, loss."""
        p = self.p
        torch.manual_seed(p.seed)
        model = build_model(p, self.splits.n_channels, self.splits.n_classes).to(self.device)
        model.train()
        step_model: nn.Module = model
        if self.compile:  # as the trainer compiles: dynamo forgets earlier models first
            step_model = fresh_compile(model, self.backend)
        optimizer = build_optimizer(model, p, self.device)
        schedule = make_schedule(p, optimizer, self.steps_per_epoch)
        contrastive = build_loss(p)
        if contrastive is None:
            raise ValueError("the benchmark needs a contrastive loss (two views per sample)")
        return model, step_model, optimizer, schedule, contrastive

    def autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        )


class TrainerPath:
    """The trainer's own hot path (the inner loop of ``train_supervised``)."""

    name = "trainer (device-resident data, batched Augmenter)"

    def __init__(self, shared: Shared) -> None:
        self.s = shared
        p, device = shared.p, shared.device
        data = shared.splits.to_tensors(device)
        self.x, self.y = data.x_train, data.y_train
        self.n_train = int(self.x.shape[0])
        self.batch_size = min(p.batch_size, self.n_train)
        self.n_batches = shared.steps_per_epoch
        (self.model, self.step_model, self.optimizer, self.schedule, self.contrastive) = (
            shared.model_and_optimizer()
        )
        self.augmenter = Augmenter.from_config(
            p.augment, strength=p.augment_strength, p=p.augment_p
        )
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(p.seed)
        self.meter = EpochMeter()
        self.order = torch.randperm(self.n_train, device=device, generator=self.generator)
        self.cursor = 0
        self.optimizer.zero_grad(set_to_none=True)

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        if self.cursor == self.n_batches:  # a new epoch: flush the metrics, reshuffle
            self.meter.compute()
            self.meter.reset()
            self.order = torch.randperm(
                self.n_train, device=self.s.device, generator=self.generator
            )
            self.cursor = 0
        b, bs = self.cursor, self.batch_size
        self.cursor += 1
        idx = self.order[b * bs : (b + 1) * bs]
        return self.x[idx], self.y[idx]

    def train_steps(self, steps: int) -> None:
        """``steps`` optimizer steps, then the single host transfer of the metrics."""
        p, g = self.s.p, self.generator
        for _ in range(steps):
            xb, yb = self._next_batch()
            # as in train_supervised: only the forward pass under autocast, the views,
            # losses and metric in fp32
            v1, v2 = self.augmenter(xb, g), self.augmenter(xb, g)
            with self.s.autocast():
                out = self.step_model(torch.cat([v1, v2]))
            logits = out.logits.float()
            ce = F.cross_entropy(logits, torch.cat([yb, yb]), label_smoothing=p.label_smoothing)
            z1, z2 = out.projection.float().chunk(2)
            con = self.contrastive(z1, z2, yb)
            self.meter.update("retrieval_acc", retrieval_accuracy(z1.detach(), z2.detach()), 1)
            loss = _combine(ce, con, p)
            loss.backward()
            if p.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.schedule.step_batch()
            self.meter.update("train_loss", loss.detach(), 1)
            self.meter.update("train_ce", ce.detach(), 1)
            self.meter.update("train_contrastive", con.detach(), 1)
        self.meter.compute()
        _sync(self.s.device)

    def input_steps(self, steps: int) -> None:
        """Only the input pipeline: batch selection and both augmented views."""
        g = self.generator
        for _ in range(steps):
            xb, _ = self._next_batch()
            v = torch.cat([self.augmenter(xb, g), self.augmenter(xb, g)])
        _sync(self.s.device)
        del v

    def before_block(self) -> None:
        """Nothing runs in the background between timed blocks."""

    def close(self) -> None:
        pass


class BaselinePath:
    """The hand-made way: numpy per-sample augmentation in a Dataset, batches via DataLoader."""

    def __init__(self, shared: Shared, num_workers: int) -> None:
        self.s = shared
        self.num_workers = num_workers
        self.name = f"baseline (numpy Dataset + DataLoader, num_workers={num_workers})"
        p, device = shared.p, shared.device
        dataset = NumpyAugmentDataset(
            shared.splits.x_train, shared.splits.y_train, policy=str(p.augment), seed=p.seed
        )
        generator = torch.Generator()
        generator.manual_seed(p.seed)
        self.loader = DataLoader(
            dataset,
            batch_size=min(p.batch_size, len(dataset)),
            shuffle=True,
            drop_last=True,  # as the trainer: BN and the contrastive loss need full batches
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0,
            prefetch_factor=PREFETCH_FACTOR if num_workers > 0 else None,
            worker_init_fn=_reseed_worker if num_workers > 0 else None,
            generator=generator,
        )
        self._it: Iterator[tuple[Tensor, Tensor, Tensor]] = iter(self.loader)
        (self.model, self.step_model, self.optimizer, self.schedule, self.contrastive) = (
            shared.model_and_optimizer()
        )
        self.running: dict[str, float] = {"loss": 0.0, "retrieval_acc": 0.0}

    def before_block(self) -> None:
        """Take (untimed) the batches workers prefetched while other paths were timed.

        Otherwise a short timed block would start with ``num_workers * prefetch_factor``
        batches made for free; after draining, the workers produce every timed batch.
        """
        for _ in range(self.num_workers * PREFETCH_FACTOR):
            self._next_batch()

    def _next_batch(self) -> tuple[Tensor, Tensor, Tensor]:
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def train_steps(self, steps: int) -> None:
        p, device = self.s.p, self.s.device
        for _ in range(steps):
            v1, v2, yb = self._next_batch()
            v1 = v1.to(device, non_blocking=True)
            v2 = v2.to(device, non_blocking=True)
            yb = yb.to(device, non_blocking=True)
            with self.s.autocast():
                out = self.step_model(torch.cat([v1, v2]))
            logits = out.logits.float()
            ce = F.cross_entropy(logits, torch.cat([yb, yb]), label_smoothing=p.label_smoothing)
            z1, z2 = out.projection.float().chunk(2)
            con = self.contrastive(z1, z2, yb)
            acc = retrieval_accuracy(z1.detach(), z2.detach())
            loss = _combine(ce, con, p)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if p.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), p.grad_clip)
            self.optimizer.step()
            self.schedule.step_batch()
            self.running["loss"] += loss.item()
            self.running["retrieval_acc"] += acc.item()
        _sync(device)

    def input_steps(self, steps: int) -> None:
        """Only the input pipeline: DataLoader batches of two views, copied to the device."""
        device = self.s.device
        for _ in range(steps):
            v1, v2, yb = self._next_batch()
            v = torch.cat([v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)])
            yb = yb.to(device, non_blocking=True)
        _sync(device)
        del v

    def close(self) -> None:
        # ends persistent workers
        del self._it
        self.loader = None  # type: ignore[assignment]


TrainPath = TrainerPath | BaselinePath

# --------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------


@dataclass
class Measured:
    """Samples per second of one path, one entry per repeat."""

    name: str
    rates: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return median(self.rates)


def _time_paths(
    paths: Sequence[TrainPath],
    method: str,
    steps: int,
    warmup: int,
    repeats: int,
    batch_size: int,
) -> list[Measured]:
    """Warm every path up, then time ``steps`` steps of each per repeat, order rotated."""
    for path in paths:
        getattr(path, method)(warmup)
    results = [Measured(path.name) for path in paths]
    n = len(paths)
    for r in range(repeats):
        for k in range(n):
            i = (r + k) % n
            paths[i].before_block()
            started = time.perf_counter()
            getattr(paths[i], method)(steps)
            elapsed = time.perf_counter() - started
            results[i].rates.append(steps * batch_size / elapsed)
    return results


def _params(args: argparse.Namespace) -> ContrastiveParams:
    fixed: dict[str, Any] = {
        "dataset": "synthetic_har",
        "batch_size": args.batch_size,
        "device": args.device,
        "seed": args.seed,
        "augment": "default",
        "precision": args.amp,
        "compile": args.compile,
    }
    if args.attn_dropout is not None:
        fixed["attn_dropout"] = args.attn_dropout
    if args.n_train is not None:
        fixed["synthetic_n_train"] = args.n_train
        fixed["synthetic_n_test"] = max(6, args.n_train // 4)
    return ContrastiveParams(**fixed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trainer_throughput",
        description="Training samples/s of the trainer's step vs a numpy Dataset + DataLoader "
        "baseline (same model, loss, optimizer, augmentations, device).",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per repeat (default 3 on CPU, 200 on CUDA)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps per path first (default 2 on CPU, 20 on CUDA)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="repeats, median shown (default 11 on CPU, 3 on CUDA)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--workers",
        default=None,
        help="comma-separated DataLoader num_workers to time for the baseline (default 0,2)",
    )
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="synthetic windows before the validation split (default 7352, as UCI HAR)",
    )
    parser.add_argument(
        "--amp",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16 autocast for both paths (CUDA only, as in the trainer)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model of both paths (CUDA only)"
    )
    parser.add_argument(
        "--attn-dropout",
        type=float,
        default=None,
        help="the model's attention-weight dropout (default: the trainer's, 0)",
    )
    parser.add_argument(
        "--no-input-only", action="store_true", help="skip timing the input pipelines alone"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (torch.set_num_threads); default: torch's choice",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="tiny configuration for CI (a few seconds)"
    )
    return parser


def _resolve_sizes(args: argparse.Namespace) -> None:
    defaults: dict[str, Any]
    if args.quick:
        # one thread: on a busy 2-core CI box OpenMP barriers make 2 threads far slower
        defaults = {"steps": 2, "warmup": 1, "repeats": 1, "workers": "0,2", "threads": 1}
        if args.n_train is None:
            args.n_train = 96
        if args.batch_size == 128:
            args.batch_size = 16
    elif _wants_cuda(args.device):
        defaults = {"steps": 200, "warmup": 20, "repeats": 3, "workers": "0,2"}
    else:  # a CPU step at batch 128 takes about a second; short repeats resist load swings
        defaults = {"steps": 3, "warmup": 2, "repeats": 11, "workers": "0,2"}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.worker_counts = sorted({int(w) for w in str(args.workers).split(",") if w.strip()})
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or args.batch_size < 2:
        raise ValueError("need --steps >= 1, --repeats >= 1, --warmup >= 0, --batch-size >= 2")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be >= 1")
    if any(w < 0 for w in args.worker_counts):
        raise ValueError("--workers must be >= 0")


def _wants_cuda(device: str) -> bool:
    if device == "auto":
        return torch.cuda.is_available()
    return device.startswith("cuda")


def _notes(args: argparse.Namespace, device: torch.device) -> list[str]:
    notes: list[str] = []
    cuda_only = [
        flag for flag, on in (("--amp bf16", args.amp == "bf16"), ("--compile", args.compile)) if on
    ]
    if device.type != "cuda":
        if not torch.cuda.is_available():
            notes.append(
                "CUDA is not available on this machine: ran on CPU in fp32, eager. The CUDA "
                "variants (--device cuda, --amp bf16, --compile) were not measured here."
            )
        if cuda_only:
            notes.append(
                f"{' and '.join(cuda_only)} apply on CUDA only (the trainer trains fp32, eager "
                "on CPU) and were ignored."
            )
    elif args.amp == "bf16" and not torch.cuda.is_bf16_supported():
        notes.append("this GPU has no bf16 support: ran fp32 (as the trainer does).")
    return notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and print; returns the figures as a dict."""
    p = _params(args)
    device = resolve_device(p.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    amp_dtype = autocast_dtype(p.precision, device)
    compile_model = bool(args.compile and device.type == "cuda")
    splits = load_splits(p)
    shared = Shared(p, splits, device, amp_dtype, compile_model)
    bs = min(p.batch_size, splits.x_train.shape[0])

    trainer = TrainerPath(shared)
    baselines = [BaselinePath(shared, w) for w in args.worker_counts]
    paths: list[TrainPath] = [trainer, *baselines]
    precision = str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "fp32"
    print(
        f"trainer throughput: synthetic UCI-HAR shape {splits.n_channels} x {splits.length}, "
        f"{splits.x_train.shape[0]} training windows, batch {bs}, two augmented views per sample"
    )
    print(
        f"model {p.model} ({count_parameters(trainer.model):,} params, attention dropout "
        f"{p.attn_dropout:g}), loss CE + "
        f"{p.contrastive_weight:g} x {p.loss} ({p.loss_mix}), augment policy {p.augment}, "
        f"device {device}, {precision}, {'torch.compile' if compile_model else 'eager'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"
    )
    print(machine_line())
    print(
        f"{args.steps} timed steps per path per repeat after {args.warmup} warmup steps, "
        f"{args.repeats} repeats, median shown"
    )
    try:
        train = _time_paths(paths, "train_steps", args.steps, args.warmup, args.repeats, bs)
        inputs: list[Measured] = []
        if not args.no_input_only:
            inputs = _time_paths(paths, "input_steps", args.steps, args.warmup, args.repeats, bs)
    finally:
        for path in paths:
            path.close()

    width = max(len(m.name) for m in train) + 2
    print()
    print(f"{'training step':<{width}}{'samples/s':>12}  {'range':>22}  {'ms/step':>9}")
    for m in train:
        ms = 1000.0 * bs / m.median
        print(f"{m.name:<{width}}{m.median:>12,.1f}  {spread(m.rates):>22}  {ms:>9.1f}")
    fast, base = train[0], train[1:]
    best = max(base, key=lambda m: m.median) if base else None
    ratios = {m.name: fast.median / m.median for m in base}
    if best is not None:
        worst = min(base, key=lambda m: m.median)
        if len(base) > 1:
            print(f"faster baseline: {best.name} ({best.median / worst.median:.2f}x the slower)")
        for m in base:
            print(f"ratio trainer / {m.name}: {ratios[m.name]:.2f}x")
        print(f"ratio trainer / best baseline: {fast.median / best.median:.2f}x")
    if inputs:
        print()
        print(f"{'input pipeline only (no model)':<{width}}{'samples/s':>12}  {'range':>22}")
        for m in inputs:
            print(f"{m.name:<{width}}{m.median:>12,.1f}  {spread(m.rates):>22}")
    notes = _notes(args, device)
    for note in notes:
        print(f"note: {note}")

    result: dict[str, Any] = {
        "device": str(device),
        "precision": precision,
        "compile": compile_model,
        "attn_dropout": p.attn_dropout,
        "batch_size": bs,
        "steps": args.steps,
        "repeats": args.repeats,
        "train_samples_per_s": {m.name: m.median for m in train},
        "train_samples_per_s_repeats": {m.name: m.rates for m in train},
        "input_samples_per_s": {m.name: m.median for m in inputs},
        "ratio_vs_baseline": ratios,
        "ratio_vs_best_baseline": fast.median / best.median if best is not None else math.nan,
        "notes": notes,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)

    def measure() -> None:
        _resolve_sizes(args)
        run(args)

    return exit_status(
        measure, "the CUDA measurements (--device cuda, --amp bf16, --compile) need a GPU"
    )


def exit_status(measure: Callable[[], object], cuda_hint: str) -> int:
    """Run ``measure``; a bad option or a missing GPU is one ``error:`` line and status 2."""
    try:
        measure()
    except TrainingFailed as exc:
        hint = f"; {cuda_hint}" if exc.reason == "no_cuda" else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    except ValidationError as exc:  # a trainer parameter out of range, one line each
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"])
            print(f"error: --{name.replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
