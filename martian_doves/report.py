"""What ``doves status``, ``history`` and ``run`` show: tables, JSON, progress.

Formatting lives here, not in the stores: a store returns ``StatusReport`` and
``HistoryEntry`` records, this module turns them into rich tables for a terminal,
plain aligned text for pipes and logs, or JSON. Nothing here coordinates anything,
and nothing here prints: the CLI decides where the output goes.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from martian_doves.model import HistoryEntry, JSONDict, Status, StatusReport, WorkerInfo
from martian_doves.text import one_line

log = logging.getLogger("martian_doves.progress")

#: Colours of the status words on a terminal.
STATUS_STYLES = {
    Status.PENDING: "yellow",
    Status.SCHEDULED: "blue",
    Status.WAITING: "magenta",
    Status.IN_PROGRESS: "cyan",
    Status.DONE: "green",
    Status.FAILED: "bold red",
}
#: Columns of ``doves history``.
#: "failed attempts": a state done at its first try shows 0, one that failed shows all its tries.
#: "note": why it failed, or what it waits for, received, was scheduled for or spawned.
HISTORY_COLUMNS = ("state file", "state", "status", "worker", "when", "took", "failed attempts", "payload", "note")
#: Columns of the workers' table of ``doves status``.
WORKER_COLUMNS = ("worker", "host", "pid", "up", "last seen", "done", "holds", "state")
#: Columns of the in-progress table of ``doves status``: who holds what, since when.
CLAIM_COLUMNS = ("state file", "state", "worker", "since")
#: Most claims ``doves status`` lists (a fleet may hold thousands).
MAX_CLAIMS_SHOWN = 20
#: Columns of ``status --by-state``, after the state name: the statuses, in the order states move.
BY_STATE_STATUSES = (Status.PENDING, Status.SCHEDULED, Status.WAITING, Status.IN_PROGRESS, Status.DONE,
                     Status.FAILED)
#: Longest payload ``history`` shows in a table (``--json`` and ``show`` give it whole).
PAYLOAD_CHARS = 60


def format_time(epoch_seconds: float | None) -> str:
    """Local wall time of an epoch timestamp, or ``-``."""
    if epoch_seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_seconds))


def format_short_time(epoch_seconds: float | None, now: float | None = None) -> str:
    """``14:02:11`` for today, ``2024-05-19 14:02`` otherwise: a terminal column stays narrow."""
    if epoch_seconds is None:
        return "-"
    today = time.localtime(time.time() if now is None else now)[:3]
    moment = time.localtime(epoch_seconds)
    return time.strftime("%H:%M:%S" if moment[:3] == today else "%Y-%m-%d %H:%M", moment)


def format_age(seconds: float) -> str:
    """``42 s``, ``3 min``, ``2.5 h``, ``4.0 d``: how long ago, roughly."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_duration(seconds: float | None) -> str:
    """``0.25 s``, ``12 s``, ``3 min``: how long something took, or ``-``."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 10 else format_age(seconds)


def cell(text: str | None) -> str:
    """``text`` as one table cell: one line, runs of blanks as one space, ``-`` if empty."""
    return one_line(" ".join((text or "").split())) or "-"


def compact_json(value: Any, limit: int = PAYLOAD_CHARS) -> str:
    """``value`` as one line of JSON, cut to about ``limit`` characters (``-`` for None)."""
    if value is None:
        return "-"
    text = cell(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; the last column is not padded."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths[:-1], strict=True)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return "\n".join([line([h.upper() for h in headers]), *(line(row) for row in rows)])


# -- status -------------------------------------------------------------------------------


def status_dict(report: StatusReport) -> JSONDict:
    """The ``status --json`` object: at least pending, in_progress, done, failed, workers."""
    return report.as_dict()


def worker_state(worker: WorkerInfo, now: float) -> str:
    """``alive``, or ``dead`` and how the fleet knows: its supervisor's word, or its lease ran out."""
    if worker.alive:
        return "alive"
    if worker.ended is not None:
        return f"dead: {cell(worker.ended)}"
    return f"dead: no heartbeat for {format_age(now - worker.last_seen)}"


def _worker_rows(report: StatusReport, now: float) -> list[list[str]]:
    rows = []
    for w in report.workers:
        uptime = w.uptime_seconds(now)
        rows.append([w.name, w.host, str(w.pid), "-" if uptime is None else format_age(uptime),
                     f"{format_age(now - w.last_seen)} ago", "-" if w.processed is None else str(w.processed),
                     str(len(w.claims)), worker_state(w, now)])
    return rows


