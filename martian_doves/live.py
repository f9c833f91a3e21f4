"""``doves status --watch``: the store's status, live, until Ctrl-C.

Every ``refresh_seconds`` one ``Frame`` is read (the status, the counts by state name,
the rate) and drawn: on a terminal in place (rich ``Live``), fitted to its width (80
columns is enough); elsewhere as plain text, one block per refresh. A store that cannot
be read is an outage, shown in red with the last counts, never the end of the view.
As the sampler does, a slow count waits nine times its duration before the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from martian_doves.model import Status, StatusReport
from martian_doves.report import (
    RateMeter,
    by_state_table,
    by_state_text,
    cell,
    claim_rows,
    format_age,
    format_short_time,
    status_text,
    unrunnable_lines,
    workers_table,
)
from martian_doves.sampler import next_status_after
from martian_doves.stores.base import InspectableStore, Store

#: Most claims and failures the live view lists (the rest is counted).
SHOWN_ROWS = 8


@dataclass(frozen=True)
class Frame:
    """What one refresh of ``status --watch`` read."""

    #: The last status read (kept through an outage); None before the first.
    report: StatusReport | None
    #: Counts by state name, when the store can give them.
    by_state: dict[str, dict[Status, int]] | None
    #: Transitions (done + failed) per second over the last refreshes.
    rate: float
    #: When ``report`` was read, epoch seconds.
    sampled_at: float | None
    #: Why the store could not be read this time; None if it could.
    error: str | None = None
    #: Since when it cannot be read, epoch seconds.
    error_since: float | None = None


class StatusReader:
    """Reads frames from a store: one ``status()`` (and counts by state) per ``read``."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._meter = RateMeter(window_seconds=10.0)
        self._last = Frame(None, None, 0.0, None)

    def read(self) -> Frame:
        now = self._clock()
        try:
            report = self._store.status()
            by_state = self._store.counts_by_state() if isinstance(self._store, InspectableStore) else None
        except Exception as e:  # an outage (a full disk, a database restarting): shown, not fatal
            last = self._last
            error = " ".join((str(e) or type(e).__name__).split())
            self._last = Frame(last.report, last.by_state, last.rate, last.sampled_at, error,
                               last.error_since or now)
            return self._last
        rate = self._meter.add(time.monotonic(), report.done + report.failed)
        self._last = Frame(report, by_state, rate, now)
        return self._last


def _header(frame: Frame, where: str, now: float, refresh_seconds: float) -> RenderableType:
    line = Text.assemble(("doves status ", "bold"), (cell(where), "cyan"),
                         (f"  {format_short_time(now, now)}, every {refresh_seconds:g} s, Ctrl-C to stop", "dim"))
    if frame.error is None:
        return line
    since = format_age(now - (frame.error_since or now))
    return Group(line, Text(f"STORE CANNOT BE READ for {since}: {cell(frame.error)} (last counts shown)",
                            style="bold white on red"))


def _counts(report: StatusReport, rate: float, now: float) -> RenderableType:
    oldest = ""
    if report.oldest_pending_at is not None and report.pending:
        oldest = f" (oldest {format_age(now - report.oldest_pending_at)})"
    alive = sum(1 for w in report.workers if w.alive)
    return Text.assemble(
        (f"{report.pending}", "yellow"), f" pending{oldest}  ", (f"{report.scheduled}", "blue"), " scheduled  ",
        (f"{report.waiting}", "magenta"), " waiting  ", (f"{report.in_progress}", "cyan"), " in progress  ",
        (f"{report.done}", "green"), " done  ", (f"{report.failed}", "bold red" if report.failed else ""), " failed\n",
        (f"{rate:.1f}", "bold"), " transitions/s  ", (f"{alive}", "bold"), f" of {len(report.workers)} workers alive")


def _warnings(report: StatusReport, now: float) -> list[RenderableType]:
    """What needs an operator: states no live worker can run (``details["no_worker_for"]``)."""
    return [Text(cell(line), style="bold yellow") for line in unrunnable_lines(report, now)]


def _claims(report: StatusReport, now: float) -> RenderableType | None:
    rows, more = claim_rows(report, now, SHOWN_ROWS)
    if not rows:
        return None
    table = Table("state file", "state", "worker", "since", title="in progress", title_justify="left",
                  caption=f"... and {more} more" if more else None)
    for row in rows:
        table.add_row(*(Text(value, overflow="fold") for value in row))
    return table


def _failures(report: StatusReport) -> RenderableType | None:
    if not report.recent_failures:
        return None
    table = Table("state file", "code", "message", title="recent failures", title_justify="left")
    for name, code, message in report.recent_failures[-SHOWN_ROWS:]:
        table.add_row(Text(cell(name), overflow="fold"), Text(cell(code), style="red"),
                      Text(cell(message), overflow="ellipsis", no_wrap=True))
    return table


def render(frame: Frame, where: str, refresh_seconds: float, now: float | None = None) -> RenderableType:
    """One frame of the live view, for a terminal of any width from 80 columns."""
    now = time.time() if now is None else now
    parts: list[RenderableType] = [_header(frame, where, now, refresh_seconds)]
    report = frame.report
    if report is None:
        parts.append(Text("reading the store ...", style="dim"))
        return Group(*parts)
    parts += [_counts(report, frame.rate, now), *_warnings(report, now)]
    if frame.by_state:
        parts.append(by_state_table(frame.by_state))
    if report.workers:
        parts.append(workers_table(report, now))
    parts += [part for part in (_claims(report, now), _failures(report)) if part is not None]
    return Group(*parts)


def render_text(frame: Frame, where: str, now: float | None = None) -> str:
    """One frame as plain text (output that is not a terminal)."""
    now = time.time() if now is None else now
    lines = [f"--- {where} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}, "
             f"{frame.rate:.1f} transitions/s ---"]
    if frame.error is not None:
        lines.append(f"store cannot be read: {cell(frame.error)} (last counts shown)")
    if frame.report is not None:
        lines.append(status_text(frame.report, now))
    if frame.by_state:
        lines.append(by_state_text(frame.by_state))
    return "\n\n".join(lines)


def watch(store: Store, console: Console, refresh_seconds: float, stop: threading.Event) -> None:
    """Show the store live on ``console`` until ``stop`` is set.

    On a terminal the view is redrawn in place; otherwise a text block is printed per refresh.
    """
    reader = StatusReader(store)
    where = store.description
    if not console.is_terminal:
        while not stop.is_set():
            started = time.monotonic()
            console.print(render_text(reader.read(), where), markup=False, highlight=False, soft_wrap=True)
            stop.wait(next_status_after(refresh_seconds, time.monotonic() - started))
        return
    with Live(render(Frame(None, None, 0.0, None), where, refresh_seconds), console=console,
              auto_refresh=False, transient=False, redirect_stdout=False, redirect_stderr=False) as live:
        while not stop.is_set():
            started = time.monotonic()
            frame = reader.read()
            live.update(render(frame, where, refresh_seconds), refresh=True)
            stop.wait(next_status_after(refresh_seconds, time.monotonic() - started))

