"""Helpers shared by the benchmarks: machine description, robust statistics, formatting."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from pathlib import Path

from hpo.workers.gpus import usable_cores

__all__ = [
    "cpu_model",
    "load_average",
    "machine_line",
    "median",
    "round_order",
    "spread",
    "usable_cores",
]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    """The 1/5/15-minute load averages, or ``n/a`` where the OS has none."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_line() -> str:
    """One line naming the machine a figure was measured on."""
    return (
        f"machine: {cpu_model()}, {usable_cores()} cores, Python {platform.python_version()}, "
        f"load average {load_average()}"
    )


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min..max`` of ``values`` formatted for a table."""
    if not values:
        return "n/a"
    return f"{min(values):,.1f}..{max(values):,.1f}"


def round_order(counts: Sequence[int], rounds: int) -> list[tuple[int, int]]:
    """``(round, count)`` pairs, every other round in reverse.

    No count always runs first on a cold machine or last on a warm one; with an even
    number of rounds each count sits at every position equally often.
    """
    return [
        (k, n)
        for k in range(rounds)
        for n in (list(counts) if k % 2 == 0 else list(reversed(counts)))
    ]
