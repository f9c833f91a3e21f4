"""A folder store whose disk fills up (or turns read-only) mid-run is an outage the fleet rides out.

The store lives on a small tmpfs of its own. ``doves run`` works through countdowns that
fit on it; mid-run a ballast file takes every block left, so each write the workers make
meets ``ENOSPC`` (or the tmpfs is remounted read-only: ``EROFS``, even for removing a
file). The workers must neither crash nor be given up on by the supervisor: each logs
one line when the outage begins, backs off, and ``status`` says so; once the ballast is
deleted (or the tmpfs writable again) they log one line when it ends and the run
finishes by itself, every machine's lineage whole and each transition run exactly once,
no traceback anywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import (
    HANG_GUARD_SECONDS,
    MACHINES_FILE,
    check_complete,
    check_executions,
    check_ridden_out,
    doves_json,
    doves_run,
    read_executions,
    submit_counting,
    wait_while_running,
)

#: Machines and ticks each: on the disk below they take about 420 of its 512 pages.
MACHINES, TICKS = 40, 5
DISK_BYTES = 2 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``DISK_BYTES`` mounted for this test (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(path: Path) -> int:
    """Append to ``path`` until the disk is full; the bytes it holds."""
    chunk = b"\0" * 4096
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
                return os.fstat(fd).st_size
    finally:
        os.close(fd)


class Fault:
    """What the test does to the store's disk mid-run, and what ``status`` then says."""

    def __init__(self, disk: Path, kind: str) -> None:
        self.disk = disk
        self.kind = kind
        self.ballast = disk / "ballast"
        self.says = "disk is full" if kind == "full" else "read-only"

    def begin(self) -> None:
        if self.kind == "full":
            fill(self.ballast)
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(self.disk)], check=True)

    def again(self) -> None:
        if self.kind == "full":
            fill(self.ballast)  # whatever a worker freed meanwhile (a half-written file it removed)

    def end(self) -> None:
        if self.kind == "full":
            self.ballast.unlink()
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(self.disk)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "read-only"])
def test_a_disk_full_or_read_only_mid_run_is_ridden_out(small_disk: Path, tmp_path: Path, kind: str) -> None:
    store = small_disk / "store"
    log = tmp_path / "executions.log"
    machines = submit_counting(store, "lease", [f"m{i:02d}" for i in range(MACHINES)], TICKS, log, 0.02)
    output = tmp_path / "run.log"
    fault = Fault(small_disk, kind)
    with doves_run(output, str(store), "--workers", "2", "--machines", str(MACHINES_FILE)) as run:
        wait_while_running(run, output, lambda: len(read_executions(log)) >= 20, "the first transitions")
        fault.begin()
        wait_while_running(run, output, lambda: "is unavailable (" in output.read_text(errors="replace"),
                           "the workers to meet the outage")
        fault.again()
        during = doves_json("status", str(store))
        assert fault.says in str(during.get("outage")), during
        stalled = len(read_executions(log))
        time.sleep(2.0)  # the outage lasts a while: workers back off and retry meanwhile
        assert run.poll() is None, output.read_text(errors="replace")[-4000:]
        assert stalled < MACHINES * TICKS, "the run had finished before the outage"
        fault.end()
        code = run.wait(HANG_GUARD_SECONDS)
    # Each worker process logs the outage once when it begins, and once when it ends.
    check_ridden_out(output, code, processes=2)
    assert "outage" not in doves_json("status", str(store))
    check_complete(store, machines)
    check_executions(log, machines, exactly_once=True)
    # No half-written file left behind, and no marker of the outage once it is over.
    assert not [name for name in os.listdir(store / ".doves-tmp") if not name.startswith("clock-probe-")]
