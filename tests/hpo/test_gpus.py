"""GPU discovery and slot assignment, checked without GPUs through what each worker received."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import optuna
import pytest

from hpo.cli_run import gpus_override, worker_overrides
from hpo.errors import ConfigError
from hpo.workers.gpus import (
    WorkerSlot,
    detect_gpus,
    driver_device_count,
    nvidia_smi_indices,
    nvidia_smi_mig_devices,
    plan_workers,
    slot_env,
    threads_per_worker,
    visible_devices,
)
from hpo.workers.identity import SLOT_ENV
from tests.hpo.test_workers import (
    HPO,
    ROOT,
    assert_finished_exactly,
    hpo,
    hpo_env,
    load,
    sqlite_url,
    worker_study,
)


def test_listed_gpus_get_per_gpu_slots_each() -> None:
    plan = plan_workers([0, 2], per_gpu=2, env={}, detected=["0", "1", "2"])
    assert [(s.index, s.cuda_visible_devices) for s in plan.slots] == [
        (0, "0"),
        (1, "0"),
        (2, "2"),
        (3, "2"),
    ]
    assert plan.uses_gpus and not plan.notes


def test_listed_gpus_the_machine_does_not_have() -> None:
    # they trained on the CPU without a word
    plan = plan_workers([0, 1], env={}, detected=[])
    assert plan.notes == [
        "no GPU found (the caller): the workers for GPU 0, 1 will train on the CPU"
    ]
    with pytest.raises(ValueError, match=r"GPU 2 is not on this machine: the caller found 2"):
        plan_workers([0, 2], env={}, detected=["0", "1"])


def test_gpu_indices_are_relative_to_an_inherited_allocation() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3,5,7"}
    plan = plan_workers([1, 2], env=env)
    assert [s.cuda_visible_devices for s in plan.slots] == ["5", "7"]
    with pytest.raises(ValueError, match="GPU 3 is not visible"):
        plan_workers([3], env=env)
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-5d9c1a2b,GPU-77aa0f01"}
    plan = plan_workers([1], env=uuids)
    assert [s.cuda_visible_devices for s in plan.slots] == ["GPU-77aa0f01"]


@pytest.mark.parametrize(
    ("value", "devices"),
    [
        ("0,-1,1", ["0"]),  # CUDA stops at the first entry that is no device
        ("2,NoDevFiles,3", ["2"]),
        ("NoDevFiles", []),  # a container without GPUs: not one "gpu" worker on the CPU
        ("0,0", []),  # a repeated entry hides every device
        ("GPU-a,1", ["GPU-a"]),  # a UUID list ends at the first entry of another kind
        ("MIG-a,MIG-b", ["MIG-a", "MIG-b"]),
        ("1gpu2, 3", ["1", "3"]),  # strtoul, as the driver reads it
        ("", []),
    ],
)
def test_an_inherited_allocation_is_read_as_cuda_reads_it(value: str, devices: list[str]) -> None:
    # "0,-1,1" handed GPU 1, which the scheduler had hidden, to a worker
    assert visible_devices({"CUDA_VISIBLE_DEVICES": value}) == devices
    plan = plan_workers("all", env={"CUDA_VISIBLE_DEVICES": value}, n_workers=1)
    expected = devices or [""]  # none: one CPU worker
    assert [s.cuda_visible_devices for s in plan.slots] == expected


def test_all_uses_the_inherited_allocation_first() -> None:
    plan = plan_workers("all", per_gpu=2, env={"CUDA_VISIBLE_DEVICES": "4,5"})
    assert [s.cuda_visible_devices for s in plan.slots] == ["4", "4", "5", "5"]
    assert plan.notes == ["2 GPU(s) from CUDA_VISIBLE_DEVICES: 4, 5"]


def test_all_without_gpus_falls_back_to_cpu_and_says_so() -> None:
    plan = plan_workers("all", env={}, detected=[])
    assert [s.cuda_visible_devices for s in plan.slots] == [""]
    assert plan.notes == ["no GPU found (the caller): running 1 CPU worker"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == ([], "CUDA_VISIBLE_DEVICES")


def test_cpu_workers_see_no_gpu() -> None:
    plan = plan_workers("none", n_workers=3)
    assert [s.cuda_visible_devices for s in plan.slots] == ["", "", ""]
    assert not plan.uses_gpus
    env = slot_env(WorkerSlot(2, ""), {"CUDA_VISIBLE_DEVICES": "0,1", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == ""
    assert env[SLOT_ENV] == "2"
    assert env["PATH"] == "/bin"
    assert "OMP_NUM_THREADS" not in env, "no cap unless the supervisor asks for one"
    assert plan.notes == []
    assert plan_workers("none", per_gpu=2, n_workers=3).notes == [
        "per_gpu 2 is unused without GPUs (gpus: none); n_workers (-w) sets the CPU workers"
    ]


def test_a_cpu_worker_count_beside_gpus_is_noted_not_silently_dropped() -> None:
    plan = plan_workers([0], per_gpu=2, n_workers=3, env={}, detected=["0"])
    assert len(plan.slots) == 2
    assert plan.notes[-1] == (
        "n_workers 3 is unused with GPUs; per_gpu (--workers-per-gpu) sets the workers: "
        "1 GPU(s) x 2"
    )
    assert plan_workers("all", n_workers=3, env={}, detected=[]).notes == [
        "no GPU found (the caller): running 3 CPU workers"
    ]
    # with gpus: all, n_workers is the count for a machine without GPUs: nothing to note
    assert plan_workers("all", n_workers=3, env={}, detected=["0"]).notes == [
        "1 GPU(s) from the caller: 0"
    ]


def test_packed_workers_share_the_cores() -> None:
    assert threads_per_worker(4, cores=16) == 4
    assert threads_per_worker(3, cores=16) == 5
    assert threads_per_worker(8, cores=2) == 1, "never zero threads"
    env = slot_env(WorkerSlot(0, "0"), {}, threads=4)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "4"
    mine = slot_env(WorkerSlot(0, "0"), {"OMP_NUM_THREADS": "2"}, threads=4)
    assert mine["OMP_NUM_THREADS"] == "2", "a value the user exported wins"


def test_nvidia_smi_listing(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n1\\n2\\n'\n")
    fake.chmod(0o755)
    assert nvidia_smi_indices(str(fake)) == ["0", "1", "2"]
    broken = tmp_path / "broken-smi"
    broken.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    broken.chmod(0o755)
    assert nvidia_smi_indices(str(broken)) is None
    assert nvidia_smi_indices(str(tmp_path / "missing")) is None


def test_gpu_flags_become_overrides() -> None:
    assert gpus_override("0, 1,3") == "workers.gpus=[0, 1, 3]"
    assert gpus_override("ALL") == "workers.gpus=all"
    assert worker_overrides("none", None, 4) == ["workers.gpus=none", "workers.n_workers=4"]
    assert worker_overrides(None, 2, None) == ["workers.per_gpu=2"]
    with pytest.raises(ConfigError) as info:
        gpus_override("0,x")
    assert info.value.problems == ["--gpus: expected all, none or indices like 0,1,2 (got '0,x')"]


def test_each_worker_gets_its_own_cuda_visible_devices(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=8, epochs=3, sleep=0.25, pruner={"name": "none"})
    # an allocation of two (as a scheduler gives it): the same on a machine with any GPUs
    result = hpo(
        "run", str(path), "--gpus", "0,1", "--workers-per-gpu", "2", CUDA_VISIBLE_DEVICES="0,1"
    )
    assert result.returncode == 0, result.stderr
    assert "gpu 0, gpu 1 (4 processes)" in result.stdout
    study = load("workers", sqlite_url(path))
    assert_finished_exactly(study, 8)
    expected = {0: "0", 1: "0", 2: "1", 3: "1"}
    seen: dict[int, set[str]] = {}
    for trial in study.get_trials(deepcopy=False):
        slot = trial.user_attrs["worker_slot"]
        seen.setdefault(slot, set()).add(trial.user_attrs["cuda_visible_devices"])
    assert seen, "no trial recorded its worker"
    for slot, devices in seen.items():
        assert devices == {expected[slot]}, (slot, devices)
    assert {expected[s] for s in seen} == {"0", "1"}, "both GPUs should have run trials"


def test_gpus_all_without_a_gpu_runs_one_cpu_worker(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=2)
    result = hpo("run", str(path), "--gpus", "all", CUDA_VISIBLE_DEVICES="")
    assert result.returncode == 0, result.stderr
    assert "note: no GPU found (CUDA_VISIBLE_DEVICES): running 1 CPU worker" in result.stderr
    trials = load("workers", sqlite_url(path)).get_trials(deepcopy=False)
    assert len(trials) == 2
    assert {t.user_attrs["worker"].rsplit(":", 1)[0] for t in trials} == {os.uname().nodename}


def test_unknown_gpu_in_an_allocation_is_a_clear_error(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=1)
    result = hpo("run", str(path), "--gpus", "2", CUDA_VISIBLE_DEVICES="0,1")
    assert result.returncode == 2
    assert "workers.gpus: GPU 2 is not visible: CUDA_VISIBLE_DEVICES has 2 entries" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(KeyError):
        optuna.load_study(study_name="workers", storage=sqlite_url(path))


FAKE_LIBCUDA = """
import ctypes, json, os, sys

