"""What a handler may return, and how a return value becomes a ``Successor``.

The smallest forms keep working: ``None`` (the machine ends), a dict (a successor in
the same state), a ``(state, dict)`` pair (a successor in another state). The richer
forms make a machine wait, branch and listen::

    return Next("order-shipped", payload, after=60)        # a durable timer (or at=epoch/datetime)
    return Wait("payment", then="order-paid", timeout=3600, on_timeout="order-cancelled", payload=payload)
    return Spawn([("resize", {"img": i}) for i in images], then="batch-done", payload=payload)

Whatever a handler returns is checked here, in the tick: a bad argument fails the
state with ``bad_return`` and never reaches a store.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence
from typing import Any

from martian_doves import codec
from martian_doves.errors import MAX_SECONDS, BadReturn, CodecError
from martian_doves.model import JOIN_STATE, RESERVED_PREFIX, WAIT_STATE, Child, JSONDict, Successor, WaitFor
from martian_doves.payloads import to_json_value

#: Most children one ``Spawn`` may start (each is a state file of its own).
MAX_CHILDREN = 100_000
#: Longest accepted event name.
MAX_EVENT_NAME_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Next:
    """Go to ``state`` with ``payload``, at once or no earlier than a given time.

    Args:
        state: the state the successor runs.
        payload: its payload (a dict, or a dataclass instance).
        after: seconds from now before it may run (a durable timer).
        at: the time before which it may not run: epoch seconds or a ``datetime``
            (a naive one is local time). Give ``after`` or ``at``, not both.
    """

    state: str
    payload: Any
    _: dataclasses.KW_ONLY
    after: float | None = None
    at: float | datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Wait:
    """Park the machine until the event ``event`` is sent to it, or ``timeout`` seconds pass.

    The successor that runs when the event arrives is in state ``then`` with payload
    ``{**payload, "event": {"name": event, "data": <what was sent>}}``. At the timeout it is
    in state ``on_timeout`` with ``payload``; without ``on_timeout`` the machine fails with
    reason ``wait_timeout``. An event sent before the machine waits is kept for it.

    Args:
        event: the event's name (what ``doves send STORE MACHINE EVENT`` sends).
        then: the state to run when the event arrives.
        payload: the payload carried to the next state.
        timeout: seconds to wait at most; None waits forever.
        on_timeout: the state to run when the timeout passes first.
    """

    event: str
    _: dataclasses.KW_ONLY
    then: str
    payload: Any = dataclasses.field(default_factory=dict)
    timeout: float | None = None
    on_timeout: str | None = None


@dataclasses.dataclass(frozen=True)
class Spawn:
    """Start one child machine per ``(state, payload)``; run ``then`` once, after all have ended.

    Children run in parallel on any worker and are machines of their own (``status``,
    ``history``, ``retry``). The state ``then`` gets ``{**payload, "children": [...]}``: one
    entry per child, in order, each ``{"name", "state", "status", "payload", "error"}``
    (``status`` ``done`` with the child's final payload, or ``failed`` with its reason).

    Args:
        children: the children's first states and payloads.
        then: the state to run once every child has ended.
        payload: the payload carried to ``then``.
    """

    children: Sequence[tuple[str, Any]]
    _: dataclasses.KW_ONLY
    then: str
    payload: Any = dataclasses.field(default_factory=dict)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def as_payload(value: Any) -> Any:
    """A record instance (what a typed handler may return) as plain JSON values, anything else unchanged.

    Raises:
        BadReturn: the record holds a value JSON cannot represent.
    """
    try:
        return to_json_value(value)
    except TypeError as e:
        raise BadReturn(f"handler returned {type(value).__name__} holding a value JSON cannot hold: {e}") from e


def _state_name(parent_state: str, value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadReturn(f"handler for {parent_state!r} returned {what} that is not a state name: {value!r}")
    if value.startswith(RESERVED_PREFIX):
        raise BadReturn(f"handler for {parent_state!r} returned {what} {value!r}: names starting with "
                        f"{RESERVED_PREFIX!r} are reserved")
    return value


def _payload(parent_state: str, state: str, value: Any) -> JSONDict:
    """A payload a state file could hold (the codec's rules), else ``BadReturn``."""
    payload = as_payload(value)
    try:
        codec.from_document({"state": state, "payload": payload}, "successor")
    except CodecError as e:
        raise BadReturn(f"handler for {parent_state!r} returned an unusable successor: {e.message}") from e
    assert isinstance(payload, dict)
    return payload


def _seconds(parent_state: str, value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or not 0 <= value <= MAX_SECONDS:
        raise BadReturn(f"handler for {parent_state!r} returned {what}={value!r}: expected a number of seconds "
                        f"from 0 to {MAX_SECONDS:g}")
    return float(value)


def _due(parent_state: str, result: Next, now: float) -> float | None:
    if result.after is not None and result.at is not None:
        raise BadReturn(f"handler for {parent_state!r} returned Next with both after= and at=; give one")
    if result.after is not None:
        return now + _seconds(parent_state, result.after, "Next(after)")
    if result.at is None:
        return None
    at = result.at.timestamp() if isinstance(result.at, datetime.datetime) else result.at
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or abs(at) > 1e11:
        raise BadReturn(f"handler for {parent_state!r} returned Next(at={result.at!r}): expected epoch seconds "
                        "or a datetime")
    return float(at)


def _wait(parent_state: str, result: Wait, now: float) -> Successor:
    if not isinstance(result.event, str) or not result.event.strip() or len(result.event) > MAX_EVENT_NAME_CHARS \
            or not result.event.isprintable():
        raise BadReturn(f"handler for {parent_state!r} returned Wait with an unusable event name {result.event!r}")
    then = _state_name(parent_state, result.then, "Wait(then=...)")
    on_timeout = None if result.on_timeout is None else _state_name(parent_state, result.on_timeout,
                                                                    "Wait(on_timeout=...)")
    deadline = None if result.timeout is None else now + _seconds(parent_state, result.timeout, "Wait(timeout)")
    if on_timeout is not None and deadline is None:
        raise BadReturn(f"handler for {parent_state!r} returned Wait(on_timeout=...) without a timeout")
    payload = _payload(parent_state, then, result.payload)
    return Successor(WAIT_STATE, payload, wait=WaitFor(then, event=result.event, deadline=deadline,
                                                        on_timeout=on_timeout))


def _spawn(parent_state: str, result: Spawn) -> Successor:
    if not _is_sequence(result.children):
        raise BadReturn(f"handler for {parent_state!r} returned Spawn with children that are not a list")
    if len(result.children) > MAX_CHILDREN:
        raise BadReturn(f"handler for {parent_state!r} returned Spawn with {len(result.children)} children; "
                        f"at most {MAX_CHILDREN}")
    children = []
    for index, child in enumerate(result.children):
        if not (isinstance(child, tuple | list) and len(child) == 2):
            raise BadReturn(f"handler for {parent_state!r} returned Spawn whose child {index} is not a "
                            "(state, payload) pair")
        state = _state_name(parent_state, child[0], f"Spawn child {index}")
        children.append(Child(state, _payload(parent_state, state, child[1])))
    then = _state_name(parent_state, result.then, "Spawn(then=...)")
    payload = _payload(parent_state, then, result.payload)
    return Successor(JOIN_STATE, payload, wait=WaitFor(then, children=len(children)), children=tuple(children))


def successor_of(state: str, result: Any, now: float) -> Successor | None:
    """Normalise what the handler of ``state`` returned into a ``Successor`` (or None: the end).

    Args:
        state: the state whose tick returned ``result`` (for messages).
        result: the return value.
        now: the time the tick ended (epoch seconds), for ``Next(after=...)`` and timeouts.

    Raises:
        BadReturn: ``result`` is none of the accepted forms, or its arguments are unusable.
    """
    if result is None:
        return None
    if isinstance(result, Next):
        target = _state_name(state, result.state, "Next")
        return Successor(target, _payload(state, target, result.payload), not_before=_due(state, result, now))
    if isinstance(result, Wait):
        return _wait(state, result, now)
    if isinstance(result, Spawn):
        return _spawn(state, result)
    result = as_payload(result)
    if isinstance(result, dict):
        return Successor(state, _payload(state, state, result))
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str) and result[0]:
        target = _state_name(state, result[0], "a successor state")
        if isinstance(as_payload(result[1]), dict):
            return Successor(target, _payload(state, target, result[1]))
    raise BadReturn(f"handler for {state!r} returned {type(result).__name__}; expected None, a dict, a "
                    "(state, dict) pair, Next, Wait or Spawn")
