"""What an idle worker costs on PostgreSQL: a wait that sends no query, and a stamp now and then.

An idle worker is woken by a NOTIFY (every statement that makes a state runnable sends
one), by the next due time (a timer, a wait's deadline, a lease running out: ``next_due``,
the first entries of two partial indexes) or, as a guard against a missed wake-up, after
``poll_seconds``. Between those a claim can find nothing, so ``QuietWait`` tells the worker
to wait again instead of claiming: between two wake-ups an idle worker sends no query.
A worker that holds nothing only needs to look alive (stamped within its lease):
``IdleStamps`` lets its heartbeat stamp it every quarter lease instead of every beat.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from martian_doves.errors import StoreError
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.clock import Clock
    from martian_doves.stores.postgres.connector import PostgresConnector


#: The longest wait of a worker for states already due that its claims do not take (see
#: ``QuietWait._until_due``): a timer of its own that falls due meanwhile runs this late at most.
OVERDUE_MAX_SECONDS = 1.0


class QuietWait:
    """``PostgresStore.wait_for_work``: per thread, what its last claim saw.

    Args:
        connector: its listener counts the wake-ups (``PostgresConnector.wakeups``).
        poll_seconds: the longest quiet wait (the store's ``poll_seconds``).
    """

    def __init__(self, connector: PostgresConnector, poll_seconds: float, clock: Clock) -> None:
        self._connector = connector
        self._poll_seconds = poll_seconds
        self._clock = clock
        #: Per thread: ``wakeups`` when its last claim began (or its last wait said to
        #: look), and until when (monotonic) nothing falls due that no NOTIFY announces.
        self._seen = threading.local()

    def claiming(self) -> None:
        """This thread looks for work now: a wake-up from now on ends its next wait."""
        self._seen.wakeups, self._seen.quiet_until = self._connector.wakeups, None

    def wait(self, timeout_seconds: float) -> bool:
        """Wait up to ``timeout_seconds`` for a wake-up; False if none came and nothing fell due.

        The next due time is asked once per claim, not at every wait: with nothing due for
        a day, an idle worker sends no query until a NOTIFY (or ``poll_seconds``).
        """
        seen, now = self._seen, self._clock.monotonic()
        wakeups, quiet_until = getattr(seen, "wakeups", None), getattr(seen, "quiet_until", None)
        if quiet_until is None:
            # A thread that never claimed waits as a poll would (and then claims).
            quiet = self._poll_seconds if wakeups is not None else min(timeout_seconds, self._poll_seconds)
            try:
                due = self._connector.run("wait", lambda conn, _: conn.execute(Q["next_due"]).fetchone())
                if due and due[0] is not None:
                    quiet = min(quiet, self._until_due(float(due[0])))
            except StoreError:
                quiet = min(quiet, timeout_seconds)  # the wait itself is the back-off
            quiet_until = seen.quiet_until = now + quiet
        self._connector.wait_for_notify(max(0.0, min(timeout_seconds, quiet_until - now)))
        if wakeups is not None and self._connector.wakeups == wakeups and self._clock.monotonic() < quiet_until:
            return False
        self.claiming()  # told to look: what it finds is what this wait announced
        return True


    def _until_due(self, seconds: float) -> float:
        """How long to wait for what falls due in ``seconds``.

        Something already due that the claim just before did not take is either another
        worker's (locked) or of a machine this worker does not have (a mixed fleet): each
        such look in a row doubles the wait, from 10 ms (a timer that fell due between the
        claim and the look) to ``OVERDUE_MAX_SECONDS``, instead of looking 100 times a second.
        """
        if seconds > 0:
            self._seen.overdue = 0
            return seconds
        overdue = int(getattr(self._seen, "overdue", 0))
        self._seen.overdue = overdue + 1
        return min(OVERDUE_MAX_SECONDS, 0.01 * 2.0 ** overdue)


class IdleStamps:
    """When each worker of this process was last stamped alive, to space an idle worker's stamps.

    Args:
        lease_seconds: a worker is alive while stamped within this; an idle one is stamped
            every quarter of it.
    """

    def __init__(self, lease_seconds: float, clock: Clock) -> None:
        self._every = lease_seconds / 4
        self._clock = clock
        self._stamped: dict[str, float] = {}

    def stamped(self, worker: str) -> None:
        """``worker`` was stamped alive just now (registered, or a heartbeat ran)."""
        self._stamped[worker] = self._clock.monotonic()

    def due(self, worker: str) -> bool:
        """Whether an idle ``worker`` (holding nothing) needs a stamp now."""
        return self._clock.monotonic() - self._stamped.get(worker, -math.inf) >= self._every
