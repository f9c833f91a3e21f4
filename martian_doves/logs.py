"""Logging setup for the ``doves`` processes: level, text or JSON lines, worker names.

Every record carries a ``worker`` field: the worker loop passes it with a
``LoggerAdapter``, and ``setup_logging(worker=...)`` sets the default for whatever
else the process logs (user machines, stores, the supervisor). Every record a tick
emits (a machine's log lines and prints, the worker's own) also carries the state
file's name, ``state_name``: the worker marks its thread while it ticks (``ticking``). Records go through
one ``LineHandler`` whose output function can be swapped while the process runs,
so the live progress display can take over the terminal without torn lines.

A record is one line whatever its text holds: payload values reach messages, and a
line break or a terminal escape code in one must not forge a record or recolour the
terminal. The text format escapes control characters (``text.one_line``) and indents
the lines of a traceback; the JSON format escapes them as JSON does. In a worker
process, what machines print becomes records too (``PrintedLines``).

Nothing here prints on its own: the handler writes where the CLI tells it to.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import io
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from martian_doves.text import CONTROL, json_text, one_line

#: Accepted ``--log-level`` values, quietest last.
LEVELS = ("debug", "info", "warning", "error")
#: Accepted ``--log-format`` values.
FORMATS = ("text", "json")
#: Logger the built-in and user machines write their output to.
MACHINES_LOGGER = "martian_doves.machines"
#: Logger of the lines a worker process prints (rather than logs).
OUTPUT_LOGGER = "martian_doves.output"
#: What starts each continuation line of a text record (a traceback's): never a timestamp.
CONTINUATION_INDENT = "    "
#: A printed line longer than this (no line break in sight) is logged in pieces of this size.
MAX_PRINTED_LINE_CHARS = 65536

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_STANDARD_ATTRS |= {"message", "asctime", "taskName"}

Writer = Callable[[str], None]


class StderrWriter:
    """Writes whole lines to the *current* ``sys.stderr``, one line at a time.

    Looking ``sys.stderr`` up on every call (instead of keeping the stream) lets a
    redirected stream, as in tests, take effect; the lock keeps lines written from
    several threads whole.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            stream = sys.stderr
            if isinstance(stream, PrintedLines):  # never through the worker's own capture
                stream = stream.stream
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                # A closed or broken stderr (the reader went away) must not take the
                # process down with it; the records are simply lost.
                pass


#: The state file each thread is ticking now (``ticking``).
_TICKING = threading.local()


@contextlib.contextmanager
def ticking(state_name: str) -> Iterator[None]:
    """Within the block, every record this thread emits names the state file ``state_name``.

    The worker wraps each tick (and its commit) in it, so what a machine logs or prints
    says which state it came from, as the worker's own records do.
    """
    previous = getattr(_TICKING, "state_name", None)
    _TICKING.state_name = state_name
    try:
        yield
    finally:
        _TICKING.state_name = previous


class ContextFilter(logging.Filter):
    """Gives every record a ``worker`` (the process default unless set) and an ``action``, and
    a ``state_name`` when its thread is ticking a state (``ticking``) and it has none of its own."""

    def __init__(self, worker: str | None) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:
            record.worker = self.worker
        if not hasattr(record, "action"):
            record.action = None
        if getattr(record, "state_name", None) is None:
            current = getattr(_TICKING, "state_name", None)
            if current is not None:
                record.state_name = current
        return True


class TextFormatter(logging.Formatter):
    """``2024-05-19 10:15:02 INFO    host-123 countdown.state-2: message`` (logger name shown
    below INFO only; the state file only on records emitted while it ticks).

    Machine output reads as the seed printed it; the worker and state file names say where
    it ran.
    Control characters in the message are escaped (``\\n``, ``\\x1b``), so a record is
    one line; a traceback keeps its lines, each indented by ``CONTINUATION_INDENT``, so
    none of them can pass for a record.
    """

    def __init__(self) -> None:
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        message = one_line(record.getMessage())
        where = one_line(getattr(record, "worker", None) or "-")
        state_name = getattr(record, "state_name", None)
        if state_name is not None:
            where = f"{where} {one_line(str(state_name))}"
        origin = f" [{one_line(record.name)}]" if record.levelno < logging.INFO else ""
        line = f"{self.formatTime(record, self.datefmt)} {record.levelname:<7} {where}{origin}: {message}"
        if record.exc_info:
            line += continuation_lines(self.formatException(record.exc_info))
        if record.stack_info:
            line += continuation_lines(self.formatStack(record.stack_info))
        return line


def continuation_lines(text: str) -> str:
    """``text`` (a traceback) as lines to append to a record: each escaped and indented."""
    return "".join(f"\n{CONTINUATION_INDENT}{one_line(part)}" for part in text.rstrip("\n").split("\n"))