_real_cdll = ctypes.CDLL


class _FakeCuda:
    '''libcuda with 4 GPUs that logs who called cuInit, and what CUDA_VISIBLE_DEVICES was.'''

    def cuInit(self, flags):
        with open(os.environ["FAKE_CUDA_LOG"], "a") as log:
            argv0 = sys.argv[0] if sys.argv else ""
            log.write(json.dumps([argv0, os.environ.get("CUDA_VISIBLE_DEVICES")]) + "\\n")
        return 0

    def cuDeviceGetCount(self, count):
        count._obj.value = int(os.environ.get("FAKE_CUDA_COUNT", "4"))
        return 0


def _cdll(name, *args, **kwargs):
    if str(name).startswith("libcuda"):
        return _FakeCuda()
    return _real_cdll(name, *args, **kwargs)


ctypes.CDLL = _cdll
"""


def _fake_libcuda(folder: Path) -> tuple[Path, Path]:
    """A folder whose ``sitecustomize`` fakes libcuda in every Python started with it on
    ``PYTHONPATH``, and the log its ``cuInit`` writes."""
    site = folder / "fake_libcuda"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_LIBCUDA, encoding="utf-8")
    return site, folder / "cuinit.log"


def _cuinit_calls(log: Path) -> list[tuple[str, str | None]]:
    if not log.is_file():
        return []
    return [tuple(json.loads(line)) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_the_driver_is_probed_in_a_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site, log = _fake_libcuda(tmp_path)
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("FAKE_CUDA_LOG", str(log))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert driver_device_count() == 4
    assert detect_gpus() == (["0", "1", "2", "3"], "the CUDA driver")
    assert _cuinit_calls(log) == [("-c", None), ("-c", None)], "cuInit ran in this process"


def test_a_single_slot_worker_sets_its_gpu_before_the_driver_starts(tmp_path: Path) -> None:
    """``hpo worker --gpus 1``: the driver reads CUDA_VISIBLE_DEVICES once, at cuInit; a
    probe in the worker's own process before the variable is set made it train on GPU 0."""
    site, log = _fake_libcuda(tmp_path)
    path = worker_study(tmp_path, n_trials=1, epochs=1, pruner={"name": "none"})
    env = hpo_env(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", FAKE_CUDA_LOG=str(log))
    env.pop("CUDA_VISIBLE_DEVICES", None)  # no allocation: the worker picks GPU 1 itself
    result = subprocess.run(
        [*HPO, "worker", str(path), "--gpus", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    calls = _cuinit_calls(log)
    assert calls, "the GPU check did not ask the (fake) driver"
    in_worker = [cvd for argv0, cvd in calls if argv0 != "-c"]
    assert all(cvd == "1" for cvd in in_worker), calls
    (trial,) = load("workers", sqlite_url(path)).get_trials(deepcopy=False)
    assert trial.user_attrs["cuda_visible_devices"] == "1"


def test_a_single_cpu_worker_hides_the_gpus(tmp_path: Path) -> None:
    """``hpo worker --gpus none``: its slot's empty device list was skipped, so it trained
    on GPU 0 where ``--workers 2`` hid it."""
    path = worker_study(tmp_path, n_trials=1, epochs=1, pruner={"name": "none"})
    env = hpo_env()
    env["CUDA_VISIBLE_DEVICES"] = "0"
    result = subprocess.run(
        [*HPO, "worker", str(path), "--gpus", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (trial,) = load("workers", sqlite_url(path)).get_trials(deepcopy=False)
    assert trial.user_attrs["cuda_visible_devices"] == ""


MIG_LISTING = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-77aa0f01-1c2b)
"""


def _fake_smi(folder: Path, listing: str, indices: str = "0\\n1\\n") -> Path:
    """An ``nvidia-smi`` answering ``-L`` with ``listing`` and the index query with ``indices``."""
    folder.mkdir(exist_ok=True)
    smi = folder / "nvidia-smi"
    (folder / "listing.txt").write_text(listing)
    smi.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-L" ]; then cat {folder / "listing.txt"}; else printf "{indices}"; fi\n'
    )
    smi.chmod(0o755)
    return folder


def test_mig_instances_are_the_devices_on_a_bare_metal_mig_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a process not told which MIG instance to use enumerates one: the driver said 1 GPU,
    # and `gpus: all` ran one worker on a machine of three devices
    bin_dir = _fake_smi(tmp_path / "bin", MIG_LISTING)
    assert nvidia_smi_mig_devices(str(bin_dir / "nvidia-smi")) == [
        "MIG-c6d4f1ef-42e4",
        "MIG-cba663e8-9bed",
        "GPU-77aa0f01-1c2b",
    ]
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plan = plan_workers("all")
    assert [s.cuda_visible_devices for s in plan.slots] == [
        "MIG-c6d4f1ef-42e4",
        "MIG-cba663e8-9bed",
        "GPU-77aa0f01-1c2b",
    ]
    assert plan.notes[0].startswith("3 GPU(s) from nvidia-smi (MIG instances)")
    plain = _fake_smi(tmp_path / "plain", "GPU 0: NVIDIA H100 (UUID: GPU-1)\n")
    assert nvidia_smi_mig_devices(str(plain / "nvidia-smi")) == [], "no MIG: the driver decides"


def test_gpus_nvidia_smi_lists_but_the_driver_cannot_use_are_said_to_be_suspect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a driver and library mismatch: cuInit fails, nvidia-smi still lists the GPUs, and
    # the "gpu" workers trained on the CPU without a word
    site, log = _fake_libcuda(tmp_path)
    bin_dir = _fake_smi(tmp_path / "bin", "GPU 0: NVIDIA H100 (UUID: GPU-1)\n")
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("FAKE_CUDA_LOG", str(log))
    monkeypatch.setenv("FAKE_CUDA_COUNT", "0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices, source = detect_gpus()
    assert devices == ["0", "1"]
    assert "the CUDA driver library reports none" in source
    assert "may train on the CPU" in plan_workers("all").notes[0]
