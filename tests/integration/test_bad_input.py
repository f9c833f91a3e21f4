"""Guarantee 4 on the directory store (lease mode): bad input never stops the fleet.

Every kind of bad entry is dropped straight into a real store folder next to good
states, the way a careless ``cp`` would, and a real worker runs until the store is
finished. Each bad entry must land in ``failed/`` with a machine-readable
``NAME.reason.json`` carrying a stable ``code``; every good state must be processed;
files that are not state files (``README.md``, ``notes.statement.txt``) and whatever a
symlink points to must be left exactly as they were; the worker must not crash or
hang. ``api.check_paths`` and ``api.submit_paths`` must refuse the same files with
one-line messages and add nothing for them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import inotify_simple
import pytest

from martian_doves import api
from martian_doves.config import DirectoryOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.registry import Registry
from martian_doves.stores import open_store
from martian_doves.stores.base import Store
from martian_doves.stores.directory import REASON_SUFFIX, LeaseStore
from martian_doves.worker import Worker

pytestmark = pytest.mark.timeout(120)

#: Size of the oversized file (sparse: creating it costs nothing, reading it would).
HUGE_BYTES = 100 * 1024 * 1024
#: Dropped files are dated this far back, as files copied in earlier would be.
AGE_SECONDS = 30.0


@dataclass
class TypedCount:
    """The payload of the typed machine used for the invalid-payload case."""

    count: int


def _typed_count(payload: TypedCount) -> TypedCount | None:
    return TypedCount(payload.count - 1) if payload.count > 1 else None


def _registry() -> Registry:
    registry = default_registry(entry_points=False)
    registry.register("typed-count", _typed_count, TypedCount)
    return registry


def _state(state: str, **payload: object) -> bytes:
    return json.dumps({"state": state, "payload": payload}).encode()


#: Good states: name -> (content, how many states its lineage commits).
GOOD: dict[str, tuple[bytes, int]] = {
    "good-countdown.state": (_state("countdown", count=3, tick_seconds=0), 3),
    "good-simple.state": (_state("simple", target="Hello.", tick_seconds=0), 1),
    "good-typed.state": (_state("typed-count", count=2), 2),
    "good-seed-successor.state-4": (_state("countdown", count=1, tick_seconds=0), 1),
}

_DEEP = b"[" * 100_000 + b"]" * 100_000
#: Bad regular files: name -> (content, expected reason code).
BAD_FILES: dict[str, tuple[bytes, str]] = {
    "malformed.state": (b'{"state": "countdown", "payload": {', "malformed_json"),
    "undecodable.state": (b"\xff\xfe\x00\x01not utf-8\x80", "malformed_json"),
    "empty.state": (b"", "malformed_json"),
    "array.state": (b"[1, 2, 3]", "invalid_document"),
    "no-state.state": (b'{"payload": {"count": 1}}', "invalid_document"),
    "payload-list.state": (b'{"state": "countdown", "payload": [1]}', "invalid_document"),
    "unknown.state": (_state("no-such-machine", count=1), "unknown_state"),
    "invalid-payload.state": (_state("typed-count", count="three"), "invalid_payload"),
    "extra-field.state": (_state("typed-count", count=1, colour="red"), "invalid_payload"),
    "deep.state": (b'{"state": "countdown", "payload": {"x": ' + _DEEP + b"}}", "malformed_json"),
    "deep-top.state": (_DEEP, "malformed_json"),
    "deep-parseable.state": (b'{"state": "countdown", "payload": {"x": ' + b"[" * 500 + b"]" * 500 + b"}}",
                             "invalid_document"),
    "nan.state": (b'{"state": "countdown", "payload": {"count": NaN}}', "malformed_json"),
    "huge-number.state": (b'{"state": "countdown", "payload": {"count": ' + b"9" * 5000 + b"}}",
                          "malformed_json"),
    "ctl\x01name.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),
    "esc\x1b[31mred.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),
    "new\nline.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),
    "tab\there.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),
    "del\x7f.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),
    "latin1-\udce9t\udce9.state": (_state("countdown", count=1, tick_seconds=0), "unsafe_name"),  # not UTF-8
}
#: Bad entries that are not regular files, and the huge file: name -> expected reason code.
BAD_SPECIAL: dict[str, str] = {
    "huge.state": "file_too_large",
    "x.state": "not_a_regular_file",  # a symlink pointing outside the store
    "y.state": "not_a_regular_file",  # a FIFO: opening it must not hang
    "z.state": "not_a_regular_file",  # a directory
}
#: Entries that are not state files: nobody may move, fail or change them.
BYSTANDERS: dict[str, bytes] = {
    "notes.statement.txt": b"not a state, despite the name\n",
    "README.md": b"# My states\n",
    ".hidden.state": b"a hidden file is not a state file",
    "x.states": b"{}",
}


@dataclass
class Dropped:
    """What a test dropped into a folder, to compare with afterwards."""

    folder: Path
    outside: Path
    bystanders: dict[str, tuple[bytes, float]]

    @property
    def expected_codes(self) -> dict[str, str]:
        return {**{name: code for name, (_, code) in BAD_FILES.items()}, **BAD_SPECIAL}


def _drop(folder: Path, outside: Path) -> Dropped:
    """Put every good, bad and bystander entry into ``folder``, all dated AGE_SECONDS back."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (content, _) in {**GOOD, **BAD_FILES}.items():
        (folder / name).write_bytes(content)
    with open(folder / "huge.state", "wb") as handle:
        handle.write(_state("countdown", count=1))
    os.truncate(folder / "huge.state", HUGE_BYTES)
    os.symlink(outside, folder / "x.state")
    os.mkfifo(folder / "y.state")
    (folder / "z.state").mkdir()
    (folder / "z.state" / "inner.state").write_bytes(_state("countdown", count=1))
    for name, content in BYSTANDERS.items():
        (folder / name).write_bytes(content)
    past = time.time() - AGE_SECONDS
    for entry in os.listdir(folder):
        os.utime(folder / entry, (past, past), follow_symlinks=False)
    bystanders = {name: ((folder / name).read_bytes(), os.lstat(folder / name).st_mtime) for name in BYSTANDERS}
    return Dropped(folder, outside, bystanders)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A file outside the store, the target of the ``x.state`` symlink; yields its path and fails the
    test if anything opened it."""
    target = tmp_path / "outside" / "secret.state"
    target.parent.mkdir()
    target.write_bytes(_state("countdown", count=1))
    watch = inotify_simple.INotify()
    flags = inotify_simple.flags
    watch.add_watch(str(target), flags.OPEN | flags.ACCESS | flags.MODIFY | flags.ATTRIB | flags.MOVE_SELF
                    | flags.DELETE_SELF)
    yield target
    events = watch.read(timeout=0)
    watch.close()
    assert events == [], f"the symlink's target was touched: {events}"
    assert target.read_bytes() == _state("countdown", count=1)


def _watch_reads(path: Path) -> inotify_simple.INotify:
    """Start noticing every read of ``path`` (the watch follows the file when it is moved)."""
    watch = inotify_simple.INotify()
    watch.add_watch(str(path), inotify_simple.flags.ACCESS)
    return watch


def _assert_never_read(watch: inotify_simple.INotify) -> None:
    events = watch.read(timeout=0)
    watch.close()
    assert events == [], "the 100 MB file was read"


def _open_lease(folder: Path) -> Store:
    return LeaseStore(folder, DirectoryOptions(lease_seconds=30))


def _open_via_open_store(folder: Path) -> Store:
    return open_store(str(folder))


def _open_semaphore(folder: Path) -> Store:
    return open_store(str(folder), "semaphore", assignment_seconds=0.2, commitment_seconds=0.2,
                      update_seconds=0.2, buffer_seconds=0.05)


OPENERS: dict[str, Callable[[Path], Store]] = {
    "LeaseStore": _open_lease, "open_store": _open_via_open_store, "semaphore": _open_semaphore,
}


def _run_to_completion(store: Store) -> None:
    """Run one real worker (two threads) until the store is finished; fail if it hangs or crashes."""
    # fail_unknown_states: unknown.state is to fail, not wait for a worker with its machine.
    worker = Worker(store, _registry(), WorkerOptions(name="bad-input-worker", concurrency=2, poll_seconds=0.1,
                                                      heartbeat_seconds=0.5, fail_unknown_states=True))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as e:  # reported below: the worker must never raise
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(90)
    if thread.is_alive():
        worker.stop()
        thread.join(10)
        pytest.fail("the worker did not finish (hung on bad input?)")
    assert errors == []


def _reasons(failed: Path) -> dict[str, dict[str, object]]:
    reasons = {}
    for path in failed.iterdir():
        if path.name.endswith(REASON_SUFFIX):
            reason = json.loads(path.read_bytes())
            reasons[str(reason["name"])] = {**reason, "_file": path.name}
    return reasons


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_bad_input_in_the_store_folder_is_quarantined_and_the_rest_runs(
        store_dir: Path, outside: Path, opener: str, caplog: pytest.LogCaptureFixture) -> None:
    """Every bad entry goes to failed/ with a reason code, every good state is processed, nothing
    else is touched, and the worker neither crashes nor hangs."""
    dropped = _drop(store_dir, outside)
    huge_reads = _watch_reads(store_dir / "huge.state")
    store = OPENERS[opener](store_dir)
    with caplog.at_level(logging.WARNING):
        try:
            _run_to_completion(store)
            status = store.status()
        finally:
            store.close()
    assert not [r for r in caplog.records if "crashed" in r.getMessage()]
    _assert_never_read(huge_reads)

    # Every good lineage was processed to its end.
    assert (status.pending, status.in_progress) == (0, 0)
    assert status.done == sum(ticks for _, ticks in GOOD.values())
    assert sorted(os.listdir(store_dir / "done")) == sorted(
        [name for name in GOOD if not name.startswith("good-countdown") and not name.startswith("good-typed")]
        + ["good-countdown.state", "good-countdown.state-1", "good-countdown.state-2",
           "good-typed.state", "good-typed.state-1"])

    # Every bad entry is in failed/ with a machine-readable reason and its stable code.
    reasons = _reasons(store_dir / "failed")
    assert {name: reason["code"] for name, reason in reasons.items()} == dropped.expected_codes
    assert status.failed == len(dropped.expected_codes)
    for name, reason in reasons.items():
        assert reason["message"], name
        assert "\n" not in str(reason["message"]), name
        quarantined = store_dir / "failed" / str(reason["_file"])[: -len(REASON_SUFFIX)]
        assert os.path.lexists(quarantined), f"{name!r} was not moved into failed/"
        assert not os.path.lexists(store_dir / name), f"{name!r} is still in the store's root"
    for name, (content, _) in BAD_FILES.items():
        if reasons[name]["code"] != "unsafe_name":
            assert (store_dir / "failed" / name).read_bytes() == content, "a quarantined file was changed"
    assert os.path.islink(store_dir / "failed" / "x.state")
    assert os.readlink(store_dir / "failed" / "x.state") == str(outside)
    assert os.path.getsize(store_dir / "failed" / "huge.state") == HUGE_BYTES

    # Files that are not state files are left exactly where and as they were.
    for name, (content, mtime) in dropped.bystanders.items():
        assert (store_dir / name).read_bytes() == content, name
        assert os.lstat(store_dir / name).st_mtime == mtime, name
        assert not (store_dir / "failed" / (name + REASON_SUFFIX)).exists()

    # The root holds the good lineages and the bystanders, nothing else.
    root_files = {entry.name for entry in os.scandir(store_dir) if not entry.is_dir(follow_symlinks=False)}
    assert root_files == set(os.listdir(store_dir / "done")) | set(BYSTANDERS)


def test_an_unsafe_name_is_quarantined_once_by_racing_workers(store_dir: Path) -> None:
    """Two workers that both saw an unsafe name before either moved it leave one reason, not two
    (the quarantine name is derived from the entry's name, and reasons are created exclusively)."""
    name = "race\x01.state"
    (store_dir / name).write_bytes(_state("countdown", count=1))
    first, second = _open_lease(store_dir), _open_lease(store_dir)
    try:
        assert isinstance(first, LeaseStore) and isinstance(second, LeaseStore)
        first.admission.quarantine(name, "unsafe_name", "unsafe name")
        second.admission.quarantine(name, "unsafe_name", "unsafe name")
        assert len(_reasons(store_dir / "failed")) == 1
        assert first.status().failed == 1
        assert len([e for e in os.listdir(store_dir / "failed") if not e.endswith(REASON_SUFFIX)]) == 1
    finally:
        first.close()
        second.close()


def test_bad_input_dropped_while_a_worker_runs(store_dir: Path, outside: Path) -> None:
    """Bad files that arrive (by ``mv``) while the fleet is already running are quarantined the same
    way. Symlinks, FIFOs, folders and renames raise no write wake-up, so the store's periodic root scan
    (made frequent here) is what finds them, as it is on NFS."""
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30, scan_seconds=0.5))
    try:
        (store_dir / "first.state").write_bytes(GOOD["good-countdown.state"][0])
        past = time.time() - AGE_SECONDS
        os.utime(store_dir / "first.state", (past, past))
        worker = Worker(store, _registry(), WorkerOptions(name="w", exit_when_finished=False, poll_seconds=0.05,
                                                          fail_unknown_states=True))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            _drop(store_dir / "incoming", outside)
            for entry in os.listdir(store_dir / "incoming"):
                os.rename(store_dir / "incoming" / entry, store_dir / entry)
            os.rmdir(store_dir / "incoming")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                done = len(os.listdir(store_dir / "done"))
                failed = len([e for e in os.listdir(store_dir / "failed") if e.endswith(REASON_SUFFIX)])
                if done == 3 + sum(ticks for _, ticks in GOOD.values()) and failed == len(BAD_FILES) + len(
                        BAD_SPECIAL):
                    break
                time.sleep(0.05)  # polling for an outcome, not measuring time
        finally:
            worker.stop()
            thread.join(30)
        assert not thread.is_alive()
        reasons = _reasons(store_dir / "failed")
        assert {n: r["code"] for n, r in reasons.items()} == {
            **{name: code for name, (_, code) in BAD_FILES.items()}, **BAD_SPECIAL}
        status = store.status()
        assert (status.pending, status.in_progress) == (0, 0)
        for name, content in BYSTANDERS.items():
            assert (store_dir / name).read_bytes() == content
    finally:
        store.close()


