"""The machine model on PostgreSQL: rows as states, mailboxes, children and their joins.

What a waiting entry waits for is woken by someone else: an event is sent to its machine,
or the last child of its spawner ends. Each such pair (the wait being settled, the wake-up)
runs in a transaction that first takes the lock of what would wake the entry (``lock_key``:
the machine's mailbox, or the spawner's join), so whichever comes second sees the first,
and no wake-up is ever lost, whatever the interleaving or the crash (a transaction that
did not commit did neither).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from martian_doves import codec
from martian_doves.errors import InvalidDocument, MachineEnded, NoSuchMachine
from martian_doves.model import (
    INTERNAL_STATES,
    Child,
    ChildOutcome,
    Claim,
    JSONDict,
    MachineEvent,
    Origin,
    State,
    StateRecord,
    Status,
    WaitFor,
)
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.stores.postgres.connector import Conn, PostgresConnector


def wait_of(document: JSONDict | None) -> WaitFor | None:
    """A ``wait`` column's value as a ``WaitFor`` (None when the row is no waiting entry)."""
    if document is None:
        return None
    deadline = document.get("deadline")
    return WaitFor(document["then"], event=document.get("event"),
                   deadline=None if deadline is None else float(deadline), on_timeout=document.get("on_timeout"),
                   children=int(document.get("children", 0)))


def origin_of(parent: str | None, index: int | None) -> Origin | None:
    """The origin columns as an ``Origin`` (None outside child machines)."""
    return None if parent is None or index is None else Origin(parent, index)


def state_of(name: str, state: str, payload: JSONDict, parent: str | None, root: str, wait: JSONDict | None,
             origin_parent: str | None, origin_index: int | None) -> State:
    """A row as a ``State``: its machine is its root's name (None for a root itself)."""
    return State(name, state, payload, parent, None if root == name else root, wait_of(wait),
                 origin_of(origin_parent, origin_index))


def with_machine_fields(record: StateRecord, row: Sequence[Any]) -> StateRecord:
    """``record`` with what the machine model adds: the ``state_records`` columns after the record's."""
    wait, origin_parent, origin_index, event, data, sent_at, spawned = row[:7]
    return dataclasses.replace(record, wait=wait_of(wait), origin=origin_of(origin_parent, origin_index),
                               event=None if event is None else MachineEvent(event, data, sent_at),
                               children=tuple(spawned))


def lock_key(schema: str, state: State) -> str | None:
    """The lock serialising ``state``'s wait with what wakes it; None if it is no waiting entry."""
    wait = state.wait
    if wait is None:
        return None
    return join_key(schema, state.parent or "") if wait.is_join else mail_key(schema, state.machine_name)


def join_key(schema: str, spawner: str) -> str:
    """The lock of ``spawner``'s join (its children ending, its join waiting)."""
    return f"{schema}:join:{spawner}"


def mail_key(schema: str, machine: str) -> str:
    """The lock of a machine's mailbox (an event sent, a wait for one settled)."""
    return f"{schema}:mail:{machine}"


def lock(conn: Conn, key: str) -> None:
    """Take the transaction lock ``key`` (the caller is in a transaction)."""
    conn.execute(Q["lock"], {"key": key})


def lineage_range(root: str) -> tuple[str, str]:
    """The primary-key range holding every successor of ``root`` (``base-N[~B]``)."""
    first = next(codec.successor_names(root))
    low = first[: first.rindex("-") + 1]
    return low, low[:-1] + "."


def spawn(conn: Conn, spawner: str, children: Sequence[Child]) -> None:
    """Create the children of ``spawner`` (in its commit's transaction): each once.

    A name taken by this very child (same origin: an earlier run of the tick) is reused;
    one taken by another machine moves the child to its next branch name.

    Raises:
        UnsafeName: a child finds no usable name (after ``codec.MAX_BRANCHES`` tries).
    """
    names = {index: codec.child_names(spawner, index) for index in range(len(children))}
    todo = {index: next(names[index]) for index in range(len(children))}
    payloads = {index: json.dumps(child.payload, allow_nan=False) for index, child in enumerate(children)}
    while todo:
        indexes = sorted(todo)
        added = {row[0] for row in conn.execute(Q["spawn"], {
            "spawner": spawner, "names": [todo[i] for i in indexes], "indexes": indexes,
            "states": [children[i].state for i in indexes], "payloads": [payloads[i] for i in indexes]})}
        taken = [i for i in indexes if todo[i] not in added]
        if not taken:
            return
        owners = {row[0]: (row[1], row[2]) for row in conn.execute(Q["origins"], {"names": [todo[i] for i in taken]})}
        todo = {i: next(names[i]) for i in taken if owners.get(todo[i]) != (spawner, i)}


