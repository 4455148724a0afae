"""How much of the search-efficiency task is signal: config effects against seed noise.

The search-efficiency benchmark asks each method to reach the manual sweep's best
validation F1 *at one training seed*. Whether a search method can do that better than
luck depends on how the F1 differences between configurations compare with the F1
differences that the seed alone makes. This trains a few configurations of the seed space
(the trainer defaults and one-knob changes of them) at several seeds on the same task
and prints, per configuration, the mean and spread over seeds, then:

- seed noise: the pooled standard deviation over seeds within a configuration;
- config signal: the standard deviation of the configurations' means;
- their ratio (signal / noise). Well below 1, the best configuration at a given seed is
  mostly that seed's luck, and no method can find it reliably in a third of the epochs.

``python -m benchmarks.seed_noise`` (defaults match ``benchmarks.search_efficiency``);
``--quick`` is the CI smoke size.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any

from benchmarks._common import machine_line
from benchmarks.search_efficiency import METRIC, SEARCH_SPACE, fixed_params, trainer_defaults

CHANGES: list[tuple[str, Any]] = [
    ("loss", "triplet"),
    ("loss", "vicreg"),
    ("batch_size", 128),
    ("temperature", 0.05),
    ("n_heads", 8),
]
"""One-knob changes from the defaults, each tried at every seed."""


def configurations(quick: bool) -> list[tuple[str, dict[str, Any]]]:
    """The trainer defaults for the seed space, then each one-knob change of them."""
    start = trainer_defaults(SEARCH_SPACE)
    configs = [("defaults", dict(start))]
    for name, value in CHANGES[: 1 if quick else None]:
        configs.append((f"{name}={value}", {**start, name: value}))
    return configs


def train_once(fixed: dict[str, Any], config: dict[str, Any], seed: int) -> float:
    """Best validation macro-F1 of one full run (the search-efficiency objective)."""
    import torch

    from trainers.contrastive import train

    torch.set_num_threads(1)
    return float(train({**fixed, **config, "seed": seed})[METRIC])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_noise", description=__doc__)
    parser.add_argument("--dataset", default="synthetic_har")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", type=float, default=1.0, help="synthetic_noise")
    parser.add_argument("--n-train", type=int, default=2000, help="train + val")
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument(
        "--val-fraction", type=float, default=0.88, help="share of --n-train held out"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (1 thread each)")
    parser.add_argument("--quick", action="store_true", help="CI smoke size")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.n_train, args.n_test, args.length = 2, 2, 96, 32, 16
        args.val_fraction = 0.2
    fixed = fixed_params(args, args.dataset)
    configs = configurations(args.quick)
    print(f"seed noise on {args.dataset}: {len(configs)} configurations x {args.seeds} seeds")
    print(machine_line())
    started = time.perf_counter()
    jobs = [(label, config, seed) for label, config in configs for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_once, fixed, config, seed) for _, config, seed in jobs]
        for done, future in enumerate(as_completed(futures), 1):
            future.result()
            print(f"  {done}/{len(jobs)} runs done", file=sys.stderr, flush=True)
        scores = [future.result() for future in futures]
    by_config: dict[str, list[float]] = {}
    for (label, _, _), score in zip(jobs, scores, strict=True):
        by_config.setdefault(label, []).append(score)
    print(f"| configuration | {' | '.join(f'seed {s}' for s in range(args.seeds))} | mean | sd |")
    print(f"|---|{'---|' * args.seeds}---|---|")
    for label, values in by_config.items():
        cells = " | ".join(f"{v:.3f}" for v in values)
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {label} | {cells} | {statistics.fmean(values):.3f} | {sd:.3f} |")
    within = [statistics.variance(v) for v in by_config.values() if len(v) > 1]
    noise = statistics.fmean(within) ** 0.5 if within else 0.0
    means = [statistics.fmean(v) for v in by_config.values()]
    signal = statistics.stdev(means) if len(means) > 1 else 0.0
    ratio = signal / noise if noise > 0 else float("inf")
    print(f"seed noise (pooled sd within a configuration): {noise:.4f}")
    print(f"config signal (sd of configuration means): {signal:.4f}")
    print(f"signal / noise: {ratio:.2f}")
    print(f"wall {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