# -- the submit path --------------------------------------------------------------------------


def test_check_paths_refuses_each_bad_file_with_one_line(tmp_path: Path, outside: Path) -> None:
    """``check_paths`` on the folder flags every bad state file with its code and a one-line message,
    accepts the good ones, and ignores files that are not state files."""
    source = tmp_path / "source"
    dropped = _drop(source, outside)
    huge_reads = _watch_reads(source / "huge.state")
    checks = {Path(check.path).name: check for check in api.check_paths([source], _registry())}
    _assert_never_read(huge_reads)
    assert set(checks) == set(GOOD) | set(dropped.expected_codes)
    for name in GOOD:
        assert checks[name].ok, checks[name].error
    for name, code in dropped.expected_codes.items():
        check = checks[name]
        assert check.state is None and check.error is not None, name
        assert check.error.code == code, (name, check.error.code)
        assert "\n" not in check.error.message, name
        assert len(check.error.message) < 400, name


def test_check_paths_on_files_named_directly(tmp_path: Path, outside: Path) -> None:
    """Naming the bad files one by one gives the same verdicts as passing their folder."""
    source = tmp_path / "source"
    dropped = _drop(source, outside)
    named = [source / name for name in dropped.expected_codes if name != "z.state"]
    codes = {Path(check.path).name: check.error.code if check.error else None
             for check in api.check_paths(named, _registry())}
    assert codes == {name: code for name, code in dropped.expected_codes.items() if name != "z.state"}


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_submit_paths_adds_only_the_good_files(tmp_path: Path, store_dir: Path, outside: Path, opener: str) -> None:
    """``submit_paths`` adds the good states and nothing for the bad ones; the sources are untouched."""
    source = tmp_path / "source"
    dropped = _drop(source, outside)
    before = {entry: os.lstat(source / entry).st_mtime for entry in os.listdir(source)}
    store = OPENERS[opener](store_dir)
    try:
        results, refused = api.submit_paths(store, [source], _registry())
        assert sorted(r.name for r in results if r.added) == sorted(GOOD)
        assert {Path(c.path).name: c.error.code for c in refused if c.error} == dropped.expected_codes
        assert all("\n" not in c.error.message for c in refused if c.error)
        status = store.status()
        assert (status.pending, status.failed) == (len(GOOD), 0)
        root_files = {e.name for e in os.scandir(store_dir) if not e.is_dir(follow_symlinks=False)}
        assert root_files == set(GOOD)
        _run_to_completion(store)
        assert store.status().done == sum(ticks for _, ticks in GOOD.values())
        assert store.status().failed == 0
    finally:
        store.close()
    assert {entry: os.lstat(source / entry).st_mtime for entry in os.listdir(source)} == before
