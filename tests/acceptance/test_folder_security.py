"""Whoever may write into a folder store cannot reach outside it (issue 12, items 1-5).

An attacker with write access to the store plants links, FIFOs, folders and names the
store never writes; real ``doves`` commands then run on it, as the store's own user
and, when the tests run as root, with the links planted by another user (``nobody``)
as they would be on a shared volume. Files outside the store (the victims) must be
left exactly as they were: same names, bytes, modes, mtimes and ctimes, nothing new.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running, one_line, write_state

from martian_doves.stores.directory.layout import STORE_FOLDERS

#: The user another writer of the store runs as (root tests only).
OTHER_USER = ("nobody", "nogroup")
#: An hour back: old enough for any cleanup of stale files to pick it.
OLD = 3600 * 24

Snapshot = dict[str, tuple[bytes, int, int, int]]


def _snapshot(folder: Path) -> Snapshot:
    """Everything under ``folder``: contents, mode, mtime and ctime of each entry."""
    found = {}
    for path in sorted([folder, *folder.rglob("*")]):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        found[str(path.relative_to(folder))] = (content, info.st_mode, info.st_mtime_ns, info.st_ctime_ns)
    return found


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only folder outside the store with an old and a fresh 0600 file."""
    folder = tmp_path / "victim"
    folder.mkdir(mode=0o700)
    for name, age in (("old-secret", OLD), ("fresh-secret", 0)):
        path = folder / name
        path.write_text(f"{name} contents\n")
        path.chmod(0o600)
        stamp = path.stat().st_mtime - age
        os.utime(path, (stamp, stamp))
    return folder


class Attacker:
    """A writer of the store: runs commands as the worker's user, or as ``user`` through setpriv.

    Args:
        store: where the store is (a folder ``user`` can reach).
    """

    def __init__(self, store: Path, user: str | None) -> None:
        self.store = store
        self.user = user

    def __call__(self, args: list[str]) -> None:
        prefix = [] if self.user is None else ["setpriv", f"--reuid={OTHER_USER[0]}", f"--regid={OTHER_USER[1]}",
                                               "--clear-groups"]
        subprocess.run([*prefix, *args], check=True)


@pytest.fixture(params=["same user", "another user"])
def plant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Attacker]:
    """The attacker: the worker's own user, or (as root) ``nobody`` on a store open to all."""
    if request.param == "same user":
        yield Attacker(tmp_path / "store", None)
        return
    if os.geteuid() != 0:
        pytest.skip("planting as another user needs root (the tests run as an unprivileged user)")
    if shutil.which("setpriv") is None:
        pytest.skip("planting as another user needs setpriv (util-linux)")
    # The test's own folder is root-only: the shared store lives where others can reach it.
    shared = Path(tempfile.mkdtemp(prefix="doves-shared-"))
    shared.chmod(0o755)
    try:
        yield Attacker(shared / "store", OTHER_USER[0])
    finally:
        shutil.rmtree(shared)


def _shared(store: Path) -> None:
    """Open the store to every writer, as a shared volume is (the worker runs as root)."""
    for folder in (store, *(store / name for name in STORE_FOLDERS)):
        if folder.is_dir():
            folder.chmod(0o777)


def _submitted(doves: Doves, tmp_path: Path, store: Path, *names: str) -> None:
    files = [str(write_state(tmp_path, name, "simple", {"target": name})) for name in names]
    result = doves("submit", str(store), *files)
    assert result.returncode == 0, result.stderr
    _shared(store)


#: The commands that, on a store with that folder linked, once deleted, emptied or wrote
#: into the link's target (or moved an attacker's files into it).
HARMED_BY = {"pending": ["run"], "in_progress": ["run"], "done": ["run", "reset"], "failed": ["reset"],
             "workers": ["run", "reset"], ".doves-tmp": ["status", "history"], ".doves-admitted": ["reset"],
             # The machine model's: where timers and waits are moved from, events and ends counted.
             "scheduled": ["run", "status"], "waiting": ["run", "status"], "mailboxes": ["run", "history"],
             "joins": ["run"]}
assert set(HARMED_BY) == set(STORE_FOLDERS)  # a folder added to the layout is tested too
_COMMANDS = {"status": ["status"], "history": ["history", "a.state", "--json"], "run": ["run"],
             "reset": ["reset", "--yes"]}
#: The folders the cross-user case covers: a root-only folder emptied, and files moved into one.
_CROSS_USER = (".doves-tmp", "failed")


@pytest.mark.parametrize(("folder", "plant"), [(folder, "same user") for folder in STORE_FOLDERS]
                         + [(folder, "another user") for folder in _CROSS_USER], indirect=["plant"])
def test_a_store_folder_replaced_by_a_link_is_refused_and_never_followed(
        doves: Doves, tmp_path: Path, victim: Path, plant: Attacker, folder: str) -> None:
    store = plant.store
    _submitted(doves, tmp_path, store, "a.state")
    before = _snapshot(victim)
    # A rename within the store's root and a link: all a writer of the root needs.
    plant(["mv", str(store / folder), str(store / f"{folder}-moved")])
    plant(["ln", "-s", str(victim), str(store / folder)])
    for name in HARMED_BY[folder]:
        result = doves(_COMMANDS[name][0], str(store), *_COMMANDS[name][1:])
        assert result.returncode == 2, (name, result.stdout, result.stderr)
        assert f"refusing store folder {store / folder}: it is a symlink" in one_line(result.stderr)
    assert _snapshot(victim) == before


