"""Soak: one long-lived worker runs many trials; its memory must stay flat.

A worker process lives for hundreds of trials, so anything a trial leaves behind (tensors
held by a closure, matplotlib figures, Optuna caches, CUDA cache blocks) adds up. This
runs the real service path, :func:`hpo.run_study` in this process, on the real contrastive
trainer with a tiny configuration (synthetic HAR-like data, a 16-to-32-wide CrossFormer, 2
epochs; a few seconds a trial at most) and the default artifacts (learning-curve and t-SNE
PNGs, checkpoints with keep-best-3 retention, Markdown notes), and samples after every
trial:

- host memory: the resident set size (``VmRSS`` from ``/proc/self/status``), not the peak;
- on CUDA: ``torch.cuda.memory_allocated`` and ``memory_reserved`` after the trial ended
  (the worker empties the CUDA cache between trials, so reserved memory should fall back
  to about zero every time).

It prints RSS before the first trial, after the first trial (imports, data, kernels and
plotting are warm: the baseline), every ``--every`` trials, and at the end, with the ratio
end / baseline and the growth per 100 trials over the second half (a least-squares slope,
robust to one noisy sample).

A worker holds every trial of its study in memory (Optuna's cached storage), so RSS grows
with the study even when nothing leaks. After the run the soak loads the study afresh
through the same storage stack under ``tracemalloc`` and counts what the loaded trials
keep allocated: the study's own share. The verdict is on the ratio with that share taken
off the end figure: "flat" means (end - study) / baseline <= 1.10. What the study also
costs outside Python's heap (SQLite's page cache, allocator overhead) is not taken off,
so the verdict errs towards "GROWING".

    python -m benchmarks.soak                 # 200 trials (several minutes on 2 CPU cores)
    python -m benchmarks.soak --quick         # 3 one-epoch trials, no plots: the CI smoke size
    python -m benchmarks.soak --trainer analytic --trials 1000   # service-only, no torch

Timings are printed for information only.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import machine_line

FLAT_RATIO = 1.10
"""End-to-baseline RSS ratio, the study's own trials taken off, up to which memory is flat."""


def rss_mib() -> float:
    """Current resident set size of this process in MiB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:  # macOS and others: the peak is the best available
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)
    except (ImportError, OSError):
        return 0.0


def cuda_mib() -> tuple[float, float] | None:
    """``(allocated, reserved)`` CUDA memory in MiB, or ``None`` when CUDA was not used."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.memory_allocated() / 2**20, torch.cuda.memory_reserved() / 2**20


