"""Children claimed by another worker while their spawner's commit is still writing them.

An idle worker is woken by a child's hint at once, so it may look at the child before the
spawner's commit has finished: each child must run exactly once, and at once, whatever the
interleaving. The spawner's commit here is made by one store handle, and a second handle on
the same folder scans the root and claims at every child the commit writes.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from martian_doves.config import DirectoryOptions
from martian_doves.model import JOIN_STATE, Child, Claim, State, Successor, WaitFor
from martian_doves.stores.directory import LeaseStore

CHILDREN = 3


def _store(path: Path) -> LeaseStore:
    # No grace: a root file without a hint is admitted by the first scan that sees it.
    return LeaseStore(path, DirectoryOptions(lease_seconds=30, admission_grace_seconds=0))


def _meddling(mark: Callable[[str], bool], other: LeaseStore, taken: list[Claim]) -> Callable[[str], bool]:
    """``mark`` (a child's hint being made), with ``other`` scanning and claiming just before and just after."""
    def mark_between_claims(name: str) -> bool:
        other.admission.scan_root()
        taken.extend(other.claim("w2", 10))
        marked = mark(name)
        taken.extend(other.claim("w2", 10))
        return marked
    return mark_between_claims


def test_each_child_runs_once_and_at_once_when_another_worker_claims_during_the_spawn(tmp_path: Path) -> None:
    path = tmp_path / "store"
    spawner, other = _store(path), _store(path)
    spawner.submit([State("b.state", "batch", {})])
    (spawn,) = spawner.claim("w1", 1)
    taken: list[Claim] = []
    machines = spawner.leases.machines
    machines._mark_runnable = _meddling(machines._mark_runnable, other, taken)
    spawner.commit(spawn, Successor(JOIN_STATE, {}, wait=WaitFor("collect", children=CHILDREN),
                                    children=tuple(Child("resize", {}) for _ in range(CHILDREN))))
    taken.extend(other.claim("w2", 10))

    assert sorted(claim.name for claim in taken) == [f"b.state+{i}.state" for i in range(CHILDREN)]
    for claim in taken:
        other.commit(claim, None)
    (join,) = other.claim("w2", 10)
    assert join.name == "b.state-1" and other.children(join) is not None
    spawner.close()
    other.close()
