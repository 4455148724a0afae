"""What each trial leaves behind, on real SQLite files and a real artifact folder."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState
from optuna_dashboard import get_note

from hpo import load_study_config, run_study
from hpo.artifacts import (
    CHECKPOINT_ATTR,
    PrefixedArtifactStore,
    artifacts_location,
    kept_checkpoints,
    open_artifact_store,
    trial_artifacts,
)
from hpo.errors import ConfigError
from hpo.hooks import ArtifactHook, default_hooks
from hpo.notes import git_commit, render_note
from hpo.results import load_existing_study
from hpo.storages import sqlite_path, storage_url
from tests.conftest import analytic_study
from trainers.analytic import AnalyticParams
from trainers.analytic import train as analytic_train
from trainers.reporter import Reporter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SCRATCH: list[Path] = []


def files_trainer(params: dict[str, Any], reporter: Reporter | None = None) -> dict[str, float]:
    """The analytic trainer plus the files the contrastive trainer writes (small: 300 points)."""
    result = analytic_train(params, reporter)
    directory = Path(params["artifact_dir"])
    _SCRATCH.append(directory)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    z = (rng.normal(size=(300, 16)) + 3.0 * y[:, None]).astype(np.float32)
    np.save(directory / "confusion_matrix.npy", np.array([[50, 2, 0], [3, 40, 7], [0, 5, 45]]))
    np.savez(
        directory / "val_embeddings.npz", z=z, y=y, class_names=np.array(["walk", "run", "sit"])
    )
    return result


files_trainer.params_schema = AnalyticParams  # type: ignore[attr-defined]


def broken_files_trainer(
    params: dict[str, Any], reporter: Reporter | None = None
) -> dict[str, float]:
    """Writes files a plot cannot use: the trial must still complete with its other artifacts."""
    result = analytic_train(params, reporter)
    directory = Path(params["artifact_dir"])
    (directory / "confusion_matrix.npy").write_bytes(b"not numpy")
    (directory / "val_embeddings.npz").write_bytes(b"PK\x03\x04 truncated zip")
    return result


broken_files_trainer.params_schema = AnalyticParams  # type: ignore[attr-defined]

_FOLDERS_GIVEN: list[str] = []


def first_call_files_trainer(
    params: dict[str, Any], reporter: Reporter | None = None
) -> dict[str, float]:
    """Writes a confusion matrix on its first call only: later trials have none of their own."""
    result = analytic_train(params, reporter)  # makes the folder and writes checkpoint.pt
    _FOLDERS_GIVEN.append(params["artifact_dir"])
    if len(_FOLDERS_GIVEN) == 1:
        np.save(Path(params["artifact_dir"]) / "confusion_matrix.npy", np.eye(3, dtype=int) * 9)
    return result


first_call_files_trainer.params_schema = AnalyticParams  # type: ignore[attr-defined]


def _study(path: Path) -> optuna.Study:
    return load_existing_study(load_study_config(path))


def _names(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> set[str]:
    return {a.filename for a in trial_artifacts(trial, study._storage)}


def test_every_trial_gets_a_learning_curve_and_a_note(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        budget={"n_trials": 6},
        trainer={"name": "analytic", "params": {"epochs": 4, "fail_when_x_above": 1.2}},
        pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 1},
        artifacts={"enabled": True},
    )
    data["space"]["fail"] = {"type": "categorical", "choices": ["none", "raise"]}
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    store_dir = path.parent / "artifacts"
    assert store_dir.is_dir(), "default artifact folder sits next to the SQLite file"
    states = {t.state for t in study.trials}
    assert TrialState.COMPLETE in states
    for trial in study.trials:
        metas = {a.filename: a for a in trial_artifacts(trial, study._storage)}
        assert "learning_curves.png" in metas, trial.number
        png = store_dir / metas["learning_curves.png"].artifact_id
        assert png.read_bytes().startswith(PNG_MAGIC)
        assert metas["learning_curves.png"].mimetype == "image/png"
        note = get_note(optuna.Trial(study, trial._trial_id))
        assert note.startswith(f"## Trial {trial.number}: {trial.state.name.lower()}")
        assert "| x |" in note and "sampled" in note
        assert f"| seed | {trial.user_attrs['seed']} |" in note
        assert "| wall time |" in note
        if trial.state == TrialState.PRUNED:
            assert f"**Pruned** at epoch {trial.user_attrs['pruned_at_step']}" in note
        if trial.state == TrialState.FAIL:
            assert "**Failed** (exception)" in note and "injected failure" in note
        assert "hook_error" not in trial.user_attrs


def test_only_the_best_k_checkpoints_stay(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        budget={"n_trials": 8},
        pruner={"name": "none"},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        artifacts={"keep_best_k": 2, "plots": False, "notes": False},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    store_dir = path.parent / "artifacts"
    complete = sorted(
        (t for t in study.trials if t.state == TrialState.COMPLETE),
        key=lambda t: -float(t.values[0]),
    )
    best_two = {t.number for t in complete[:2]}
    kept = kept_checkpoints(study)
    assert set(kept) == best_two
    on_disk = {p.name for p in store_dir.iterdir()}
    for trial in complete:
        artifact_id = trial.user_attrs.get(CHECKPOINT_ATTR)
        if trial.number in best_two:
            assert artifact_id in on_disk
            saved = json.loads((store_dir / artifact_id).read_text())
            assert saved["result"]["best_score"] == pytest.approx(trial.values[0])
        elif artifact_id is not None:
            assert artifact_id not in on_disk, f"trial {trial.number} fell out of the best 2"
    assert len(on_disk) == 2
    # Per-epoch reports are intermediate values; nothing per-batch reaches the storage.
    for trial in complete:
        assert sorted(trial.intermediate_values) == [1, 2]
        assert not any(isinstance(v, list | dict) for v in trial.user_attrs.values())


def test_trainer_files_become_plots_and_checkpoint(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        budget={"n_trials": 1},
        trainer={"name": "tests.hpo.test_artifacts:files_trainer", "params": {"epochs": 3}},
        artifacts={"enabled": True},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs
    assert _names(study, trial) == {
        "learning_curves.png",
        "confusion_matrix.png",
        "embeddings_tsne.png",
        "checkpoint.pt",
    }
    from matplotlib.image import imread

    for meta in trial_artifacts(trial, study._storage):
        # explicit types: /etc/mime.types would call checkpoint.pt a SNES page table
        expected = "image/png" if meta.filename.endswith(".png") else "application/octet-stream"
        assert meta.mimetype == expected, meta
        if meta.filename.endswith(".png"):
            image = imread(path.parent / "artifacts" / meta.artifact_id)
            assert image.shape[0] > 200 and image.shape[1] > 200
    assert _SCRATCH and not _SCRATCH[-1].exists(), "the trainer's scratch folder is removed"


def test_a_fixed_artifact_dir_gives_each_trial_its_own_folder(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Used as given, trial 1 drew trial 0's confusion matrix (and workers shared a folder)."""
    fixed = tmp_path / "fixed"
    stale = fixed / "trial-1"  # another study's trial 1 used this folder before
    stale.mkdir(parents=True)
    np.save(stale / "confusion_matrix.npy", np.eye(2, dtype=int))
    _FOLDERS_GIVEN.clear()
    trainer = "tests.hpo.test_artifacts:first_call_files_trainer"
    data = analytic_study(
        budget={"n_trials": 3},
        pruner={"name": "none"},
        trainer={"name": trainer, "params": {"epochs": 2, "artifact_dir": str(fixed)}},
        artifacts={"keep_best_k": 3, "embeddings": False, "notes": False},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    for trial in study.trials:
        names = _names(study, trial)
        assert ("confusion_matrix.png" in names) == (trial.number == 0), (trial.number, names)
    folders = {t.number: t.user_attrs["artifact_dir"] for t in study.trials}
    assert folders == {0: str(fixed / "trial-0"), 1: str(stale) + "-2", 2: str(fixed / "trial-2")}
    assert sorted(_FOLDERS_GIVEN) == sorted(folders.values())
    for trial in study.trials:
        kept = Path(folders[trial.number]) / "checkpoint.pt"
        assert json.loads(kept.read_text())["result"]["best_score"] == trial.values[0]
    assert (stale / "confusion_matrix.npy").is_file(), "another study's files stay as they are"


def test_unusable_files_cost_only_their_picture(write_study: Callable[..., Path]) -> None:
    data = analytic_study(
        budget={"n_trials": 1},
        trainer={"name": "tests.hpo.test_artifacts:broken_files_trainer", "params": {"epochs": 2}},
        artifacts={"notes": False},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE
    assert "hook_error" not in trial.user_attrs
    assert _names(study, trial) == {"learning_curves.png", "checkpoint.pt"}


class _FirstWriteFails(FileSystemArtifactStore):
    """A store whose first write fails, as a cloud store's transient error does."""

    def __init__(self, base_path: Path) -> None:
        base_path.mkdir()
        super().__init__(str(base_path))
        self.writes = 0

    def write(self, artifact_id: str, content_body: Any) -> None:
        self.writes += 1
        if self.writes == 1:
            raise OSError(errno.EIO, "Input/output error")
        super().write(artifact_id, content_body)


def test_a_picture_the_store_refuses_costs_only_itself(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Before, the first refused picture ended the uploads: the checkpoint was never stored."""
    data = analytic_study(artifacts={"notes": False, "embeddings": False})
    cfg = load_study_config(write_study(data))
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'h.db'}", direction="maximize")
    store = _FirstWriteFails(tmp_path / "store")
    hook = ArtifactHook(cfg, study, store)
    trial = study.ask()
    params = hook.before(trial, {"x": 0.0})
    (Path(params["artifact_dir"]) / "checkpoint.pt").write_bytes(b"weights")
    history = [(1, {"best_score": 0.4}), (2, {"best_score": 0.5})]
    hook.after(trial, params, TrialState.COMPLETE, {"best_score": 0.5}, history)
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.user_attrs["artifact_error"].startswith("learning_curves.png: [Errno 5]")
    assert CHECKPOINT_ATTR in frozen.user_attrs
    assert _names(study, frozen) == {"checkpoint.pt"}
    assert store.writes == 2
    assert not Path(params["artifact_dir"]).exists()


def test_artifacts_disabled_leaves_nothing(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 2}, artifacts={"enabled": False}))
    cfg = load_study_config(path)
    run_study(cfg)
    study = _study(path)
    assert not (path.parent / "artifacts").exists()
    assert all(not _names(study, t) for t in study.trials)
    assert default_hooks(cfg, study) == []


def test_artifact_locations(write_study: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    default = load_study_config(write_study(analytic_study(storage="sqlite:///db/x.db")))
    assert artifacts_location(default) == str(tmp_path / "db" / "artifacts")
    relative = load_study_config(write_study(analytic_study(artifacts={"dir": "runs/art"})))
    assert artifacts_location(relative) == str(tmp_path / "runs" / "art")
    s3_off = {"enabled": False, "dir": "s3://bucket/hpo"}  # validated on any machine
    s3 = load_study_config(write_study(analytic_study(artifacts=s3_off)))
    assert artifacts_location(s3) == "s3://bucket/hpo"
    try:
        import boto3  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="need boto3"):
            open_artifact_store("s3://bucket/hpo")
    with pytest.raises(ConfigError, match="no bucket"):
        open_artifact_store("s3:///prefix")


def test_an_unusable_artifact_store_leaves_no_study(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    # the study was created (attrs, queued start-up trials) before the store was opened
    (tmp_path / "afile").write_text("")
    data = analytic_study(artifacts={"enabled": True, "dir": str(tmp_path / "afile" / "sub")})
    cfg = load_study_config(write_study(data))  # status and best must still read the study
    with pytest.raises(ConfigError, match=r"artifacts\.dir: cannot create"):
        run_study(cfg)
    url = storage_url(cfg)
    assert not (sqlite_path(url) or tmp_path / "none").exists() or not (
        optuna.get_all_study_names(url)
    )


def test_an_unreachable_storage_leaves_no_artifacts_folder(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """The store was made before the storage opened, so a failed run left artifacts/."""
    from hpo.errors import StorageError

    data = analytic_study(
        storage="postgresql+psycopg://postgres@127.0.0.1:1/test",
        artifacts={"enabled": True},
    )
    path = write_study(data)
    with pytest.raises(StorageError):
        run_study(load_study_config(path))
    assert not (path.parent / "artifacts").exists()


def test_a_left_out_artifacts_dir_is_named_as_the_default(tmp_path: Path) -> None:
    from hpo.artifacts import check_artifact_store
    from hpo.config import validate_study_data

    data = analytic_study(storage=f"sqlite:///{tmp_path}/hpo.db", artifacts={"enabled": True})
    cfg = validate_study_data(data)
    (tmp_path / "artifacts").write_text("")  # a file where the default folder goes
    with pytest.raises(ConfigError) as info:
        check_artifact_store(cfg)
    assert info.value.problems == [
        f"artifacts.dir (left out: artifacts/ beside the SQLite file): cannot create "
        f"{tmp_path}/artifacts: {tmp_path}/artifacts is not a folder"
    ]


def test_prefixed_store_round_trip(tmp_path: Path) -> None:
    import io

    (tmp_path / "team" / "study").mkdir(parents=True)
    inner = open_artifact_store(str(tmp_path))
    store = PrefixedArtifactStore(inner, "/team/study/")
    store.write("abc", io.BytesIO(b"payload"))
    assert (tmp_path / "team" / "study" / "abc").read_bytes() == b"payload"
    with store.open_reader("abc") as f:
        assert f.read() == b"payload"
    store.remove("abc")
    assert not (tmp_path / "team" / "study" / "abc").exists()


def test_reused_duplicates_take_no_place_among_the_best_k(
    write_study: Callable[..., Path],
) -> None:
    # a duplicate has its twin's value and no checkpoint: ranked, it pushed the checkpoints
    # of the next best configurations out (3 configurations trained, 2 checkpoints kept)
    data = analytic_study(
        budget={"n_trials": 10},
        sampler={"name": "random", "seed": 0},
        trainer={"name": "analytic", "params": {"epochs": 2, "seed": 7}},
        space={"choice": {"type": "categorical", "choices": ["a", "b", "c"]}},
        pruner={"name": "none"},
        artifacts={"keep_best_k": 3, "plots": False, "notes": False},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    trained = [t for t in study.trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3 and len(study.trials) == 10
    assert set(kept_checkpoints(study)) == {t.number for t in trained}
    assert len(list((path.parent / "artifacts").iterdir())) == 3


def test_a_reused_duplicate_gets_a_note_naming_its_twin(write_study: Callable[..., Path]) -> None:
    # it had none: the dashboard showed an empty note for a COMPLETE trial
    data = analytic_study(
        budget={"n_trials": 3},
        trainer={"name": "analytic", "params": {"epochs": 2, "seed": 7}},
        space={"choice": {"type": "categorical", "choices": ["a"]}},
        pruner={"name": "none"},
        artifacts={"enabled": True, "plots": False},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    study = _study(path)
    for trial in study.trials[1:]:
        assert trial.user_attrs["duplicate_of"] == 0
        note = get_note(optuna.Trial(study, trial._trial_id))
        assert note.startswith(f"## Trial {trial.number}: complete (reused)")
        assert "the same configuration completed as trial 0" in note


def test_note_names_the_commit(tmp_path: Path) -> None:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    try:
        subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not installed")
    (tmp_path / "f.txt").write_text("x")
    subprocess.run([*git, "add", "f.txt"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=tmp_path, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(str(tmp_path)) == head
    outside = tmp_path.parent / f"{tmp_path.name}-nogit"
    outside.mkdir()
    assert git_commit(str(outside)) is None
    params: Mapping[str, Any] = {"x": 0.5, "epochs": 3, "seed": 7, "artifact_dir": "/tmp/a"}
    note = render_note(
        number=3,
        state="COMPLETE",
        params=params,
        sampled={"x": 0.5},
        result={"score": 0.9},
        history=[(1, {"score": 0.5}), (2, {"score": 0.9})],
        user_attrs={"seed": 7, "wall_seconds": 12.25},
        device="cpu",
        commit=head,
    )
    assert f"| code | `{head}` |" in note
    assert "| wall time | 12.2 s |" in note or "| wall time | 12.3 s |" in note
    assert "artifact_dir" not in note
    assert "| score | 0.9 | 0.9 |" in note


def test_an_s3_store_this_machine_cannot_open_is_refused_by_validate_and_run() -> None:
    """Not at every load: status, best and report read a study whose store is elsewhere."""
    import importlib.util

    from hpo.checks import run_problems
    from hpo.config import validate_study_data

    def problems(location: str) -> list[str]:
        try:
            cfg = validate_study_data(analytic_study(artifacts={"enabled": True, "dir": location}))
        except ConfigError as exc:
            return exc.problems
        return run_problems(cfg)

    assert problems("s3:///prefix") == [
        "artifacts.dir: no bucket in 's3:///prefix'; use s3://bucket/prefix"
    ]
    has_boto3 = importlib.util.find_spec("boto3") is not None
    assert problems("s3://bucket/hpo") == (
        []
        if has_boto3
        else ["artifacts.dir: s3:// artifact stores need boto3 (pip install 'contrastive-hpo[s3]')"]
    )


def test_metrics_beyond_zero_to_one_get_a_panel_of_their_own(tmp_path: Path) -> None:
    """Pretrain mode reports rankme (up to the embedding width) beside F1 scores."""
    from hpo.plots import learning_curve_panels, plot_learning_curves

    history = [
        (1, {"train_loss": 2.0, "probe_f1": 0.4, "knn_f1": 0.5, "rankme": 12.0, "lr": 1e-3}),
        (2, {"train_loss": 1.5, "probe_f1": 0.6, "knn_f1": 0.7, "rankme": 30.5, "lr": 5e-4}),
        (3, {"best_rankme": 30.5, "val_acc": float("nan"), "epoch_seconds": 3.0}),
    ]
    panels = learning_curve_panels(history)
    assert panels == {
        "loss": ["train_loss"],
        "metrics": ["probe_f1", "knn_f1", "val_acc"],
        "rankme": ["rankme", "best_rankme"],
        "learning rate": ["lr"],
        "time (s)": ["epoch_seconds"],
    }
    out = plot_learning_curves(history, tmp_path / "curves.png", "pretrain")
    assert out is not None and out.read_bytes().startswith(PNG_MAGIC)
