"""The store seam: what the worker loop needs from a place that holds states.

A store owns coordination (who may run what, fencing, recovery); the worker owns
running handlers and the retry policy. A new store is one module implementing
``Store`` plus the conformance tests in ``tests/conformance``.

What only some stores can do is a capability protocol of its own, checked with
``isinstance``: ``AdminStore`` (reset, retry failed states), ``MigratableStore``
(a schema to create or upgrade) and ``ExportableStore`` (write its states out as a
folder of state files).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from martian_doves.model import Claim, Failure, HistoryEntry, JSONDict, State, StatusReport

#: A successor as the worker hands it to ``commit``: (state name, payload).
Successor = tuple[str, JSONDict]


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

    def register_worker(self, worker: str) -> None:
        """Announce a worker (liveness, ``status``); may wait for a phase in semaphore mode."""
        ...

    def unregister_worker(self, worker: str) -> None:
        """Remove a worker's registration and release whatever the store holds for it."""
        ...

    def claim(self, worker: str, limit: int) -> list[Claim]:
        """Claim up to ``limit`` runnable states; ``[]`` when none is runnable now.

        Also recovers expired claims of dead workers. Undecodable or unsafe state
        files met on the way are failed with a reason, never returned.
        """
        ...

    def wait_for_work(self, timeout_seconds: float) -> None:
        """Block until work may be available (a wake-up, a phase, a due retry) or timeout."""
        ...

    def heartbeat(self, worker: str, claims: Sequence[Claim]) -> list[Claim]:
        """Extend the leases of ``claims`` (and any the store holds for ``worker``).

        Returns:
            The claims that were lost (taken over); the worker must drop them.
        """
        ...

    def commit(self, claim: Claim, successor: Successor | None, *, keep: bool = False) -> Claim | None:
        """Write ``successor`` (exactly once) and mark the claimed state done.

        Args:
            keep: ask to be handed a claim on the successor at once, so a worker can
                follow a lineage without a round trip. Stores may decline (None).

        Raises:
            ClaimLost: the claim was taken over; nothing was marked done by this call.
        """
        ...

    def retry_later(self, claim: Claim, delay_seconds: float, error: str) -> None:
        """Give the state back, runnable again after ``delay_seconds``, one attempt used."""
        ...

    def fail(self, claim: Claim, failure: Failure) -> None:
        """Mark the state failed with a machine-readable reason."""
        ...

    def release(self, claim: Claim) -> None:
        """Give the state back at once without using an attempt (clean shutdown)."""
        ...

    def status(self) -> StatusReport:
        """Counts, workers, oldest pending, recent failures."""
        ...

    def history(self, name: str) -> list[HistoryEntry]:
        """The lineage that starts at (or contains) ``name``, oldest first."""
        ...

    def is_finished(self) -> bool:
        """True when nothing is pending (or due later) and nothing is claimed."""
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
