"""The store seam: what the worker loop needs from a place that holds states.

A store owns coordination (who may run what, fencing, recovery); the worker owns
running handlers and the retry policy. A new store is one module implementing
``Store`` plus the conformance tests in ``tests/conformance``.

What only some stores can do is a capability protocol of its own, checked with
``isinstance``: ``AdminStore`` (reset, retry failed states), ``LineageStore`` (name
its machines, to read many lineages), ``InspectableStore`` (find, open and forget
states; counts by state name), ``SupervisedStore`` (told when a worker process died),
``MigratableStore`` (a schema to create or upgrade) and ``ExportableStore`` (write its
states out as a folder of state files).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from martian_doves.model import (
    ChildOutcome,
    Claim,
    Failure,
    HistoryEntry,
    MachineEvent,
    State,
    StateQuery,
    StateRecord,
    Status,
    StatusReport,
    Successor,
)

__all__ = ["AdminStore", "InspectableStore", "Store", "SubmitResult", "Successor", "SupervisedStore"]


@dataclass(frozen=True)
class SubmitResult:
    """What happened to one state given to ``submit``."""

    name: str
    added: bool
    #: Why it was not added (one line), when ``added`` is False.
    reason: str | None = None


@runtime_checkable
class Store(Protocol):
    """Where states live and how workers share them.

    Every method is safe to call from several processes (and hosts) at once. Methods
    that act on a claim raise ``ClaimLost`` if the claim was taken over meanwhile.

    A store that cannot be used for a while (a database restarting or refusing
    writes, a full disk) raises ``StoreUnavailable`` having changed nothing it cannot
    finish later, and logs the outage itself: one line when it begins and one when it
    ends, however many calls meet it. The worker only retries, quietly.
    """

    #: Human-readable location, for logs and messages.
    description: str
    #: How the store coordinates workers: ``lease``, ``semaphore``, ``postgres`` or ``memory``.
    mode: str

    @property
    def lease_seconds(self) -> float:
        """How long a claim lives without a heartbeat before another worker may take it over."""

    def submit(self, states: Sequence[State]) -> list[SubmitResult]:
        """Add root states; never replaces an existing name."""
        ...

    def register_worker(self, worker: str, states: Collection[str] | None = None) -> None:
        """Announce a worker (liveness, ``status``); may wait for a phase in semaphore mode.

        Args:
            states: the state names this worker has machines for, published with its
                registration: ``status`` tells which waiting states no live worker can run,
                and the semaphore assigns a state only to a worker that can run it.
                None: every state.
        """
        ...

    def unregister_worker(self, worker: str) -> None:
        """Remove a worker's registration and release whatever the store holds for it."""
        ...

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        """Claim up to ``limit`` runnable states; ``[]`` when none is runnable now.

        Args:
            states: claim only states of these names (the machines the worker has) and the
                worker's own steps (``INTERNAL_STATES``): waiting entries that became runnable
                (a ``WAIT_STATE`` whose event arrived or deadline passed, a ``JOIN_STATE``
                whose children all ended). Other states wait for a worker that has their
                machine; they never fail for want of one. None: every state.

        Also recovers expired claims of dead workers. Undecodable or unsafe state files met
        on the way are failed with a reason, never returned.
        """
        ...

    def wait_for_work(self, timeout_seconds: float) -> bool | None:
        """Block until work may be available (a wake-up, a phase, a due retry) or timeout.

        Returns:
            False only when the store knows that a claim would find nothing new (no wake-up
            came, nothing fell due): the worker then waits again without claiming. None or
            True: claim.
        """
        ...

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        """Extend the leases of ``claims`` (and any the store holds for ``worker``).

        Returns:
            The claims that were lost (taken over); the worker must drop them.
        """
        ...

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        """Write ``successor`` (exactly once) and mark the claimed state done.

        The successor is named by ``codec.successor_names`` and belongs to the same machine
        (its ``machine`` and ``origin`` are the claimed state's). It is runnable at once,
        scheduled (``not_before``), or a waiting entry (``wait``). With ``children`` it is a
        join, and the child machines are created with it, exactly once, named by
        ``codec.child_names``, each a root with ``origin`` pointing at the claimed state.
        A commit of ``None`` (or a ``fail``) that ends a child machine lets its parent's
        join run once every child has ended. An event wait whose event was sent already
        is runnable at once.

        Args:
            keep: ask to be handed a claim on the successor at once, so a worker can
                follow a lineage without a round trip. Stores may decline (None), and
                always do for a scheduled or waiting successor.

        Raises:
            ClaimLost: the claim was taken over; nothing was marked done by this call.
        """
        ...

    def retry_later(self, claim: Claim, delay_seconds: float, error: str, *, requested: bool = False) -> None:
        """Give the state back, runnable again after ``delay_seconds``.

        Args:
            requested: the handler asked for it (``raise Retry``): one retry counted
                (``Claim.retries``), no attempt used and no error recorded. Otherwise one
                failed attempt is used and ``error`` recorded.
        """
        ...

    def fail(self, claim: Claim, failure: Failure) -> None:
        """Mark the state failed with a machine-readable reason."""
        ...

    def release(self, claim: Claim) -> None:
        """Give the state back at once without using an attempt (clean shutdown).

        A waiting entry given back waits again (for its event, deadline or children).
        """
        ...

    def send(self, machine: str, event: str, data: Any) -> None:
        """Deliver the event ``event`` (with JSON ``data``) to the machine named ``machine``.

        ``machine`` is the machine's root name (any state of its lineage is accepted too).
        The event is kept, in order of sending, until a waiting entry of that machine
        waiting for that name takes it; a machine waiting for it now becomes runnable.

        Raises:
            NoSuchMachine: no machine of that name is in the store.
            MachineEnded: the machine has ended (its last state is done or failed).
            InvalidDocument: ``data`` is not JSON a state file could hold.
        """
        ...

    def take_event(self, claim: Claim) -> MachineEvent | None:
        """The event a claimed ``WAIT_STATE`` entry receives, or None if none was sent yet.

        The first event of the awaited name sent to the machine and not yet taken; once
        taken it belongs to this waiting entry for good (asked again, after a crash or by
        the worker that took the claim over, the same event is returned), so each event is
        delivered once.
        """
        ...

    def children(self, claim: Claim) -> list[ChildOutcome] | None:
        """How each child of a claimed ``JOIN_STATE`` entry ended, in order; None if some still run."""
        ...

    def status(self) -> StatusReport:
        """Counts, workers, oldest pending, recent failures.

        Each ``WorkerInfo`` says what the store knows of that worker: liveness (a worker
        its supervisor saw die is dead at once, see ``SupervisedStore``), when it started,
        the states it registered with, its claims now, and what it brought to an outcome
        where that can be counted cheaply.
        """
        ...

    def history(self, name: str) -> list[HistoryEntry]:
        """The lineage that starts at (or contains) ``name``, oldest first."""
        ...

    def is_finished(self, states: Collection[str] | None = None) -> bool:
        """True when nothing is pending (or due later) and nothing is claimed.

        Args:
            states: count only states of these names (and the worker's own steps): a
                worker is finished when nothing is left that it could run, even while
                states wait for a worker with other machines. None: every state.

        A machine waiting for an event with no deadline does not count: only a
        ``doves send`` can move it on. A deadline is a timer, and counts.
        """
        ...

    def close(self) -> None:
        """Release connections, watches and file handles."""
        ...


