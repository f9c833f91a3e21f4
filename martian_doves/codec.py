"""State files: JSON only, validated, size-limited, safely named.

A state file is ``{"state": "<name>", "payload": {...}}``; successors also carry
``"parent"``, the name of the file they came from (a state file name in the same store,
never a path), which is how a successor already written by an earlier (crashed) attempt
is recognised. Unknown top-level keys are ignored so files written by later versions
still load. Nothing here executes or unpickles anything.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from martian_doves.errors import FileTooLarge, InvalidDocument, MalformedJSON, UnsafeName
from martian_doves.model import JOIN_STATE, Origin, State, WaitFor

#: Default upper bound on a state file's size; larger files are quarantined unread.
DEFAULT_MAX_STATE_BYTES = 1024 * 1024
#: Default upper bound on a join's successor (``payload["children"]``: one entry per child,
#: each child within the state limit): room for 100,000 small children.
DEFAULT_MAX_JOIN_BYTES = 64 * 1024 * 1024
#: Longest accepted file name, in UTF-8 bytes (ext4 allows 255; leave room for suffixes).
MAX_NAME_BYTES = 200
#: Longest accepted state (handler) name.
MAX_STATE_NAME_CHARS = 200
#: How many branch names (``x.state-1~2`` …) a commit tries before giving up.
MAX_BRANCHES = 10_000
#: Top-level fields that name another state of the same store (its lineage). Each must be
#: a state file name: a store joins it to its own folder, so a path there would let a
#: file's writer make ``history`` read, or ``reset`` decide on, a file outside the store.
LINEAGE_FIELDS = ("parent", "machine")
#: How much of a refused lineage field an error message quotes.
_QUOTED_CHARS = 60

# ``x.state``, ``x.state-3``, ``x.state-3~2`` (a branch taken because a successor name
# was already used by another machine's file). ``notes.statement.txt`` is not a state.
# DOTALL and fullmatch: a line break inside a name must not hide it from the stores
# (they quarantine unsafe state-file names), nor may "$" accept a trailing newline.
_STATE_FILE = re.compile(r".+\.state(?:-(?P<step>\d+))?(?:~(?P<branch>\d+))?", re.DOTALL)
_LINEAGE = re.compile(r"(?P<base>.+\.state)(?:-(?P<step>\d+))?(?:~(?P<branch>\d+))?", re.DOTALL)
_CHILD_SUFFIX = re.compile(r"\+\d+(?:~\d+)?\.state\Z")


def is_state_file_name(name: str) -> bool:
    """Whether a directory entry is a state file by its name (``*.state``, ``*.state-N``)."""
    return _STATE_FILE.fullmatch(name) is not None and not name.startswith(".")


def check_name(name: str) -> None:
    """Raise ``UnsafeName`` unless ``name`` is a safe single path component.

    Raises:
        UnsafeName: for separators, ``.``/``..``, a leading dot, control or
            unprintable characters, or a name longer than ``MAX_NAME_BYTES``.
    """
    if not name or name in (".", ".."):
        raise UnsafeName(f"unsafe name {name!r}: empty or a relative path component")
    if "/" in name or "\\" in name or "\x00" in name:
        raise UnsafeName(f"unsafe name {name!r}: contains a path separator or NUL")
    if name.startswith("."):
        raise UnsafeName(f"unsafe name {name!r}: hidden names are reserved for temporary files")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise UnsafeName(f"unsafe name {name!r}: contains control or unprintable characters")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsafeName(f"unsafe name {name!r}: not valid UTF-8") from e
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafeName(f"unsafe name: longer than {MAX_NAME_BYTES} bytes")


def check_state_file_name(name: str) -> None:
    """Raise ``UnsafeName`` unless ``name`` is safe (``check_name``) and names a state file.

    The rule every store applies to what it is given: a root's name ends in ``.state``
    (or ``.state-N``), so a folder store can tell states from other files by name.
    """
    check_name(name)
    if not is_state_file_name(name):
        raise UnsafeName(f"{name}: state file names end in .state (or .state-N)")


def successor_names(parent: str) -> Iterator[str]:
    """Candidate names for ``parent``'s successor, in the order a commit tries them.

    The first is the seed's naming (``x.state`` → ``x.state-1`` → ``x.state-2``). If
    that name already holds a file that is *not* this parent's successor (someone
    submitted ``x.state-1`` as a machine of its own), the commit moves on to a branch
    ``x.state-1~2``, ``~3`` … so nothing is ever clobbered. The sequence depends only on
    the parent's name, so a re-run after a crash finds the successor it wrote before.
    """
    base, step, branch = _lineage_parts(parent)
    for candidate_branch in range(branch, branch + MAX_BRANCHES):
        suffix = "" if candidate_branch == 1 else f"~{candidate_branch}"
        yield f"{base}-{step + 1}{suffix}"
    raise UnsafeName(f"no free successor name for {parent!r} after {MAX_BRANCHES} branches")


def is_successor_name(name: str, parent: str) -> bool:
    """Whether ``name`` is one of the names ``successor_names(parent)`` gives, without listing them.

    A file naming its parent is a tick's successor only if its own name derives from
    the parent's: a ``parent`` field alone (copied or forged) never makes ``reset``
    delete a file or ``history`` join two machines.
    """
    base, step, branch = _lineage_parts(parent)
    first = f"{base}-{step + 1}"
    if name == first:
        return branch == 1
    suffix = name.removeprefix(first + "~")
    if suffix == name or not suffix.isascii() or not suffix.isdigit() or suffix.startswith("0"):
        return False
    return max(branch, 2) <= int(suffix) < branch + MAX_BRANCHES


def first_parent_name(name: str) -> str | None:
    """The state whose first successor name is ``name`` (``x.state-1`` → ``x.state``,
    ``x.state-3`` → ``x.state-2``), the seed's only naming; None for any other name (a
    root's, a branch's)."""
    base, step, branch = _lineage_parts(name)
    if step < 1 or branch != 1:
        return None
    parent = base if step == 1 else f"{base}-{step - 1}"
    return parent if is_successor_name(name, parent) else None


def spawner_name(name: str) -> str | None:
    """The state whose ``Spawn`` names the child ``name`` (``x.state+0.state``,
    ``x.state+0~2.state`` → ``x.state``); None for any other name."""
    found = _CHILD_SUFFIX.search(name)
    return name[:found.start()] if found is not None and found.start() > 0 else None


def is_root_name(name: str) -> bool:
    """Whether a state file's name is a lineage root's as stores name them (``x.state``, a child's
    ``x.state-1+0.state``), not a successor's (``x.state-1``, ``x.state-1~2``).

    A state submitted under a successor-like name is a root too; only its file says so.
    """
    return is_state_file_name(name) and _lineage_parts(name)[1] == 0


def _lineage_parts(name: str) -> tuple[str, int, int]:
    """(base, step, branch) of a state file name: ``x.state-3~2`` → (``x.state``, 3, 2)."""
    match = _LINEAGE.fullmatch(name)
    if match is None:
        return name, 0, 1
    return match["base"], int(match["step"] or 0), int(match["branch"] or 1)


def child_names(spawner: str, index: int) -> Iterator[str]:
    """Candidate names for child ``index`` of the state ``spawner`` (whose tick returned ``Spawn``).

    ``batch.state-1+0.state``, ``batch.state-1+1.state`` ...: derived from the parent alone,
    so a tick re-run after a crash finds the children it created. If a name holds a file
    that is not this child (a machine submitted under that name), the next candidate,
    ``batch.state-1+0~2.state``, is tried, as successors branch.
    """
    base = f"{spawner}+{index}"
    yield f"{base}.state"
    for branch in range(2, MAX_BRANCHES + 1):
        yield f"{base}~{branch}.state"
    raise UnsafeName(f"no free name for child {index} of {spawner!r} after {MAX_BRANCHES} branches")


def _check_text(text: str) -> None:
    if "\x00" in text:
        # Valid JSON, but PostgreSQL's jsonb (and many tools) cannot hold it: refused in
        # every store, so a payload never works in one store and breaks in another.
        raise InvalidDocument(f"payload text {text[:40]!r} holds a NUL character (\\u0000), which is not storable")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidDocument(f"payload text {text[:40]!r} is not valid Unicode (a lone surrogate)") from e


def check_payload(payload: Any, limit: int | None = None) -> None:
    """Raise ``InvalidDocument`` unless ``payload`` is a JSON object every store can hold.

    Checks what ``json.loads`` gives for free and a handler may get wrong: only
    objects with string keys, arrays, strings, finite numbers, booleans and null;
    no NUL characters or lone surrogates in strings; nesting at most ``limit`` deep
    (json.loads stops only at the interpreter's recursion limit).
    """
    limit = MAX_DEPTH if limit is None else limit
    if not isinstance(payload, dict):
        raise InvalidDocument(f"payload must be an object, got {type(payload).__name__}")
    stack: list[tuple[Any, int]] = [(payload, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InvalidDocument(f"payload nested deeper than {limit} levels")
        if isinstance(item, str):
            _check_text(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    raise InvalidDocument(f"payload key {key!r} is not a string")
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidDocument(f"payload holds {item}, which is not JSON")
        elif item is not None and not isinstance(item, int):  # bool is an int
            raise InvalidDocument(f"payload holds a {type(item).__name__}, which is not JSON")


#: Deepest nesting accepted in a payload.
MAX_DEPTH = 64


def _refuse_constant(constant: str) -> Any:
    # Python's json accepts NaN and Infinity; they are not JSON (RFC 8259), other tools
    # (jq, PostgreSQL jsonb) refuse them, so neither do we read nor write them.
    raise ValueError(f"{constant} is not valid JSON")


def decode(raw: bytes, name: str) -> State:
    """Parse and validate one state file's bytes.

    Raises:
        MalformedJSON: not UTF-8, not JSON, or nested beyond what the parser accepts.
        InvalidDocument: JSON, but not a state document.
    """
    try:
        text = raw.decode("utf-8")
        doc = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError as e:
        raise MalformedJSON(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise MalformedJSON(f"{name}: invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from e
    except RecursionError as e:
        raise MalformedJSON(f"{name}: JSON nested too deeply to parse") from e
    except ValueError as e:  # e.g. an integer literal beyond Python's digit limit, or NaN
        raise MalformedJSON(f"{name}: invalid JSON: {e}") from e
    return from_document(doc, name)


def _state_field(doc: Any, key: str, name: str, *, required: bool = True) -> str | None:
    """A state (handler) name from ``doc[key]``: a non-empty string of printable characters."""
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidDocument(f"{name}: \"{key}\" must be a non-empty string")
    if len(value) > MAX_STATE_NAME_CHARS or any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidDocument(f"{name}: \"{key}\" is too long or holds control characters")
    return value


def _wait_field(doc: Any, name: str) -> WaitFor | None:
    wait = doc.get("wait")
    if wait is None:
        return None
    if not isinstance(wait, dict):
        raise InvalidDocument(f"{name}: \"wait\" must be an object")
    where = f"{name} (wait)"
    deadline = wait.get("deadline")
    children = wait.get("children", 0)
    if deadline is not None and (isinstance(deadline, bool) or not isinstance(deadline, int | float)
                                 or not math.isfinite(deadline)):
        raise InvalidDocument(f"{name}: \"wait\".\"deadline\" must be epoch seconds")
    if isinstance(children, bool) or not isinstance(children, int) or children < 0:
        raise InvalidDocument(f"{name}: \"wait\".\"children\" must be a count")
    then = _state_field(wait, "then", where)
    assert then is not None
    return WaitFor(then, event=_state_field(wait, "event", where, required=False),
                   deadline=None if deadline is None else float(deadline),
                   on_timeout=_state_field(wait, "on_timeout", where, required=False), children=children)


def _origin_field(doc: Any, name: str) -> Origin | None:
    origin = doc.get("origin")
    if origin is None:
        return None
    index = origin.get("index") if isinstance(origin, dict) else None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise InvalidDocument(f"{name}: \"origin\" must be an object with a parent name and an index")
    parent = _lineage_name(origin, "parent", f"{name} (origin)")
    if parent is None:
        raise InvalidDocument(f"{name}: \"origin\" must name its parent")
    return Origin(parent, index)


def from_document(doc: Any, name: str) -> State:
    """Validate an already-parsed document as the state named ``name``."""
    if not isinstance(doc, dict):
        raise InvalidDocument(f"{name}: top level must be an object, got {type(doc).__name__}")
    state = _state_field(doc, "state", name)
    assert state is not None
    payload = doc.get("payload", {})
    if not isinstance(payload, dict):
        raise InvalidDocument(f"{name}: \"payload\" must be an object, got {type(payload).__name__}")
    try:
        check_payload(payload)
    except InvalidDocument as e:
        raise InvalidDocument(f"{name}: {e.message}") from e
    lineage = {field: _lineage_name(doc, field, name) for field in LINEAGE_FIELDS}
    return State(name=name, state=state, payload=payload, parent=lineage["parent"], machine=lineage["machine"],
                 wait=_wait_field(doc, name), origin=_origin_field(doc, name))


def _lineage_name(doc: dict[str, Any], field: str, name: str) -> str | None:
    """``doc[field]`` checked to be a state file name (never a path), or None when absent.

    Raises:
        InvalidDocument: the field is not a string, or not a safe state file name.
    """
    value = doc.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidDocument(f"{name}: \"{field}\" must be a string")
    try:
        check_state_file_name(value)
    except UnsafeName as e:
        shown = value if len(value) <= _QUOTED_CHARS else value[:_QUOTED_CHARS] + "..."
        raise InvalidDocument(f"{name}: \"{field}\" must be the name of a state file in the same store, "
                              f"not {shown!r}") from e
    return value


def to_document(state: State) -> dict[str, Any]:
    """The JSON document for ``state`` (lineage fields only when set)."""
    doc: dict[str, Any] = {"state": state.state, "payload": state.payload}
    if state.parent is not None:
        doc["parent"] = state.parent
    if state.machine is not None:
        doc["machine"] = state.machine
    if state.wait is not None:
        doc["wait"] = state.wait.as_dict()
    if state.origin is not None:
        doc["origin"] = state.origin.as_dict()
    return doc


def is_join_entry(state: State) -> bool:
    """Whether ``state`` is a join's waiting entry, whose successor the worker builds from its children."""
    return state.state == JOIN_STATE and state.wait is not None and state.wait.is_join


def successor_limit(parent: State, max_state_bytes: int, max_join_bytes: int) -> tuple[int, bool]:
    """The size limit of ``parent``'s successor, and whether it is a join's.

    A handler's return stays within ``max_state_bytes``. A join's successor holds one
    entry per child, each child within that limit, so 10,000 small children add up to
    more than one state may hold: the worker builds it, and it may reach ``max_join_bytes``.
    """
    if is_join_entry(parent):
        return max(max_state_bytes, max_join_bytes), True
    return max_state_bytes, False


def encode(state: State, max_bytes: int | None = None, *, not_before: float | None = None,
           join: bool = False) -> bytes:
    """Serialise a state the way the seed's files look (4-space indented JSON).

    Args:
        not_before: for a timer's successor, when it may run (epoch seconds), kept in the
            file as ``"not_before"`` so a reader sees when it is due.
        join: ``state`` is a join's successor, ``max_bytes`` the join limit (the message says so).

    Raises:
        InvalidDocument: the payload is not JSON.
        FileTooLarge: the file would be larger than ``max_bytes`` (it would be
            quarantined unread: refuse it before it is written).
    """
    try:
        check_payload(state.payload)
    except InvalidDocument as e:
        raise InvalidDocument(f"{state.name or 'successor'}: {e.message}") from e
    try:
        document = to_document(state)
        if not_before is not None:
            document["not_before"] = not_before
        data = (json.dumps(document, indent=4, ensure_ascii=False, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as e:
        raise InvalidDocument(f"{state.name or 'successor'}: payload is not JSON-serialisable: {e}") from e
    if max_bytes is not None and len(data) > max_bytes:
        if join:
            raise FileTooLarge(f"{state.name or 'successor'}: its children's results add up to {len(data)} bytes, "
                               f"over the {max_bytes}-byte limit of a join (--max-join-bytes): have the children "
                               "end with smaller payloads, or raise --max-join-bytes")
        raise FileTooLarge(f"{state.name or 'successor'} would be {len(data)} bytes, over the {max_bytes}-byte "
                           "limit (--max-state-bytes)")
    return data
