"""The data behind each view of the dashboard, on the memory store and a fake clock: lists and
their bounds, one state, a lineage, workers, counts by state name, the sample's health, the
token and the actions, and the page's self-containment."""

from __future__ import annotations

import base64
import hashlib
import re
import threading

import pytest

from martian_doves.clock import FakeClock
from martian_doves.dashboard import actions, views
from martian_doves.dashboard.actions import Actions
from martian_doves.dashboard.server import load_page
from martian_doves.dashboard.views import QueryGate, ViewError
from martian_doves.model import Failure, State, StateRecord, Status, StatusReport
from martian_doves.sampler import HANG_SECONDS, Sampler
from martian_doves.stores.memory import MemoryStore


def failed_store(count: int = 3, clock: FakeClock | None = None) -> MemoryStore:
    """A memory store with ``count`` failed ``bad-N.state`` (a long message, a payload) and one done lineage."""
    clock = clock or FakeClock()
    store = MemoryStore(clock=clock)
    store.submit([State("job.state", "count", {"count": 2})])
    store.commit(store.claim("w1", 1)[0], ("count", {"count": 1}))
    clock.advance(1)
    store.commit(store.claim("w1", 1)[0], None)
    for index in range(count):
        clock.advance(1)
        store.submit([State(f"bad-{index}.state", "breaks", {"index": index, "blob": "x" * 1000})])
        claim = store.claim("w2", 1)[0]
        store.fail(claim, Failure("tick_failed", f"RuntimeError: case {index} " + "y" * 2000,
                                  "Traceback (most recent call last):\nRuntimeError: boom", 1, ("RuntimeError: boom",)))
    return store


# -- parameters ----------------------------------------------------------------------------------


def test_a_list_query_has_defaults_and_bounds() -> None:
    query = views.states_query({})
    assert (query.status, query.limit, query.offset, query.text) == (None, views.DEFAULT_PAGE, 0, None)
    query = views.states_query({"status": ["failed"], "state": ["breaks"], "code": ["tick_failed"], "q": [" case "],
                                "offset": ["50"], "limit": ["100"], "since": ["12.5"]})
    assert (query.status.value if query.status else None, query.state, query.code, query.text) == (
        "failed", "breaks", "tick_failed", "case")
    assert (query.offset, query.limit, query.since) == (50, 100, 12.5)
    for params, word in (({"limit": ["0"]}, "limit"), ({"limit": ["101"]}, "limit"), ({"offset": ["-1"]}, "offset"),
                         ({"offset": [str(views.MAX_OFFSET + 1)]}, "offset"), ({"limit": ["x"]}, "limit"),
                         ({"status": ["lost"]}, "status"), ({"since": ["nan"]}, "since"),
                         ({"q": ["z" * (views.MAX_FILTER_CHARS + 1)]}, "q")):
        with pytest.raises(ViewError) as raised:
            views.states_query(params)
        assert raised.value.status == 400 and word in raised.value.message


# -- lists, one state, lineages ----------------------------------------------------------------------


def test_failures_come_in_pages_newest_first_without_payloads() -> None:
    store = failed_store(5)
    first = views.states_page(store, views.states_query({"status": ["failed"], "limit": ["2"]}))
    assert [s["name"] for s in first["states"]] == ["bad-4.state", "bad-3.state"] and first["more"]
    last = views.states_page(store, views.states_query({"status": ["failed"], "limit": ["2"], "offset": ["4"]}))
    assert [s["name"] for s in last["states"]] == ["bad-0.state"] and not last["more"]
    row = first["states"][0]
    assert "payload" not in row and "traceback" not in str(row)
    assert row["code"] == "tick_failed" and len(row["message"]) == views.MESSAGE_CHARS + 1  # clipped, with "…"
    searched = views.states_page(store, views.states_query({"q": ["CASE 3"]}))
    assert [s["name"] for s in searched["states"]] == ["bad-3.state"]
    assert views.states_page(store, views.states_query({"code": ["other"]}))["states"] == []


def test_one_state_is_opened_whole() -> None:
    store = failed_store(1)
    document = views.state_document(store, "bad-0.state")
    assert document["payload"]["blob"] == "x" * 1000 and document["settled"] is True
    assert document["failure"]["traceback"].endswith("RuntimeError: boom")
    assert document["errors"] == ["RuntimeError: boom"]
    assert views.state_document(store, "job.state-1")["status"] == "done"
    with pytest.raises(ViewError) as raised:
        views.state_document(store, "nothing.state")
    assert raised.value.status == 404


def test_a_lineage_is_a_timeline_of_its_states() -> None:
    store = failed_store(0)
    lineage = views.lineage_document(store, "job.state-1")
    assert lineage["machine"] == "job.state" and lineage["length"] == 2 and lineage["status"] == "done"
    assert [step["name"] for step in lineage["steps"]] == ["job.state", "job.state-1"]
    assert lineage["steps"][1]["worker"] == "w1" and lineage["steps"][1]["duration_seconds"] is not None
    assert lineage["finished_at"] is not None and (lineage["skipped_before"], lineage["skipped_after"]) == (0, 0)
    with pytest.raises(ViewError):
        views.lineage_document(store, "nothing.state")


def test_a_long_lineage_shows_a_window_around_the_state_asked_for() -> None:
    steps = [StateRecord(f"s.state-{i}", "count", Status.DONE) for i in range(1000)]
    assert views.lineage_window(steps[:10], "s.state-3") == (0, steps[:10])
    first, window = views.lineage_window(steps, "s.state-600", most=100)
    assert (first, len(window), window[50].name) == (550, 100, "s.state-600")
    assert views.lineage_window(steps, "s.state-2", most=100)[0] == 0
    assert views.lineage_window(steps, "s.state-999", most=100)[0] == 900
    assert views.lineage_window(steps, "not-there", most=100)[0] == 900  # the end of the machine


