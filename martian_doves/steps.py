"""What a worker step produces, and the steps a worker takes itself rather than a handler.

A step reports its outcomes (``Event`` to hooks and metrics, ``StepResult`` in totals).
A waiting entry is not ticked by a handler: the worker takes its event or sees its
deadline pass (``Wait``), or reads how its children ended (``Spawn``'s join), and makes
the successor itself; woken too early, it is ``NOT_YET`` and waits again.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from martian_doves import codec
from martian_doves.clock import Clock
from martian_doves.errors import CodecError, FileTooLarge, WaitTimedOut
from martian_doves.model import JOIN_STATE, Claim, Successor, WaitFor
from martian_doves.stores.base import Store

#: A waiting entry whose deadline is this close is waited out in the worker, not handed back.
_DEADLINE_SLACK_SECONDS = 2.0
class Event(enum.StrEnum):
    """What a worker reports to ``on_event`` hooks (and metrics)."""

    CLAIMED = "claimed"
    COMMITTED = "committed"
    RETRIED = "retried"
    FAILED = "failed"
    LOST = "lost"
    RELEASED = "released"


@dataclass
class StepResult:
    """What one ``step`` did."""

    claimed: int = 0
    committed: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0
    #: Ticks that overran ``tick_timeout_seconds`` (each also counted as retried or failed).
    timed_out: int = 0

    def add(self, other: StepResult) -> None:
        for name in ("claimed", "committed", "retried", "failed", "lost", "timed_out"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


EventHook = Callable[[Event, Claim], None]


class NotYet:
    """What a worker's own step returns for a waiting entry woken before its time: it waits again."""


NOT_YET = NotYet()


def unwritable(claim: Claim, error: CodecError) -> str:
    """Why the successor ``claim``'s handler returned cannot be written, and what to do about it."""
    payload = claim.state.payload
    if isinstance(error, FileTooLarge) and isinstance(payload.get("children"), list) \
            and not codec.is_join_entry(claim.state):
        # Most likely a join's handler passing its input on: that input may be larger than
        # a state (--max-join-bytes), its return may not.
        return (f"{error.message}: a join's handler gets every child's result in payload['children']; "
                "return a summary of them, not the list itself")
    return error.message



def own_step(store: Store, clock: Clock, claim: Claim, wait: WaitFor) -> Successor | NotYet:
    """The successor of a waiting entry: a join's, once every child ended, or an event wait's."""
    if claim.state.state == JOIN_STATE:
        outcomes = store.children(claim)
        if outcomes is None:
            return NOT_YET
        return Successor(wait.then, {**claim.state.payload, "children": [o.as_dict() for o in outcomes]})
    return _deliver(store, clock, claim, wait)


def _deliver(store: Store, clock: Clock, claim: Claim, wait: WaitFor) -> Successor | NotYet:
    """The successor of an event wait: the event's receiver, or its timeout, if either is due."""
    payload = claim.state.payload
    event = store.take_event(claim)
    if event is None and wait.deadline is not None:
        # The store judges the deadline by its own clock; ours may lag it a little.
        # A short wait here (the claim is kept alive) beats handing the entry back and forth.
        remaining = wait.deadline - clock.time()
        if 0 < remaining <= _DEADLINE_SLACK_SECONDS:
            clock.sleep(remaining)
            event = store.take_event(claim)
    if event is not None:
        return Successor(wait.then, {**payload, "event": event.as_payload()})
    if wait.deadline is None or clock.time() < wait.deadline:
        return NOT_YET
    if wait.on_timeout is None:
        raise WaitTimedOut(f"no event {wait.event!r} arrived in time (deadline "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(wait.deadline))})")
    return Successor(wait.on_timeout, payload)
