"""Packing trials on one device: trials per hour with 1, 2, 4, 8 workers on one GPU.

Small contrastive models leave a large GPU idle, so several worker processes per GPU
(``workers.per_gpu``) can raise the study's throughput. This runs the real service path
for each worker count N: ``hpo run STUDY --gpus 0 --workers-per-gpu N`` (or
``--gpus none --workers N`` on CPU), a supervisor with N worker processes on one shared
storage, the contrastive trainer at UCI-HAR shape (synthetic HAR, 9 channels x 128
samples), every trial the same cost (the space only varies the temperature), stopped by
``budget.timeout``. While it runs, the device's utilisation is sampled every half second
(``nvidia-smi`` on a GPU, ``/proc/stat`` busy time on CPU).

Throughput is counted in epochs, read back from the storage (one intermediate value per
epoch), over the window from the first trial's start to the last trial's end, so trials
cut off by the timeout count for the epochs they did: trials/hour = epochs/hour / epochs
per trial. Each count runs ``--rounds`` times, every other round in reverse order, and
its figure is the median over rounds. The figure of merit is the ratio to one worker,
measured side by side in one run; the suggested ``per_gpu`` is the smallest N within 10 %
of the best throughput. On a CPU one worker runs inside ``hpo run`` with every core's
threads, as the service runs it; N workers get cores // N threads each.

    python -m benchmarks.trial_packing                          # GPU 0: 1,2,4,8 workers, 120 s each
    python -m benchmarks.trial_packing --device cpu --workers 1,2 --seconds 90
    python -m benchmarks.trial_packing --quick                  # CI smoke size (CPU, ~1 min)

Absolute figures depend on the machine; on CPU, workers share the cores, so the ratio
shows how the service's parallelism behaves, not what a GPU gains.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import machine_line, round_order

SIZES: dict[str, tuple[Any, Any]] = {
    "workers": ("1,2,4,8", "1,2"),
    "seconds": (120.0, 12.0),
    "epochs": (3, 1),
    "n_train": (2048, 64),
    "length": (128, 32),
    "dim": (64, 16),
    "batch_size": (64, 32),
    "rounds": (2, 1),
}
"""Defaults of the size options: ``(real run, --quick)``."""

NEAR_BEST = 0.90
"""A worker count within this fraction of the best throughput is good enough."""


@dataclass
class PackingResult:
    """One worker count: throughput, per-trial wall time and the device's utilisation."""

    workers: int
    epochs: int
    window_s: float
    trials_complete: int
    trials_per_hour: float
    median_trial_s: float | None
    utilisation_pct: float | None
    memory_used_mib: float | None
    exit_code: int
    ratio_vs_one: float | None = None
    per_round: list[float] = field(default_factory=list)
    """Trials/hour of each round, in the order the rounds ran."""


