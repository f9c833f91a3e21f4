"""Log records are one line each, whatever the text they carry (issue 12, item 10).

Payload values reach log messages, tracebacks and what machines print. A line break
followed by something that looks like a record, or a terminal escape code, must not
forge a record or reach the terminal raw: the text format escapes control characters
and indents a traceback's lines; the JSON format escapes as JSON does (C1 included);
lines a worker process prints become records; the supervisor escapes whatever else
reaches it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterator

import pytest

from martian_doves.logs import (
    CONTINUATION_INDENT,
    OUTPUT_LOGGER,
    JsonFormatter,
    PrintedLines,
    TextFormatter,
    relayed_line,
    setup_logging,
)

#: A value an attacker puts in a payload: a forged record on a line of its own, and colour codes.
FORGED = "x\n2026-01-01 00:00:00 ERROR x-supervisor: forged\r\x1b[31mred\x9b1m\x07"
#: The start of a text record.
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
#: Characters a terminal acts on: C0 (line breaks, ESC, BEL), DEL and C1 (0x9b is CSI).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _record(message: str = "value %s", *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(FORGED)
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("forger", logging.INFO, __file__, 1, message, args, exc_info)
    record.worker = "w-1"
    return record


def test_text_records_escape_control_characters() -> None:
    line = TextFormatter().format(_record("value %s", FORGED))
    assert "\n" not in line and not CONTROL.search(line)
    assert line.endswith("value x\\n2026-01-01 00:00:00 ERROR x-supervisor: forged\\r\\x1b[31mred\\x9b1m\\x07")


def test_a_traceback_keeps_its_lines_each_marked_as_a_continuation() -> None:
    text = TextFormatter().format(_record("caught", exc=True))
    first, *rest = text.split("\n")
    assert RECORD_START.match(first) and first.endswith("w-1: caught")
    assert rest and all(line.startswith(CONTINUATION_INDENT) for line in rest)
    assert any(line.strip() == "Traceback (most recent call last):" for line in rest)
    assert not any(RECORD_START.match(line) for line in rest)
    assert not CONTROL.search(text.replace("\n", ""))
    # The exception's message is still there to read, its line breaks as lines of their own.
    assert f"{CONTINUATION_INDENT}2026-01-01 00:00:00 ERROR x-supervisor: forged\\r\\x1b[31mred\\x9b1m\\x07" in rest


def test_json_records_escape_every_control_character() -> None:
    text = JsonFormatter().format(_record("value %s", FORGED, exc=True))
    assert "\n" not in text and not CONTROL.search(text)
    document = json.loads(text)
    assert document["message"] == f"value {FORGED}"
    assert FORGED in document["exception"]


@pytest.mark.parametrize("json_lines", [False, True])
def test_relayed_lines_hold_no_control_character(json_lines: bool) -> None:
    """What reaches the supervisor by other ways than logging (a child process's output)."""
    for line in ("\x1b[31mred", '{"level": "error", "message": "\x1b[31m"}', "\x9b2J"):
        relayed = relayed_line(line, "w-1", json_lines)
        assert not CONTROL.search(relayed), relayed
        if json_lines:
            assert json.loads(relayed)["message"] == line


def test_relayed_records_pass_unchanged() -> None:
    text = TextFormatter().format(_record("value %s", FORGED))
    assert relayed_line(text, "w-1", False) == text
    document = JsonFormatter().format(_record("value %s", FORGED))
    assert relayed_line(document, "w-1", True) == document


@pytest.fixture
def captured_lines() -> Iterator[list[str]]:
    """Records of the output logger, formatted as text, as a ``setup_logging`` writer receives them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    lines: list[str] = []
    setup_logging("info", "text", worker="w-1", writer=lines.append)
    yield lines
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_printed_lines_become_escaped_records(captured_lines: list[str]) -> None:
    stream = PrintedLines(sys.__stderr__ or sys.stderr)
    print("printed", FORGED, file=stream)
    print("unfinished", end="", file=stream, flush=True)
    assert len(captured_lines) == 2  # "printed x" and the forged line; "unfinished" waits for its line break
    stream.finish()
    assert captured_lines[-1].endswith("w-1: unfinished")
    for line in captured_lines:
        assert RECORD_START.match(line) and " INFO    w-1: " in line and not CONTROL.search(line)
    assert captured_lines[1].endswith("w-1: 2026-01-01 00:00:00 ERROR x-supervisor: forged\\r\\x1b[31mred\\x9b1m\\x07")


def test_printed_lines_of_concurrent_threads_never_mix(captured_lines: list[str]) -> None:
    stream = PrintedLines(sys.__stderr__ or sys.stderr)
    start = threading.Barrier(4)

    def chatter(index: int) -> None:
        start.wait()
        for count in range(200):
            stream.write(f"thread {index} ")
            stream.write(f"line {count}")
            stream.write("\n")

    threads = [threading.Thread(target=chatter, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    messages = [line.partition("w-1: ")[2] for line in captured_lines]
    assert sorted(messages) == sorted(f"thread {i} line {c}" for i in range(4) for c in range(200))


def test_printed_lines_use_the_output_logger(captured_lines: list[str]) -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    logging.getLogger(OUTPUT_LOGGER).addHandler(keep)
    try:
        print("hello", file=PrintedLines(sys.__stderr__ or sys.stderr))
    finally:
        logging.getLogger(OUTPUT_LOGGER).removeHandler(keep)
    assert [(r.name, r.getMessage(), getattr(r, "action", None)) for r in seen] == [(OUTPUT_LOGGER, "hello", "output")]


def test_records_a_tick_emits_name_its_state_file_in_text_and_json(captured_lines: list[str]) -> None:
    """What a machine logs and prints while it ticks names the state file (issue 10, item 4)."""
    from martian_doves.config import WorkerOptions
    from martian_doves.model import State
    from martian_doves.registry import Registry
    from martian_doves.stores.memory import MemoryStore
    from martian_doves.worker import Worker

    def noisy(payload: dict[str, int]) -> None:
        print("printed by the machine", file=stream)
        logging.getLogger("user.machine").warning("logged by the machine")

    stream = PrintedLines(sys.__stderr__ or sys.stderr)
    registry = Registry()
    registry.register("noisy", noisy)
    store = MemoryStore()
    store.submit([State("loud.state", "noisy", {})])
    Worker(store, registry, WorkerOptions(name="w-1")).step()
    logging.getLogger("after").warning("not in a tick")
    machine = [line for line in captured_lines if "by the machine" in line]
    assert len(machine) == 2
    assert all(" w-1 loud.state: " in line for line in machine), machine
    assert captured_lines[-1].endswith(" w-1: not in a tick")

    json_lines: list[str] = []
    setup_logging("info", "json", worker="w-1", writer=json_lines.append)
    store.submit([State("quiet.state", "noisy", {})])
    Worker(store, registry, WorkerOptions(name="w-1")).step()
    logging.getLogger("after").warning("not in a tick")
    documents = [json.loads(line) for line in json_lines]
    assert [d["state_name"] for d in documents if "by the machine" in d["message"]] == ["quiet.state"] * 2
    assert "state_name" not in documents[-1]
