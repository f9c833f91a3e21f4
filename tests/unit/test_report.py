"""What ``doves status`` and ``doves history`` say about timers, waits, events, children and idle states."""

from __future__ import annotations

from martian_doves import report
from martian_doves.model import HistoryEntry, MachineEvent, Origin, Status, StatusReport, WaitFor

NOW = 1_700_000_000.0


def test_status_counts_scheduled_and_waiting_and_names_states_no_worker_can_run() -> None:
    status = StatusReport(3, 1, 5, 0, scheduled=2, waiting=4, details={
        "store": "s", report.NO_WORKER_FOR: [{"state": "resize", "count": 3, "oldest_pending_at": NOW - 300}]})
    text = report.status_text(status, now=NOW)
    assert "scheduled:" in text and "waiting:" in text
    assert "no live worker can run state resize: 3 pending, oldest since 5 min" in text
    assert report.NO_WORKER_FOR not in text  # shown as a sentence, not as a raw detail


def test_history_notes_say_what_each_state_waits_for_received_and_spawned() -> None:
    entries = [
        HistoryEntry("o.state", "place", Status.DONE, children=("o.state+0.state", "o.state+1.state")),
        HistoryEntry("o.state-1", "doves.wait", Status.DONE, wait=WaitFor("paid", event="payment", deadline=NOW,
                                                                         on_timeout="cancel"),
                     event=MachineEvent("payment", {"amount": 1}, NOW - 5)),
        HistoryEntry("o.state-2", "ship", Status.SCHEDULED, not_before=NOW + 60),
        HistoryEntry("o.state+0.state", "resize", Status.FAILED, origin=Origin("o.state", 0), reason="bad_return: x"),
    ]
    notes = [report.history_note(entry) for entry in entries]
    assert notes[0] == "spawned 2: o.state+0.state, o.state+1.state"
    assert notes[1] is not None and "waits for event 'payment'" in notes[1] and "received 'payment'" in notes[1]
    assert notes[2] is not None and notes[2].startswith("due ")
    assert notes[3] == "child 0 of o.state; bad_return: x"
    dicts = report.history_dicts(entries)
    assert dicts[1]["event"]["data"] == {"amount": 1} and dicts[0]["children"] == ["o.state+0.state",
                                                                                  "o.state+1.state"]
    assert "NOTE" in report.history_text(entries)
