"""What a trainer setting is worth: runs of one curve table paired with another's.

Every row of a curve table (:mod:`benchmarks.curve_table`) is one configuration trained
at one seed. Train a subset again with a setting changed (``--set``, ``--every``) and pair
each new run with the stored run of the same configuration and seed. The paired
difference removes the spread between configurations, so a few dozen pairs measure a
change of a few thousandths of F1; its standard error says whether it is noise.

    python -m benchmarks.paired_tables \\
        --pair benchmarks/data/curves_synthetic_har_s0.jsonl new_s0.jsonl \\
        --pair benchmarks/data/curves_synthetic_har_s1.jsonl new_s1.jsonl

Printed: the best validation F1 after a third of the epochs and at the end, base and new
(mean over pairs), their difference with its standard error, how many pairs the new
setting wins, and the rank correlation of the configurations between the two (whether
the setting changes which knobs are best, which the search would feel).

Last, what a pruner would read: how well each run's F1 at the new table's last epoch
predicts the base run's final best F1, for the new run and for the base run at that
epoch (Spearman, and where the base's ``--top`` best configurations rank). With a
shorter schedule (``--set epochs=4``) this asks whether a short complete run ranks the
best configurations better than the start of a long one.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Key = tuple[int, tuple[tuple[str, Any], ...]]


class TableError(ValueError):
    """A table that cannot be read, named with the line at fault."""


def load_rows(path: Path) -> dict[Key, Mapping[str, Any]]:
    """A table's rows keyed by (seed, configuration)."""
    rows: dict[Key, Mapping[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (int(row["seed"]), tuple(sorted(row["config"].items())))
            if not row["best_val_f1"]:
                raise ValueError("an empty curve")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TableError(f"{path} line {number}: not a curve-table row ({exc})") from None
        rows[key] = row
    return rows


@dataclass(frozen=True)
class Pair:
    base: Mapping[str, Any]
    new: Mapping[str, Any]


def pair_rows(pairs: Sequence[tuple[Path, Path]]) -> list[Pair]:
    """Rows of each new table with the base row of the same seed and configuration."""
    out: list[Pair] = []
    for base_path, new_path in pairs:
        base = load_rows(base_path)
        for key, row in load_rows(new_path).items():
            if key in base:
                out.append(Pair(base[key], row))
    return out


def best_at(row: Mapping[str, Any], epoch: int) -> float:
    """Best validation F1 within the first ``epoch`` epochs."""
    return float(row["best_val_f1"][epoch - 1])


def ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share their mean rank), 1 = smallest."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks)."""
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def top_ranks(scores: Sequence[float], final: Sequence[float], top: int) -> list[int]:
    """Where the ``top`` best by ``final`` rank by ``scores`` (1 = highest score)."""
    best = sorted(range(len(final)), key=lambda i: -final[i])[:top]
    position = {i: r for r, i in enumerate(sorted(range(len(scores)), key=lambda i: -scores[i]), 1)}
    return sorted(position[i] for i in best)


def early_ranking(pairs: Sequence[Pair], top: int) -> dict[str, Any]:
    """How well F1 at the new runs' last epoch predicts the base runs' final best F1."""
    epoch = min(min(len(p.new["val_f1"]), len(p.base["val_f1"])) for p in pairs)
    final = [float(p.base["best_val_f1"][-1]) for p in pairs]
    readings = {
        "base_at_epoch": [float(p.base["val_f1"][epoch - 1]) for p in pairs],
        "new_at_epoch": [float(p.new["val_f1"][epoch - 1]) for p in pairs],
    }
    return {
        "epoch": epoch,
        "top": min(top, len(pairs)),
        **{
            name: {"spearman": spearman(scores, final), "top_ranks": top_ranks(scores, final, top)}
            for name, scores in readings.items()
        },
    }


def summarize(pairs: Sequence[Pair], top: int = 8) -> dict[str, Any]:
    """Figures per epoch checked (a third of the run, and the end)."""
    epochs = min(min(len(p.base["best_val_f1"]), len(p.new["best_val_f1"])) for p in pairs)
    out: dict[str, Any] = {"pairs": len(pairs), "epochs": epochs, "at": {}}
    for epoch in sorted({max(epochs // 3, 1), epochs}):
        base = [best_at(p.base, epoch) for p in pairs]
        new = [best_at(p.new, epoch) for p in pairs]
        diff = [n - b for b, n in zip(base, new, strict=True)]
        se = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        out["at"][epoch] = {
            "base_mean": statistics.fmean(base),
            "new_mean": statistics.fmean(new),
            "diff_mean": statistics.fmean(diff),
            "diff_se": se,
            "new_wins": sum(d > 0 for d in diff),
            "ties": sum(d == 0 for d in diff),
            "spearman": spearman(base, new),
        }
    out["early_ranking"] = early_ranking(pairs, top)
    return out


def report(summary: Mapping[str, Any]) -> str:
    lines = [
        f"{summary['pairs']} pairs (same configuration and seed), {summary['epochs']} epochs",
        "| best val F1 after | base | new | new - base (SE) | new wins | rank correlation |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for epoch, f in summary["at"].items():
        lines.append(
            f"| epoch {epoch} | {f['base_mean']:.4f} | {f['new_mean']:.4f} | "
            f"{f['diff_mean']:+.4f} ({f['diff_se']:.4f}) | "
            f"{f['new_wins']} of {summary['pairs']} ({f['ties']} ties) | {f['spearman']:.2f} |"
        )
    early = summary["early_ranking"]
    lines += [
        "",
        f"F1 at epoch {early['epoch']} against the base run's final best F1:",
        f"| run read at epoch {early['epoch']} | Spearman | ranks of the base's "
        f"{early['top']} best |",
        "|---|---:|---|",
    ]
    for name, label in (("base_at_epoch", "base"), ("new_at_epoch", "new")):
        ranked = ", ".join(str(r) for r in early[name]["top_ranks"])
        lines.append(f"| {label} | {early[name]['spearman']:.2f} | {ranked} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        type=Path,
        required=True,
        metavar=("BASE", "NEW"),
        help="a stored table and a table of the same seed with the setting changed",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--top", type=int, default=8, help="how many of the base's best configurations to rank"
    )
    args = parser.parse_args(argv)
    if args.top < 1:
        print(f"error: --top: {args.top} is not a positive count", file=sys.stderr)
        return 2
    missing = [str(p) for pair in args.pair for p in pair if not p.is_file()]
    if missing:
        for path in missing:
            print(f"error: --pair: no table at {path}", file=sys.stderr)
        return 2
    try:
        pairs = pair_rows([(b, n) for b, n in args.pair])
    except (OSError, TableError) as exc:
        print(f"error: --pair: {exc}", file=sys.stderr)
        return 2
    if len(pairs) < 2:
        print("error: --pair: fewer than 2 runs share a configuration and seed", file=sys.stderr)
        return 2
    summary = summarize(pairs, args.top)
    print(report(summary))
    if args.json:
        try:
            args.json.write_text(json.dumps(summary, indent=2))
        except OSError as exc:
            print(f"error: --json: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
