"""The Dockerfile and compose files, tested as far as a machine without Docker allows.

The image's entry command is run as a plain process with the image's environment, and
every DOVES_* variable the compose files set is checked to be one the CLI reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


def _compose_environment(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^\s+(DOVES_[A-Z_]+):\s*(.+?)\s*$", path.read_text(), re.M))


@pytest.mark.parametrize("compose", ["compose.yaml", "compose.postgres.yaml"])
def test_compose_files_use_only_variables_the_cli_reads(compose: str) -> None:
    """Every DOVES_* a compose file sets is documented in `doves run --help`; scaling is possible."""
    help_text = subprocess.run([sys.executable, "-m", "martian_doves", "run", "--help"],
                               capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}).stdout
    text = (ROOT / compose).read_text()
    env = _compose_environment(ROOT / compose)
    assert "DOVES_STORE" in env
    for key in env:
        assert key == "DOVES_STORE" or key in help_text, f"{compose} sets {key}, which doves run does not read"
    assert "container_name" not in text, "a fixed container name breaks --scale"


def test_compose_mounts_the_volume_where_the_store_is() -> None:
    env = _compose_environment(ROOT / "compose.yaml")
    assert f"states:{env['DOVES_STORE']}" in (ROOT / "compose.yaml").read_text()


def test_docker_build_context_has_what_the_image_copies() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for item in source.split():
            assert (ROOT / item).exists(), f"Dockerfile copies {item}, which is missing"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "martian_doves" not in ignored and shutil.which("true")
