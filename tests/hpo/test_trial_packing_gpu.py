"""benchmarks.trial_packing samples (and names) the GPU its workers train on, not GPU 0.

Lives with the hpo tests: the GPU numbering it checks is ``hpo run --gpus``'s.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.trial_packing import UtilisationSampler, _gpu_name, nvidia_smi_id, worker_env


def _fake_nvidia_smi(folder: Path) -> Path:
    """An ``nvidia-smi`` on PATH that logs its arguments and answers any query."""
    log = folder / "nvidia-smi.log"
    exe = folder / "nvidia-smi"
    exe.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "42, 1000"\n', encoding="utf-8")
    exe.chmod(0o755)
    return log


def test_the_sampled_gpu_is_the_one_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fake_nvidia_smi(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sampler = UtilisationSampler("cuda", gpu=nvidia_smi_id(2, {}))
    sampler._sample_gpu()
    assert sampler.busy == [42.0] and sampler.memory == [1000.0]
    assert _gpu_name(2, nvidia_smi_id(2, {})) == "GPU 2: 42, 1000"
    calls = log.read_text().splitlines()
    assert [call.split()[-2:] for call in calls] == [["-i", "2"], ["-i", "2"]]


def test_gpu_indices_follow_the_allocation_and_pci_order() -> None:
    allocation = {"CUDA_VISIBLE_DEVICES": "GPU-aaaa,GPU-bbbb"}
    assert nvidia_smi_id(1, allocation) == "GPU-bbbb"
    assert nvidia_smi_id(0, {"CUDA_VISIBLE_DEVICES": "3,1"}) == "3"
    assert nvidia_smi_id(1, {}) == "1"
    env = worker_env({"CUDA_DEVICE_ORDER": "FASTEST_FIRST", "PATH": "/bin"})
    assert env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PATH": "/bin"}
