"""The folder layout object: states written from elsewhere (an export) are the store's own files.

``Layout.write_exported`` is how another store (PostgreSQL's ``export``) writes states
into a folder: whatever it writes, the directory stores must read and run as if they
had written it themselves, and writing again must never overwrite anything.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from martian_doves import codec
from martian_doves.clock import FakeClock
from martian_doves.config import DirectoryOptions, SemaphoreOptions, WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State, Status
from martian_doves.stores.directory import REASON_SUFFIX, Layout, LeaseStore, SemaphoreStore
from martian_doves.worker import Worker


def _state(name: str, count: int = 1, parent: str | None = None) -> bytes:
    return codec.encode(State(name, "countdown", {"count": count, "tick_seconds": 0}, parent))


def _export_sample(files: Layout, now: float) -> None:
    """One state in every status a database can hold."""
    assert files.write_exported("done.state", _state("done.state"), Status.DONE, worker="w", token="t1",
                                claimed_at=now - 10, attempts=1, errors=["first try broke"])
    assert files.write_exported("done.state-1", _state("done.state-1", 0, "done.state"), Status.DONE, worker="w")
    assert files.write_exported("bad.state", _state("bad.state"), Status.FAILED, attempts=2, errors=["a", "b"],
                                reason={"name": "bad.state", "code": "tick_failed", "message": "broke",
                                        "worker": "w", "attempts": 2, "failed_at": now - 5})
    assert files.write_exported("wait.state", _state("wait.state"), Status.PENDING, attempts=1, errors=["flaky"],
                                not_before=now - 1)
    assert files.write_exported("later.state", _state("later.state"), Status.PENDING, not_before=now + 3600)
    assert files.write_exported("held.state", _state("held.state"), Status.IN_PROGRESS, worker="elsewhere",
                                token="t2", not_before=now - 1)


def test_exported_states_land_where_the_store_keeps_its_own(store_dir: Path) -> None:
    files = Layout(store_dir, create=True)
    now = time.time()
    _export_sample(files, now)
    assert sorted(p.name for p in store_dir.iterdir() if p.is_file()) == [
        "done.state", "done.state-1", "held.state", "later.state", "wait.state"]
    assert sorted(os.listdir(store_dir / "done")) == ["done.state", "done.state-1"]
    assert json.loads((store_dir / "done" / "done.state").read_text())["worker"] == "w"
    assert sorted(os.listdir(store_dir / "failed")) == ["bad.state", "bad.state" + REASON_SUFFIX]
    assert sorted(os.listdir(store_dir / "pending")) == ["held.state", "later.state", "wait.state"]
    assert os.path.getmtime(store_dir / "pending" / "later.state") == now + 3600  # its not-before time
    assert json.loads((store_dir / "pending" / "wait.state").read_text()) == {"attempts": 1, "errors": ["flaky"]}
    assert (store_dir / "pending" / "held.state").read_bytes() == b""  # a claim elsewhere means nothing here


def test_a_lease_store_reads_and_runs_exported_states(store_dir: Path) -> None:
    files = Layout(store_dir, create=True)
    _export_sample(files, time.time())
    store = LeaseStore(store_dir, DirectoryOptions(lease_seconds=30))
    try:
        report = store.status()
        # later.state is not due for an hour: scheduled, not pending.
        assert (report.pending, report.scheduled, report.in_progress, report.done, report.failed) == (2, 1, 0, 2, 1)
        assert report.recent_failures == [("bad.state", "tick_failed", "broke")]
        lineage = store.history("done.state-1")
        assert [(e.name, e.status, e.worker) for e in lineage] == [
            ("done.state", Status.DONE, "w"), ("done.state-1", Status.DONE, "w")]
        assert lineage[0].attempts == 1
        (failed,) = store.history("bad.state")
        assert failed.status is Status.FAILED and failed.reason == "tick_failed: broke" and failed.attempts == 2
        claims = {claim.name: claim for claim in store.claim("w2", 10)}
        assert sorted(claims) == ["held.state", "wait.state"]  # later.state is not due for an hour
        assert (claims["wait.state"].attempts, claims["wait.state"].errors) == (1, ("flaky",))
        for claim in claims.values():
            store.release(claim)
        assert store.retry_failed(["bad.state"]) == 1
        worker = Worker(store, default_registry(), WorkerOptions(name="w2"))
        deadline = time.monotonic() + 60
        while store.status().done < 2 + 3 and time.monotonic() < deadline:  # later.state stays scheduled
            worker.step()
        report = store.status()
        assert (report.pending, report.scheduled, report.done, report.failed) == (0, 1, 2 + 3, 0)  # held, wait, bad ran
    finally:
        store.close()


def test_exporting_again_adds_only_what_is_missing_and_never_overwrites(store_dir: Path) -> None:
    files = Layout(store_dir, create=True)
    now = time.time()
    _export_sample(files, now)
    os.unlink(store_dir / "done" / "done.state")  # an earlier export that stopped short
    _export_sample(files, now)  # the same states again: every one counts as written
    assert json.loads((store_dir / "done" / "done.state").read_text())["worker"] == "w"
    assert len(os.listdir(store_dir / "pending")) == 3 and not os.listdir(store_dir / ".doves-tmp")
    (store_dir / "mine.state").write_bytes(_state("mine.state", 7))  # someone else's file of that name
    assert not files.write_exported("mine.state", _state("mine.state"), Status.DONE, worker="w")
    assert not files.write_exported("done.state", _state("done.state", 2), Status.DONE, worker="w")
    assert (store_dir / "mine.state").read_bytes() == _state("mine.state", 7)
    assert not (store_dir / "done" / "mine.state").exists()


def test_each_mode_stamps_hints_its_own_way(tmp_path: Path) -> None:
    """A lease-mode hint is stamped by the filesystem; the semaphore stamps every hint with its own
    clock, so a hint joins the listing of the first cycle that begins after it exists."""
    lease = LeaseStore(tmp_path / "lease")
    clock = FakeClock(1_800_000_000.0)
    semaphore = SemaphoreStore(tmp_path / "semaphore", SemaphoreOptions(), clock=clock, filesystem_time=clock.time)
    try:
        before = time.time() - 1
        lease.submit([State("a.state", "countdown", {"count": 1})])
        semaphore.submit([State("a.state", "countdown", {"count": 1})])
        assert os.path.getmtime(tmp_path / "lease" / "pending" / "a.state") >= before
        assert os.path.getmtime(tmp_path / "semaphore" / "pending" / "a.state") == 1_800_000_000.0
    finally:
        lease.close()
        semaphore.close()


def test_a_seed_flag_in_in_progress_names_its_state() -> None:
    """The seed's own in_progress flag has no token: it names its state, with an empty token."""
    from martian_doves.stores.directory.records import split_claim

    assert split_claim("x.state@0123abcd") == ("x.state", "0123abcd")
    assert split_claim("countdown.state") == ("countdown.state", "")
