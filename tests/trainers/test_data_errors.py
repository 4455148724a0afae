"""Bad data files: each is one clear :class:`DataError` naming the file and the problem.

No raw numpy, zip or parser exception may leak: a trial that meets bad data is recorded
with ``fail_reason: data``, and ``hpo train`` exits 2 with one line.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trainers.contrastive import train
from trainers.data import DataError, load_alignment_npz, load_dataset
from trainers.reporter import TrainingFailed
from trainers.synthetic import HAR_CHANNELS


def _error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The DataError message of ``call``: one line, whatever went wrong."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.isprintable(), message
    return message


def _good_npz(path: Path, n: int = 30, **extra: Any) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"X": rng.normal(size=(n, 2, 20)), "y": np.arange(n) % 3, **extra}
    np.savez(path, **arrays)
    return path


def _npz(tmp_path: Path, **arrays: Any) -> str:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return str(path)


# --------------------------------------------------------------------------- .npz


def test_truncated_npz_at_every_cut_names_the_file(tmp_path: Path) -> None:
    data = _good_npz(tmp_path / "good.npz").read_bytes()
    cuts = sorted({0, 1, 4, 30, 100, len(data) // 3, len(data) // 2, len(data) - 22, len(data) - 1})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(data[:cut])
        message = _error(load_dataset, str(path))
        assert message.startswith(f"{path}: cannot read .npz"), message


@given(st.integers(min_value=0, max_value=10_000), st.binary(min_size=1, max_size=64))
@settings(max_examples=40, deadline=None, database=None, derandomize=True)
def test_garbled_npz_bytes_are_a_data_error(offset: int, junk: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        good = _good_npz(Path(tmp) / "g.npz")
        np.savez_compressed(good, X=np.arange(3000.0).reshape(30, 1, 100), y=np.arange(30) % 2)
        data = bytearray(good.read_bytes())
        at = offset % len(data)
        data[at : at + len(junk)] = junk
        bad = Path(tmp) / "garbled.npz"
        bad.write_bytes(bytes(data))
        try:
            splits = load_dataset(str(bad))
        except DataError as exc:  # the only exception allowed out
            assert str(exc).startswith(f"{bad}: "), str(exc)
        else:  # damage in padding or metadata that zip ignores
            assert splits.x_train.ndim == 3


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"X": np.zeros((6, 10)), "y": np.arange(6) % 2}, "X must be 3-D (n, channels, length)"),
        ({"X": np.zeros((6, 1, 4, 4)), "y": np.arange(6) % 2}, "X must be 3-D"),
        ({"X": np.zeros((6, 1, 5)), "y": np.arange(5) % 2}, "5 train labels for 6 series"),
        ({"X": np.zeros((6, 0, 5)), "y": np.arange(6) % 2}, "no channels or no time steps"),
        ({"X": np.zeros((6, 2, 0)), "y": np.arange(6) % 2}, "no channels or no time steps"),
        ({"X": np.array([["a"] * 5] * 6)[:, None, :], "y": np.arange(6) % 2}, "must be numeric"),
        ({"X": np.zeros((6, 1, 5), complex), "y": np.arange(6) % 2}, "must hold real numbers"),
        ({"X": np.zeros((6, 1, 5), bool), "y": np.arange(6) % 2}, "must be numeric"),
        ({"X": np.ones((6, 1, 5)), "y": np.ones(6)}, "single class"),
        ({"X": np.ones((6, 1, 5)), "y": np.array(["run"] * 6)}, "single class 'run'"),
        ({"X": np.ones((4, 1, 5)), "y": np.array([0.0, 1.0, np.nan, 1.0])}, "labels contain nan"),
        ({"X": np.ones((4, 1, 5)), "y": np.array([0.0, np.inf, 0, 1])}, "labels contain inf"),
        ({"X": np.ones((4, 1, 5)), "y": np.zeros((4, 3))}, "must be 1-D"),
        ({"X": np.ones((4, 1, 5)), "y": np.array(1)}, "must be 1-D"),
        ({"X": np.full((4, 1, 5), 1e300), "y": np.arange(4) % 2}, "infinite values"),
        (
            {
                "X": np.ones((4, 1, 5)),
                "y": np.arange(4) % 2,
                "X_test": np.zeros((2, 5)),
                "y_test": np.arange(2),
            },
            "X_test must be 3-D",
        ),
        (
            {
                "X": np.random.default_rng(0).normal(size=(4, 1, 5)),
                "y": np.arange(4) % 2,
                "X_test": np.full((2, 1, 5), np.inf),
                "y_test": np.arange(2),
            },
            "test series contain infinite values",
        ),
        ({"Y": np.ones(3)}, "missing array(s) ['X']; found ['Y']"),
    ],
)
def test_bad_arrays_name_the_file_and_the_problem(
    tmp_path: Path, arrays: dict[str, Any], problem: str
) -> None:
    path = _npz(tmp_path, **arrays)
    message = _error(load_dataset, path)
    assert message.startswith(f"{path}: "), message
    assert problem in message, message


def test_nan_only_channel_is_named(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(8, 3, 6))
    x[:, 2] = np.nan
    path = _npz(tmp_path, X=x, y=np.arange(8) % 2)
    assert _error(load_dataset, path) == f"{path}: channel 2 is NaN in every train series"


def test_one_series_per_class_leaves_nothing_to_validate_on(tmp_path: Path) -> None:
    # each class keeps its one series in train; training crashed on an empty val set
    x = np.random.default_rng(0).normal(size=(3, 2, 6))
    path = _npz(tmp_path, X=x, y=np.arange(3))
    assert len(load_dataset(path).y_val) == 0
    params = {"dataset": path, "model": "conv", "dim": 8, "proj_dim": 8, "epochs": 1}
    assert "no series left for validation" in _error(train, params)


def test_string_labels_are_fine_and_string_series_are_not(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(8, 1, 6))
    splits = load_dataset(_npz(tmp_path, X=x, y=np.array(["walk", "run"] * 4)))
    assert splits.class_names == ["run", "walk"]
    message = _error(load_dataset, _npz(tmp_path, X=x.astype(str), y=np.arange(8) % 2))
    assert "X must be numeric, got dtype <U" in message


def test_member_that_is_not_an_array(tmp_path: Path) -> None:
    path = tmp_path / "fake.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", b"not an array")
        archive.writestr("y.npy", b"nor this")
    assert _error(load_dataset, str(path)) == (
        f"{path}: cannot read .npz: member X.npy is not a NumPy array"
    )


def test_pickled_objects_are_refused_with_a_reason(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((1, 3)), np.zeros((1, 4))
    path = _npz(tmp_path, X=ragged, y=np.array([0, 1]))
    assert "holds Python objects (dtype=object)" in _error(load_dataset, path)


def test_folder_named_like_an_npz(tmp_path: Path) -> None:
    folder = tmp_path / "data.npz"
    folder.mkdir()
    assert "not a UCI HAR folder" in _error(load_dataset, str(folder))
    assert _error(load_alignment_npz, folder) == f"{folder}: is a folder, not a file"


def test_alignment_npz_errors(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 1, 4))
    message = _error(load_alignment_npz, _npz(tmp_path, X=x, Z=np.full((5, 2), np.nan)))
    assert "Z contains NaN or infinite values" in message
    message = _error(load_alignment_npz, _npz(tmp_path, X=x[:, :, :0], Z=np.zeros((5, 2))))
    assert "no channels or no time steps" in message


# --------------------------------------------------------------------------- .ts

TS_HEADER = "@problemName t\n@univariate true\n@equalLength true\n@classLabel true up down\n@data\n"
TS_BODY = "".join(f"{i},{i + 1},{i + 2}:{('up', 'down')[i % 2]}\n" for i in range(8))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "train split is empty"),
        (TS_HEADER, "train split is empty"),
        (TS_HEADER + TS_BODY[:-9], "cannot parse .ts file"),  # last line cut mid-series
        (TS_HEADER + TS_BODY + "1,2:up\n", "cannot parse .ts file"),  # a short series
        (TS_HEADER + TS_BODY + "1,2,x:up\n", "cannot parse .ts file (ValueError"),
        (TS_HEADER + TS_BODY + "1,2,3:sideways\n", "labels ['sideways'] not declared"),
        (TS_HEADER + TS_BODY.replace(":down", ":up"), "single class 'up'"),
        ("@problemName t\n@targetlabel true\n@data\n1,2:0.5\n", "no class labels"),
    ],
)
def test_truncated_or_garbled_ts_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "Bad_TRAIN.ts"
    path.write_text(text)
    message = _error(load_dataset, str(path))
    assert message.startswith(f"{path}: "), message
    assert problem in message, message
    assert "_io.TextIOWrapper" not in message


def test_binary_ts_file(tmp_path: Path) -> None:
    path = tmp_path / "Bin_TRAIN.ts"
    path.write_bytes(bytes(range(256)) * 4)
    message = _error(load_dataset, str(path))
    assert message.startswith(f"{path}: cannot parse .ts file"), message


@given(st.text(max_size=200))
@settings(max_examples=30, deadline=None, database=None, derandomize=True)
def test_any_ts_text_loads_or_is_a_data_error(body: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Fuzz_TRAIN.ts"
        path.write_text(TS_HEADER + body, encoding="utf-8")
        try:
            load_dataset(str(path))
        except DataError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)


# --------------------------------------------------------------------------- UCI HAR folders


def _har(root: Path, n: int = 6) -> Path:
    for split in ("train", "test"):
        signals = root / split / "Inertial Signals"
        signals.mkdir(parents=True)
        for channel in HAR_CHANNELS:
            np.savetxt(signals / f"{channel}_{split}.txt", np.ones((n, 8)))
        np.savetxt(root / split / f"y_{split}.txt", np.arange(n) % 6 + 1, fmt="%d")
    return root


def test_folder_without_uci_har_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    message = _error(load_dataset, str(tmp_path / "empty"))
    assert message.startswith(f"{tmp_path / 'empty'}: not a UCI HAR folder"), message
    assert "missing train/Inertial Signals/body_acc_x_train.txt" in message
    message = _error(load_dataset, "uci_har", data_dir=str(tmp_path / "nowhere"))
    assert message == f"{tmp_path / 'nowhere'}: folder not found"
    (tmp_path / "file.txt").write_text("x")
    message = _error(load_dataset, "uci_har", data_dir=str(tmp_path / "file.txt"))
    assert message == f"{tmp_path / 'file.txt'}: not a folder"


def test_uci_har_damaged_files(tmp_path: Path) -> None:
    root = _har(tmp_path / "a")
    labels = root / "train" / "y_train.txt"
    labels.write_text("")
    assert _error(load_dataset, str(root)) == f"{labels}: file is empty"
    labels.write_text("1\n2\nwalking\n")
    assert _error(load_dataset, str(root)).startswith(f"{labels}: cannot parse numeric table")
    root = _har(tmp_path / "b")
    signal = root / "train" / "Inertial Signals" / "body_gyro_x_train.txt"
    signal.write_bytes(b"\x00\xff\x00garbage")
    assert _error(load_dataset, str(root)).startswith(f"{signal}: cannot parse numeric table")
    signal.write_text("1 2 3\n4 5\n")
    assert _error(load_dataset, str(root)).startswith(f"{signal}: cannot parse numeric table")


# --------------------------------------------------------------------------- how it surfaces


def test_data_error_is_a_training_failure_with_reason_data() -> None:
    error = DataError("d.npz", "bad\nthing\x00")
    assert isinstance(error, TrainingFailed) and isinstance(error, ValueError)
    assert error.reason == "data"
    assert str(error) == "d.npz: bad thing\\x00"
    copy = pickle.loads(pickle.dumps(error))  # crosses process boundaries intact
    assert (type(copy), str(copy), copy.reason) == (DataError, str(error), "data")


def test_hpo_train_exits_2_with_one_line(tmp_path: Path) -> None:
    from hpo.cli import app

    (tmp_path / "cut.npz").write_bytes(_good_npz(tmp_path / "g.npz").read_bytes()[:500])
    config = tmp_path / "run.yaml"
    params = {"dataset": str(tmp_path / "cut.npz"), "epochs": 1, "device": "cpu"}
    config.write_text(yaml.safe_dump({"trainer": "contrastive", "params": params}))
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: training failed (data): {tmp_path / 'cut.npz'}: cannot read .npz "
        "(not a zip archive: truncated or corrupted?)"
    ]


def test_trial_on_bad_data_fails_with_reason_data(tmp_path: Path) -> None:
    import optuna

    from hpo import ConfigError, load_study_config, run_study
    from hpo.storages import storage_url

    # headers a validation reads look fine; the series themselves are unusable
    x = np.zeros((6, 2, 10))
    x[:, 0] = np.nan
    bad = _npz(tmp_path, X=x, y=np.arange(6) % 2)
    study = {
        "name": "bad-data",
        "objective": {"metric": "best_val_f1", "direction": "maximize"},
        "budget": {"n_trials": 1},
        "trainer": {"name": "contrastive", "params": {"dataset": bad, "epochs": 1}},
        "space": {"lr": {"type": "float", "low": 0.001, "high": 0.01, "log": True}},
        "artifacts": {"enabled": False},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    cfg = load_study_config(path)
    summary = run_study(cfg)
    assert not summary.any_complete
    (trial,) = optuna.load_study(study_name="bad-data", storage=storage_url(cfg)).trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "data"
    assert "channel 0 is NaN in every train series" in trial.user_attrs["fail_message"]
    flat = _npz(tmp_path, X=np.zeros((6, 10)), y=np.arange(6) % 2)  # refused before any trial
    with pytest.raises(ConfigError, match="X has shape"):
        run_study(load_study_config(path, [f"trainer.params.dataset={flat}", "name=flat"]))
