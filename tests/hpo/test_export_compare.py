"""``hpo export`` round-trips into ``hpo train``; ``hpo compare`` adds up what storage knows."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from hpo import load_study_config, run_study
from hpo.cli import app
from hpo.compare import compare_studies, comparison_rows, comparison_warnings
from hpo.errors import ConfigError
from hpo.export import export_best, export_text
from hpo.results import best_config, load_existing_study
from hpo.standalone import load_trainer_config, run_standalone
from tests.conftest import analytic_study
from tests.hpo.test_report import study_with_a_retried_trial

if TYPE_CHECKING:
    from typer.testing import Result


def _hpo(*args: str) -> Result:
    """The real ``hpo`` command, invoked in-process (saves an interpreter start per call)."""
    return CliRunner().invoke(app, list(args))


def test_exported_best_trial_retrains_to_the_same_score(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(
        analytic_study(
            budget={"n_trials": 5},
            trainer={"name": "analytic", "params": {"epochs": 4}},
            artifacts={"enabled": False},
        )
    )
    cfg = load_study_config(path)
    run_study(cfg)
    best = load_existing_study(cfg).best_trial
    out = export_best(cfg, tmp_path / "out" / "best.yaml")
    text = out.read_text()
    assert text.startswith(f"# Best trial {best.number} of study 'analytic'")
    data = yaml.safe_load(text)
    assert data["trainer"] == "analytic"
    assert data["params"] == {"epochs": 4, **best.params, "seed": best.user_attrs["seed"]}
    name, params = load_trainer_config(out)
    result = run_standalone(name, params)
    assert result["best_score"] == pytest.approx(best.values[0])


def test_export_cli_and_train_cli(write_study: Callable[..., Path], tmp_path: Path) -> None:
    path = write_study(
        analytic_study(
            budget={"n_trials": 2},
            trainer={"name": "analytic", "params": {"epochs": 2}},
            artifacts={"enabled": False},
        )
    )
    run_study(load_study_config(path))
    exported = _hpo("export", str(path), "-o", str(tmp_path / "best.yaml"))
    assert exported.exit_code == 0, exported.stderr
    assert "hpo train" in exported.stdout
    trained = _hpo("train", str(tmp_path / "best.yaml"))
    assert trained.exit_code == 0, trained.stderr
    assert "best_score" in yaml.safe_load(trained.stdout)["result"]
    as_json = _hpo("compare", str(path), str(path), "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    assert [s["study"] for s in json.loads(as_json.stdout)] == ["analytic", "analytic"]


def test_outputs_never_replace_the_study_its_storage_or_a_database(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """``-o hpo.db`` used to overwrite the study's SQLite file with YAML, exit 0."""
    path = write_study(analytic_study(budget={"n_trials": 1}))
    run_study(load_study_config(path))
    db = path.parent / "hpo.db"
    other = tmp_path / "other.db"
    other.write_bytes(db.read_bytes())
    kept = {
        db: "this study's storage",
        path: "the study file",
        other: "a SQLite database",
    }
    before = {file: file.read_bytes() for file in kept}
    for command in ("export", "report"):
        for file, what in kept.items():
            result = _hpo(command, str(path), "-o", str(file))
            assert result.exit_code == 2, result.stdout
            assert result.stderr.strip() == (
                f"error: -o/--output: {file} is {what}; it is not replaced, "
                "choose another file name"
            )
    assert {file: file.read_bytes() for file in kept} == before
    from hpo.report import write_report

    cfg = load_study_config(path)
    for file, what in kept.items():  # the Python API refuses as the CLI does
        for write in (export_best, write_report):
            with pytest.raises(ConfigError, match=f"path: {file} is {what}; it is not replaced"):
                write(cfg, file)
    page = _hpo("report", str(path), "-o", "-")  # stdout, as export's '-' (was a file named -)
    assert page.exit_code == 0 and page.stdout.startswith("<!DOCTYPE html>")
    assert not (Path.cwd() / "-").exists()