@runtime_checkable
class AdminStore(Protocol):
    """A store an operator can rewind: ``doves reset`` and ``doves retry``."""

    def reset(self, *, successors: bool) -> int:
        """Forget every outcome so all roots run again; optionally delete successors.

        Returns:
            How many states were made pending again.
        """
        ...

    def retry_failed(self, names: Sequence[str] | None = None) -> int:
        """Make failed states (all, or those named) pending again with fresh attempts."""
        ...


@runtime_checkable
class LineageStore(Protocol):
    """A store that can name its machines, so a reader can walk many lineages (``doves graph``)."""

    def machine_names(self, limit: int | None = None) -> list[str]:
        """The names of the machines in the store (lineage roots, child machines too), newest first.

        Each name given to ``history`` reads that machine's lineage.

        Args:
            limit: at most this many (the newest); None: all.
        """
        ...


@runtime_checkable
class InspectableStore(Protocol):
    """A store whose states an operator can find, open one by one and forget.

    ``doves list``, ``show``, ``status --by-state``, ``forget`` and the dashboard's pages.
    Reading never changes anything; ``forget`` removes only machines that have ended.
    """

    def find(self, query: StateQuery) -> list[StateRecord]:
        """The states that pass every filter of ``query``, newest first (``StateRecord.updated_at``),
        from ``query.offset`` on, at most ``query.limit``."""
        ...

    def show(self, name: str) -> StateRecord | None:
        """Everything known of the state ``name`` (failed, or unreadable and quarantined, too); None if none."""
        ...

    def counts_by_state(self) -> dict[str, dict[Status, int]]:
        """For each state name, how many states of it are in each status (statuses with none left out).

        Statuses as ``status`` counts them: ``SCHEDULED`` apart from ``PENDING``, and so on.
        """
        ...

    def forget(self, names: Sequence[str]) -> int:
        """Remove the machines these states belong to, every state of each, once the machine has ended.

        Only settled states are ever removed: a machine with a state pending, scheduled,
        waiting or claimed is left whole, and so is a child machine whose parent has not
        ended (its join still needs the outcome). A name that is not there is skipped.

        Returns:
            How many states were removed.
        """
        ...