def claim_rows(report: StatusReport, now: float, limit: int = MAX_CLAIMS_SHOWN) -> tuple[list[list[str]], int]:
    """The claims the workers hold, oldest first: rows of ``CLAIM_COLUMNS`` and how many more there are."""
    claims = sorted(((c, w.name) for w in report.workers for c in w.claims), key=lambda cw: cw[0].since or 0.0)
    rows = [[c.name, c.state, worker, "-" if c.since is None else f"{format_age(now - c.since)} ago"]
            for c, worker in claims[:limit]]
    return rows, max(0, len(claims) - limit)


def _count_lines(report: StatusReport, now: float) -> list[tuple[str, str]]:
    oldest = ""
    if report.oldest_pending_at is not None and report.pending:
        oldest = f"  (oldest since {format_age(now - report.oldest_pending_at)})"
    alive = sum(1 for w in report.workers if w.alive)
    lines = [(str(key), str(value)) for key, value in report.details.items() if key != NO_WORKER_FOR]
    lines += [
        ("pending", f"{report.pending}{oldest}"),
        ("scheduled", str(report.scheduled)),
        ("waiting", str(report.waiting)),
        ("in progress", str(report.in_progress)),
        ("done", str(report.done)),
        ("failed", str(report.failed)),
        ("workers", f"{alive} alive, {len(report.workers)} registered"),
    ]
    lines += [("no worker for", line) for line in unrunnable_lines(report, now)]
    return lines


#: The key of ``StatusReport.details`` listing states that no live worker has a machine for.
NO_WORKER_FOR = "no_worker_for"


def unrunnable_lines(report: StatusReport, now: float) -> list[str]:
    """``no live worker can run state X: N pending, oldest since T`` for each such state name."""
    found = report.details.get(NO_WORKER_FOR) or []
    lines = []
    for entry in found if isinstance(found, list) else []:
        if not isinstance(entry, dict):
            continue
        since = entry.get("oldest_pending_at")
        age = f", oldest since {format_age(now - since)}" if isinstance(since, int | float) else ""
        lines.append(f"no live worker can run state {entry.get('state')!s}: {entry.get('count')} pending{age}")
    return lines


def status_text(report: StatusReport, now: float | None = None) -> str:
    """``doves status`` for a pipe or a log: aligned plain text."""
    now = time.time() if now is None else now
    counts = _count_lines(report, now)
    width = max(len(key) for key, _ in counts) + 1
    parts = ["\n".join(f"{key + ':':<{width}} {value}" for key, value in counts)]
    if report.workers:
        parts.append(plain_table(WORKER_COLUMNS, _worker_rows(report, now)))
    claims, more = claim_rows(report, now)
    if claims:
        parts.append("in progress:\n" + plain_table(CLAIM_COLUMNS, claims) + (f"\n... and {more} more" if more else ""))
    if report.recent_failures:
        rows = [[name, code, cell(message)] for name, code, message in report.recent_failures]
        parts.append("recent failures:\n" + plain_table(("state file", "code", "message"), rows))
    return "\n\n".join(parts)


def status_renderable(report: StatusReport, now: float | None = None) -> RenderableType:
    """``doves status`` for a terminal: rich tables."""
    now = time.time() if now is None else now
    counts = Table.grid(padding=(0, 2))
    counts.add_column(style="bold")
    counts.add_column()
    styles = {"pending": "yellow", "in progress": "cyan", "done": "green", "failed": "red"}
    for key, value in _count_lines(report, now):
        style = styles.get(key, "")
        if key == "failed" and report.failed == 0:
            style = ""
        counts.add_row(key, Text(value, style=style))
    parts: list[RenderableType] = [counts]
    if report.workers:
        parts.append(workers_table(report, now))
    claims, more = claim_rows(report, now)
    if claims:
        held = Table(*CLAIM_COLUMNS, title="in progress", title_justify="left",
                     caption=f"... and {more} more" if more else None)
        for row in claims:
            held.add_row(*row)
        parts.append(held)
    if report.recent_failures:
        failures = Table("state file", "code", "message", title="recent failures", title_justify="left")
        for name, code, message in report.recent_failures:
            failures.add_row(name, Text(code, style="red"), cell(message))
        parts.append(failures)
    return Group(*parts)


