"""What operators read and do beyond running a folder store: ``InspectableStore`` and ``SupervisedStore``;
and the machine model's calls (``send``, ``take_event``, ``children``).

Both modes mix ``FolderInspection`` in; reading is ``views.Reader``'s, giving back a dead
worker's claims the lease protocol's (``LeaseEngine.worker_exited``). Forgetting removes
only settled states, whole machines at a time (see ``InspectableStore.forget``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from martian_doves.model import ChildOutcome, Claim, MachineEvent, StateQuery, StateRecord, Status
from martian_doves.stores.directory.engine import LeaseEngine

#: Statuses a state no longer leaves by itself.
_SETTLED = (Status.DONE, Status.FAILED)


class FolderInspection:
    """``find``, ``show``, ``counts_by_state``, ``forget`` and ``worker_exited`` for a folder store."""

    leases: LeaseEngine

    def find(self, query: StateQuery) -> list[StateRecord]:
        return self.leases.reader.find(query, self.leases.clock.time())

    def show(self, name: str) -> StateRecord | None:
        return self.leases.reader.show(name, self.leases.clock.time())

    def counts_by_state(self) -> dict[str, dict[Status, int]]:
        return self.leases.reader.counts_by_state(self.leases.clock.time())

    def forget(self, names: Sequence[str]) -> int:
        reader, now = self.leases.reader, self.leases.clock.time()
        removed = 0
        roots: set[str] = set()
        for name in names:
            lineage = reader.history(name, now)
            if not lineage or lineage[0].name in roots:
                continue
            roots.add(lineage[0].name)
            if not _may_forget(lineage, lambda spawner: reader.history(spawner, now)):
                continue
            for record in lineage:
                self.leases.files.remove_settled(record.name)
            removed += len(lineage)
        return removed

    def worker_exited(self, worker: str, reason: str) -> int:
        return self.leases.worker_exited(worker, reason)

    def failed_count(self) -> int:
        return len(self.leases.files.failed_names())


class FolderMachineModel:
    """``send``, ``take_event`` and ``children`` for a folder store (``machines.py`` keeps them)."""

    leases: LeaseEngine

    def send(self, machine: str, event: str, data: Any) -> None:
        self.leases.machines.send(machine, event, data)

    def take_event(self, claim: Claim) -> MachineEvent | None:
        return self.leases.machines.take_event(claim)

    def children(self, claim: Claim) -> list[ChildOutcome] | None:
        return self.leases.machines.children(claim)


def _may_forget(lineage: Sequence[StateRecord], lineage_of: Callable[[str], Sequence[StateRecord]]) -> bool:
    """Whether a machine has ended, and no running parent's join still waits for it."""
    if any(record.status not in _SETTLED for record in lineage):
        return False
    origin = lineage[0].origin
    return origin is None or all(record.status in _SETTLED for record in lineage_of(origin.parent))
