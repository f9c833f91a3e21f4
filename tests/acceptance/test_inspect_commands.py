"""``doves list``, ``show``, ``history``, ``status --by-state``/``--watch``, ``retry`` with filters and
``forget`` (issue 10): exit codes, one-line errors and ``--json`` shapes, as an operator runs them.

The store: three countdowns done, two states that always fail (each after two attempts),
and a file that is not JSON, copied in by hand and quarantined. Timeouts are hang guards.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from acceptance_helpers import COMMAND_TIMEOUT, Doves, Running, command, environment, one_line, write_state

#: Keys every record has in ``list --json``, ``show --json`` and ``history --json``.
RECORD_KEYS = {"name", "state", "status", "payload", "worker", "parent", "machine", "submitted_at", "claimed_at",
               "finished_at", "duration_seconds", "not_before", "attempts", "retries", "errors", "reason",
               "failure", "wait", "event", "origin", "children"}
#: A terminal's control sequences, to read what a live view drew.
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: The sequences with which a live view goes back over what it drew (line up, erase line).
REDRAW = re.compile(r"\x1b\[\d*[AK]")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store run to its end once: 3 countdowns done, 2 failed (two attempts each), 1 quarantined."""
    from acceptance_helpers import MACHINES_SOURCE

    base = tmp_path_factory.mktemp("inspect")
    machines = base / "test_machines.py"
    machines.write_text(MACHINES_SOURCE)
    store = base / "store"
    store.mkdir()
    for index in range(3):
        write_state(store, f"count{index}.state", "counted", {"id": index, "count": 2, "log": str(base / "log")})
    for name in ("doomed.state", "cursed.state"):
        write_state(store, name, "always-fails", {"why": "a test"})
    (store / "garbled.state").write_text("{not json")
    result = Doves(base)("run", str(store), "--machines", str(machines), "--max-attempts", "2",
                         "--retry-base-seconds", "0", "--no-progress")
    assert result.returncode == 1, result.stderr
    return store


@pytest.fixture
def store(prepared: Path, tmp_path: Path) -> Path:
    """A copy of the prepared store a test may change."""
    copy = tmp_path / "store"
    shutil.copytree(prepared, copy, symlinks=True)
    return copy


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -- list --------------------------------------------------------------------------------------


def test_list_shows_every_state_newest_first_with_filters(doves: Doves, prepared: Path) -> None:
    result = doves("list", str(prepared))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:4] == ["STATE", "FILE", "STATE", "STATUS"] and len(rows) == 9
    everything = _json(doves("list", str(prepared), "--json"))
    assert all(set(record) == RECORD_KEYS for record in everything)
    changed = [max(t for t in (r["submitted_at"], r["claimed_at"], r["finished_at"]) if t) for r in everything]
    assert changed == sorted(changed, reverse=True)

    failed = _json(doves("list", str(prepared), "--status", "failed", "--json"))
    assert sorted(r["name"] for r in failed) == ["cursed.state", "doomed.state", "garbled.state"]
    by_code = _json(doves("list", str(prepared), "--code", "tick_failed", "--json"))
    assert sorted(r["name"] for r in by_code) == ["cursed.state", "doomed.state"]
    assert all(r["attempts"] == 2 and len(r["errors"]) == 2 for r in by_code)
    assert [r["name"] for r in _json(doves("list", str(prepared), "--state", "counted", "--status", "done",
                                           "--json"))].count("count0.state-1") == 1
    assert len(_json(doves("list", str(prepared), "--limit", "2", "--json"))) == 2
    assert _json(doves("list", str(prepared), "--limit", "2", "--offset", "8", "--json"))[0]["name"] == \
        everything[8]["name"]
    assert [r["name"] for r in _json(doves("list", str(prepared), "--text", "INVALID json", "--json"))] == \
        ["garbled.state"]
    assert len(_json(doves("list", str(prepared), "--since", "1h", "--json"))) == 9
    assert _json(doves("list", str(prepared), "--since", "2000-01-01", "--state", "nothing", "--json")) == []
    empty = doves("list", str(prepared), "--state", "nothing")
    assert empty.returncode == 0 and empty.stdout.strip() == "no state matches"