@runtime_checkable
class SupervisedStore(Protocol):
    """A store told when a worker process died, so its work is taken over at once, not after its lease."""

    def worker_exited(self, worker: str, reason: str) -> int:
        """``worker``'s process ended without unregistering (its supervisor saw it die).

        The worker is shown dead at once (``WorkerInfo.ended`` = ``reason``, not alive) and
        every state it held is given back, one failed attempt each with ``reason`` as its
        error (as a takeover after its lease would), so another worker runs it now. Safe to
        call for a worker that did unregister: there is then nothing to give back.

        Returns:
            How many states were given back.
        """
        ...


@runtime_checkable
class FailureCountingStore(Protocol):
    """A store that counts its failed states more cheaply than a whole ``status`` (which a folder
    store with a million pending states takes seconds to read): a run's start needs only that."""

    def failed_count(self) -> int:
        """How many states are failed now."""
        ...


@dataclass(frozen=True)
class Committed:
    """A transition ``BatchCommitStore.commit_many`` committed."""

    #: The claim on its successor when ``keep`` was honoured (see ``Store.commit``), else None.
    successor: Claim | None


@runtime_checkable
class BatchCommitStore(Protocol):
    """A store that commits several claims' transitions in one round trip (and one durable write)."""

    def commit_many(self, commits: Sequence[tuple[Claim, Successor | None]], *,
                    keep: bool = False) -> list[Committed | None]:
        """Commit each ``(claim, successor)`` as ``Store.commit`` would, as many as it can together.

        Each transition is atomic on its own (its successor is written exactly once, in
        the same transaction that settles its parent); together they take one round trip.

        Returns:
            Per transition, in order, ``Committed``, or None when it was not committed
            here (a waiting entry, children, a name taken, a lost claim, an outage, a
            payload that cannot be stored): the caller commits that one with
            ``Store.commit``, which says why or does it.
        """
        ...


@runtime_checkable
class MigratableStore(Protocol):
    """A store with a schema to create or upgrade (``doves migrate``)."""

    def migrate(self) -> int:
        """Create the schema or bring it to the latest version; safe to run concurrently.

        Returns:
            The schema version reached.
        """
        ...


@runtime_checkable
class ExportableStore(Protocol):
    """A store whose states can be written out as a folder of state files (``doves export``)."""

    def export(self, directory: str) -> int:
        """Write every state to ``directory`` in the folder-store layout; never overwrites a file.

        Returns:
            How many state files were written.
        """
        ...