def child_ended(conn: Conn, state: State, channel: str) -> None:
    """After the last state of a child machine ended (in that transaction): wake its parent's join."""
    if state.origin is not None:
        wake_join(conn, state.origin.parent, channel)


def wake_join(conn: Conn, spawner: str, channel: str) -> None:
    """Wake ``spawner``'s join if no child of it runs any more (its lock held, in the transaction that
    ended a child)."""
    conn.execute(Q["wake_join"], {"spawner": spawner, "channel": channel})


def send(connector: PostgresConnector, machine: str, event: str, data: Any) -> None:
    """Append an event to a machine's mailbox and wake its wait for it (see ``Store.send``).

    Raises:
        NoSuchMachine, MachineEnded: the machine is not there, or has ended.
        InvalidDocument: ``data`` is not JSON a state could hold.
    """
    try:
        codec.check_payload({"data": data})
        document = json.dumps(data, allow_nan=False)
    except (InvalidDocument, TypeError, ValueError) as e:
        raise InvalidDocument(f"event data: {getattr(e, 'message', e)}") from e

    params = {"event": event, "data": document, "channel": connector.channel, "sent": secrets.token_hex(8)}

    def deliver(conn: Conn, attempt: int) -> None:
        row = conn.execute(Q["root_of"], {"name": machine}).fetchone()
        if row is None:
            raise NoSuchMachine(f"no machine named {machine} in {connector.description}")
        root = row[0]
        low, high = lineage_range(root)
        with conn.transaction():
            lock(conn, mail_key(connector.schema, root))
            live = conn.execute(Q["machine_live"], {"root": root, "low": low, "high": high}).fetchone()
            if not (live and live[0]):
                raise MachineEnded(f"machine {root} has ended; it will not wait for {event!r} again")
            params["machine"] = root
            # A retry after a lost connection: the earlier try may have sent it (once is enough).
            if not (attempt and conn.execute(Q["sent"], params).fetchone()):
                conn.execute(Q["send"], params)

    connector.run("send", deliver)


def take_event(connector: PostgresConnector, claim: Claim) -> MachineEvent | None:
    """The event a claimed event wait receives, bound to it for good (see ``Store.take_event``)."""
    wait = claim.state.wait
    if wait is None or wait.is_join:
        return None
    params = {"name": claim.name, "token": claim.token, "machine": claim.state.machine_name, "event": wait.event}

    def take(conn: Conn, _: int) -> tuple[Any, ...] | None:
        for _try in range(3):
            try:
                return conn.execute(Q["take_event"], params).fetchone()
            except psycopg.errors.UniqueViolation:
                continue  # bound meanwhile by a racing call for the same entry: read that one
        return None

    row = connector.run("take_event", take)
    return None if row is None else MachineEvent(row[0], row[1], row[2])


def children(connector: PostgresConnector, claim: Claim) -> list[ChildOutcome] | None:
    """How each child of a claimed join ended, in order; None while one still runs."""
    spawner = claim.state.parent
    if claim.state.wait is None or not claim.state.wait.is_join or spawner is None:
        return None
    rows = connector.run("children", lambda conn, _: conn.execute(Q["children"], {"spawner": spawner}).fetchall())
    outcomes = []
    for name, state, status, payload, reason in rows:
        if status not in (Status.DONE.value, Status.FAILED.value):
            return None
        error = None if reason is None else {"code": reason.get("code", "error"), "message": reason.get("message", "")}
        outcomes.append(ChildOutcome(name, state, Status(status), payload, error))
    return outcomes


def state_names(states: Collection[str] | None) -> list[str] | None:
    """The state names a worker claims, as a query parameter (its own steps included); None: every state."""
    return None if states is None else sorted({*states, *INTERNAL_STATES})