def test_an_export_retrains_below_the_trials_folder(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """The trial's save_dir at its pinned seed is the trial's own folder: with ``resume: true``
    a retrain there trained nothing, and without it overwrote the trial's encoder."""
    runs = tmp_path / "runs"
    params = {
        "dataset": "synthetic_har",
        "synthetic_n_train": 60,
        "synthetic_n_test": 12,
        "model": "conv",
        "dim": 8,
        "epochs": 1,
        "device": "cpu",
        "save_dir": f"{runs}/{{seed}}",
        "resume": True,
    }
    data = analytic_study(
        budget={"n_trials": 1},
        trainer={"name": "contrastive", "params": params},
        objective={"metric": "best_val_f1"},
        pruner={"name": "none"},
        artifacts={"enabled": False},
        space={"lr": {"type": "float", "low": 1e-3, "high": 2e-3}},
    )
    path = write_study(data)
    run_study(load_study_config(path))
    best = export_best(load_study_config(path), tmp_path / "best.yaml")
    text = best.read_text()
    (trial_dir,) = runs.iterdir()
    assert "hpo train THIS_FILE --evaluate-test" in text
    assert (
        f"# save_dir: the trial wrote to '{runs}/{{seed}}'; a retrain writes to "
        f"'{runs}/{{seed}}/retrain', so the trial's files stay as they are." in text
    )
    assert f"--set params.save_dir='{runs}/{{seed}}' scores the trial's own run" in text
    before = {f.name: f.read_bytes() for f in trial_dir.iterdir() if f.is_file()}
    trained = _hpo("train", str(best))
    assert trained.exit_code == 0, trained.stderr
    assert (trial_dir / "retrain" / "encoder.pt").is_file()
    assert {f.name: f.read_bytes() for f in trial_dir.iterdir() if f.is_file()} == before


def test_an_export_suggests_evaluate_test_only_to_trainers_that_take_it(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    run_study(load_study_config(path))
    exported = _hpo("export", str(path), "-o", str(tmp_path / "best.yaml"))
    assert exported.exit_code == 0, exported.stderr
    assert f"retrain with: hpo train {tmp_path / 'best.yaml'}\n" in exported.stdout
    assert "--evaluate-test" not in (tmp_path / "best.yaml").read_text()
    trained = _hpo("train", str(tmp_path / "best.yaml"))
    assert trained.exit_code == 0, trained.stderr


def test_export_before_any_completed_trial_is_an_error(write_study: Callable[..., Path]) -> None:
    path = write_study(
        analytic_study(
            budget={"n_trials": 1},
            trainer={"name": "analytic", "params": {"epochs": 2, "fail": "raise"}},
            artifacts={"enabled": False},
        )
    )
    cfg = load_study_config(path)
    run_study(cfg)
    with pytest.raises(ConfigError, match="has no completed trial yet"):
        export_best(cfg, path.parent / "best.yaml")


def test_export_output_that_cannot_be_written_is_one_error_line(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(
        analytic_study(
            budget={"n_trials": 1},
            trainer={"name": "analytic", "params": {"epochs": 2}},
            artifacts={"enabled": False},
        )
    )
    run_study(load_study_config(path))
    cases = [(tmp_path, f"error: -o/--output: {tmp_path} is a folder; give a file name in it")]
    if Path("/proc/self").is_dir():  # Linux: a folder where no file can be created
        cases.append((Path("/proc/best.yaml"), "error: -o/--output: cannot write /proc/best.yaml"))
    before = sorted(tmp_path.rglob("*"))
    for output, expected in cases:
        result = _hpo("export", str(path), "-o", str(output))
        assert result.exit_code == 2, (output, result.stderr, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), lines
    assert sorted(tmp_path.rglob("*")) == before, "nothing written"
    made = _hpo("export", str(path), "-o", str(tmp_path / "new" / "best.yaml"))
    assert made.exit_code == 0, made.stderr
    assert (tmp_path / "new" / "best.yaml").is_file(), "a missing folder is created"


def test_export_and_compare_of_a_missing_database_create_nothing(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    a = write_study(analytic_study(name="never"), "a.yaml")
    b = write_study(analytic_study(name="never"), "b.yaml")
    for args in (
        ["export", str(a), "-o", str(tmp_path / "best.yaml")],
        ["compare", str(a), str(b)],
    ):
        result = _hpo(*args)
        assert result.exit_code == 2, (args, result.stderr, result.exception)
        assert result.stderr.startswith("error: study 'never' not found in sqlite:///"), args
    assert sorted(tmp_path.iterdir()) == [a, b], "no hpo.db, no best.yaml"


def test_compare_counts_trials_time_and_epochs(write_study: Callable[..., Path]) -> None:
    common = {
        "trainer": {"name": "analytic", "params": {"epochs": 3}},
        "artifacts": {"enabled": False},
    }
    a = write_study(analytic_study(name="a", budget={"n_trials": 6}, **common), "a.yaml")
    b = write_study(
        analytic_study(
            name="b", budget={"n_trials": 3}, sampler={"name": "random", "seed": 1}, **common
        ),
        "b.yaml",
    )
    cfgs = [load_study_config(a), load_study_config(b)]
    for cfg in cfgs:
        run_study(cfg)
    summaries = compare_studies(cfgs)
    for cfg, summary in zip(cfgs, summaries, strict=True):
        study = load_existing_study(cfg)
        trials = study.trials
        best = study.best_trial
        assert summary.study == cfg.name
        assert summary.best_value == pytest.approx(best.values[0])
        assert summary.best_trial == best.number
        assert summary.trials_to_best == best.number + 1
        assert summary.wall_seconds == pytest.approx(
            sum(t.user_attrs["wall_seconds"] for t in trials), abs=1e-3
        )
        assert summary.epochs == sum(len(t.intermediate_values) for t in trials)
        assert summary.epochs_to_best == sum(
            len(t.intermediate_values) for t in trials if t.number <= best.number
        )
        assert summary.counts["complete"] == sum(
            1 for t in trials if t.state == TrialState.COMPLETE
        )
    assert comparison_warnings(summaries) == []
    rows = dict(comparison_rows(summaries))
    assert rows["best trial"] == [str(s.best_trial) for s in summaries]

    assert [json.loads(json.dumps(s.as_dict()))["study"] for s in summaries] == ["a", "b"]
    table = _hpo("compare", str(a), str(b))
    assert table.exit_code == 0, table.stderr
    assert "trials to reach best" in table.stdout and "epochs reported" in table.stdout


def test_compare_warns_when_objectives_differ(write_study: Callable[..., Path]) -> None:
    common = {
        "budget": {"n_trials": 2},
        "trainer": {"name": "analytic", "params": {"epochs": 2}},
        "artifacts": {"enabled": False},
    }
    a = write_study(analytic_study(name="a", **common), "a.yaml")
    b = write_study(
        analytic_study(name="b", objective={"metric": "loss", "direction": "minimize"}, **common),
        "b.yaml",
    )
    cfgs = [load_study_config(a), load_study_config(b)]
    for cfg in cfgs:
        run_study(cfg)
    (warning,) = comparison_warnings(compare_studies(cfgs))
    assert "a: maximize best_score; b: minimize loss" in warning


def test_read_commands_refuse_a_file_whose_objective_is_not_the_study_s(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    """Its metric name and direction would label and rank the stored values wrongly."""
    common = {"budget": {"n_trials": 2}, "trainer": {"name": "analytic", "params": {"epochs": 2}}}
    ran = write_study(analytic_study(**common, artifacts={"enabled": False}), "ran.yaml")
    run_study(load_study_config(ran))
    other = analytic_study(
        **common,
        artifacts={"enabled": False},
        objective={"metric": "loss", "direction": "minimize"},
    )
    changed = str(write_study(other, "changed.yaml"))
    out = str(tmp_path / "out.html")
    for args in (
        ["status", changed],
        ["best", changed],
        ["export", changed, "-o", str(tmp_path / "best.yaml")],
        ["report", changed, "-o", out],
        ["compare", str(ran), changed],
        ["confirm", changed],
    ):
        result = _hpo(*args)
        assert result.exit_code == 2, (args, result.stdout)
        (line,) = result.stderr.splitlines()
        assert "exists with objective" in line and "use the file the study was run with" in line
    assert not (tmp_path / "best.yaml").exists() and not Path(out).exists()
    assert _hpo("best", str(ran)).exit_code == 0


def test_compare_needs_two_studies(write_study: Callable[..., Path]) -> None:
    result = _hpo("compare", str(write_study(analytic_study())))
    assert result.exit_code == 2
    assert "at least two study files" in result.stderr


def test_compare_names_the_file_of_each_problem(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nobjective: 3\nbudget: {n_trials: 1}\n")
    result = _hpo(
        "compare", str(write_study(analytic_study())), str(bad), str(tmp_path / "no.yaml")
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {bad}: objective: Input should be a valid dictionary or instance of "
        "ObjectiveConfig (got 3)",
        f"error: {tmp_path / 'no.yaml'}: file not found",
    ]


def test_compare_names_every_study_it_cannot_find(tmp_path: Path) -> None:
    """Before, only the first; the user fixed one, ran again and met the next."""
    paths = []
    for name in ("d1", "d2"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "s.yaml"
        path.write_text(yaml.safe_dump(analytic_study(name), sort_keys=False))
        paths.append(str(path))
    result = _hpo("compare", *paths)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: study '{name}' not found in sqlite:///{tmp_path / name / 'hpo.db'}; run it first"
        for name in ("d1", "d2")
    ]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_compare_counts_a_retried_trial_as_retried_not_failed(tmp_path: Path) -> None:
    """As ``hpo status`` does: the trial a retry replaced is no failure."""
    path = study_with_a_retried_trial(tmp_path)
    (summary, _) = compare_studies([load_study_config(path)] * 2)
    assert summary.counts == {
        "complete": 3,
        "pruned": 0,
        "fail": 0,
        "running": 0,
        "retried or surplus": 1,
    }
    rows = dict(comparison_rows([summary]))
    assert rows["trials failed"] == ["0"] and rows["trials retried or surplus"] == ["1"]
    as_json = _hpo("compare", str(path), str(path), "--format", "json")
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout)[0]["counts"] == summary.counts


def phase_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Reports text and non-finite numbers beside its metrics, as some trainers do."""
    if reporter is not None:
        reporter.report(1, {"phase": "warmup", "loss": 0.123456, "ratio": math.nan})
        reporter.report(2, {"phase": "[b]main", "loss": math.inf, "done": True, "steps": 7})
    return {"best_score": float(params["x"])}


def test_train_echoes_non_numeric_metrics_as_text(tmp_path: Path) -> None:
    config = tmp_path / "phase.yaml"
    config.write_text(
        "trainer: tests.hpo.test_export_compare:phase_trainer\nparams: {x: 0.5}\n",
        encoding="utf-8",
    )
    result = _hpo("train", str(config))
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert yaml.safe_load(result.stdout) == {"result": {"best_score": 0.5}}
    assert "epoch 1: phase=warmup  loss=0.1235  ratio=nan" in result.stderr
    assert "epoch 2: phase=[b]main  loss=inf  done=True  steps=7" in result.stderr


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_new(tmp_path: Path) -> None:
    """A full disk mid-write (here a file-size limit) must not truncate what was there."""
    import subprocess
    import sys

    old = tmp_path / "report.html"
    old.write_text("OLD")
    deep = tmp_path / "d1" / "d2" / "new.html"
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from hpo.errors import ConfigError\n"
        "from hpo.output_files import write_output_file\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))\n"
        "for target in sys.argv[1:]:\n"
        "    try:\n"
        "        write_output_file(Path(target), 'x' * 5000, '-o/--output')\n"
        "    except ConfigError as exc:\n"
        "        print(exc)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(old), str(deep)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("-o/--output: cannot write") == 2
    assert old.read_text() == "OLD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_every_command_names_the_same_best_trial_of_a_multi_objective_study(
    write_study: Callable[..., Path],
) -> None:
    """The Pareto front ranked by the first objective: Optuna's own order (by number) had
    ``hpo best`` name trial 0 and the report trial 1."""
    import optuna
    from optuna.distributions import FloatDistribution

    from hpo.report import build_report
    from hpo.runner import open_study, summarize
    from hpo.storages import storage_url

    data = analytic_study(
        objective={"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
        sampler={"name": "random"},  # no start-up design queued: the trials below are 0..3
    )
    cfg = load_study_config(write_study(data))
    open_study(cfg)
    study = optuna.load_study(study_name=cfg.name, storage=storage_url(cfg))
    # (score, loss): 0, 2 and 4 are on the front; 2 scores best; 1 ties it but is dominated
    for values in ([0.5, 0.1], [0.9, 0.5], [0.9, 0.3], [0.8, 0.4], [0.6, 0.2]):
        study.add_trial(
            optuna.trial.create_trial(
                values=values, params={"x": 0.0}, distributions={"x": FloatDistribution(-2, 2)}
            )
        )
    best = best_config(cfg)
    assert best["trial"] == 2 and best["pareto_front"] == [2, 4, 0]
    assert summarize(study, cfg, 0, 0.0).best_number == 2
    assert compare_studies([cfg, cfg])[0].best_trial == 2
    assert export_text(cfg).startswith("# Best trial 2 of study 'analytic'")
    assert "2 (0.9, 0.3)" in build_report(cfg)


def test_an_output_through_a_symlink_replaces_its_target_and_keeps_the_link(
    tmp_path: Path,
) -> None:
    from hpo.output_files import write_output_file

    target = tmp_path / "reports" / "latest.html"
    target.parent.mkdir()
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "report.html"
    link.symlink_to(target)
    write_output_file(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o640
    twin = tmp_path / "twin.html"
    twin.hardlink_to(target)  # another name of the same file: written in place
    write_output_file(target, "newer")
    assert twin.read_text() == "newer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["latest.html"]


def test_compare_takes_set_for_every_file_and_names_same_named_files_by_path(
    tmp_path: Path,
) -> None:
    # docker-compose's studies get their storage from --set storage=...${POSTGRES_PASSWORD}...
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    paths = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "study.yaml"
        data = analytic_study(name=name, budget={"n_trials": 2}, storage=url)
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        run_study(load_study_config(path))
        del data["storage"]
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        paths.append(path)
    result = _hpo("compare", *map(str, paths), "--set", f"storage={url}", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert [s["study"] for s in json.loads(result.stdout)] == ["one", "two"]
    table = _hpo("compare", *map(str, paths), "--set", f"storage={url}")
    assert table.exit_code == 0, table.stderr
    assert "(one/study.yaml)" in table.stdout and "(two/study.yaml)" in table.stdout
    assert "…" not in table.stdout  # the storage URL is folded, not cut
