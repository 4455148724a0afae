"""Start-up: seconds from ``hpo run`` to the first trial's first epoch, against the trainer alone.

Both paths start a fresh interpreter, as a user does, and train the same one-epoch
configuration of the shared contrastive trainer on BasicMotions:

- **hpo run**: ``python -m hpo.cli run study.yaml`` (study file parsed and checked, SQLite
  storage created, sampler, one trial). The first epoch counts as done when its report is in
  the storage (polled read-only every few milliseconds).
- **trainer alone** (the baseline: the plain script a user would run without ``hpo``):
  ``python -m trainers.contrastive --config run.yaml``; the first epoch is done when it
  prints its ``epoch 1:`` line.

Runs alternate between the two paths and the medians are compared: the ratio is what
``hpo`` adds before any training happens. The parts (imports of ``hpo.cli``, ``torch``,
``trainers.contrastive`` and the dataset load) are timed in fresh interpreters too, so a
slow import shows up by name.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import machine_line, median, spread

REPO_ROOT = Path(__file__).resolve().parent.parent

TRAINER_PARAMS: dict[str, Any] = {
    "dataset": "BasicMotions",
    "epochs": 1,
    "evaluate_test": False,
}

IMPORTS = {
    "import hpo.cli": "import hpo.cli",
    "import torch": "import torch",
    "import trainers.contrastive": "import trainers.contrastive",
    "load BasicMotions": (
        "import trainers.contrastive as c, trainers.params as p;"
        "c.load_splits(p.ContrastiveParams(dataset='BasicMotions'))"
    ),
}


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    study = {
        "name": "startup",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 1},
        "trainer": {"name": "contrastive", "params": TRAINER_PARAMS},
        "space": {"temperature": {"type": "float", "low": 0.05, "high": 0.2}},
        "artifacts": {"enabled": False},
    }
    study_path = folder / "study.yaml"
    study_path.write_text(yaml.safe_dump(study), encoding="utf-8")
    run_path = folder / "run.yaml"
    run_path.write_text(yaml.safe_dump({"params": TRAINER_PARAMS}), encoding="utf-8")
    return study_path, run_path


def _first_report_in(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            row = conn.execute("SELECT COUNT(*) FROM trial_intermediate_values").fetchone()
    except sqlite3.Error:  # not created yet, or mid-creation
        return False
    return bool(row and row[0])


def _start(module: str, *args: str) -> subprocess.Popen[str]:
    """``python -m module args`` from the repository root, stderr piped (its progress)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def time_hpo_run(study_path: Path, poll_s: float = 0.005) -> float:
    """Seconds from starting ``hpo run`` to the first epoch's report in its storage."""
    db = study_path.parent / "hpo.db"
    for leftover in study_path.parent.glob("hpo.db*"):
        leftover.unlink()
    start = time.perf_counter()
    proc = _start("hpo.cli", "run", str(study_path))
    elapsed = float("nan")
    while proc.poll() is None:
        if _first_report_in(db):
            elapsed = time.perf_counter() - start
            break
        time.sleep(poll_s)
    _, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"hpo run failed ({proc.returncode}): {err.strip()[-500:]}")
    if elapsed != elapsed and _first_report_in(db):  # finished between two polls
        elapsed = time.perf_counter() - start
    return elapsed


def time_trainer_alone(run_path: Path) -> float:
    """Seconds from starting the trainer's own command to its ``epoch 1:`` line."""
    start = time.perf_counter()
    proc = _start("trainers.contrastive", "--config", str(run_path))
    assert proc.stderr is not None
    elapsed = float("nan")
    for line in proc.stderr:
        if line.startswith("epoch 1:"):
            elapsed = time.perf_counter() - start
            break
    proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed with exit code {proc.returncode}")
    return elapsed


def time_snippet(code: str) -> float:
    """Seconds a fresh interpreter takes to run ``code`` (interpreter start excluded)."""
    wrapped = f"import time; _t = time.perf_counter()\n{code}\nprint(time.perf_counter() - _t)"
    out = subprocess.run(
        [sys.executable, "-c", wrapped],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip().splitlines()[-1])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.startup",
        description="Seconds from `hpo run` to the first trial's first epoch, vs the trainer "
        "run alone, and what the start-up is made of.",
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs of each path (default 5)")
    parser.add_argument("--quick", action="store_true", help="one run of each path (CI smoke)")
    parser.add_argument("--no-parts", action="store_true", help="skip the import/load timings")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        print("error: --repeats: must be at least 1", file=sys.stderr)
        return 2
    print(machine_line())
    hpo_s: list[float] = []
    alone_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hpo-startup-") as tmp:
        study_path, run_path = _write_inputs(Path(tmp))
        if not args.quick:
            # One untimed run of each first: with an odd count the path that goes first
            # more often would otherwise get the one cold page cache.
            time_hpo_run(study_path)
            time_trainer_alone(run_path)
        for i in range(repeats):
            # Alternate the order so neither path always runs on a warmer page cache.
            paths = [("hpo", study_path), ("alone", run_path)]
            for name, path in paths if i % 2 == 0 else paths[::-1]:
                if name == "hpo":
                    hpo_s.append(time_hpo_run(path))
                else:
                    alone_s.append(time_trainer_alone(path))
    parts: dict[str, list[float]] = {}
    if not args.no_parts:
        for label, code in IMPORTS.items():
            parts[label] = [time_snippet(code) for _ in range(repeats)]

    ratio = median(hpo_s) / median(alone_s)
    warmed = "" if args.quick else ", after one untimed run of each"
    print(f"\nseconds to the first epoch's report ({repeats} runs each{warmed}, median, min..max):")
    print(f"  {'hpo run':<30}{median(hpo_s):>8.2f}   {spread(hpo_s)}")
    print(f"  {'trainer alone (baseline)':<30}{median(alone_s):>8.2f}   {spread(alone_s)}")
    print(f"  ratio hpo run / trainer alone: {ratio:.2f}x")
    print(f"  hpo's own start-up: {median(hpo_s) - median(alone_s):+.2f} s")
    if parts:
        print("\nparts, each in a fresh interpreter (median seconds):")
        for label, values in parts.items():
            print(f"  {label:<30}{median(values):>8.2f}   {spread(values)}")
    if args.json is not None:
        figures = {
            "repeats": repeats,
            "hpo_run_s": hpo_s,
            "trainer_alone_s": alone_s,
            "ratio": ratio,
            "parts_s": parts,
        }
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
