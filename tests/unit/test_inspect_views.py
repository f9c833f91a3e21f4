"""The data behind each operator's view (issue 10): queries, the status tables (workers, claims, by state),
``list``, ``show``, and the live ``status --watch`` frames, at 80 columns."""

from __future__ import annotations

import re
import time

import pytest
from rich.console import Console

from martian_doves import listing, live, report
from martian_doves.cli.filters import parse_since
from martian_doves.errors import ConfigError, StoreUnavailable
from martian_doves.model import (
    Failure,
    State,
    StateQuery,
    StateRecord,
    Status,
    StatusReport,
    WorkerClaim,
    WorkerInfo,
)
from martian_doves.stores.memory import MemoryStore

NOW = 1_700_000_000.0
#: Characters a terminal acts on.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _record(name: str, status: Status = Status.DONE, **fields: object) -> StateRecord:
    return StateRecord(name, fields.pop("state", "count"), status, **fields)  # type: ignore[arg-type]


# -- queries ----------------------------------------------------------------------------------


def test_a_query_matches_only_when_every_filter_given_does() -> None:
    failed = _record("a.state", Status.FAILED, payload={"colour": "Ultramarine"}, finished_at=NOW,
                     failure=Failure("tick_failed", "Disk full"), reason="tick_failed: Disk full")
    assert StateQuery().matches(failed)
    assert StateQuery(status=Status.FAILED, state="count", code="tick_failed", since=NOW - 1).matches(failed)
    assert StateQuery(text="disk FULL").matches(failed) and StateQuery(text="ultramarine").matches(failed)
    assert not StateQuery(status=Status.DONE).matches(failed)
    assert not StateQuery(code="bad_return").matches(failed)
    assert not StateQuery(since=NOW + 1).matches(failed)
    assert not StateQuery(text="nowhere").matches(failed)
    assert not StateQuery(code="tick_failed").matches(_record("b.state"))  # no failure, no code


def test_a_query_pages_newest_first() -> None:
    records = [_record(f"s{i}.state", submitted_at=NOW + i) for i in range(5)]
    assert [r.name for r in StateQuery(limit=2).page(records)] == ["s4.state", "s3.state"]
    assert [r.name for r in StateQuery(limit=2, offset=3).page(records)] == ["s1.state", "s0.state"]
    assert len(StateQuery(limit=None).page(records)) == 5


def test_a_record_knows_its_duration_and_latest_change() -> None:
    record = _record("a.state", submitted_at=NOW, claimed_at=NOW + 2, finished_at=NOW + 2.5, machine="root.state")
    assert record.duration_seconds == 0.5 and record.updated_at == NOW + 2.5
    assert record.machine_name == "root.state" and _record("r.state").machine_name == "r.state"
    document = record.as_dict()
    assert document["duration_seconds"] == 0.5 and document["machine"] == "root.state"
    assert _record("p.state", Status.PENDING).duration_seconds is None


@pytest.mark.parametrize(("text", "expected"), [
    ("90s", NOW - 90), ("10m", NOW - 600), ("2h", NOW - 7200), ("1d", NOW - 86400), ("1.5w", NOW - 907200),
    ("1699990000", 1699990000.0), ("2023-11-14T22:13:20+00:00", NOW),
])
def test_since_takes_an_age_a_time_or_epoch_seconds(text: str, expected: float) -> None:
    assert parse_since(text, now=NOW) == pytest.approx(expected)


def test_since_refuses_anything_else_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^--since: expected an age .* got 'yesterday'$"):
        parse_since("yesterday", now=NOW)


# -- status: workers, claims, by state ---------------------------------------------------------------


def _report() -> StatusReport:
    workers = [
        WorkerInfo("host-1", "h", 1, NOW - 1, True, NOW - 600, ("count",),
                   (WorkerClaim("a.state-3", "count", NOW - 12),), processed=40, failed=1),
        WorkerInfo("host-2", "h", 2, NOW - 5, False, NOW - 60, ended="was killed by SIGKILL"),
        WorkerInfo("host-3", "h", 3, NOW - 95, False, NOW - 300),
    ]
    return StatusReport(3, 1, 40, 1, workers, NOW - 30, [("b.state", "tick_failed", "boom")], {"store": "s"},
                        scheduled=2)


def test_the_workers_table_says_uptime_outcomes_claims_and_how_the_dead_are_known() -> None:
    text = report.status_text(_report(), now=NOW)
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("host-")}
    assert rows["host-1"].split()[3:5] == ["10", "min"]  # up
    assert rows["host-1"].split()[-3:] == ["40", "1", "alive"]
    assert rows["host-2"].endswith("dead: was killed by SIGKILL")  # its supervisor's word
    assert rows["host-3"].endswith("dead: no heartbeat for 95 s")  # its lease ran out
    assert re.search(r"^a\.state-3\s+count\s+host-1\s+12 s ago$", text, re.M)  # what it holds, since when


def test_status_json_carries_each_workers_claims() -> None:
    workers = report.status_dict(_report())["workers"]
    assert workers[0]["claims"] == [{"name": "a.state-3", "state": "count", "since": NOW - 12}]
    assert workers[0]["processed"] == 40 and workers[0]["machines"] == ["count"]
    assert workers[1]["ended"] == "was killed by SIGKILL" and workers[1]["alive"] is False


