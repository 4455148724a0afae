"""The prepared GPU-machine script, run here on the CPU at the smoke size; figures never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "device" / "suite.sh"


def _suite(part: str, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SUITE), part], cwd=ROOT, env=environ, capture_output=True, text=True
    )


def test_the_throughput_part_runs_every_step_and_leaves_its_figures_in_out(tmp_path: Path) -> None:
    result = _suite("throughput", tmp_path, DEVICE="cpu", QUICK="1")
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads((tmp_path / "throughput_fp32.json").read_text())
    assert figures
    log = (tmp_path / "throughput.log").read_text()
    assert "== fp32: exit 0" in log
    assert "== fp32-attn-dropout: exit 0" in log
    assert json.loads((tmp_path / "throughput_fp32_attn_dropout.json").read_text())
    assert "== compile-payoff: exit 0" in log
    payoff = json.loads((tmp_path / "compile_payoff.json").read_text())  # its only smoke run
    assert set(payoff["trial_s"]) == {"eager", "cold", "warm"}
    assert set(payoff["compile_cost_s"]) == {"cold", "warm"}
    assert all(rate > 0 for rate in payoff["compiled_samples_per_s"])
    assert "torch" in (tmp_path / "device.txt").read_text()


def test_the_packing_part_runs_the_service_and_leaves_its_figures(tmp_path: Path) -> None:
    result = _suite(
        "packing", tmp_path, DEVICE="cpu", QUICK="1", PACK_WORKERS="1", PACK_SECONDS="8"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "packing.json").read_text())


@pytest.mark.parametrize("part", ["", "gpu"])
def test_an_unknown_part_is_refused_before_anything_runs(tmp_path: Path, part: str) -> None:
    result = _suite(part, tmp_path / "out")
    assert result.returncode == 2
    assert "usage: suite.sh throughput|packing" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_gpu_tests_it_names_exist() -> None:
    """The CUDA tests run by node id: a renamed test must not silently select nothing."""
    text = SUITE.read_text()
    for node in (
        "test_cuda_device_kept_and_generator_device_checked",
        "test_hot_path_is_sync_free_and_stays_on_device",
        "test_cuda_fused_kernels_match_torch_on_shared_and_repeated_keys",
        "test_cuda_compiled_step_model_matches_eager_for_each_new_shape",
    ):
        assert node in text
        assert any(f"def {node}(" in p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