def workers_table(report: StatusReport, now: float) -> Table:
    """The workers as a rich table: a dead one in red, with how the fleet knows."""
    table = Table(*WORKER_COLUMNS[:-1], title="workers", title_justify="left")
    table.add_column(WORKER_COLUMNS[-1], overflow="fold")
    for row in _worker_rows(report, now):
        table.add_row(*row[:-1], Text(row[-1], style="green" if row[-1] == "alive" else "red"))
    return table


# -- per state name -------------------------------------------------------------------------


def by_state_rows(counts: Mapping[str, Mapping[Status, int]]) -> tuple[list[str], list[list[str]]]:
    """``status --by-state``: the headers (statuses none of which is held left out) and one row per state."""
    shown = [s for s in BY_STATE_STATUSES if s in (Status.PENDING, Status.IN_PROGRESS, Status.DONE, Status.FAILED)
             or any(found.get(s) for found in counts.values())]
    headers = ["state", *(s.value.replace("_", " ") for s in shown)]
    return headers, [[state, *(str(found.get(s, 0)) for s in shown)] for state, found in sorted(counts.items())]


def by_state_dict(counts: Mapping[str, Mapping[Status, int]]) -> JSONDict:
    """``status --by-state --json``'s ``by_state``: each state name, every status counted (0 included)."""
    return {state: {s.value: found.get(s, 0) for s in BY_STATE_STATUSES} for state, found in sorted(counts.items())}


def by_state_text(counts: Mapping[str, Mapping[Status, int]]) -> str:
    headers, rows = by_state_rows(counts)
    return "by state:\n" + plain_table(headers, rows) if rows else "by state: no states"


def by_state_table(counts: Mapping[str, Mapping[Status, int]]) -> Table:
    headers, rows = by_state_rows(counts)
    table = Table(title="by state", title_justify="left")
    table.add_column(headers[0], overflow="fold", ratio=1)
    for header in headers[1:]:
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row[0], *(Text(value, style=_count_style(header, value))
                                for header, value in zip(headers[1:], row[1:], strict=True)))
    return table


def _count_style(header: str, value: str) -> str:
    if value == "0":
        return "dim"
    return STATUS_STYLES.get(Status(header.replace(" ", "_")), "")


# -- history ------------------------------------------------------------------------------


def history_rows(entries: Sequence[HistoryEntry]) -> list[list[str]]:
    """One row of ``HISTORY_COLUMNS`` per state of the lineage."""
    return [
        [
            entry.name,
            entry.state,
            entry.status.value,
            entry.worker or "-",
            format_time(entry.finished_at),
            format_duration(entry.duration_seconds),
            str(entry.attempts),
            compact_json(entry.payload),
            cell(history_note(entry)),
        ]
        for entry in entries
    ]


def history_note(entry: HistoryEntry) -> str | None:
    """What a history row says beyond its columns: the failure, or the timer, wait, event or children."""
    notes = []
    if entry.origin is not None:
        notes.append(f"child {entry.origin.index} of {entry.origin.parent}")
    if entry.status is Status.SCHEDULED and entry.not_before is not None:
        notes.append(f"due {format_time(entry.not_before)}")
    wait = entry.wait
    if wait is not None and wait.is_join:
        notes.append(f"joins {wait.children} child machine(s), then {wait.then}")
    elif wait is not None:
        until = f" until {format_time(wait.deadline)} (then {wait.on_timeout or 'fail'})" if wait.deadline else ""
        notes.append(f"waits for event {wait.event!r}{until}, then {wait.then}")
    if entry.event is not None:
        notes.append(f"received {entry.event.name!r} sent {format_time(entry.event.sent_at)}")
    if entry.children:
        shown = ", ".join(entry.children[:3]) + (", ..." if len(entry.children) > 3 else "")
        notes.append(f"spawned {len(entry.children)}: {shown}")
    if entry.reason:
        notes.append(entry.reason)
    return "; ".join(notes) or None


def history_dicts(entries: Sequence[HistoryEntry]) -> list[JSONDict]:
    """``history --json``: one object per state of the lineage, oldest first (``StateRecord.as_dict``:
    payload, times, duration, every attempt's error, the failure with its traceback)."""
    return [entry.as_dict() for entry in entries]


def history_text(entries: Sequence[HistoryEntry]) -> str:
    """``doves history`` for a pipe: an aligned plain table."""
    return plain_table(HISTORY_COLUMNS, history_rows(entries))