def test_claims_shown_are_bounded_and_the_rest_counted() -> None:
    claims = tuple(WorkerClaim(f"s{i}.state", "count", NOW - i) for i in range(30))
    status = StatusReport(0, 30, 0, 0, [WorkerInfo("w", "h", 1, NOW, True, claims=claims)])
    rows, more = report.claim_rows(status, NOW)
    assert len(rows) == report.MAX_CLAIMS_SHOWN and more == 10
    assert rows[0][0] == "s29.state"  # the oldest claim first


def test_counts_by_state_show_the_statuses_held() -> None:
    counts = {"resize": {Status.PENDING: 3, Status.DONE: 10}, "upload": {Status.SCHEDULED: 2, Status.FAILED: 1}}
    headers, rows = report.by_state_rows(counts)
    assert headers == ["state", "pending", "scheduled", "in progress", "done", "failed"]  # nobody waits: no column
    assert rows == [["resize", "3", "0", "0", "10", "0"], ["upload", "0", "2", "0", "0", "1"]]
    assert report.by_state_dict(counts)["upload"] == {"pending": 0, "scheduled": 2, "waiting": 0,
                                                       "in_progress": 0, "done": 0, "failed": 1}


# -- list and show --------------------------------------------------------------------------


def _failed() -> StateRecord:
    return StateRecord("evil.state", "count", Status.FAILED, {"note": "\x1b[31mred\x9b1m"}, "w-1", NOW, 2,
                       "tick_failed: boom\x1b]0;title\x07", submitted_at=NOW - 10, claimed_at=NOW - 1,
                       errors=("RuntimeError: first\nline two", "RuntimeError: boom"),
                       failure=Failure("tick_failed", "boom\x1b]0;title\x07",
                                       "Traceback (most recent call last):\n  File \"m.py\"\n"
                                       "RuntimeError: boom\x1b[2J"))


def test_show_gives_payload_every_error_and_the_traceback_with_no_control_character() -> None:
    text = listing.show_text(_failed(), now=NOW)
    assert "status:" in text and "failed" in text and "took:            1.00 s" in text
    assert "1. RuntimeError: first line two" in text and "2. RuntimeError: boom" in text
    assert "  Traceback (most recent call last):" in text and "RuntimeError: boom\\x1b[2J" in text
    assert '"note": "\\u001b[31mred\\u009b1m"' in text
    assert not CONTROL.search(text)
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    console.print(listing.show_renderable(_failed(), now=NOW))
    assert not CONTROL.search(console.export_text())


def test_list_rows_are_one_line_each() -> None:
    records = [_failed(), _record("ok.state", worker="w-2", finished_at=NOW)]
    text = listing.list_text(records)
    assert len(text.splitlines()) == 3 and not CONTROL.search(text)
    assert listing.list_text([]) == "no state matches"
    assert [d["name"] for d in listing.list_dicts(records)] == ["evil.state", "ok.state"]


# -- status --watch ---------------------------------------------------------------------------


def _lines(frame: live.Frame, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    console.print(live.render(frame, "/srv/store", 2.0, now=NOW))
    return console.export_text().splitlines()


def test_the_live_view_fits_80_columns_and_shows_every_part() -> None:
    status = _report()
    status.details["no_worker_for"] = [{"state": "resize", "count": 4, "oldest_pending_at": NOW - 120}]
    counts = {"count": {Status.PENDING: 3, Status.DONE: 40, Status.FAILED: 1},
              "a-very-long-state-name-that-must-fold-somewhere-inside-its-own-column": {Status.PENDING: 1}}
    lines = _lines(live.Frame(status, counts, 12.5, NOW))
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    for expected in ("3 pending (oldest 30 s)", "2 scheduled", "12.5 transitions/s", "1 of 3 workers alive",
                     "no live worker can run state resize: 4 pending, oldest since 2 min", "by state", "workers",
                     "in progress", "a.state-3", "recent failures", "dead: was killed"):
        assert expected in text, expected


def test_an_unreadable_store_is_an_outage_shown_with_the_last_counts() -> None:
    class Flaky(MemoryStore):
        broken = False

        def status(self) -> StatusReport:
            if self.broken:
                raise StoreUnavailable("the database is restarting")
            return super().status()

    store = Flaky()
    store.submit([State("a.state", "count", {})])
    times = iter([NOW, NOW + 2, NOW + 4])
    reader = live.StatusReader(store, clock=lambda: next(times))
    first = reader.read()
    assert first.report is not None and first.report.pending == 1 and first.error is None
    assert first.by_state == {"count": {Status.PENDING: 1}}
    store.broken = True
    reader.read()
    outage = reader.read()
    assert outage.report is first.report and outage.error == "the database is restarting"
    assert outage.error_since == NOW + 2
    text = "\n".join(_lines(outage))
    assert "STORE CANNOT BE READ for" in text and "the database is restarting" in text and "1 pending" in text
    assert "store cannot be read: the database is restarting" in live.render_text(outage, "s", now=NOW)


def test_the_first_frame_says_it_is_reading() -> None:
    assert any("reading the store" in line for line in _lines(live.Frame(None, None, 0.0, None)))


def test_worker_uptime_stops_at_its_last_heartbeat_once_dead() -> None:
    alive = WorkerInfo("w", "h", 1, NOW - 1, True, NOW - 100)
    dead = WorkerInfo("w", "h", 1, NOW - 50, False, NOW - 100)
    assert alive.uptime_seconds(NOW) == 100 and dead.uptime_seconds(NOW) == 50
    assert WorkerInfo("w", "h", 1, NOW, True).uptime_seconds(NOW) is None
    assert time.time() > NOW  # the fixed time above is in the past, as a real one would be
