"""Who runs a trial: host, process id, slot and GPUs, recorded on the trial itself.

Recovery needs to know which RUNNING trials belong to a process that has died; the
storage is the only thing every worker and the supervisor share, so ownership is written
there, as user attributes, before a trial does any work.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpo.objective import set_user_attrs

SLOT_ENV = "HPO_WORKER_SLOT"
"""Environment variable the supervisor sets to the worker's slot index."""

WORKER_ATTR = "worker"
"""User attr ``host:pid`` of the process running the trial."""
MACHINE_ATTR = "worker_machine"
"""User attr: boot id + PID namespace, so a pid is only ever checked where it means something."""
SLOT_ATTR = "worker_slot"
DEVICES_ATTR = "cuda_visible_devices"
OWNER_ATTRS = (WORKER_ATTR, MACHINE_ATTR, SLOT_ATTR, DEVICES_ATTR)


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return ""


def machine_token() -> str:
    """Identifies this kernel boot and PID namespace (two containers never share one).

    Hostnames repeat (``localhost``, host-network containers), so liveness checks by pid
    are only made when the token matches.
    """
    boot = _read("/proc/sys/kernel/random/boot_id").replace("-", "")[:12]
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        namespace = ""
    return f"{boot or socket.gethostname()}-{namespace or 'na'}"


@dataclass(frozen=True)
class WorkerIdentity:
    """One worker process, as recorded on the trials it runs."""

    host: str
    pid: int
    machine: str
    slot: int | None = None
    cuda_visible_devices: str | None = None

    @classmethod
    def current(cls) -> WorkerIdentity:
        """This process, with the slot and GPUs its supervisor gave it (if any)."""
        slot = os.environ.get(SLOT_ENV)
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            machine=machine_token(),
            slot=int(slot) if slot and slot.isdigit() else None,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        )

    @property
    def key(self) -> str:
        """``host:pid``, unique among live processes of a fleet."""
        return f"{self.host}:{self.pid}"

    def attrs(self) -> dict[str, Any]:
        """User attributes that mark a trial as run by this worker."""
        return {
            WORKER_ATTR: self.key,
            MACHINE_ATTR: self.machine,
            SLOT_ATTR: self.slot,
            DEVICES_ATTR: self.cuda_visible_devices,
        }


def mark_owner(trial: optuna.Trial, identity: WorkerIdentity) -> None:
    """Record ``identity`` on a trial this process is about to run (one write)."""
    set_user_attrs(trial, identity.attrs())


def owner_key(trial: FrozenTrial) -> str | None:
    """``host:pid`` of the process that runs (or ran) the trial, if recorded."""
    value = trial.user_attrs.get(WORKER_ATTR)
    return value if isinstance(value, str) else None


def owned_by(trial: FrozenTrial, identity: WorkerIdentity) -> bool:
    """Whether ``identity`` runs the trial: its ``host:pid`` *and* its machine token.

    ``host:pid`` alone repeats across host-network containers (every one ``vm:1``), where
    one worker's Ctrl-C would otherwise fail another's live trial.
    """
    machine = trial.user_attrs.get(MACHINE_ATTR, identity.machine)
    return owner_key(trial) == identity.key and machine == identity.machine


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (zombies count as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def parse_owner(key: str) -> tuple[str, int] | None:
    """``(host, pid)`` from ``host:pid``, or ``None`` when malformed."""
    host, sep, pid = key.rpartition(":")
    return (host, int(pid)) if sep and host and pid.isdigit() else None


def owner_is_dead_here(trial: FrozenTrial, machine: str | None = None) -> bool:
    """True when the trial's owner ran on this machine (and PID namespace) and is gone."""
    key = owner_key(trial)
    owner = parse_owner(key) if key else None
    if owner is None or trial.user_attrs.get(MACHINE_ATTR) != (machine or machine_token()):
        return False
    return owner[1] != os.getpid() and not pid_alive(owner[1])
