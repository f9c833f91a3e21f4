"""Text for one line: what errors, logs and tables show of messages they do not control.

A handler's message, a database error or a hand-edited reason file may hold line
breaks, terminal escape codes, NUL or lone surrogates. Everything shown or stored
as "one line" goes through here, so a log line stays one line and every store can
keep the text.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Longest error summary kept for one failed attempt (a handler's message may quote a whole payload).
MAX_ERROR_CHARS = 2000
#: Longest traceback kept with a failed state (its end, where the error is, is what is kept).
MAX_TRACEBACK_CHARS = 65536
#: C0 and C1 control characters and DEL: terminal escape codes and line breaks are among them.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: The control characters ``json.dumps`` leaves raw in strings (it escapes C0 itself; any C0 left
#: in its output is the line breaks of an indented document).
_NOT_ESCAPED_BY_JSON = re.compile("[\x7f-\x9f]")


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` cut to at most about ``limit`` characters, saying how much was cut.

    Limits on what a store keeps must hold whatever a handler's error says: an error
    quoting a 600 KB payload field must not make a retry record too large to read back.
    """
    if len(text) <= limit:
        return text
    cut = f"[... {len(text) - limit} characters cut ...]"
    return cut + text[-limit:] if keep_end else text[:limit] + cut


def storable_text(text: str) -> str:
    """``text`` without what no store can hold: NUL (PostgreSQL text) and lone surrogates (UTF-8)."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: str | None) -> str:
    """``text`` as one printable line: line breaks, escape codes and other control characters escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in storable_text(text or ""))


def describe_error(error: BaseException) -> str:
    """``Type: message`` as one printable line of at most about ``MAX_ERROR_CHARS``."""
    return clip(one_line(f"{type(error).__name__}: {error}"), MAX_ERROR_CHARS)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (database errors add DETAIL and HINT lines), or its type."""
    text = str(error).strip()
    return one_line(text.splitlines()[0]) if text else type(error).__name__


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps(value, **options)`` with no control character left raw, whatever ``value`` holds.

    JSON escapes C0 controls in strings but leaves DEL and C1 (0x9b is a terminal's CSI) as
    they are; they are escaped here too, so the text is safe to print or log as one record.
    """
    text = json.dumps(value, ensure_ascii=False, default=str, **options)
    return _NOT_ESCAPED_BY_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
