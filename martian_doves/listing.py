"""What ``doves list`` and ``doves show`` print: states found, and one state opened whole.

As in ``report``: tables for a terminal, aligned text for pipes, JSON for scripts, and
nothing printed here. Every value a payload or a handler's error may have shaped goes
through ``text`` first, so no state can put a control character on an operator's terminal.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from martian_doves.model import JSONDict, StateRecord, Status
from martian_doves.report import (
    STATUS_STYLES,
    cell,
    format_age,
    format_duration,
    format_short_time,
    format_time,
    plain_table,
)
from martian_doves.text import json_text, one_line

#: Columns of ``doves list``.
LIST_COLUMNS = ("state file", "state", "status", "worker", "changed", "failed attempts", "reason")


# -- list ------------------------------------------------------------------------------------


def list_rows(records: Sequence[StateRecord], now: float | None = None, *, short: bool = False) -> list[list[str]]:
    """One row of ``LIST_COLUMNS`` per record (``short``: times as a terminal column shows them)."""
    when = (lambda t: format_short_time(t, now)) if short else format_time
    return [[cell(r.name), cell(r.state), r.status.value, cell(r.worker), when(r.updated_at), str(r.attempts),
             cell(r.reason)] for r in records]


def list_dicts(records: Sequence[StateRecord]) -> list[JSONDict]:
    """``list --json``: one object per state (``StateRecord.as_dict``), newest first."""
    return [record.as_dict() for record in records]


def list_text(records: Sequence[StateRecord]) -> str:
    return plain_table(LIST_COLUMNS, list_rows(records)) if records else "no state matches"


def list_renderable(records: Sequence[StateRecord]) -> RenderableType:
    if not records:
        return Text("no state matches", style="dim")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for column in LIST_COLUMNS:
        if column == "reason":
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, overflow="fold")
    for record, row in zip(records, list_rows(records, short=True), strict=True):
        table.add_row(*row[:2], Text(row[2], style=STATUS_STYLES.get(record.status, "")), *row[3:])
    return table


# -- show ------------------------------------------------------------------------------------


def _fields(record: StateRecord, now: float) -> list[tuple[str, str]]:
    fields = [("state file", record.name), ("state", record.state), ("status", record.status.value),
              ("machine", record.machine_name), ("parent", record.parent or "-"), ("worker", record.worker or "-"),
              ("submitted", format_time(record.submitted_at)), ("claimed", format_time(record.claimed_at)),
              ("finished", format_time(record.finished_at)), ("took", format_duration(record.duration_seconds)),
              ("failed attempts", str(record.attempts)), ("retries asked", str(record.retries))]
    if record.not_before is not None:
        fields.append(("due", f"{format_time(record.not_before)} (in {format_age(record.not_before - now)})"))
    if record.wait is not None:
        fields.append(("waits for", json_text(record.wait.as_dict(), separators=(", ", ": "))))
    if record.event is not None:
        fields.append(("event", json_text(record.event.as_payload(), separators=(", ", ": "))))
    if record.origin is not None:
        fields.append(("spawned by", f"{record.origin.parent} (child {record.origin.index})"))
    if record.children:
        fields.append(("children", ", ".join(record.children)))
    if record.failure is not None:
        fields.append(("failure", f"{record.failure.code}: {record.failure.message}"))
    return [(key, cell(value)) for key, value in fields]


def _payload_lines(record: StateRecord) -> list[str]:
    if record.payload is None:
        return ["(the state file cannot be read: see the failure)"]
    return json_text(record.payload, indent=2).splitlines()


def _traceback_lines(record: StateRecord) -> list[str]:
    traceback = record.failure.traceback if record.failure is not None else None
    return [one_line(line) for line in traceback.rstrip("\n").split("\n")] if traceback else []


def show_dict(record: StateRecord) -> JSONDict:
    """``show --json``: the whole record (``StateRecord.as_dict``)."""
    return record.as_dict()


def show_text(record: StateRecord, now: float | None = None) -> str:
    """``doves show`` for a pipe: fields, then payload, errors and traceback as blocks."""
    now = time.time() if now is None else now
    fields = _fields(record, now)
    width = max(len(key) for key, _ in fields) + 1
    parts = ["\n".join(f"{key + ':':<{width}} {value}" for key, value in fields)]
    parts.append("payload:\n" + "\n".join(f"  {line}" for line in _payload_lines(record)))
    if record.errors:
        parts.append("errors, oldest first:\n" + "\n".join(
            f"  {index}. {cell(error)}" for index, error in enumerate(record.errors, 1)))
    traceback = _traceback_lines(record)
    if traceback:
        parts.append("traceback:\n" + "\n".join(f"  {line}" for line in traceback))
    return "\n\n".join(parts)


def show_renderable(record: StateRecord, now: float | None = None) -> RenderableType:
    """``doves show`` for a terminal: the same blocks, the status in its colour."""
    now = time.time() if now is None else now
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for key, value in _fields(record, now):
        style = STATUS_STYLES.get(record.status, "") if key == "status" else ""
        grid.add_row(key, Text(value, style="red" if key == "failure" else style))
    parts: list[RenderableType] = [grid, Text("payload", style="bold"),
                                   Text("\n".join(_payload_lines(record)), overflow="fold")]
    if record.errors:
        errors = Table("#", "error, oldest first", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for index, error in enumerate(record.errors, 1):
            errors.add_row(str(index), Text(cell(error), overflow="fold"))
        parts.append(errors)
    traceback = _traceback_lines(record)
    if traceback:
        parts += [Text("traceback", style="bold"), Text("\n".join(traceback), style="red", overflow="fold")]
    return Group(*parts)


def is_settled(record: StateRecord) -> bool:
    """Whether a state no longer moves by itself (done or failed): what ``forget`` may remove."""
    return record.status in (Status.DONE, Status.FAILED)
