"""Every store, one suite: the backends the conformance tests run against.

``BACKENDS`` maps a store name to how to open it. Adding a store is one entry, e.g.
(this PostgreSQL entry passes the whole suite)::

    "postgres": Backend(
        lambda tmp_path, clock, request: open_store(request.getfixturevalue("pg_url"), clock=clock,
                                                    lease_seconds=1.0),
        lease_seconds=1.0, follows_clock=False, delay_seconds=1.5),

A factory receives the test's ``tmp_path``, the shared clock and the pytest
``request`` (so it can ask for fixtures such as ``pg_url``). Calling it again in the
same test must open the *same* backing store again, as a second process would: the
directory stores do that naturally (same folder), the memory store through a
per-test cache.

Time: tests never sleep to wait for something and never assert durations. They move
time with the ``travel`` fixture. Stores that judge leases and delays by the clock
they are given (``follows_clock=True``) are driven by ``ShiftedClock``: real time plus
an offset the test moves forward, so file timestamps written by the kernel still
compare sensibly with it (the lease store judges a lease by its claim file's ctime,
which no test can forge). A store that judges time elsewhere (PostgreSQL uses the
database clock) sets ``follows_clock=False``; ``travel`` then also sleeps for real, so
give it a short lease and delay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from martian_doves.clock import Clock, SystemClock
from martian_doves.config import DirectoryOptions, SemaphoreOptions
from martian_doves.model import Claim
from martian_doves.stores import open_store
from martian_doves.stores.base import Store, Successor
from martian_doves.stores.directory import LeaseStore, SemaphoreStore
from martian_doves.stores.memory import MemoryStore

#: Lease given to the stores that follow the test clock (time moves instantly, so it can be long).
LEASE_SECONDS = 10.0


class ShiftedClock(SystemClock):
    """The real clock plus an offset that only ever grows; ``advance`` moves it forward instantly.

    Like ``FakeClock`` it never needs a real sleep, but unlike it, it stays in step with
    the timestamps the kernel puts on files.
    """

    def __init__(self) -> None:
        super().__init__(0.0)
        self._monotonic_offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self._monotonic_offset

    def advance(self, seconds: float) -> None:
        self.offset_seconds += seconds
        self._monotonic_offset += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))


StoreFactory = Callable[[Path, ShiftedClock, pytest.FixtureRequest], Store]


@dataclass(frozen=True)
class Backend:
    """How the suite opens one kind of store and how its time is moved."""

    open: StoreFactory
    #: The lease the factory gives the store; ``travel.expire_leases`` moves time past it.
    lease_seconds: float = LEASE_SECONDS
    #: Whether leases and delays are judged by the clock given to the store.
    follows_clock: bool = True
    #: A retry delay the tests use: long enough to see a state held back, short enough to wait out.
    delay_seconds: float = 60.0
    #: The first half of ``commit`` alone (successor written, state not yet marked done), to play a
    #: worker killed between the two; None for stores whose commit is one atomic step.
    write_successor_only: Callable[[Store, Claim, Successor], object] | None = None
    #: Claims a worker's whole share at once (the semaphore's commitment phase) and hands it out
    #: ``limit`` at a time, so exact "claim N, N in progress" counts do not apply.
    claims_whole_share: bool = False
    #: Whether the store implements timers, events and children (``Next``/``Wait``/``Spawn``).
    machine_model: bool = False


_MEMORY_KEY = pytest.StashKey[MemoryStore]()


def _limits(request: pytest.FixtureRequest) -> dict[str, int]:
    """The size limits a test gives its stores: ``@pytest.mark.store_limits(max_join_bytes=...)``."""
    marker = request.node.get_closest_marker("store_limits")
    return {} if marker is None else dict(marker.kwargs)


def _memory(tmp_path: Path, clock: ShiftedClock, request: pytest.FixtureRequest) -> Store:
    stash = request.node.stash
    if _MEMORY_KEY not in stash:
        stash[_MEMORY_KEY] = MemoryStore(clock=clock, lease_seconds=LEASE_SECONDS, **_limits(request))
    return stash[_MEMORY_KEY]


def _lease(tmp_path: Path, clock: ShiftedClock, request: pytest.FixtureRequest) -> Store:
    return LeaseStore(tmp_path / "store", DirectoryOptions(lease_seconds=LEASE_SECONDS, **_limits(request)),
                      clock=clock, filesystem_time=clock.time)


def _lease_write_successor(store: Store, claim: Claim, successor: Successor) -> object:
    # The semaphore store commits exactly as the lease store does (through the same protocol).
    assert isinstance(store, LeaseStore | SemaphoreStore)
    return store.leases.write_successor(claim, successor, False)


class PhaseDriven(SemaphoreStore):
    """A semaphore store whose ``claim`` lets (test) time run through the phases.

    In semaphore mode a worker gets states only in a commitment phase, and only once
    it has been registered for a whole cycle; a real worker waits for that. Here
    ``claim`` moves the shared test clock from phase to phase (instantly) until this
    worker's share is claimable, so the contract tests read as for any other store.
    """

    def claim(self, worker: str, limit: int, states: Collection[str] | None = None) -> list[Claim]:
        machines = None if states is None else sorted(states)
        if self._worker != worker or getattr(self, "_machines", None) != machines:
            # A real worker registers once, with the machines it has; a test may ask for others.
            self._machines = machines
            self.register_worker(worker, states)  # waits (in test time) for the update phase
        for _ in range(4 * len(self.phases.starts())):  # at most four cycles
            claims = super().claim(worker, limit, states)
            if claims:
                return claims
            now = self.clock.time()
            self.clock.sleep(self.phases.next_boundary(now) - now + 0.001)
        return []

    def reset(self, *, successors: bool) -> int:
        # The test's worker has stopped by now; a real one unregisters when it does.
        if self._worker is not None:
            self.unregister_worker(self._worker)
        return super().reset(successors=successors)


#: Driving a semaphore store through its phases moves test time by whole cycles between
#: heartbeats, so its claims get a lease far longer than the cycles a test spans.
SEMAPHORE_LEASE_SECONDS = 600.0


def _semaphore(tmp_path: Path, clock: ShiftedClock, request: pytest.FixtureRequest) -> Store:
    options = SemaphoreOptions(lease_seconds=SEMAPHORE_LEASE_SECONDS, assignment_seconds=0.3, commitment_seconds=0.3,
                               update_seconds=0.3, buffer_seconds=0.1, **_limits(request))
    return PhaseDriven(tmp_path / "store", options, clock=clock, filesystem_time=clock.time)


def _postgres(tmp_path: Path, clock: ShiftedClock, request: pytest.FixtureRequest) -> Store:
    return open_store(request.getfixturevalue("pg_url"), clock=clock, lease_seconds=1.0, **_limits(request))


BACKENDS: dict[str, Backend] = {
    "memory": Backend(_memory, machine_model=True),
    # Its leases are judged by the kernel's ctimes, which test time cannot move: a delay shorter
    # than the lease keeps a claim taken after it alive, as it would be.
    "lease": Backend(_lease, write_successor_only=_lease_write_successor, machine_model=True,
                     delay_seconds=LEASE_SECONDS / 3),
    "semaphore": Backend(_semaphore, lease_seconds=SEMAPHORE_LEASE_SECONDS, write_successor_only=_lease_write_successor,
                         claims_whole_share=True, machine_model=True),
    "postgres": Backend(_postgres, lease_seconds=1.0, follows_clock=False, delay_seconds=1.5, machine_model=True),
}


@dataclass
class TimeTravel:
    """Moves a test's time forward for the store under test."""

    clock: ShiftedClock
    backend: Backend

    @property
    def delay_seconds(self) -> float:
        return self.backend.delay_seconds

    def now(self) -> float:
        """The time the store judges due times by: the test clock, or real time if it ignores that clock."""
        return self.clock.time() if self.backend.follows_clock else time.time()

    def worker_clock(self) -> Clock:
        """The clock to give a worker: its timers must be computed on the store's time."""
        return self.clock if self.backend.follows_clock else SystemClock()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: instantly on the clock, and for real if the store ignores that clock."""
        self.clock.advance(seconds)
        if not self.backend.follows_clock:
            time.sleep(seconds)

    def expire_leases(self) -> None:
        """Let every lease taken so far expire, as if its worker had died."""
        self.advance(self.backend.lease_seconds * 1.2 + 0.1)

    def past_delay(self) -> None:
        """Let ``delay_seconds`` (and a little more) pass."""
        self.advance(self.backend.delay_seconds * 1.05 + 0.1)


@pytest.fixture
def store_clock() -> ShiftedClock:
    """The clock every store handle of one test shares."""
    return ShiftedClock()


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    """The name of the store under test (one run of each test per entry in ``BACKENDS``)."""
    return str(request.param)


@pytest.fixture
def open_handle(backend_name: str, tmp_path: Path, store_clock: ShiftedClock,
                request: pytest.FixtureRequest) -> Iterator[Callable[[], Store]]:
    """Opens another handle on the test's store (as another process would); all are closed afterwards."""
    opened: list[Store] = []

    def open_() -> Store:
        store = BACKENDS[backend_name].open(tmp_path, store_clock, request)
        opened.append(store)
        return store

    yield open_
    for store in reversed(opened):
        store.close()


@pytest.fixture
def any_store(open_handle: Callable[[], Store]) -> Store:
    """A fresh, empty store of each kind in ``BACKENDS``."""
    return open_handle()


@pytest.fixture
def peer_store(any_store: Store, open_handle: Callable[[], Store]) -> Store:
    """A second handle on ``any_store``'s backing store: another worker process."""
    return open_handle()


@pytest.fixture
def backend(backend_name: str) -> Backend:
    """The ``Backend`` entry of the store under test."""
    return BACKENDS[backend_name]


@pytest.fixture
def travel(backend_name: str, store_clock: ShiftedClock) -> TimeTravel:
    """Moves time forward for the store under test (see the module docstring)."""
    return TimeTravel(store_clock, BACKENDS[backend_name])


@pytest.fixture
def model_store(any_store: Store, backend: Backend, backend_name: str) -> Store:
    """``any_store``, for the tests of timers, events and children."""
    if not backend.machine_model:
        pytest.skip(f"timers, events and children are not built for the {backend_name} store yet")
    return any_store
