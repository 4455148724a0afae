"""``hpo run``, ``hpo worker`` and ``hpo storage-proxy``: thin wrappers over :mod:`hpo.workers`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.markup import escape

from hpo.cli_common import SetOption, StudyFile, Verbose, _setup_logging, err, handles_errors, out
from hpo.errors import ConfigError
from hpo.storages import outage_as_error

if TYPE_CHECKING:
    from hpo.config import StudyConfig
    from hpo.dashboard import DashboardServer
    from hpo.runner import RunSummary
    from hpo.workers.gpus import WorkerPlan
    from hpo.workers.supervisor import SupervisorResult

GpusOption = Annotated[
    str | None,
    typer.Option(
        "--gpus",
        help="GPUs to run workers on: all, none, or indices like 0,1,2,3 "
        "(default: workers.gpus in the study file).",
        show_default=False,
    ),
]
PerGpuOption = Annotated[
    int | None,
    typer.Option("--workers-per-gpu", min=1, help="Worker processes per GPU.", show_default=False),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help="CPU worker processes (with --gpus none).",
        show_default=False,
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Continue a study whose search space changed.")
]


def gpus_override(text: str) -> str:
    """``--gpus`` as a ``--set`` override: ``all``, ``none`` or a list of indices."""
    value = text.strip().lower()
    if value in ("all", "none"):
        return f"workers.gpus={value}"
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise ConfigError([f"--gpus: expected all, none or indices like 0,1,2 (got {text!r})"])
    return f"workers.gpus=[{', '.join(parts)}]"


def worker_overrides(gpus: str | None, per_gpu: int | None, workers: int | None) -> list[str]:
    """The worker flags as ``--set`` overrides, so every worker process sees the same config."""
    out_: list[str] = []
    if gpus is not None:
        out_.append(gpus_override(gpus))
    if per_gpu is not None:
        out_.append(f"workers.per_gpu={per_gpu}")
    if workers is not None:
        out_.append(f"workers.n_workers={workers}")
    return out_


def _plan(cfg: StudyConfig) -> WorkerPlan:
    from hpo.workers.gpus import plan_workers

    w = cfg.workers
    try:
        return plan_workers(w.gpus, per_gpu=w.per_gpu, n_workers=w.n_workers)
    except ValueError as exc:
        raise ConfigError([f"workers.gpus: {exc}"]) from None


def _in_process(plan: WorkerPlan) -> bool:
    """One CPU worker runs inside this process; anything else gets a supervisor."""
    return len(plan.slots) == 1 and not plan.uses_gpus


def _print_summary(cfg: StudyConfig, summary: RunSummary, extra: dict[str, object]) -> None:
    from hpo.progress import summary_table

    rows: dict[str, object] = {
        "study": summary.study_name,
        "storage": summary.storage,
        "trials run now": summary.trials_run,
        "complete / pruned / failed": f"{summary.n_complete} / {summary.n_pruned} / {summary.n_failed}",
    }
    if summary.n_retried or summary.n_surplus:
        rows["retried / surplus"] = f"{summary.n_retried} / {summary.n_surplus}"
    rows.update(extra)
    rows["elapsed"] = f"{summary.elapsed_seconds:.1f}s"
    if summary.best_number is not None:
        rows["best trial"] = summary.best_number
        rows["best " + ", ".join(cfg.objective.names)] = ", ".join(
            f"{v:.6g}" for v in summary.best_values or []
        )
        for key, value in summary.best_params.items():
            rows[f"  {key}"] = value
    out.print(summary_table("best trial", rows))


def _supervise(
    cfg: StudyConfig,
    study: Path,
    plan: WorkerPlan,
    overrides: list[str],
    force: bool,
    verbose: int,
) -> SupervisorResult:
    from hpo.workers.supervisor import Supervisor

    return Supervisor(
        cfg, study, plan, overrides=overrides, force=force, console=err, verbose=verbose
    ).run()


def _finish_supervised(
    cfg: StudyConfig, plan: WorkerPlan, result: SupervisorResult, *, show_best: bool = True
) -> None:
    extra: dict[str, object] = {
        "workers": ", ".join(sorted({s.label for s in plan.slots}))
        + f" ({len(plan.slots)} processes)",
    }
    if result.restarts:
        extra["worker restarts"] = result.restarts
    if result.recovered:
        extra["recovered trials"] = ", ".join(f"#{n}" for n in result.recovered)
    if show_best:
        _print_summary(cfg, result.summary, extra)
    for note in result.notes:
        err.print(f"note: {note}")
    if result.interrupted:
        err.print("interrupted: running trials were recorded and queued again")
        raise typer.Exit(130)
    if result.unfinished:
        err.print(
            "[red]the study is unfinished: its workers stopped before the budget[/red]",
            markup=True,
        )
        raise typer.Exit(1)
    if not result.summary.any_complete:
        _no_trial_completed(result.summary)


def _no_trial_completed(summary: RunSummary) -> NoReturn:
    """Exit 1, saying so; and why nothing ran when failed trials had used up the budget."""
    err.print("[red]no trial completed[/red]", markup=True)
    if summary.trials_run == 0 and summary.n_failed:
        err.print(
            f"hint: earlier runs' {summary.n_failed} failed trials used up budget.n_trials "
            "(hpo status lists their fail_reason); after fixing the cause, run again with a "
            "larger budget.n_trials (--set budget.n_trials=N) or under a new study name",
        )
    raise typer.Exit(1)


@handles_errors
def run(
    study: StudyFile,
    set_: SetOption = None,
    force: ForceOption = False,
    gpus: GpusOption = None,
    workers_per_gpu: PerGpuOption = None,
    workers: WorkersOption = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Serve optuna-dashboard beside the run.")
    ] = False,
    dashboard_port: Annotated[
        int | None,
        typer.Option(
            "--dashboard-port",
            min=0,
            max=65535,
            help="Dashboard port, 8080 unless given (0: any free port); implies --dashboard.",
            show_default=False,
        ),
    ] = None,
    dashboard_host: Annotated[
        str | None,
        typer.Option(
            "--dashboard-host",
            help="Dashboard address, 127.0.0.1 unless given; implies --dashboard. "
            "The dashboard has no login: keep 127.0.0.1.",
            show_default=False,
        ),
    ] = None,
    dashboard_allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--dashboard-allowed-host",
            help="A Host name the dashboard answers to besides loopback ones, even on "
            "0.0.0.0 (repeatable, or a comma list); implies --dashboard.",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = 0,
) -> None:
    """Create or resume the study and run trials until the budget is used.

    Several GPUs or workers: one worker process each, under a supervisor that restarts them.
    With a ``confirm`` section, the finalists are then trained again (``hpo confirm``).
    Any ``--dashboard-*`` option alone asks for the dashboard too.
    """
    from hpo.config import load_study_config
    from hpo.duplicates import fixed_seed_rerun_note

    _setup_logging(verbose)
    overrides = [*(set_ or []), *worker_overrides(gpus, workers_per_gpu, workers)]
    cfg = load_study_config(study, overrides)
    repeat_note = fixed_seed_rerun_note(cfg)
    if repeat_note:
        err.print(f"note: {repeat_note}")
    handle = None
    asked = (dashboard_port, dashboard_host, dashboard_allowed_host)
    if dashboard or any(option is not None for option in asked):
        from hpo.dashboard import DEFAULT_HOST, DEFAULT_PORT, parse_allowed_hosts

        allowed = (
            None  # HPO_DASHBOARD_ALLOWED_HOSTS, when set
            if dashboard_allowed_host is None
            else parse_allowed_hosts(dashboard_allowed_host, option="--dashboard-allowed-host")
        )
        handle = _start_dashboard(
            cfg,
            DEFAULT_HOST if dashboard_host is None else dashboard_host,
            DEFAULT_PORT if dashboard_port is None else dashboard_port,
            allowed,
        )
    try:
        run_loaded(cfg, study, overrides, force=force, verbose=verbose)
        if cfg.confirm is not None:
            from hpo.cli_confirm import run_confirmation

            run_confirmation(cfg, study, overrides, force=force, verbose=verbose)
    finally:
        if handle is not None:
            handle.stop()


def _start_dashboard(
    cfg: StudyConfig, host: str, port: int, allowed_hosts: frozenset[str] | None = None
) -> DashboardServer:
    """Serve the dashboard beside the run, once the run's own checks have passed.

    The dashboard creates the storage and the artifact folder the run would create; a run
    its checks refuse must leave neither behind, and say what it says without a dashboard.
    A port in use leaves nothing behind either: the dashboard binds it before it opens them.
    """
    from hpo.checks import run_problems
    from hpo.cli_reports import warn_exposed
    from hpo.dashboard import serve_in_background

    _plan(cfg)  # a --gpus the machine lacks is refused first, as the run refuses it
    problems = run_problems(cfg)  # what the run checks before it creates its study
    if problems:
        raise ConfigError(problems)
    handle = serve_in_background(
        cfg, host=host, port=port, warn_exposure=False, allowed_hosts=allowed_hosts
    )
    warn_exposed(host)
    err.print(f"dashboard: {handle.url}", soft_wrap=True)
    return handle


def run_loaded(
    cfg: StudyConfig,
    study: Path,
    overrides: list[str],
    *,
    force: bool = False,
    verbose: int = 0,
    show_best: bool = True,
) -> None:
    """Run ``cfg`` (the study file with ``overrides``) in this process or under a supervisor.

    Exits 1 when no trial completed or the study is left unfinished; ``show_best`` prints
    the study's best trial after.

    In this process the run is a :func:`~hpo.workers.worker.run_worker`: once the budget
    is claimed it waits for the trials still running elsewhere, and re-runs those whose
    process died meanwhile (a second ``hpo run`` on the study ``kill -9``-ed in another
    shell). A plain ``run_study`` exited 0 there with that trial RUNNING, one short.
    """
    from hpo.progress import ProgressDisplay
    from hpo.workers.worker import run_worker

    plan = _plan(cfg)
    for note in plan.notes:
        err.print(f"note: {note}")
    if not _in_process(plan):
        result = _supervise(cfg, study, plan, overrides, force, verbose)
        _finish_supervised(cfg, plan, result, show_best=show_best)
        return
    timeout = cfg.budget.timeout
    deadline_at = time.time() + timeout if timeout else None
    with outage_as_error(), ProgressDisplay(cfg, console=err) as progress:
        summary = run_worker(
            cfg,
            force=force,
            callbacks=[progress],
            deadline_at=deadline_at,
            reseed_sampler=False,  # a study this run creates stays reproducible from its seed
            requeue_lost=True,  # as the supervisor does before it starts its workers
        )
    if show_best:
        _print_summary(cfg, summary, {})
    unfinished = _unfinished(cfg, summary, deadline_at)
    if unfinished is not None:
        err.print(f"note: {unfinished}")
        err.print(
            "[red]the study is unfinished: this run stopped before the budget[/red]", markup=True
        )
        raise typer.Exit(1)
    if not summary.any_complete:
        _no_trial_completed(summary)


def _unfinished(cfg: StudyConfig, summary: RunSummary, deadline_at: float | None) -> str | None:
    """Why a run that ended before its budget and its deadline left the study unfinished.

    :func:`~hpo.workers.worker.run_worker` returns early only when nothing is left that
    it could run or wait for; exit 0 then would hide the missing trials, as it used to.
    """
    n_trials = cfg.budget.n_trials
    finished = summary.n_complete + summary.n_pruned + summary.n_failed
    if n_trials is None or finished >= n_trials or summary.sampler_stopped:
        return None
    if deadline_at is not None and time.time() >= deadline_at:
        return None  # budget.timeout ended the run: a finished run, as before
    return (
        f"study has {finished} of {n_trials} trials finished ({summary.n_running} running); "
        "run again to continue"
    )


@handles_errors
def worker(
    study: StudyFile,
    set_: SetOption = None,
    force: ForceOption = False,
    gpus: GpusOption = None,
    workers_per_gpu: PerGpuOption = None,
    workers: WorkersOption = None,
    verbose: Verbose = 0,
) -> None:
    """Join the study as one more worker (e.g. on another machine sharing its storage).

    Creates the study if needed and runs trials until all workers together finish the budget.
    """
    from hpo.config import load_study_config
    from hpo.progress import ProgressDisplay
    from hpo.workers.worker import run_worker

    _setup_logging(verbose)
    overrides = [*(set_ or []), *worker_overrides(gpus, workers_per_gpu, workers)]
    cfg = load_study_config(study, overrides)
    plan = _plan(cfg)
    for note in plan.notes:
        err.print(f"note: {note}")
    if len(plan.slots) > 1:
        _finish_supervised(cfg, plan, _supervise(cfg, study, plan, overrides, force, verbose))
        return
    devices = plan.slots[0].cuda_visible_devices
    if devices is not None:  # before anything initialises CUDA here; "" hides every GPU
        os.environ["CUDA_VISIBLE_DEVICES"] = devices
    with outage_as_error(), ProgressDisplay(cfg, console=err) as progress:
        summary = run_worker(cfg, force=force, callbacks=[progress])
    _print_summary(cfg, summary, {})
    if not summary.any_complete:  # as with several processes: a job whose study failed fails
        _no_trial_completed(summary)


@handles_errors
def storage_proxy(
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            envvar="HPO_STORAGE_URL",
            help="RDB storage URL to serve, e.g. postgresql+psycopg://hpo:${PGPASSWORD}@db/hpo "
            "(or set HPO_STORAGE_URL).",
            show_default=False,
        ),
    ],
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: all interfaces).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 13000,
    verbose: Verbose = 0,
) -> None:
    """Serve a storage through Optuna's gRPC proxy; workers then use storage: grpc://HOST:PORT."""
    from hpo.dashboard import is_loopback
    from hpo.workers.proxy import serve_storage_proxy

    _setup_logging(verbose)

    def ready(url: str) -> None:
        err.print(f"storage proxy listening on {url}")
        if not is_loopback(host):  # gRPC without TLS or login: the database, to anyone
            err.print(
                f"[yellow]warning:[/yellow] serving the storage on {escape(host)} without "
                "authentication or TLS; anyone who can reach this port can read and change "
                "every study in it (keep it on a private network, see docs/workers.md)",
                markup=True,
            )

    listening = False

    def ready_then_note(url: str) -> None:
        nonlocal listening
        listening = True
        ready(url)

    try:
        serve_storage_proxy(storage, host=host, port=port, on_ready=ready_then_note)
    finally:
        if listening:  # Ctrl-C too (then "interrupted", exit 130); not a proxy that never ran
            err.print("storage proxy stopped")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``hpo`` app."""
    app.command()(run)
    app.command()(worker)
    app.command("storage-proxy")(storage_proxy)