def history_renderable(entries: Sequence[HistoryEntry]) -> RenderableType:
    """``doves history`` for a terminal: a rich table with coloured statuses."""
    rows = history_rows(entries)
    for entry, row in zip(entries, rows, strict=True):
        row[4] = format_short_time(entry.finished_at)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for index, column in enumerate(HISTORY_COLUMNS):
        if column in ("payload", "note"):  # the columns that wrap: names and times stay whole
            table.add_column(column, overflow="fold", ratio=1)
        else:
            table.add_column(column, no_wrap=True, min_width=max([len(column), *(len(r[index]) for r in rows)]))
    for entry, row in zip(entries, rows, strict=True):
        table.add_row(*row[:2], Text(row[2], style=STATUS_STYLES.get(entry.status, "")), *row[3:])
    return table


# -- progress of ``doves run`` --------------------------------------------------------------


class RateMeter:
    """Transitions per second over a sliding window of (time, finished count) samples."""

    def __init__(self, window_seconds: float = 10.0) -> None:
        self.window_seconds = window_seconds
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, at: float, finished: int) -> float:
        """Record that ``finished`` states were done or failed at monotonic time ``at``; the rate."""
        self._samples.append((at, finished))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window_seconds:
            self._samples.popleft()
        first_at, first = self._samples[0]
        if at <= first_at:
            return 0.0
        return max(0, finished - first) / (at - first_at)


def progress_line(report: StatusReport, running: int, rate: float) -> str:
    """``12.0 transitions/s, 10 pending, 4 in progress, 120 done, 0 failed, 4 workers``."""
    return (
        f"{rate:.1f} transitions/s, {report.pending} pending, {report.in_progress} in progress, "
        f"{report.done} done, {report.failed} failed, {running} worker(s) running"
    )


class LiveProgress:
    """A live one-line display at the bottom of the terminal; log lines scroll above it.

    Use as a context manager around the run, give it to the supervisor as its progress
    sink, and route log and worker output through ``write`` while it is shown.
    """

    def __init__(self, console: Console, title: str = "doves") -> None:
        self.console = console
        self.title = title
        self._meter = RateMeter()
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._line: RenderableType = Text(f"{title}: starting workers ...", style="dim")
        self._live = Live(self._render(), console=console, refresh_per_second=4, transient=False,
                          redirect_stdout=False, redirect_stderr=False, get_renderable=self._render)

    def _render(self) -> RenderableType:
        return self._line

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def update(self, report: StatusReport, running: int) -> None:
        now = time.monotonic()
        rate = self._meter.add(now, report.done + report.failed)
        elapsed = int(now - self._started)
        line = Text.assemble(
            (f"{elapsed // 60}:{elapsed % 60:02d}  ", "dim"),
            (f"{rate:.1f}", "bold"), " transitions/s  ",
            (str(report.pending), "yellow"), " pending  ",
            (str(report.in_progress), "cyan"), " in progress  ",
            (str(report.done), "green"), " done  ",
            (str(report.failed), "bold red" if report.failed else ""), " failed  ",
            (str(running), "bold"), " workers",
            no_wrap=True, overflow="ellipsis",
        )
        with self._lock:
            self._line = line
        self._live.refresh()

    def write(self, line: str) -> None:
        """Print a log line above the live display (thread-safe)."""
        self.console.print(Text(line), soft_wrap=True, highlight=False, markup=False)


class LogProgress:
    """Progress as a log line every ``interval_seconds``, for pipes, files and containers."""

    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._meter = RateMeter(window_seconds=max(10.0, 2 * interval_seconds))
        self._next_at = 0.0
        self._last: tuple[int, ...] | None = None

    def update(self, report: StatusReport, running: int) -> None:
        now = time.monotonic()
        rate = self._meter.add(now, report.done + report.failed)
        counts = (report.pending, report.in_progress, report.done, report.failed, running)
        if now < self._next_at or counts == self._last:
            return  # an idle --watch run logs nothing until something changes
        self._next_at = now + self.interval_seconds
        self._last = counts
        fields: dict[str, Any] = {
            "action": "progress", "rate": round(rate, 2), "pending": report.pending,
            "in_progress": report.in_progress, "done": report.done, "failed": report.failed,
            "running": running,
        }
        log.info("progress: %s", progress_line(report, running, rate), extra=fields)
