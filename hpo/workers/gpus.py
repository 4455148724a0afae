"""Which GPUs this machine has, and how they are split into worker slots.

Each slot becomes one worker process with its own ``CUDA_VISIBLE_DEVICES``; inside the
worker the trainer simply uses ``cuda:0``. GPU numbers given by the user are the ones
this process sees: when ``CUDA_VISIBLE_DEVICES`` is already set (a Slurm allocation, a
container runtime), ``--gpus 0`` means its first entry, as it would for torch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

GpuSpec = Literal["all", "none"] | list[int]


@dataclass(frozen=True)
class WorkerSlot:
    """One worker process to start: its index and the devices it may see."""

    index: int
    cuda_visible_devices: str | None
    """Value for ``CUDA_VISIBLE_DEVICES``: a device, or ``""`` for a CPU worker."""

    @property
    def label(self) -> str:
        """Short human name: ``gpu 1`` or ``cpu``."""
        return f"gpu {self.cuda_visible_devices}" if self.cuda_visible_devices else "cpu"


@dataclass(frozen=True)
class WorkerPlan:
    """The slots to run, and anything the user should be told about how they were chosen."""

    slots: list[WorkerSlot]
    notes: list[str] = field(default_factory=list)

    @property
    def uses_gpus(self) -> bool:
        """True when at least one slot has a GPU."""
        return any(s.cuda_visible_devices for s in self.slots)


def visible_devices(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The devices an inherited ``CUDA_VISIBLE_DEVICES`` lets CUDA see, or ``None`` when it
    is unset. Read as CUDA (and torch's ``_parse_visible_devices``) read it: the list ends
    at the first entry that is no device (``-1``, ``NoDevFiles``), a repeated entry means
    no device at all, and UUID lists (``GPU-...``, ``MIG-...``) end at the first entry of
    another kind. Handing out an entry CUDA ignores would put a worker on a GPU the
    scheduler hid, or label a CPU worker "gpu"."""
    env = os.environ if env is None else env
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    entries = [part.strip() for part in value.split(",")]
    prefix = next((p for p in ("GPU-", "MIG-") if entries[0].startswith(p)), None)
    devices: list[str] = []
    for entry in entries:
        if prefix is not None:
            device = entry if entry.startswith(prefix) else None
        else:
            digits = re.match(r"[+-]?\d+", entry)  # strtoul: "1gpu" is 1
            device = str(int(digits.group())) if digits and int(digits.group()) >= 0 else None
        if device is None:
            break
        if device in devices:
            return []
        devices.append(device)
    return devices


_DRIVER_PROBE = """
import ctypes

for name in ("libcuda.so.1", "libcuda.so"):
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        continue
    count = ctypes.c_int(0)
    ok = lib.cuInit(0) == 0 and lib.cuDeviceGetCount(ctypes.byref(count)) == 0
    print(int(count.value) if ok else 0)
    break
else:
    print("none")
"""


def driver_device_count(timeout: float = 60.0) -> int | None:
    """GPUs reported by the CUDA driver library, or ``None`` when there is no driver.

    Asks ``libcuda`` directly (no torch import), honouring ``CUDA_VISIBLE_DEVICES`` like
    every CUDA program -- in a child process: the driver reads that variable once, at
    ``cuInit``, so a probe here would fix the devices torch later sees in this process
    before ``hpo worker`` could give its one slot its GPU.
    """
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _DRIVER_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    answer = proc.stdout.strip().splitlines()[-1:] if proc.returncode == 0 else []
    if not answer or not answer[0].isdigit():
        return None
    return int(answer[0])


def nvidia_smi_indices(executable: str | None = None) -> list[str] | None:
    """GPU indices listed by ``nvidia-smi``, or ``None`` when it is missing or fails."""
    exe = executable or shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


_GPU_LINE = re.compile(r"^GPU \d+:.*\(UUID:\s*(GPU-[^)\s]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG .*\(UUID:\s*(MIG-[^)\s]+)\)")


def nvidia_smi_mig_devices(executable: str | None = None) -> list[str]:
    """With MIG enabled, what to hand out: each MIG instance's UUID (and a GPU without MIG
    by its own UUID), from ``nvidia-smi -L``; empty when no GPU has MIG instances.

    A process that is not told which MIG instance to use enumerates only one of them, so
    the driver's device count says 1 on a machine of seven instances.
    """
    exe = executable or shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    blocks: list[tuple[str, list[str]]] = []
    for line in proc.stdout.splitlines():
        if gpu := _GPU_LINE.match(line):
            blocks.append((gpu.group(1), []))
        elif (mig := _MIG_LINE.match(line)) and blocks:
            blocks[-1][1].append(mig.group(1))
    if not any(migs for _, migs in blocks):
        return []
    return [device for gpu, migs in blocks for device in (migs or [gpu])]


