"""A table of learning curves: every distinct configuration of the seed space, trained once.

The search-efficiency benchmark trains for real, so each of its arms costs 15 to 40
minutes for 6 seeds, and 6 seeds cannot tell two search strategies apart when the task's
seed noise is as large as their difference. The field's answer is a tabular benchmark
(NAS-Bench-201, LCBench, HPOBench): train every configuration once, store its per-epoch
validation curve, and let a search look curves up instead of training.
:mod:`benchmarks.search_replay` runs the real service on such a table, hundreds of times.

A configuration is stored once per set of knobs the trainer reads (``unused_params``):
two temperatures with VICReg train alike at a fixed seed, as the service's duplicate
reuse assumes. The seed space has 1,152 configurations and 504 distinct ones.

Collect a table (30 epochs, the search-efficiency task; about an hour on 2 cores)::

    python -m benchmarks.curve_table --seed 0 --out benchmarks/data/curves_synthetic_har_s0.jsonl

Each line: ``{"config": {...}, "seed": 0, "val_f1": [...], "best_val_f1": [...],
"epoch_seconds": [...]}``, one value per epoch, the knobs the trainer does not read left
at the trainer defaults.

To measure what a trainer setting is worth on this task, train a subset of the table with
it and pair the runs with the stored ones (:mod:`benchmarks.paired_tables`)::

    python -m benchmarks.curve_table --seed 0 --every 6 --set attn_dropout=0.0 --out t.jsonl

``--set`` rows also store their settings (``"set": {...}``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.search_efficiency import (
    QUICK_SPACE,
    SEARCH_SPACE,
    build_parser,
    fixed_params,
    resolve_args,
    trainer_defaults,
)
from hpo.errors import ConfigError
from hpo.yaml_loader import load_yaml_value
from trainers.reporter import RecordingReporter

ConfigKey = tuple[tuple[str, Any], ...]


def config_key(config: Mapping[str, Any], unread: frozenset[str]) -> ConfigKey:
    """What identifies a configuration's training run: the knobs the trainer reads."""
    return tuple((k, config[k]) for k in sorted(config) if k not in unread)


def distinct_configs(
    space: Mapping[str, Sequence[Any]], fixed: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One configuration per distinct training run, unread knobs at the trainer defaults."""
    from trainers.registry import resolve_trainer

    unused = resolve_trainer("contrastive").unused_params
    start = trainer_defaults(space)
    names = list(space)
    out: dict[ConfigKey, dict[str, Any]] = {}
    for values in itertools.product(*(space[n] for n in names)):
        config = dict(zip(names, values, strict=True))
        unread = unused({**fixed, **config})
        canonical = {k: (start[k] if k in unread else v) for k, v in config.items()}
        out.setdefault(config_key(canonical, frozenset()), canonical)
    return list(out.values())


def train_curve(fixed: Mapping[str, Any], config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Train ``config`` once and return its table row."""
    import torch

    from trainers.contrastive import train

    torch.set_num_threads(1)
    reporter = RecordingReporter()
    train({**fixed, **config, "seed": seed}, reporter)
    rows = [metrics for _, metrics in reporter.history]
    return {
        "config": dict(config),
        "seed": seed,
        "val_f1": [round(float(r["val_f1"]), 6) for r in rows],
        "best_val_f1": [round(float(r["best_val_f1"]), 6) for r in rows],
        "epoch_seconds": [round(float(r["epoch_seconds"]), 4) for r in rows],
    }


def task_args(quick: bool) -> argparse.Namespace:
    """The search-efficiency benchmark's task (its synthetic HAR sizes), or its smoke size."""
    argv = ["--dataset", "synthetic_har"] + (["--quick"] if quick else [])
    return resolve_args(build_parser().parse_args(argv))


def collect(
    seed: int,
    out: Path,
    jobs: int = 2,
    quick: bool = False,
    overrides: Mapping[str, Any] | None = None,
    every: int = 1,
) -> int:
    """Write the table for ``seed`` to ``out``; resumes a partial file. Returns its row count.

    ``overrides`` are trainer parameters set for every run (on top of the task's);
    ``every`` keeps every ``every``-th distinct configuration, a subset to pair with a
    full table.
    """
    args = task_args(quick)
    fixed = {**fixed_params(args, "synthetic_har"), **(overrides or {})}
    configs = distinct_configs(QUICK_SPACE if quick else SEARCH_SPACE, fixed)[::every]
    done: set[ConfigKey] = set()
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            if row["seed"] != seed or row.get("set", {}) != dict(overrides or {}):
                raise ValueError(
                    f"{out} holds runs at seed {row['seed']} with --set {row.get('set', {})}, "
                    f"not seed {seed} with {dict(overrides or {})}: resume it as it was "
                    "collected, or write to another --out"
                )
            done.add(config_key(row["config"], frozenset()))
    todo = [c for c in configs if config_key(c, frozenset()) not in done]
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with out.open("a") as sink:
        if jobs <= 1:
            rows = (train_curve(fixed, c, seed) for c in todo)
            for i, row in enumerate(rows, 1):
                _write(sink, row, i, len(todo), started, overrides)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
                for i, row in enumerate(
                    pool.map(train_curve, itertools.repeat(fixed), todo, itertools.repeat(seed)), 1
                ):
                    _write(sink, row, i, len(todo), started, overrides)
    return len(done) + len(todo)


def parse_overrides(
    specs: Sequence[str], task: argparse.Namespace
) -> tuple[list[str], dict[str, Any]]:
    """``NAME=VALUE`` texts -> (one problem per bad spec, the parameters), checked by the trainer."""
    from pydantic import ValidationError

    from trainers.params import ContrastiveParams

    problems: list[str] = []
    overrides: dict[str, Any] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name.strip():
            problems.append(f"--set {spec!r}: expected NAME=VALUE")
            continue
        try:  # typed as the service types a --set value (``5`` is an int)
            overrides[name.strip()] = load_yaml_value(text, source=f"--set {spec!r}")
        except ConfigError as exc:
            problems.extend(exc.problems)
    space = QUICK_SPACE if task.quick else SEARCH_SPACE
    for name in overrides:
        if name in space or name == "seed":
            problems.append(
                f"--set {name}: set by the table itself (a knob of its space, or --seed)"
            )
    if problems:
        return problems, overrides
    try:
        ContrastiveParams.model_validate({**fixed_params(task, "synthetic_har"), **overrides})
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"]) or "parameters"
            problems.append(f"--set {where}: {err['msg']}")
    return problems, overrides


def _write(
    sink: Any,
    row: Mapping[str, Any],
    i: int,
    total: int,
    started: float,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    sink.write(json.dumps({**row, "set": dict(overrides)} if overrides else row) + "\n")
    sink.flush()
    if i % 25 == 0 or i == total:
        print(
            f"{i}/{total} curves, {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="training seed of every run")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines file (resumed)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, 1 thread each")
    parser.add_argument("--quick", action="store_true", help="the smoke size (CI)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a trainer parameter for every run (repeatable; the value is read as YAML)",
    )
    parser.add_argument(
        "--every", type=int, default=1, help="keep every N-th distinct configuration"
    )
    args = parser.parse_args(argv)
    problems, overrides = parse_overrides(args.set, task_args(args.quick))
    if args.every < 1:
        problems.append(f"--every: must be >= 1, got {args.every}")
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        n = collect(args.seed, args.out, args.jobs, args.quick, overrides, args.every)
    except (OSError, ValueError, KeyError) as exc:  # an unreadable or different table
        print(f"error: --out: {exc}", file=sys.stderr)
        return 2
    print(f"{n} configurations in {args.out} ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