def output_record(line: str, worker: str) -> str:
    """A line a worker process printed (not logged), as a JSON log record of its own, so a
    ``--log-format json`` stream stays one JSON object per line whatever machines print."""
    record = logging.LogRecord(OUTPUT_LOGGER, logging.INFO, "", 0, line, None, None)
    record.worker, record.action = worker, "output"
    return _OUTPUT_FORMATTER.format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, worker, action, extras.

    ``extra={...}`` fields of a record are copied as they are (values that JSON cannot
    hold become strings), so log processors can filter on ``action`` or ``state_name``.
    """

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker": getattr(record, "worker", None),
            "action": getattr(record, "action", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json_text(document)


#: Formats the lines workers print for ``output_record`` (one instance serves every line).
_OUTPUT_FORMATTER = JsonFormatter()


def relayed_line(line: str, worker: str, json_lines: bool) -> str:
    """A line of a worker process's output as the supervisor passes it on: no control character.

    The worker's records arrive formatted and escaped; what reaches its output by other
    ways (a child process of a machine, a crash before logging is set up) is escaped
    here: wrapped as a JSON record of its own, or its control characters escaped.
    """
    if json_lines:
        return line if line.startswith("{") and not CONTROL.search(line) else output_record(line, worker)
    return one_line(line)


class PrintedLines(io.TextIOBase):
    """A worker process's ``sys.stdout`` and ``sys.stderr``: every line written is a log record.

    A machine's ``print()`` then reads like everything else the worker logs (time, level,
    worker name; JSON with ``--log-format json``) and is escaped like it, so a printed
    value cannot start a line that passes for a record. Each thread keeps its own
    unfinished line, so the prints of concurrent ticks never mix.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        #: The real stream: its descriptor, for code that writes there directly.
        self.stream = stream
        self._logger = logging.getLogger(OUTPUT_LOGGER)
        self._lock = threading.Lock()
        #: Each thread's line so far (no line break yet).
        self._unfinished: dict[int, str] = {}
        self._inside = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def buffer(self) -> Any:
        """The real stream's bytes: what is written there is relayed (and escaped) as it is."""
        return self.stream.buffer

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def write(self, text: str) -> int:
        if getattr(self._inside, "logging", False):
            # Logging reports its own failures here: straight to the real stream, escaped.
            self.stream.write("\n".join(one_line(part) for part in text.split("\n")))
            return len(text)
        thread = threading.get_ident()
        with self._lock:
            *lines, rest = (self._unfinished.pop(thread, "") + text).split("\n")
            while len(rest) > MAX_PRINTED_LINE_CHARS:
                lines.append(rest[:MAX_PRINTED_LINE_CHARS])
                rest = rest[MAX_PRINTED_LINE_CHARS:]
            if rest:
                self._unfinished[thread] = rest
        self._log(lines)
        return len(text)

    def finish(self) -> None:
        """Log every thread's unfinished line (at exit)."""
        with self._lock:
            lines, self._unfinished = list(self._unfinished.values()), {}
        self._log(lines)

    def _log(self, lines: list[str]) -> None:
        self._inside.logging = True
        try:
            for line in lines:
                self._logger.info("%s", line.removesuffix("\r"), extra={"action": "output"})
        finally:
            self._inside.logging = False


def capture_output() -> None:
    """Make this process's ``sys.stdout`` and ``sys.stderr`` log what is written to them.

    For worker processes, whose machines may print payload values: see ``PrintedLines``.
    Log records still reach the real stderr (``StderrWriter`` looks past the capture).
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, PrintedLines):
            captured = PrintedLines(stream)
            atexit.register(captured.finish)
            setattr(sys, name, captured)


class ContextAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A ``LoggerAdapter`` that merges its fields with each call's ``extra``.

    The standard adapter (before Python 3.13's ``merge_extra``) *replaces* the call's
    ``extra`` with its own, so ``log.info(..., extra={"action": "commit"})`` through
    ``LoggerAdapter(log, {"worker": name})`` loses the action. The call's fields win.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class LineHandler(logging.Handler):
    """Formats a record and hands the text to ``writer``; the writer can be swapped live."""

    def __init__(self, writer: Writer | None = None) -> None:
        super().__init__()
        self.writer: Writer = writer or StderrWriter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer(self.format(record))
        except Exception:
            self.handleError(record)


def parse_level(level: str | int) -> int:
    """``"info"`` → ``logging.INFO``; raises ``ValueError`` for an unknown name."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}: choose one of {', '.join(LEVELS)}")
    return value


def setup_logging(level: str | int = "info", fmt: str = "text", *, worker: str | None = None,
                  writer: Writer | None = None) -> LineHandler:
    """Configure the process's root logger for a ``doves`` command.

    Replaces handlers installed by an earlier call, so it can run again (tests, or a
    worker process re-configuring after spawn).

    Args:
        level: ``debug``, ``info`` (default: machine output is visible), ``warning``
            or ``error``, or a ``logging`` level number.
        fmt: ``text`` for people, ``json`` for one object per line.
        worker: the name put on records that do not carry one.
        writer: where formatted lines go; stderr by default.

    Returns:
        The installed handler; set its ``writer`` to redirect output later.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    handler = LineHandler(writer)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter(worker))
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, LineHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    logging.captureWarnings(True)
    return handler
