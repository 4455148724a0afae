"""The shipped deployment files, checked by parsing them (no Docker engine or cluster here).

Each file must be runnable unchanged: every study it names exists, every command line
parses with our CLI, services that listen are bound to 127.0.0.1, and credentials come
only from the environment or a Secret.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml

from hpo import load_study_config, run_study, storage_url
from hpo.cli_run import worker_overrides
from hpo.dashboard import create_server
from tests.conftest import analytic_study

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "deploy" / "kubernetes"
SLURM = ROOT / "deploy" / "slurm" / "hpo-worker.sbatch"

# A URL with a password that is not an interpolation: scheme://user:secret@host
_LITERAL_PASSWORD = re.compile(r"://[^:/@\s]+:(?!\$)[^@\s]+@")


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _assert_no_literal_secrets(node: Any) -> None:
    for text in _strings(node):
        assert not _LITERAL_PASSWORD.search(text), f"literal password in {text!r}"


def _cli_args_are_valid(args: list[str], env: dict[str, str], url: str | None = None) -> None:
    """``hpo worker STUDY [--gpus G] [--workers-per-gpu N] [--set K=V ...]`` loads cleanly,
    on the storage ``url`` (default: ``HPO_STORAGE_URL`` of ``env``)."""
    assert args[0] == "worker"
    study = ROOT / args[1]
    assert study.is_file(), f"{args[1]} does not exist"
    overrides: list[str] = []
    gpus: str | None = None
    per_gpu: int | None = None
    rest = args[2:]
    while rest:
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "--set":
            overrides.append(value)
        elif flag == "--gpus":
            gpus = value
        elif flag == "--workers-per-gpu":
            per_gpu = int(value)
        else:
            raise AssertionError(f"unexpected flag {flag}")
    previous = dict(os.environ)
    os.environ.update(env)
    try:
        cfg = load_study_config(study, [*overrides, *worker_overrides(gpus, per_gpu, None)])
        assert storage_url(cfg) == (env["HPO_STORAGE_URL"] if url is None else url)
    finally:
        os.environ.clear()
        os.environ.update(previous)


# -- docker compose ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _compose_interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` escapes."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        value = env.get(name, "")
        if op == ":?" and not value:
            raise KeyError(f"{name} is required: {arg}")
        if op == ":-" and not value:
            return str(arg)
        return value

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", sub, text)


PASSWORD = "p@ss:w/rd%40#?+="
"""A password with every character that broke the storage URL compose used to build."""


def _service_run(compose: dict[str, Any], name: str) -> tuple[list[str], dict[str, str]]:
    """A service's command line and environment as compose hands them to its container."""
    service = compose["services"][name]
    env = {"POSTGRES_PASSWORD": PASSWORD}
    command = [_compose_interpolate(str(arg), env) for arg in service["command"]]
    environment = {
        key: _compose_interpolate(str(value), env)
        for key, value in service.get("environment", {}).items()
    }
    return command, environment


def _opened_storage(command: list[str], environment: dict[str, str]) -> str:
    """The storage URL ``hpo COMMAND STUDY --set ...`` opens in the container's environment."""
    overrides = [value for flag, value in itertools.pairwise(command) if flag == "--set"]
    previous = dict(os.environ)
    os.environ.update(environment)
    try:
        return storage_url(load_study_config(ROOT / command[1], overrides))
    finally:
        os.environ.clear()
        os.environ.update(previous)


def test_compose_has_the_three_services_and_a_named_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "dashboard", "worker"} <= set(services)
    postgres = services["postgres"]
    assert postgres["image"].split(":")[0] == "postgres", "the official image"
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pgdata" in compose["volumes"]
    assert "healthcheck" in postgres


