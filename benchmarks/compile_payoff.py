"""Does ``torch.compile`` pay for a trial? What compiling costs against what it saves.

``compile: true`` makes the trainer compile each trial's model (on CUDA; a worker forgets
the previous trial's graphs first, ``trainers.runtime.fresh_compile``). Whether that
should be the default depends on two figures measured side by side in one process, on
one device, for the trainer's own training step (``benchmarks.trainer_throughput``'s
``TrainerPath``, UCI-HAR shape):

- **the steady step**, eager and compiled: ``--steps`` steps of each per repeat, in
  rotated order, median over ``--repeats``;
- **the first steps** (``--first-steps``), eager and compiled: compiled with a cold
  inductor cache (a new temporary cache directory: a shape this machine never compiled),
  then again after dynamo forgets its graphs with the cache warm (the worker's next
  trial of a shape it compiled before).

The compile cost is the compiled path's first steps less as many steady compiled steps,
and the step time saved pays it back after so many steps.
A trial of ``--epochs`` epochs is then priced both ways. The figures are for the model
in the trainer's defaults; a trial's model is compiled only for its training step.

On a CPU the trainer never compiles; run here, the benchmark says whether it should.
Run ``python -m benchmarks.compile_payoff --help``; ``--quick`` is the CI smoke size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks._common import machine_line, median, spread
from benchmarks.trainer_throughput import Shared, TrainerPath, _wants_cuda, exit_status
from trainers.building import load_splits
from trainers.models import count_parameters
from trainers.params import ContrastiveParams
from trainers.runtime import autocast_dtype, resolve_device

CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


@dataclass(frozen=True)
class Payoff:
    """What compiling costs once and saves per step, and where the two meet."""

    cost_s: float
    saved_per_step_s: float
    steps_per_epoch: int

    @property
    def break_even_steps(self) -> float:
        """Steps after which the compiled trial is ahead (inf when a step saves nothing)."""
        if self.saved_per_step_s <= 0:
            return math.inf
        return max(self.cost_s, 0.0) / self.saved_per_step_s

    @property
    def break_even_epochs(self) -> float:
        return self.break_even_steps / self.steps_per_epoch


def _params(args: argparse.Namespace) -> ContrastiveParams:
    fixed: dict[str, Any] = {
        "dataset": "synthetic_har",
        "batch_size": args.batch_size,
        "device": args.device,
        "seed": args.seed,
        "augment": "default",
        "precision": args.amp,
    }
    if args.n_train is not None:
        fixed["synthetic_n_train"] = args.n_train
        fixed["synthetic_n_test"] = max(6, args.n_train // 4)
    if args.dim is not None:
        fixed["dim"] = args.dim
    return ContrastiveParams(**fixed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compile_payoff",
        description="torch.compile's compile time against the step time it saves, for the "
        "trainer's training step; the break-even point and a whole trial priced both ways.",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per repeat (3 on CPU, 100 on CUDA)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats, median shown (5 on CPU, 3 on CUDA)"
    )
    parser.add_argument(
        "--first-steps",
        type=int,
        default=None,
        help="steps timed from the start of each path, compile included (2 on CPU, 5 on CUDA)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="the trial to price both ways (default: the trainer's default epochs)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--n-train",
        type=int,
        default=None,
        help="synthetic windows before the validation split (default 7352, as UCI HAR)",
    )
    parser.add_argument("--dim", type=int, default=None, help="model width (default: trainer's)")
    parser.add_argument(
        "--amp",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16 autocast on both paths (CUDA only, as in the trainer)",
    )
    parser.add_argument(
        "--backend",
        default=None,
        help="torch.compile backend (default inductor; --quick: aot_eager, no code generation)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny configuration for CI")
    return parser


def _resolve_sizes(args: argparse.Namespace) -> None:
    defaults: dict[str, Any]
    if args.quick:
        defaults = {"steps": 2, "repeats": 1, "first_steps": 1, "threads": 1}
        defaults |= {"backend": "aot_eager", "epochs": 2}
        if args.n_train is None:
            args.n_train = 96
        if args.batch_size == 128:
            args.batch_size = 16
        if args.dim is None:
            args.dim = 16
    elif _wants_cuda(args.device):
        defaults = {"steps": 100, "repeats": 3, "first_steps": 5}
    else:
        defaults = {"steps": 3, "repeats": 5, "first_steps": 2}
    defaults.setdefault("backend", "inductor")
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.steps < 1 or args.repeats < 1 or args.first_steps < 1 or args.batch_size < 2:
        raise ValueError("need --steps, --repeats and --first-steps >= 1, --batch-size >= 2")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError("--epochs must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be >= 1")


@contextmanager
def _fresh_inductor_cache() -> Iterator[str]:
    """Point inductor at an empty cache directory (read at each compile) for the block."""
    before = os.environ.get(CACHE_ENV)
    with tempfile.TemporaryDirectory(prefix="compile-payoff-") as cache:
        os.environ[CACHE_ENV] = cache
        try:
            yield cache
        finally:
            if before is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = before


def _seconds(path: TrainerPath, steps: int) -> float:
    started = time.perf_counter()
    path.train_steps(steps)
    return time.perf_counter() - started


def _payback(epochs: float) -> str:
    if math.isinf(epochs):
        return "never pays back (a compiled step is not faster)"
    return f"pays back after {epochs:,.1f} epochs"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure and print; returns the figures as a dict."""
    p = _params(args)
    device = resolve_device(p.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    amp_dtype = autocast_dtype(p.precision, device)
    splits = load_splits(p)
    eager_shared = Shared(p, splits, device, amp_dtype, compile=False)
    compiled_shared = Shared(p, splits, device, amp_dtype, compile=True, backend=args.backend)
    steps_per_epoch = eager_shared.steps_per_epoch
    epochs = args.epochs or p.epochs
    bs = min(p.batch_size, splits.x_train.shape[0])
    precision = str(amp_dtype).replace("torch.", "") if amp_dtype is not None else "fp32"

    eager = TrainerPath(eager_shared)
    print(
        f"compile payoff: synthetic UCI-HAR shape {splits.n_channels} x {splits.length}, "
        f"{splits.x_train.shape[0]} training windows, batch {bs}, {steps_per_epoch} steps "
        f"per epoch"
    )
    print(
        f"model {p.model} ({count_parameters(eager.model):,} params), device {device}, "
        f"{precision}, backend {args.backend}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} intra-op threads"
    )
    print(machine_line())
    notes: list[str] = []
    if device.type != "cuda":
        notes.append(
            "on CPU the trainer trains eagerly (compile: true applies on CUDA only); "
            "these figures say whether it should compile there."
        )
    first_eager = _seconds(eager, args.first_steps)
    with _fresh_inductor_cache():
        compiled = TrainerPath(compiled_shared)
        first_cold = _seconds(compiled, args.first_steps)
        eager_rates: list[float] = []
        compiled_rates: list[float] = []
        for r in range(args.repeats):
            order = [(eager, eager_rates), (compiled, compiled_rates)]
            for path, rates in order if r % 2 == 0 else order[::-1]:
                rates.append(args.steps * bs / _seconds(path, args.steps))
        # The worker's next trial of a shape compiled before: dynamo starts over
        # (fresh_compile), inductor's cache is warm.
        again = TrainerPath(compiled_shared)
        first_warm = _seconds(again, args.first_steps)

    eager_step = bs / median(eager_rates)
    compiled_step = bs / median(compiled_rates)
    # The eager path runs first and pays the process's own first-call costs: they are not
    # the compiler's, so the compiled paths' first steps are set against steady steps only.
    payoffs = {
        name: Payoff(
            cost_s=first - args.first_steps * compiled_step,
            saved_per_step_s=eager_step - compiled_step,
            steps_per_epoch=steps_per_epoch,
        )
        for name, first in (("cold", first_cold), ("warm", first_warm))
    }
    trial_steps = epochs * steps_per_epoch
    eager_trial = trial_steps * eager_step
    trials = {name: pay.cost_s + trial_steps * compiled_step for name, pay in payoffs.items()}

    print(
        f"steady step, {args.steps} steps x {args.repeats} repeats (median samples/s, range): "
        f"eager {median(eager_rates):,.1f} ({spread(eager_rates)}), compiled "
        f"{median(compiled_rates):,.1f} ({spread(compiled_rates)}): "
        f"compiled / eager {median(compiled_rates) / median(eager_rates):.2f}x"
    )
    print(
        f"first {args.first_steps} steps: eager {first_eager:.1f} s, compiled with a cold "
        f"cache {first_cold:.1f} s, after a dynamo reset with a warm cache {first_warm:.1f} s"
    )
    for name, pay in payoffs.items():
        print(
            f"compile ({name} cache): costs {pay.cost_s:.1f} s, saves "
            f"{1000 * pay.saved_per_step_s:.1f} ms a step, {_payback(pay.break_even_epochs)}"
        )
    print(
        f"a trial of {epochs} epochs ({trial_steps:,} steps): eager {eager_trial:,.1f} s, "
        + ", ".join(
            f"compiled ({name} cache) {t:,.1f} s (eager / compiled {eager_trial / t:.2f}x)"
            for name, t in trials.items()
        )
    )
    for note in notes:
        print(f"note: {note}")

    result = {
        "machine": machine_line(),
        "device": str(device),
        "precision": precision,
        "backend": args.backend,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": bs,
        "steps_per_epoch": steps_per_epoch,
        "eager_samples_per_s": eager_rates,
        "compiled_samples_per_s": compiled_rates,
        "compiled_over_eager": median(compiled_rates) / median(eager_rates),
        "first_steps": args.first_steps,
        "first_steps_s": {"eager": first_eager, "cold": first_cold, "warm": first_warm},
        "compile_cost_s": {name: pay.cost_s for name, pay in payoffs.items()},
        "break_even_epochs": {  # None: never
            name: None if math.isinf(pay.break_even_epochs) else pay.break_even_epochs
            for name, pay in payoffs.items()
        },
        "trial_epochs": epochs,
        "trial_s": {"eager": eager_trial, **trials},
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

    return exit_status(measure, "the CUDA measurement needs a GPU")


if __name__ == "__main__":
    sys.exit(main())