@pytest.mark.parametrize(("args", "message"), [
    (("--since", "yesterday"), "doves: error: --since: expected an age"),
    (("--status", "lost"), "doves: error: Invalid value for '--status'"),
    (("--limit", "0"), "doves: error: Invalid value for '--limit'"),
])
def test_list_refuses_bad_filters_in_one_line(doves: Doves, prepared: Path, args: tuple[str, ...],
                                             message: str) -> None:
    result = doves("list", str(prepared), *args)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(message)


def test_list_of_a_folder_that_is_no_store_is_a_one_line_error(doves: Doves, tmp_path: Path) -> None:
    result = doves("list", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert one_line(result.stderr).startswith("doves: error: no store at")


# -- show and history --------------------------------------------------------------------------


def test_show_opens_a_failure_with_its_errors_and_traceback(doves: Doves, prepared: Path) -> None:
    result = doves("show", str(prepared), "doomed.state")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert re.search(r"^status:\s+failed$", text, re.M) and re.search(r"^failed attempts:\s+2$", text, re.M)
    assert "failure:         tick_failed: RuntimeError: this machine always fails" in text
    assert '"why": "a test"' in text and "errors, oldest first:" in text
    assert "traceback:" in text and "  Traceback (most recent call last):" in text

    record = _json(doves("show", str(prepared), "doomed.state", "--json"))
    assert set(record) == RECORD_KEYS
    assert record["failure"]["code"] == "tick_failed" and "Traceback" in record["failure"]["traceback"]
    assert record["payload"] == {"why": "a test"} and record["worker"] and record["machine"] == "doomed.state"

    garbled = _json(doves("show", str(prepared), "garbled.state", "--json"))
    assert (garbled["status"], garbled["payload"], garbled["failure"]["code"]) == ("failed", None, "malformed_json")


def test_show_of_an_unknown_state_exits_1_with_one_line(doves: Doves, prepared: Path) -> None:
    result = doves("show", str(prepared), "nothing.state")
    assert result.returncode == 1
    assert one_line(result.stderr) == f"doves: no state named nothing.state in {prepared}"


def test_history_opens_any_state_of_a_lineage_failed_and_quarantined_ones_too(doves: Doves, prepared: Path) -> None:
    lineage = _json(doves("history", str(prepared), "count1.state-1", "--json"))
    assert [e["name"] for e in lineage] == ["count1.state", "count1.state-1"]
    assert all(set(e) == RECORD_KEYS and e["duration_seconds"] is not None for e in lineage)
    assert [e["payload"]["count"] for e in lineage] == [2, 1]
    failed = _json(doves("history", str(prepared), "doomed.state", "--json"))
    assert failed[0]["failure"]["message"] == "RuntimeError: this machine always fails"
    result = doves("history", str(prepared), "garbled.state")
    assert result.returncode == 0, result.stderr
    assert "malformed_json" in result.stdout
    header = doves("history", str(prepared), "count1.state").stdout.splitlines()[0]
    assert all(column in header for column in ("TOOK", "PAYLOAD", "NOTE"))


# -- status --by-state ---------------------------------------------------------------------------


def test_status_by_state_counts_each_state_name(doves: Doves, prepared: Path) -> None:
    result = doves("status", str(prepared), "--by-state")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.split("by state:\n")[1].splitlines()[1:]}
    assert rows == {"?": ["0", "0", "0", "1"], "always-fails": ["0", "0", "0", "2"], "counted": ["0", "0", "6", "0"]}
    document = _json(doves("status", str(prepared), "--by-state", "--json"))
    assert document["by_state"]["counted"] == {"pending": 0, "scheduled": 0, "waiting": 0, "in_progress": 0,
                                               "done": 6, "failed": 0}
    assert document["done"] == 6