def slope_per_100(points: list[tuple[int, float]]) -> float:
    """Least-squares growth of the second half of ``points``, in MiB per 100 trials."""
    half = points[len(points) // 2 :]
    if len(half) < 2:
        return float("nan")
    xs = [float(x) for x, _ in half]
    ys = [y for _, y in half]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return float("nan")
    return 100.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def study_held_mib(cfg: Any) -> tuple[float, int]:
    """``(MiB, trials)``: what the study's trials keep allocated once one process loads them.

    Opens the study afresh through the worker's storage stack
    (:func:`hpo.runner.open_study_storage`) and loads every trial under ``tracemalloc``;
    what is still allocated after a collection is what a worker's trial cache holds. The
    storage's own set-up (engine, connection) is left out, except for a journal storage,
    which reads the whole log as it opens.
    """
    import optuna

    from hpo.runner import open_study_storage
    from hpo.storages import storage_url

    url = storage_url(cfg)
    gc.collect()
    tracemalloc.start()
    try:
        study = optuna.load_study(study_name=cfg.name, storage=open_study_storage(cfg))
        gc.collect()
        opened = 0 if url.startswith("journal:") else tracemalloc.get_traced_memory()[0]
        n = len(study.get_trials(deepcopy=False))
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - opened
    finally:
        tracemalloc.stop()
    return held / 2**20, n


def verdict(start: float, end: float, study_growth: float) -> tuple[float, str]:
    """``(ratio, "flat" | "GROWING")`` of ``end`` less ``study_growth`` to ``start`` (MiB)."""
    ratio = (end - study_growth) / start if start else float("nan")
    return ratio, "flat" if ratio <= FLAT_RATIO else "GROWING"


def study_data(args: argparse.Namespace, storage: str, artifacts: str) -> dict[str, Any]:
    """The soak study: a tiny contrastive search (or the analytic trainer)."""
    data: dict[str, Any] = {
        "name": f"soak-{uuid.uuid4().hex[:8]}",
        "storage": storage,
        "seed": 0,
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 10},
        "pruner": {"name": "none"},
        "budget": {"n_trials": args.trials},
        "artifacts": {
            "enabled": not args.no_artifacts,
            "dir": artifacts,
            "keep_best_k": 3,
            # --quick: checkpoints and notes only (t-SNE and matplotlib's start cost seconds)
            "plots": not args.quick,
            "embeddings": not args.quick,
        },
    }
    if args.trainer == "analytic":
        data.update(
            objective={"metric": "best_score", "direction": "maximize"},
            trainer={"name": "analytic", "params": {"epochs": 8}},
            space={
                "x": {"type": "float", "low": -2.0, "high": 2.0},
                "y": {"type": "float", "low": -2.0, "high": 2.0},
                "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
            },
        )
        return data
    data.update(
        objective={"metric": "best_val_f1", "direction": "maximize"},
        trainer={
            "name": "contrastive",
            "params": {
                "dataset": "synthetic_har",
                "synthetic_n_train": 48 if args.quick else 96,
                "synthetic_n_test": 12 if args.quick else 24,
                "length": 32,
                "n_heads": 2,
                "epochs": 1 if args.quick else 2,
                "warmup_epochs": 0,
                "eval_batch_size": 256,
                "device": args.device,
            },
        },
        space={
            "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "temperature": {"type": "float", "low": 0.05, "high": 0.5, "log": True},
            "contrastive_weight": {"type": "float", "low": 0.05, "high": 0.5},
            "dim": {"type": "categorical", "choices": [16, 32]},
            "batch_size": {"type": "categorical", "choices": [16, 32]},
            "loss": {"type": "categorical", "choices": ["infonce", "supcon", "vicreg"]},
        },
    )
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--trials", type=int, default=200, help="trials to run (default 200)")
    parser.add_argument(
        "--quick", action="store_true", help="3 one-epoch trials, no plots: the CI smoke size"
    )
    parser.add_argument("--every", type=int, default=None, help="print RSS every N trials")
    parser.add_argument("--trainer", choices=["contrastive", "analytic"], default="contrastive")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (contrastive only)")
    parser.add_argument("--no-artifacts", action="store_true", help="no plots/checkpoints/notes")
    parser.add_argument("--storage", default=None, help="storage URL (default: a temp SQLite)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = min(args.trials, 3)
    if args.every is None:
        args.every = 1 if args.trials <= 10 else 20
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print the figures; exit status 0 whatever they are."""
    args = parse_args(argv)
    import optuna

    from hpo import run_study, validate_study_data
    from hpo.storages import mask_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="hpo-soak-"))
    storage = args.storage or f"sqlite:///{(scratch / 'soak.db').as_posix()}"
    cfg = validate_study_data(study_data(args, storage, str(scratch / "artifacts")))

    samples: list[tuple[int, float]] = []
    cuda: list[tuple[int, float, float]] = []
    started = time.perf_counter()

    def sample(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        n = len(samples) + 1
        gc.collect()
        samples.append((n, rss_mib()))
        on_gpu = cuda_mib()
        if on_gpu is not None:
            cuda.append((n, *on_gpu))
        if n == 1 or n % args.every == 0 or n == args.trials:
            gpu = (
                f"  cuda allocated {on_gpu[0]:.1f} MiB reserved {on_gpu[1]:.1f} MiB"
                if on_gpu
                else ""
            )
            print(
                f"after trial {n:4d}: RSS {samples[-1][1]:8.1f} MiB  "
                f"({trial.state.name.lower()}, {time.perf_counter() - started:6.1f} s){gpu}",
                flush=True,
            )

    print(machine_line())
    print(
        f"soak: {args.trials} trials of the {args.trainer} trainer"
        f"{' on ' + args.device if args.trainer == 'contrastive' else ''}, storage "
        f"{mask_url(storage)}, artifacts {'off' if args.no_artifacts else 'on'}"
    )
    before = rss_mib()
    print(f"RSS before the first trial: {before:.1f} MiB", flush=True)
    try:
        summary = run_study(cfg, callbacks=[sample])
        elapsed = time.perf_counter() - started
        held, n_held = study_held_mib(cfg) if samples else (0.0, 0)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not samples:
        print("no trial ran")
        return 1
    baseline, end = samples[0][1], samples[-1][1]
    ratio = end / baseline if baseline else float("nan")
    growth = slope_per_100(samples)
    per_trial = held / n_held if n_held else 0.0
    # the baseline already holds the first trial
    study_growth = per_trial * (n_held - 1) if n_held else 0.0
    ratio_less, flat = verdict(baseline, end, study_growth)
    print(
        f"trials run {len(samples)} (complete {summary.n_complete}, failed {summary.n_failed}) "
        f"in {elapsed:.0f} s"
    )
    print(f"RSS start (after trial 1, warm): {baseline:.1f} MiB")
    print(f"RSS end (after trial {len(samples)}): {end:.1f} MiB")
    print(f"RSS peak sample: {max(r for _, r in samples):.1f} MiB")
    print(f"ratio end / start: {ratio:.3f}")
    print(
        f"study's trials held in memory: {held:.2f} MiB ({n_held} trials, "
        f"{per_trial * 1024:.1f} KiB each; Python objects, loaded afresh under tracemalloc)"
    )
    print(
        f"ratio (end - study's trials since trial 1) / start: {ratio_less:.3f} "
        f"({flat}, cut-off {FLAT_RATIO:.2f})"
    )
    print(
        f"growth over the second half: {growth:+.2f} MiB per 100 trials "
        f"(the study's trials: {100 * per_trial:+.2f})"
    )
    if cuda:
        reserved = [r for _, _, r in cuda]
        print(
            f"CUDA after each trial: allocated max {max(a for _, a, _ in cuda):.1f} MiB, "
            f"reserved max {max(reserved):.1f} MiB, at end {reserved[-1]:.1f} MiB"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "trainer": args.trainer,
                    "device": args.device,
                    "trials": len(samples),
                    "rss_before_mib": before,
                    "rss_start_mib": baseline,
                    "rss_end_mib": end,
                    "ratio_end_start": ratio,
                    "study_held_mib": held,
                    "study_trials": n_held,
                    "ratio_less_study": ratio_less,
                    "verdict": flat,
                    "growth_mib_per_100_trials": growth,
                    "study_mib_per_100_trials": 100 * per_trial,
                    "rss_mib": [r for _, r in samples],
                    "cuda_reserved_mib": [r for _, _, r in cuda],
                    "seconds": elapsed,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