def detect_gpus(env: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """Device ids to hand out for ``gpus: all``, and how they were found.

    An inherited ``CUDA_VISIBLE_DEVICES`` is the allocation (its entries are passed on
    as they are, UUIDs included); otherwise MIG instances, then the driver, then
    ``nvidia-smi``'s GPU list (said to be suspect when the driver found none).
    """
    inherited = visible_devices(env)
    if inherited is not None:
        return inherited, "CUDA_VISIBLE_DEVICES"
    migs = nvidia_smi_mig_devices()
    if migs:
        return migs, "nvidia-smi (MIG instances)"
    count = driver_device_count()
    if count:
        return [str(i) for i in range(count)], "the CUDA driver"
    listed = nvidia_smi_indices()
    if listed and count == 0:
        return listed, (
            "nvidia-smi, but the CUDA driver library reports none (a driver and library "
            "version mismatch?): the workers may train on the CPU"
        )
    if listed:
        return listed, "nvidia-smi"
    return [], "no CUDA driver or nvidia-smi"


def _cpu_slots(n_workers: int) -> list[WorkerSlot]:
    return [WorkerSlot(i, "") for i in range(n_workers)]


def plan_workers(
    gpus: GpuSpec,
    *,
    per_gpu: int = 1,
    n_workers: int = 1,
    env: Mapping[str, str] | None = None,
    detected: Sequence[str] | None = None,
) -> WorkerPlan:
    """Slots for ``gpus`` (``all``, ``none`` or indices) with ``per_gpu`` workers each.

    ``n_workers`` is the number of CPU workers for ``gpus: none`` (and for ``all`` on a
    machine without GPUs); with GPUs the count is ``len(gpus) x per_gpu``.
    ``detected`` replaces detection (tests, callers that already know).
    """
    if gpus == "none":
        unused = (
            [
                f"per_gpu {per_gpu} is unused without GPUs (gpus: none); n_workers (-w) sets the CPU workers"
            ]
            if per_gpu > 1
            else []
        )
        return WorkerPlan(_cpu_slots(n_workers), unused)
    inherited = visible_devices(env)
    if gpus == "all":
        if detected is not None:
            devices, source = list(detected), "the caller"
        else:
            devices, source = detect_gpus(env)
        if not devices:
            return WorkerPlan(
                _cpu_slots(n_workers),
                [
                    f"no GPU found ({source}): running {n_workers} CPU "
                    f"worker{'s' if n_workers != 1 else ''}"
                ],
            )
        notes = [f"{len(devices)} GPU(s) from {source}: {', '.join(devices)}"]
    else:
        if inherited is not None:
            missing = [i for i in gpus if i >= len(inherited)]
            if missing:
                raise ValueError(
                    f"GPU {missing[0]} is not visible: CUDA_VISIBLE_DEVICES has "
                    f"{len(inherited)} entr{'y' if len(inherited) == 1 else 'ies'}"
                )
            devices = [inherited[i] for i in gpus]
            notes = []
        else:
            devices = [str(i) for i in gpus]
            notes = _unseen_gpu_notes(gpus, detected, env)
    slots = [
        WorkerSlot(index, device)
        for index, device in enumerate(d for d in devices for _ in range(per_gpu))
    ]
    if n_workers > 1 and gpus != "all":  # with "all" it is the count on a machine without GPUs
        notes.append(
            f"n_workers {n_workers} is unused with GPUs; per_gpu (--workers-per-gpu) sets the "
            f"workers: {len(devices)} GPU(s) x {per_gpu}"
        )
    return WorkerPlan(slots, notes)


def _unseen_gpu_notes(
    gpus: Sequence[int], detected: Sequence[str] | None, env: Mapping[str, str] | None
) -> list[str]:
    """Explicit GPU indices against the GPUs found here: an index past them is an error;
    none found at all is a note (the workers then train on the CPU, which said nothing)."""
    found, source = (list(detected), "the caller") if detected is not None else detect_gpus(env)
    if not found:
        listed = ", ".join(map(str, gpus))
        return [f"no GPU found ({source}): the workers for GPU {listed} will train on the CPU"]
    missing = [i for i in gpus if i >= len(found)]
    if missing:
        raise ValueError(
            f"GPU {missing[0]} is not on this machine: {source} found {len(found)} "
            f"(indices 0 to {len(found) - 1})"
        )
    return []


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""CPU thread pools torch reads at start-up; set per worker unless the user set them."""


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_worker(n_workers: int, cores: int | None = None) -> int:
    """Each worker's share of the cores, so N workers never start N x cores threads."""
    return max(1, (usable_cores() if cores is None else cores) // max(1, n_workers))


def slot_env(
    slot: WorkerSlot, base: Mapping[str, str] | None = None, *, threads: int | None = None
) -> dict[str, str]:
    """Environment for a worker process of ``slot``.

    ``threads`` caps the worker's CPU thread pools (``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS``): torch otherwise gives every process one thread per core, and
    packed workers then fight over the cores. A value the user already exported wins.
    """
    from hpo.workers.identity import SLOT_ENV

    env = dict(os.environ if base is None else base)
    if slot.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.cuda_visible_devices
    env[SLOT_ENV] = str(slot.index)
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        for var in THREAD_VARS:
            env.setdefault(var, str(threads))
    return env