# -- retry and forget ----------------------------------------------------------------------------


def test_retry_takes_the_filters_and_says_how_many(doves: Doves, store: Path) -> None:
    result = doves("retry", str(store), "--code", "tick_failed", "--text", "cursed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"1 failed state(s) in {store} pending again"
    assert [r["name"] for r in _json(doves("list", str(store), "--status", "pending", "--json"))] == ["cursed.state"]
    both = doves("retry", str(store), "doomed.state", "--code", "tick_failed")
    assert both.returncode == 2
    assert one_line(both.stderr).startswith("doves: error: give state NAMEs or choose states with filters")


def test_forget_removes_ended_machines_it_is_told_about(doves: Doves, store: Path) -> None:
    nothing = doves("forget", str(store))
    assert nothing.returncode == 2
    assert one_line(nothing.stderr).startswith("doves: error: name the states to forget")

    result = doves("forget", str(store), "--status", "failed")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"forgot 3 state(s) of the machines of 3 state(s) in {store}"
    assert not (store / "failed" / "doomed.state").exists() and not (store / "failed" / "garbled.state").exists()
    status = doves.status(store)
    assert (status["failed"], status["done"]) == (0, 6)

    again = doves("forget", str(store), "--status", "failed")
    assert again.returncode == 1 and again.stdout.strip() == "no done or failed state matches: nothing forgotten"
    whole = doves("forget", str(store), "count2.state-1")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.startswith("forgot 2 state(s)")  # the whole machine: count2.state and its successor
    assert doves("history", str(store), "count2.state").returncode == 1


def test_a_machine_still_running_is_never_forgotten(doves: Doves, store: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_state(incoming, "late.state", "counted", {"id": 9, "count": 1, "log": "/dev/null"})
    assert doves("submit", str(store), str(incoming), "--allow-unknown-states").returncode == 0
    result = doves("forget", str(store), "late.state")
    assert result.returncode == 1
    assert one_line(result.stderr) == "doves: nothing was forgotten: those machines have not ended (or are not there)"
    assert (store / "late.state").exists()


def output_waiting(leader: int) -> bool:
    """Whether the terminal has output not read yet."""
    return bool(select.select([leader], [], [], 0)[0])


def _on_a_terminal(args: list[str], answer: bytes | None = None, seconds: float = 60.0,
                   until: Callable[[str], bool] | None = None, stop: int | None = None,
                   sigint_ignored: bool = False) -> tuple[int, str]:
    """Run ``doves ARGS`` on an 80-column pseudo-terminal; type ``answer``, or ``stop`` it once ``until``."""
    leader, follower = pty.openpty()
    env = environment({"COLUMNS": "80", "LINES": "50", "TERM": "xterm-256color"})
    # A command started in the background of a script inherits SIGINT ignored (sigint_ignored).
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    process = subprocess.Popen(command(*args), stdin=follower, stdout=follower, stderr=follower, env=env,
                               start_new_session=True, preexec_fn=ignore)
    os.close(follower)
    output = b""
    deadline = time.monotonic() + seconds
    try:
        # Read until the command ends (it writes to the terminal until then, and would block
        # on a full one); stop it once ``until`` holds, or at the deadline in any case.
        while process.poll() is None or output_waiting(leader):
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break  # the terminal closed: the command is done
                if not chunk:
                    break
                output += chunk
                if answer is not None and b"?" in output:
                    os.write(leader, answer)
                    answer = None
            overdue = time.monotonic() > deadline
            if stop is not None and (overdue or (until is not None and until(ANSI.sub("", output.decode(
                    errors="replace"))))):
                process.send_signal(stop)
                stop = None
                deadline = time.monotonic() + COMMAND_TIMEOUT
            elif overdue:
                break
        code = process.wait(COMMAND_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    return code, ANSI.sub("", REDRAW.sub("\n", output.decode(errors="replace"))).replace("\r", "")


def test_forget_and_retry_ask_on_a_terminal(store: Path) -> None:
    code, output = _on_a_terminal(["forget", str(store), "--status", "failed"], answer=b"n\n")
    assert code == 1 and "Delete the machines of 3 state(s)" in output and "nothing changed" in output
    assert (store / "failed" / "doomed.state").exists()
    code, output = _on_a_terminal(["retry", str(store)], answer=b"y\n")
    assert code == 0 and "Make 3 failed state(s)" in output and "3 failed state(s)" in output


# -- status --watch -------------------------------------------------------------------------------


def test_status_watch_prints_a_block_per_refresh_off_a_terminal_and_stops_on_sigterm(
        start_doves: Callable[..., Running], doves: Doves, prepared: Path) -> None:
    running = start_doves("status", str(prepared), "--watch", "--refresh-seconds", "0.2", "--by-state")
    running.wait_for(lambda: running.output.count(f"--- {prepared} at ") >= 2, "two refreshes")
    assert "by state:" in running.output and "failed:      3" in running.output
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    refused = doves("status", str(prepared), "--watch", "--json")
    assert refused.returncode == 2
    assert one_line(refused.stderr).startswith("doves: error: --watch shows a live view")


def test_status_watch_is_a_live_view_that_fits_80_columns(prepared: Path) -> None:
    # A status read that takes long (a loaded machine) spaces the next by nine times its duration.
    code, output = _on_a_terminal(["status", str(prepared), "--watch", "--refresh-seconds", "0.3"], seconds=150.0,
                                  until=lambda text: text.count("recent failures") >= 2, stop=signal.SIGINT,
                                  sigint_ignored=True)
    assert code == 0, output
    for part in ("doves status", "0 pending", "6 done", "3 failed", "transitions/s", "by state", "always-fails",
                 "recent failures", "doomed.state"):
        assert part in output, (part, output[-4000:])
    assert output.count("recent failures") >= 2, output[-4000:]  # redrawn: a live view
    assert max(len(line) for line in output.splitlines()) <= 80


# -- PostgreSQL -----------------------------------------------------------------------------------


def test_the_commands_read_a_postgresql_store_alike(doves: Doves, pg_url: str, tmp_path: Path,
                                                    machines_py: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_state(incoming, "pg-doomed.state", "always-fails", {"why": "a test"})
    write_state(incoming, "pg-fine.state", "counted", {"id": 1, "count": 2, "log": str(tmp_path / "log")})
    assert doves("submit", pg_url, str(incoming), "--machines", str(machines_py)).returncode == 0
    assert doves("run", pg_url, "--machines", str(machines_py), "--max-attempts", "2", "--retry-base-seconds", "0",
                 "--no-progress").returncode == 1
    failed = _json(doves("list", pg_url, "--status", "failed", "--json"))
    assert [r["name"] for r in failed] == ["pg-doomed.state"] and set(failed[0]) == RECORD_KEYS
    shown = _json(doves("show", pg_url, "pg-doomed.state", "--json"))
    assert shown["attempts"] == 2 and "Traceback" in shown["failure"]["traceback"]
    by_state = _json(doves("status", pg_url, "--by-state", "--json"))["by_state"]
    assert by_state["counted"]["done"] == 2 and by_state["always-fails"]["failed"] == 1
    lineage = _json(doves("history", pg_url, "pg-fine.state-1", "--json"))
    assert [e["name"] for e in lineage] == ["pg-fine.state", "pg-fine.state-1"]
    assert lineage[1]["machine"] == "pg-fine.state" and lineage[1]["parent"] == "pg-fine.state"
    forgot = doves("forget", pg_url, "--state", "counted")
    assert forgot.returncode == 0 and forgot.stdout.startswith("forgot 2 state(s)"), forgot.stderr
    assert doves("show", pg_url, "pg-fine.state").returncode == 1
