"""The Dockerfile and compose files, tested as far as a machine without Docker allows.

The image's entry command is run as a plain process with the image's environment; every
DOVES_* variable the compose files set is checked to be one the command of its service
reads; workers keep running and are restarted; the dashboard is published on the host's
loopback only; and each healthcheck is run against the real processes it checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "martian_doves" / "examples"


def _dockerfile() -> tuple[list[str], dict[str, str]]:
    """(entrypoint + cmd, environment) declared by the Dockerfile."""
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n\s*", " ", text)  # join continuation lines
    entrypoint = json.loads(re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.*)$", text, re.M):
        for key, value in re.findall(r"(\w+)=(\S+)", line):
            env[key] = value
    return entrypoint + cmd, env


def test_image_entry_command_processes_a_volume(tmp_path: Path) -> None:
    """`doves run` with the image's environment processes the states on the volume and exits 0."""
    command, image_env = _dockerfile()
    assert command[0] == "doves"
    volume = tmp_path / "states"
    volume.mkdir()
    for example in EXAMPLES.glob("*.state"):
        doc = json.loads(example.read_text())
        doc["payload"]["tick_seconds"] = 0
        (volume / example.name).write_text(json.dumps(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
    env.update(image_env)
    env["DOVES_STORE"] = str(volume)  # the image mounts the volume at its DOVES_STORE
    env["DOVES_SCAN_SECONDS"] = "0.2"
    result = subprocess.run([sys.executable, "-m", "martian_doves", *command[1:], "--no-progress"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    done = sorted(p.name for p in (volume / "done").iterdir())
    assert "countdown.state-4" in done and "slowcountdown.state-4" in done and len(done) == 19
    assert not list((volume / "in_progress").iterdir())


def test_image_copies_every_file_the_package_build_reads() -> None:
    """The image installs from what it copies: pyproject.toml, its readme and its license files."""
    copied: set[str] = set()
    for sources in re.findall(r"^COPY (.*) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        copied.update(sources.split())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", "martian_doves", project["readme"], *project["license-files"]}
    assert needed <= copied
    assert all((ROOT / name).exists() for name in needed)


COMPOSE_FILES = ["compose.yaml", "compose.postgres.yaml"]


def _services(compose: str) -> dict[str, dict[str, Any]]:
    """The services of a compose file that run this project's image (``doves`` commands)."""
    document = yaml.safe_load((ROOT / compose).read_text())
    return {name: service for name, service in document["services"].items()
            if service.get("image") == "martian-doves"}


def _command(service: dict[str, Any]) -> str:
    """The ``doves`` command a service runs: its own, or the image's."""
    return str((service.get("command") or _dockerfile()[0][1:])[0])


def _help(command: str) -> str:
    return subprocess.run([sys.executable, "-m", "martian_doves", command, "--help"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_compose_files_use_only_variables_the_cli_reads(compose: str) -> None:
    """Every DOVES_* a service sets is documented in the --help of the command it runs; scaling is possible."""
    services = _services(compose)
    assert {"worker", "dashboard"} <= set(services)
    for name, service in services.items():
        env, help_text = service["environment"], _help(_command(service))
        assert "DOVES_STORE" in env
        for key in env:
            assert key == "DOVES_STORE" or key in help_text, \
                f"{compose}: {name} sets {key}, which doves {_command(service)} does not read"
        assert "container_name" not in service, "a fixed container name breaks --scale"


def test_compose_mounts_the_volume_where_the_store_is() -> None:
    for name, service in _services("compose.yaml").items():
        assert f"states:{service['environment']['DOVES_STORE']}" in service["volumes"], name


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_compose_workers_keep_running_are_restarted_and_serve_metrics(compose: str) -> None:
    worker = _services(compose)["worker"]
    env = worker["environment"]
    assert _command(worker) == "run" and env["DOVES_WATCH"] in ("1", "true")
    assert worker["restart"] in ("always", "unless-stopped")
    port = env["DOVES_METRICS_PORT"]
    assert port in [str(p) for p in worker["expose"]]
    assert f"http://127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert worker["stop_grace_period"]


@pytest.mark.parametrize("compose", COMPOSE_FILES)
def test_compose_dashboard_is_published_on_the_hosts_loopback_only(compose: str) -> None:
    dashboard = _services(compose)["dashboard"]
    env = dashboard["environment"]
    assert _command(dashboard) == "dashboard" and dashboard["restart"] in ("always", "unless-stopped")
    port = env["DOVES_DASHBOARD_PORT"]
    assert env["DOVES_DASHBOARD_HOST"] == "0.0.0.0"  # inside its container; the host sees it on 127.0.0.1 only
    assert dashboard["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(dashboard["healthcheck"]["test"])
    assert dashboard["depends_on"]["worker"]["condition"] == "service_healthy"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _healthy(service: dict[str, Any], port: str, real_port: int) -> bool:
    """Run the service's healthcheck (``CMD`` form, ``python`` being this interpreter) against ``real_port``."""
    kind, program, *args = service["healthcheck"]["test"]
    assert kind == "CMD" and program == "python"
    probe = [sys.executable, *(arg.replace(f":{port}/", f":{real_port}/") for arg in args)]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def test_the_healthchecks_pass_against_the_processes_they_check(tmp_path: Path) -> None:
    """Each service's healthcheck, run against a real `doves run --watch` and `doves dashboard` started
    with that service's environment (ports moved to free ones)."""
    services = _services("compose.yaml")
    store = tmp_path / "states"
    store.mkdir()
    started: list[subprocess.Popen[bytes]] = []
    try:
        # In the order the compose file starts them: the dashboard once the worker is healthy.
        for name, variable in (("worker", "DOVES_METRICS_PORT"), ("dashboard", "DOVES_DASHBOARD_PORT")):
            env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
            env.update({k: str(v) for k, v in services[name]["environment"].items() if "${" not in str(v)})
            port = _free_port()
            env.update({"DOVES_STORE": str(store), variable: str(port), "DOVES_DASHBOARD_HOST": "127.0.0.1"})
            started.append(subprocess.Popen([sys.executable, "-m", "martian_doves", _command(services[name])],
                                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                            stdin=subprocess.DEVNULL, start_new_session=True))
            deadline = time.monotonic() + 120
            while not _healthy(services[name], services[name]["environment"][variable], port):
                assert started[-1].poll() is None, f"{name} exited before it was healthy"
                assert time.monotonic() < deadline, f"{name} never became healthy"
                time.sleep(0.5)
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)


def test_docker_build_context_has_what_the_image_copies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies {item}, which is missing"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "martian_doves" not in ignored and shutil.which("true")
