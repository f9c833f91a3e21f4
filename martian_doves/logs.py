"""Logging setup for the ``doves`` processes: level, text or JSON lines, worker names.

Every record carries a ``worker`` field: the worker loop passes it with a
``LoggerAdapter``, and ``setup_logging(worker=...)`` sets the default for whatever
else the process logs (user machines, stores, the supervisor). Records go through
one ``LineHandler`` whose output function can be swapped while the process runs,
so the live progress display can take over the terminal without torn lines.

Nothing here prints on its own: the handler writes where the CLI tells it to.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

#: Accepted ``--log-level`` values, quietest last.
LEVELS = ("debug", "info", "warning", "error")
#: Accepted ``--log-format`` values.
FORMATS = ("text", "json")
#: Logger the built-in and user machines write their output to.
MACHINES_LOGGER = "martian_doves.machines"

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
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                # A closed or broken stderr (the reader went away) must not take the
                # process down with it; the records are simply lost.
                pass


class ContextFilter(logging.Filter):
    """Gives every record a ``worker`` (the process default unless set) and an ``action``."""

    def __init__(self, worker: str | None) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "worker", None) is None:
            record.worker = self.worker
        if not hasattr(record, "action"):
            record.action = None
        return True


class TextFormatter(logging.Formatter):
    """``2024-05-19 10:15:02 INFO    host-123: message`` (logger name shown below INFO only).

    Machine output reads as the seed printed it; the worker name says where it ran.
    """

    def __init__(self) -> None:
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        where = getattr(record, "worker", None) or "-"
        origin = f" [{record.name}]" if record.levelno < logging.INFO else ""
        line = f"{self.formatTime(record, self.datefmt)} {record.levelname:<7} {where}{origin}: {message}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def output_record(line: str, worker: str) -> str:
    """A line a worker process printed (not logged), as a JSON log record of its own, so a
    ``--log-format json`` stream stays one JSON object per line whatever machines print."""
    record = logging.LogRecord("martian_doves.output", logging.INFO, "", 0, line, None, None)
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
        return json.dumps(document, ensure_ascii=False, default=str)


#: Formats the lines workers print for ``output_record`` (one instance serves every line).
_OUTPUT_FORMATTER = JsonFormatter()


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