def combine_rounds(runs: list[PackingResult]) -> PackingResult:
    """One worker count over its rounds: medians of the rates, sums of what was counted."""

    def median_of(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return round(statistics.median(known), 2) if known else None

    memory = [r.memory_used_mib for r in runs if r.memory_used_mib is not None]
    return PackingResult(
        workers=runs[0].workers,
        epochs=sum(r.epochs for r in runs),
        window_s=round(sum(r.window_s for r in runs), 1),
        trials_complete=sum(r.trials_complete for r in runs),
        trials_per_hour=round(statistics.median(r.trials_per_hour for r in runs), 1),
        median_trial_s=median_of([r.median_trial_s for r in runs]),
        utilisation_pct=median_of([r.utilisation_pct for r in runs]),
        memory_used_mib=max(memory) if memory else None,
        exit_code=max(r.exit_code for r in runs),
        per_round=[r.trials_per_hour for r in runs],
    )


@dataclass
class UtilisationSampler:
    """Samples the device's busy percentage (and GPU memory) in a background thread."""

    device: str
    interval: float = 0.5
    gpu: str = "0"
    """The GPU as ``nvidia-smi -i`` names it (see :func:`nvidia_smi_id`)."""
    busy: list[float] = field(default_factory=list)
    memory: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._last_cpu: tuple[int, int] | None = None

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.device == "cuda":
                self._sample_gpu()
            else:
                self._sample_cpu()

    def _sample_gpu(self) -> None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return
        query = "--query-gpu=utilization.gpu,memory.used"
        try:
            out = subprocess.run(
                [exe, query, "--format=csv,noheader,nounits", "-i", self.gpu],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout
            util, mem = (float(x) for x in out.strip().splitlines()[0].split(","))
        except (subprocess.SubprocessError, OSError, ValueError, IndexError):
            return
        self.busy.append(util)
        self.memory.append(mem)

    def _sample_cpu(self) -> None:
        try:
            fields = Path("/proc/stat").read_text(encoding="utf-8").splitlines()[0].split()[1:]
        except (OSError, IndexError):
            return
        ticks = [int(x) for x in fields]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        total = sum(ticks)
        if self._last_cpu is not None:
            d_total, d_idle = total - self._last_cpu[0], idle - self._last_cpu[1]
            if d_total > 0:
                self.busy.append(100.0 * (d_total - d_idle) / d_total)
        self._last_cpu = (total, idle)


def resolve_device(requested: str) -> str:
    """``cuda`` when asked for (or ``auto`` and a GPU is visible), else ``cpu``."""
    if requested != "auto":
        return requested
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def nvidia_smi_id(gpu: int, env: Mapping[str, str] | None = None) -> str:
    """``--gpu`` as ``nvidia-smi -i`` takes it: the same physical GPU the workers train on.

    ``hpo run --gpus N`` means the Nth entry of an inherited ``CUDA_VISIBLE_DEVICES`` (an
    index or a UUID, both of which ``nvidia-smi -i`` takes), else CUDA's device N. The
    workers run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (:func:`worker_env`): CUDA's default
    order (fastest first) need not be nvidia-smi's PCI order.
    """
    from hpo.workers.gpus import visible_devices

    inherited = visible_devices(env)
    if inherited is not None and 0 <= gpu < len(inherited):
        return inherited[gpu]
    return str(gpu)


def worker_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of ``hpo run``: numbered as nvidia-smi numbers the GPUs."""
    out = dict(os.environ if env is None else env)
    out["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    return out


def study_data(args: argparse.Namespace, workers: int, storage: str) -> dict[str, Any]:
    """The study file for one worker count: equal-cost trials until ``budget.timeout``."""
    return {
        "name": f"packing-{workers}-{uuid.uuid4().hex[:8]}",
        "storage": storage,
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "sampler": {"name": "random"},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 100_000, "timeout": args.seconds},
        "trainer": {
            "name": "contrastive",
            "params": {
                "dataset": "synthetic_har",
                "synthetic_n_train": args.n_train,
                "synthetic_n_test": 16,
                "length": args.length,
                "dim": args.dim,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "warmup_epochs": 0,
                "device": "auto",
                "evaluate_test": False,
            },
        },
        # cost-neutral: every trial trains the same model on the same data
        "space": {"temperature": {"type": "categorical", "choices": [0.07, 0.1]}},
        "artifacts": {"enabled": False},
    }


def measure(args: argparse.Namespace, workers: int, device: str, tmp: Path) -> PackingResult:
    """Run one study with ``workers`` processes on the device and read its throughput back."""
    import optuna

    storage = args.storage or f"sqlite:///{tmp / f'packing-{workers}.db'}"
    data = study_data(args, workers, storage)
    path = tmp / f"packing-{workers}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if device == "cuda":
        placement = ["--gpus", str(args.gpu), "--workers-per-gpu", str(workers)]
    else:
        placement = ["--gpus", "none", "--workers", str(workers)]
    cmd = [sys.executable, "-m", "hpo.cli", "run", str(path), *placement]
    with UtilisationSampler(device, gpu=nvidia_smi_id(args.gpu)) as sampler:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=worker_env())
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    study = optuna.load_study(study_name=data["name"], storage=storage)
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    epochs = sum(len(t.intermediate_values) for t in trials)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    window = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    walls = [
        float(t.user_attrs["wall_seconds"]) for t in complete if "wall_seconds" in t.user_attrs
    ]
    per_hour = (epochs / args.epochs) * 3600.0 / window if window > 0 else 0.0
    return PackingResult(
        workers=workers,
        epochs=epochs,
        window_s=round(window, 1),
        trials_complete=len(complete),
        trials_per_hour=round(per_hour, 1),
        median_trial_s=round(statistics.median(walls), 2) if walls else None,
        utilisation_pct=round(statistics.mean(sampler.busy), 1) if sampler.busy else None,
        memory_used_mib=max(sampler.memory) if sampler.memory else None,
        exit_code=proc.returncode,
    )


def suggested_per_gpu(results: list[PackingResult]) -> int | None:
    """The smallest worker count within :data:`NEAR_BEST` of the best throughput."""
    usable = [r for r in results if r.trials_per_hour > 0]
    if not usable:
        return None
    best = max(r.trials_per_hour for r in usable)
    return min(r.workers for r in usable if r.trials_per_hour >= NEAR_BEST * best)


def table(results: list[PackingResult], device: str) -> str:
    """The figures as a Markdown table."""
    util = "GPU util % (mean)" if device == "cuda" else "CPU busy % (mean, whole machine)"
    lines = [
        f"| workers | trials/hour (median) | per round | ratio vs 1 worker | median s per trial "
        f"| {util} | GPU memory peak MiB | epochs in windows | windows s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.workers} | {r.trials_per_hour:.1f} | "
            f"{', '.join(f'{v:.1f}' for v in r.per_round) or 'n/a'} | "
            f"{'n/a' if r.ratio_vs_one is None else f'{r.ratio_vs_one:.2f}'} | "
            f"{'n/a' if r.median_trial_s is None else r.median_trial_s} | "
            f"{'n/a' if r.utilisation_pct is None else r.utilisation_pct} | "
            f"{'n/a' if r.memory_used_mib is None else f'{r.memory_used_mib:.0f}'} | "
            f"{r.epochs} | {r.window_s} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.trial_packing",
        description="Trials per hour with N worker processes on one device.",
    )
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--gpu", type=int, default=0, help="the GPU index to pack (cuda)")
    parser.add_argument("--workers", default=None, help="comma-separated counts (1,2,4,8)")
    parser.add_argument("--seconds", type=float, default=None, help="per count and round (120)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="times each count runs, every other round in reverse order; figures are "
        "medians over rounds (2; 1 with --quick)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (3)")
    parser.add_argument("--n-train", type=int, default=None, help="training windows (2048)")
    parser.add_argument("--length", type=int, default=None, help="series length (128)")
    parser.add_argument("--dim", type=int, default=None, help="model width (64)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (64)")
    parser.add_argument(
        "--storage", default=None, help="storage URL (default: a SQLite file per count)"
    )
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="CI smoke size on CPU")
    return parser


def resolve_args(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the size defaults: the real configuration, or the tiny one with ``--quick``."""
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if args.quick and args.device == "auto":
        args.device = "cpu"
    try:
        counts = [int(x) for x in str(args.workers).split(",") if x.strip()]
    except ValueError:
        raise SystemExit("error: --workers takes counts like 1,2,4,8") from None
    if not counts or any(n < 1 for n in counts):
        raise SystemExit("error: --workers takes counts >= 1, like 1,2,4,8")
    if args.rounds < 1:
        raise SystemExit("error: --rounds takes 1 or more")
    args.worker_counts = sorted(set(counts))
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every worker count and print the table, the ratios and the suggested per_gpu."""
    args = resolve_args(build_parser().parse_args(argv))
    device = resolve_device(args.device)
    print(f"trial packing on {device}: {machine_line()}")
    if device == "cuda":
        print(_gpu_name(args.gpu, nvidia_smi_id(args.gpu)))
    print(
        f"trial: contrastive trainer, synthetic HAR {args.n_train} x 9 x {args.length}, "
        f"dim {args.dim}, batch {args.batch_size}, {args.epochs} epoch(s); "
        f"{args.seconds:g} s per worker count and round, {args.rounds} round(s)"
        + ("" if device == "cuda" else "; 1 worker runs inside hpo run, as the service runs it")
    )
    runs: dict[int, list[PackingResult]] = {n: [] for n in args.worker_counts}
    with tempfile.TemporaryDirectory(prefix="trial-packing-") as tmp:
        for k, n in round_order(args.worker_counts, args.rounds):
            folder = Path(tmp) / f"round-{k}"
            folder.mkdir(exist_ok=True)
            result = measure(args, n, device, folder)
            runs[n].append(result)
            print(
                f"  round {k + 1}, {n} worker(s): {result.trials_per_hour:.1f} trials/hour "
                f"({result.epochs} epochs in {result.window_s} s, exit {result.exit_code})",
                flush=True,
            )
    results = [combine_rounds(runs[n]) for n in args.worker_counts]
    base = next((r.trials_per_hour for r in results if r.workers == 1), None)
    for r in results:
        r.ratio_vs_one = round(r.trials_per_hour / base, 2) if base else None
    print(table(results, device))
    pick = suggested_per_gpu(results)
    print(
        f"suggested per_gpu: {pick} (smallest count within {NEAR_BEST:.0%} of the best)"
        if pick is not None
        else "suggested per_gpu: n/a (no epochs were trained)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"device": device, "suggested": pick, "results": [asdict(r) for r in results]},
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0 if all(r.epochs > 0 for r in results) else 1


def _gpu_name(index: int, smi_id: str) -> str:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "GPU: nvidia-smi not found"
    try:
        out = subprocess.run(
            [
                exe,
                "--query-gpu=name,memory.total,driver_version",
                "--format=csv,noheader",
                "-i",
                smi_id,
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return "GPU: nvidia-smi failed"
    return f"GPU {index}: {out}"


if __name__ == "__main__":
    sys.exit(main())
