"""Each benchmark runs once in its tiny ``--quick`` configuration; timings are never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import compile_payoff, service_overhead, trainer_throughput

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_trainer_throughput_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "throughput.json"
    assert trainer_throughput.main(["--quick", "--device", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ratio trainer / best baseline" in printed
    assert "num_workers=0" in printed and "num_workers=2" in printed
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["device"] == "cpu"
    rates = result["train_samples_per_s"]
    assert len(rates) == 3 and all(rate > 0 for rate in rates.values())


def test_trainer_throughput_cuda_flags_are_reported_not_run_on_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--quick", "--device", "cpu", "--workers", "0", "--amp", "bf16", "--compile"]
    assert trainer_throughput.main([*argv, "--no-input-only"]) == 0
    assert "apply on CUDA only" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_trainer_throughput_says_when_cuda_is_absent(capsys: pytest.CaptureFixture[str]) -> None:
    assert trainer_throughput.main(["--quick", "--device", "cuda"]) == 2
    assert "need a GPU" in capsys.readouterr().err


def test_trainer_throughput_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert trainer_throughput.main(["--quick", "--steps", "0"]) == 2
    assert "error:" in capsys.readouterr().err


def test_compile_payoff_refuses_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert compile_payoff.main(["--quick", "--first-steps", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: need --steps")


def test_service_overhead_quick(tmp_path: Path) -> None:
    # A fresh interpreter, as users run it (and without the trainer tests' torch objects
    # on the heap the service's first, full garbage collection has less to walk).
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.service_overhead", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "late/early ratio" in proc.stdout and "goal < 50 ms/trial" in proc.stdout
    assert "without the sampler's own work" in proc.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["trials"] == 30
    wall = result["wall"]
    sampler_ms = wall["breakdown_ms_mean"]["sampler's own work"]
    assert 0 < sampler_ms < wall["ms_per_trial_mean"], "TPE's own work is timed, and is a part"
    assert wall["ms_per_trial_without_sampler_mean"] == pytest.approx(
        wall["ms_per_trial_mean"] - sampler_ms
    )
    assert result["n_complete"] + result["n_pruned"] == 30
    assert result["n_reports"] > 30
    assert result["sql_statements"] > result["n_reports"], "each report is written to SQLite"


def test_service_overhead_on_a_given_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"journal:///{(tmp_path / 'journal.log').as_posix()}"
    json_path = tmp_path / "journal.json"
    grouped = "{name: grouped, by: [choice], wrapped: {name: median, n_startup_trials: 1}}"
    argv = ["--trials", "6", "--epochs", "3", "--storage", url, "--json", str(json_path)]
    assert service_overhead.main([*argv, "--pruner", grouped]) == 0
    assert "journal:///" in capsys.readouterr().out
    result = json.loads(json_path.read_text(encoding="utf-8"))
    assert result["trials"] == 6 and result["n_reports"] >= 6
    assert result["pruner"] == grouped
    assert result["sql_statements"] == 0, "a journal file is not an SQL database"


def test_service_overhead_refuses_too_few_trials(capsys: pytest.CaptureFixture[str]) -> None:
    assert service_overhead.main(["--trials", "1"]) == 2
    assert "error:" in capsys.readouterr().err


def test_service_overhead_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert service_overhead.main(["--quick", "--pruner", "{name: [median"]) == 2
    assert capsys.readouterr().err.startswith("error: --pruner: not a YAML mapping (")
    url = f"sqlite:///{(tmp_path / 'o.db').as_posix()}"
    argv = ["--trials", "4", "--epochs", "2", "--storage", url, "--study-name", "same", "--keep"]
    assert service_overhead.main(argv) == 0
    capsys.readouterr()
    assert service_overhead.main(argv) == 2, "a second run would resume the first one's trials"
    assert "error: --study-name: 'same' already exists" in capsys.readouterr().err
