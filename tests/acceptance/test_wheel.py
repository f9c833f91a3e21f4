"""The built package, not the source tree: a wheel carries the data files the code reads.

Tests run against an editable install, which reads every file straight from the source
tree, so a data file missing from ``package-data`` would only show once installed. Here
a wheel is built from a copy of the project, installed into a folder of its own, and the
CLI runs from there against the real database.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Hang guard for building (pip may fetch the build backend) and for one command.
BUILD_TIMEOUT = 600.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the project (so the source tree gets no build files).

    Built once per test run: with pytest-xdist, the processes of one run share the parent of their
    temporary folders, and the first to take the lock there builds while the others wait for it.
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    with open(shared / "wheel.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build_wheel(shared / "wheel")


def _build_wheel(work: Path) -> Path:
    earlier = sorted((work / "dist").glob("martian_doves-*.whl"))
    if earlier:
        return earlier[0]
    shutil.rmtree(work, ignore_errors=True)  # what a failed build left
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"),
                             str(source)], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr
    [built] = (work / "dist").glob("martian_doves-*.whl")
    return built


def test_the_wheel_carries_every_sql_file(wheel: Path) -> None:
    sql_folder = ROOT / "martian_doves" / "stores" / "postgres" / "sql"
    expected = {f"martian_doves/{p.relative_to(ROOT / 'martian_doves').as_posix()}" for p in sql_folder.rglob("*.sql")}
    assert len(expected) >= 3  # queries.sql and at least two migrations
    with zipfile.ZipFile(wheel) as archive:
        assert expected <= set(archive.namelist())


def test_the_installed_package_migrates_a_database(wheel: Path, tmp_path: Path, pg_url: str) -> None:
    """``doves migrate`` and ``doves status`` from the installed wheel: its queries and migrations load."""
    target = tmp_path / "installed"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target),
                             str(wheel)], capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
    env["PYTHONPATH"] = str(target)  # ahead of the editable install; dependencies come from this venv

    def doves(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "martian_doves", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT)

    where = subprocess.run([sys.executable, "-c", "import martian_doves; print(martian_doves.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr
    migrated = doves("migrate", pg_url)
    assert migrated.returncode == 0, migrated.stderr
    latest = max(int(p.name.split("_", 1)[0]) for p in (ROOT / "martian_doves" / "stores" / "postgres" / "sql"
                                                         / "migrations").glob("*.sql"))
    assert f"to schema version {latest}" in migrated.stdout
    status = doves("status", pg_url, "--json")
    assert status.returncode == 0, status.stderr