def test_compose_ports_are_bound_to_localhost_only(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published["postgres"] == ["127.0.0.1:5432:5432"]
    assert published["dashboard"] == ["127.0.0.1:8080:8080"]
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    assert not published["worker"], "a scaled service cannot publish a fixed port"


def test_compose_has_no_literal_secrets(compose: dict[str, Any]) -> None:
    _assert_no_literal_secrets(compose)
    password = compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password.startswith("${POSTGRES_PASSWORD:?"), "required, with no default"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "POSTGRES_PASSWORD:-" not in text, "no default password"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD is required"):
        _compose_interpolate(password, {})


def test_compose_worker_runs_hpo_worker_with_a_gpu_reservation(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker, "container_name prevents --scale"
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    command, environment = _service_run(compose, "worker")
    _cli_args_are_valid(command, environment, _opened_storage(command, environment))
    assert worker["build"]["context"] == "."
    assert (ROOT / worker["build"]["dockerfile"]).is_file()


def test_compose_dashboard_serves_the_workers_storage_and_artifacts(
    compose: dict[str, Any],
) -> None:
    dashboard, worker = compose["services"]["dashboard"], compose["services"]["worker"]
    assert dashboard["depends_on"]["postgres"]["condition"] == "service_healthy"
    command, environment = _service_run(compose, "dashboard")
    assert command[0] == "dashboard" and command[command.index("--port") + 1] == "8080"
    assert _opened_storage(command, environment) == _opened_storage(
        *_service_run(compose, "worker")
    )
    overrides = [value for flag, value in itertools.pairwise(command) if flag == "--set"]
    assert "artifacts.dir=/data/artifacts" in overrides, "where the workers upload"
    assert "artifacts.dir=/data/artifacts" in worker["command"]
    assert dashboard["volumes"] == worker["volumes"] == ["hpo-data:/data"]


@pytest.mark.parametrize("name", ["worker", "worker-cpu", "dashboard"])
def test_compose_storage_url_keeps_any_password(compose: dict[str, Any], name: str) -> None:
    """Compose put POSTGRES_PASSWORD into the URL as it is: "@", "/" or "%" broke it.

    Now hpo expands it, percent-encoded, and it never reaches a command line.
    """
    command, environment = _service_run(compose, name)
    assert PASSWORD not in " ".join(command), "the password stays off the command line"
    url = sqlalchemy.make_url(_opened_storage(command, environment))
    assert (url.drivername, url.username, url.password) == ("postgresql+psycopg", "hpo", PASSWORD)
    assert (url.host, url.port, url.database) == ("postgres", 5432, "hpo")


@pytest.mark.parametrize("name", ["worker", "worker-cpu"])
def test_compose_workers_restart_a_bounded_number_of_times(
    compose: dict[str, Any], name: str
) -> None:
    """`hpo worker` exits 1 for a study without a complete trial: unbounded, it looped."""
    policy = str(compose["services"][name]["restart"])
    match = re.fullmatch(r"on-failure:(\d+)", policy)
    assert match and 1 <= int(match.group(1)) <= 20, policy


def test_compose_dashboard_answers_only_to_loopback_host_names(
    compose: dict[str, Any],
    write_study: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bound to 0.0.0.0 in its container, it checked no Host: a DNS-rebinding page reached
    the API (which deletes studies) through the port published on 127.0.0.1."""
    command, environment = _service_run(compose, "dashboard")
    host = command[command.index("--host") + 1]
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    study = write_study(analytic_study(budget={"n_trials": 1}, artifacts={"enabled": False}))
    cfg = load_study_config(study)
    run_study(cfg)
    with create_server(cfg, host, port=0, warn_exposure=False).start() as server:
        answers = {
            name: _status(server.port, name)
            for name in ("localhost:8080", "127.0.0.1:8080", "evil.example:8080")
        }
    assert answers == {"localhost:8080": 200, "127.0.0.1:8080": 200, "evil.example:8080": 403}


def _status(port: int, host_header: str) -> int:
    """The status of ``GET /api/studies`` on 127.0.0.1:``port`` sent with ``host_header``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", "/api/studies", skip_host=True)
        conn.putheader("Host", host_header)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_env_example_names_every_variable_and_holds_no_secret(compose: dict[str, Any]) -> None:
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    used = {
        name
        for text in _strings(compose)
        for name in re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
    }
    assert used <= set(values), f"not in .env.example: {used - set(values)}"
    assert values["POSTGRES_PASSWORD"] == ""


# -- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_with_cuda_torch() -> None:
    lines = [
        line.strip()
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"FROM python:3\.\d+-slim", base)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    last_user = max(i for i, line in enumerate(lines) if line.startswith("USER "))
    assert all(not line.startswith("RUN pip") for line in lines[last_user:])
    torch_index = next(line for line in lines if line.startswith("ARG TORCH_INDEX_URL="))
    assert re.search(r"/whl/cu\d+$", torch_index), "the worker image needs CUDA-enabled torch"
    assert 'ENTRYPOINT ["hpo"]' in lines
    assert any("PASSWORD" in line for line in lines) is False


# -- Kubernetes -------------------------------------------------------------------------------


def _k8s_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")) if d]


def test_kubernetes_job_runs_one_gpu_worker_per_pod() -> None:
    (job,) = _k8s_docs("job.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["parallelism"] >= 1
    assert "completions" not in spec, "a work-queue Job: done when its workers exit"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["terminationGracePeriodSeconds"] >= 30
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e for e in container["env"]}
    secret = env["HPO_STORAGE_URL"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "hpo-storage", "key": "url"}
    _assert_no_literal_secrets(job)
    args = [
        str(a).replace("$(HPO_ARTIFACTS_DIR)", env["HPO_ARTIFACTS_DIR"]["value"])
        for a in container["args"]
    ]
    assert "storage=${HPO_STORAGE_URL}" in args, "hpo, not Kubernetes, expands the secret"
    _cli_args_are_valid(args, {"HPO_STORAGE_URL": "postgresql+psycopg://u:p@db:5432/hpo"})


def test_kubernetes_storage_proxy_is_cluster_internal() -> None:
    docs = {d["kind"]: d for d in _k8s_docs("storage-proxy.yaml")}
    assert set(docs) == {"Deployment", "Service"}
    assert docs["Service"]["spec"]["type"] == "ClusterIP"
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "storage-proxy"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "hpo-storage"
    _assert_no_literal_secrets(docs)


# -- Slurm ------------------------------------------------------------------------------------


def _sbatch_directives() -> dict[str, str]:
    out = {}
    for line in SLURM.read_text(encoding="utf-8").splitlines():
        if line.startswith("#SBATCH "):
            key, _, value = line[len("#SBATCH ") :].partition("=")
            out[key] = value
    return out


def test_slurm_script_is_a_gpu_job_array() -> None:
    subprocess.run(["bash", "-n", str(SLURM)], check=True)
    directives = _sbatch_directives()
    assert re.fullmatch(r"\d+-\d+(%\d+)?", directives["--array"])
    assert directives["--gres"] == "gpu:1"
    assert directives["--signal"].startswith("TERM@")
    code = [
        line
        for line in SLURM.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert code and not any(_LITERAL_PASSWORD.search(line) for line in code)


def test_slurm_script_starts_hpo_worker_with_the_url_from_the_environment(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "srun-args"
    srun = bin_dir / "srun"
    srun.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    srun.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "HPO_STORAGE_URL": "postgresql+psycopg://u:p@db:5432/hpo",
        "CUDA_VISIBLE_DEVICES": "0",
    }
    result = subprocess.run(
        ["bash", str(SLURM), "studies/quickstart.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    args = record.read_text().splitlines()
    assert args[:2] == ["--kill-on-bad-exit=1", "hpo"]
    assert "storage=${HPO_STORAGE_URL}" in args, "the shell must not expand the password"
    _cli_args_are_valid(args[2:], {"HPO_STORAGE_URL": env["HPO_STORAGE_URL"]})

    missing = subprocess.run(
        ["bash", str(SLURM)],
        cwd=ROOT,
        env={"PATH": env["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "HPO_STORAGE_URL is not set" in missing.stderr