# -- from the sample ---------------------------------------------------------------------------------


def test_workers_and_counts_by_state_come_from_the_sample() -> None:
    clock = FakeClock()
    store = failed_store(2, clock)
    store.register_worker("w3", ["count"])
    store.submit([State("run.state", "count", {"count": 1})])
    store.claim("w3", 1)
    sampler = Sampler(store, 1.0, clock=clock, by_state=True)
    sampler.sample()
    clock.advance(5)
    workers = views.workers_document(sampler.snapshot, clock.time())["workers"]
    mine = next(w for w in workers if w["name"] == "w3")
    assert mine["standing"] == "alive" and [c["name"] for c in mine["claims"]] == ["run.state"]
    assert mine["uptime_seconds"] == pytest.approx(5.0)
    counts = {row["state"]: row for row in views.by_state_document(sampler.snapshot)["states"]}
    assert counts["breaks"]["counts"] == {"failed": 2} and counts["count"]["total"] == 3
    assert counts["count"]["counts"] == {"done": 2, "in_progress": 1}
    # doves run's sampler does not count by state name: it has no use for it.
    plain = Sampler(store, 1.0, clock=clock)
    plain.sample()
    assert plain.snapshot.by_state is None and views.by_state_document(plain.snapshot)["states"] == []


class HangingStore(MemoryStore):
    """A memory store whose ``status`` blocks while ``hang`` is set, or fails while ``down`` is."""

    down = False

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.hang = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def status(self) -> StatusReport:
        if self.down:
            raise OSError("the store's folder is gone")
        if self.hang.is_set():
            self.entered.set()
            self.release.wait(30)
        return super().status()


def test_the_sample_says_when_the_store_cannot_be_read_or_hangs() -> None:
    clock = FakeClock()
    store = HangingStore(clock)
    sampler = Sampler(store, 1.0, clock=clock, by_state=True)
    assert sampler.problem() == "no status sample yet"
    assert sampler.document()["error"] is None  # before the first sample the page waits, it does not alarm
    sampler.sample()
    assert sampler.problem() is None and sampler.document()["error"] is None
    store.down = True
    sampler.sample()
    assert sampler.problem() == "the store's folder is gone" == sampler.document()["error"]
    store.down = False
    sampler.sample()
    assert sampler.problem() is None

    store.hang.set()
    thread = threading.Thread(target=sampler.sample)
    thread.start()
    assert store.entered.wait(30)
    assert sampler.problem() is None  # a sample under way is not a hang yet
    clock.advance(HANG_SECONDS + 1)
    problem = sampler.problem()
    assert problem is not None and "has not answered for 61 s" in problem
    store.release.set()
    thread.join(30)
    assert sampler.problem() is None


def test_one_query_at_a_time() -> None:
    gate = QueryGate(wait_seconds=0.01)
    with gate.query():
        with pytest.raises(ViewError) as raised, gate.query():
            pass
    assert raised.value.status == 503
    with gate.query():  # free again
        pass


# -- actions -------------------------------------------------------------------------------------------


def test_actions_need_the_token() -> None:
    guarded = Actions("a-token-of-enough-length")
    guarded.authorize("Bearer a-token-of-enough-length")
    for header in (None, "", "Bearer", "Bearer wrong-token-of-some-length", "Basic a-token-of-enough-length",
                   "a-token-of-enough-length"):
        with pytest.raises(ViewError) as raised:
            guarded.authorize(header)
        assert raised.value.status == 403
    with pytest.raises(ViewError) as raised:
        Actions(None).authorize("Bearer a-token-of-enough-length")
    assert raised.value.status == 403 and "read-only" in raised.value.message
    assert len(actions.new_token()) >= 32 and actions.new_token() != actions.new_token()


def test_an_action_names_states_in_a_small_json_body() -> None:
    assert actions.names_of(b'{"names": ["a.state", "b.state", "a.state"]}') == ["a.state", "b.state"]
    too_many = ('{"names": [' + ",".join(f'"s{i}.state"' for i in range(actions.MAX_NAMES + 1)) + "]}").encode()
    for body in (b"", b"not json", b"[]", b'{"names": []}', b'{"names": "a.state"}', b'{"names": [1]}',
                 b'{"names": [""]}', too_many, b"\xff"):
        with pytest.raises(ViewError) as raised:
            actions.names_of(body)
        assert raised.value.status == 400


def test_retry_and_forget_act_on_the_states_named() -> None:
    store = failed_store(3)
    assert actions.retry(store, ["bad-0.state", "job.state", "nothing.state"]) == {"asked": 3, "retried": 1}
    assert store.status().failed == 2 and store.status().pending == 1
    assert actions.forget(store, ["bad-1.state", "job.state-1"]) == {"asked": 2, "forgotten": 3}
    assert store.show("job.state") is None and store.show("bad-1.state") is None
    assert actions.forget(store, ["bad-0.state"])["forgotten"] == 0  # pending again: not ended, kept


# -- the page ----------------------------------------------------------------------------------------


def test_the_page_is_one_self_contained_document_under_a_strict_policy() -> None:
    html, policy = load_page()
    page = html.decode()
    assert "page.css" not in page and "page.js" not in page  # both put inside
    assert "http://" not in page and "https://" not in page and not re.search(r"""(?:src|href)\s*=\s*["']?//""", page)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in page
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
        assert len(blocks) == 1
        digest = base64.b64encode(hashlib.sha256(blocks[0].encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "form-action 'none'" in policy