def test_a_link_planted_as_a_hint_never_makes_the_worker_write_through_it(
        doves: Doves, tmp_path: Path, victim: Path, plant: Attacker) -> None:
    store = plant.store
    _submitted(doves, tmp_path, store, "a.state", "b.state")
    before = _snapshot(victim)
    plant(["rm", "-f", str(store / "pending" / "a.state")])
    plant(["ln", "-s", str(victim / "old-secret"), str(store / "pending" / "a.state")])
    plant(["ln", "-sf", str(victim / "created-by-doves"), str(store / "pending" / "b.state")])
    result = doves("run", str(store))
    assert result.returncode == 0, result.stderr
    assert "removed 'a.state' from pending/: not a plain file" in result.stderr
    assert _snapshot(victim) == before
    # The link is gone and the states themselves still ran (admitted again from the root).
    assert sorted(os.listdir(store / "done")) == ["a.state", "b.state"]


@pytest.mark.slow
def test_a_link_planted_as_a_claim_is_dropped_when_its_lease_runs_out(
        doves: Doves, start_doves: Callable[..., Running], tmp_path: Path, victim: Path,
        plant: Attacker) -> None:
    store = plant.store
    _submitted(doves, tmp_path, store, "a.state")
    assert doves("run", str(store)).returncode == 0
    before = _snapshot(victim)
    claim = store / "in_progress" / "a.state@planted"
    plant(["ln", "-s", str(victim / "old-secret"), str(claim)])
    running = start_doves("run", str(store), "--watch", "--lease-seconds", "0.5", "--poll-seconds", "0.1")
    running.wait_for(lambda: not os.path.lexists(claim), "the planted claim to be dropped")
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    assert "removed 'a.state@planted' from in_progress/: not a plain file" in running.output
    assert _snapshot(victim) == before


@pytest.mark.slow
def test_the_clock_probe_never_follows_a_link(
        doves: Doves, start_doves: Callable[..., Running], tmp_path: Path, victim: Path,
        plant: Attacker) -> None:
    store = plant.store
    _submitted(doves, tmp_path, store, "a.state")
    running = start_doves("run", str(store), "--watch", "--lease-seconds", "0.5", "--poll-seconds", "0.1")
    running.wait_for(lambda: (store / "done" / "a.state").exists(), "the first state to be done")
    before = _snapshot(victim)
    # Host and pid of each worker are published in workers/: the names a probe once had.
    for registration in os.listdir(store / "workers"):
        pid = json.loads((store / "workers" / registration).read_text())["pid"]
        prefix = f"clock-probe-{socket.gethostname()}-{pid}"
        plant(["ln", "-s", str(victim / "old-secret"), str(store / ".doves-tmp" / prefix)])
    # Takeover looks (each reads the filesystem's clock) run every quarter lease: a new
    # state run and several heartbeats later, the worker has read the clock many times.
    _submitted(doves, tmp_path, store, "b.state")
    running.wait_for(lambda: (store / "done" / "b.state").exists(), "the second state to be done")
    stamp = (store / "workers" / os.listdir(store / "workers")[0]).stat().st_mtime
    running.wait_for(lambda: any((store / "workers" / w).stat().st_mtime > stamp + 1
                                 for w in os.listdir(store / "workers")), "a few more heartbeats")
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    assert _snapshot(victim) == before


def test_entries_planted_in_pending_never_stop_the_fleet_nor_move_a_store_folder(
        doves: Doves, tmp_path: Path, victim: Path, plant: Attacker) -> None:
    store = plant.store
    _submitted(doves, tmp_path, store, "good.state")
    pending = store / "pending"
    before = _snapshot(victim)
    plant(["mkfifo", str(pending / "fifo.state")])
    plant(["mkdir", str(pending / "empty-folder.state")])
    plant(["mkdir", "-p", str(pending / "full-folder.state" / "inside")])
    # Empty files named like the store's own folders, and a name the store never writes.
    for name in (*STORE_FOLDERS, "notes.txt"):
        plant(["touch", str(pending / name)])
    result = doves("run", str(store), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (store / "done" / "good.state").is_file()
    for name in STORE_FOLDERS:
        assert (store / name).is_dir() and not (store / name).is_symlink(), name
        assert f"removed '{name}' from pending/: not a state file's name" in result.stderr
    assert "removed 'fifo.state' from pending/: not a plain file" in result.stderr
    assert os.listdir(store / "failed") == []
    assert os.listdir(pending) == []
    # A folder with entries is never looked into: it is left where the claim put it, and is no claim.
    assert [entry.split("@")[0] for entry in os.listdir(store / "in_progress")] == ["full-folder.state"]
    assert doves.status(store)["in_progress"] == 0
    assert _snapshot(victim) == before


def test_a_store_folder_of_another_owner_on_another_filesystem_or_not_a_folder_is_refused(
        doves: Doves, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user and mounting one need root (the tests run unprivileged)")
    store = tmp_path / "store"
    _submitted(doves, tmp_path, store, "a.state")
    done = store / "done"
    os.chown(done, 65534, 65534)
    result = doves("status", str(store))
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(f"doves: error: refusing store folder {done}: it is owned by uid 65534")
    os.chown(done, 0, 0)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(done)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = doves("run", str(store))
        assert result.returncode == 2
        assert f"refusing store folder {done}: it is on another filesystem" in one_line(result.stderr)
    finally:
        subprocess.run(["umount", str(done)], check=True)
    done.rmdir()
    done.write_text("")
    result = doves("submit", str(store), str(tmp_path / "a.state"))
    assert result.returncode == 2
    assert f"refusing store folder {done}: it is not a folder" in one_line(result.stderr)
