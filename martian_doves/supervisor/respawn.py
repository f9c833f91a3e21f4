"""When a worker process that died starts again: a pure function of its exit, its slot's history
and a ``Clock``.

A worker that dies (killed, crashed, or exited with work left) is replaced after a
delay that doubles with each quick death of the same slot (one sooner than
``min_uptime_seconds`` after its start), from ``respawn_base_seconds`` up to
``respawn_max_seconds``, and starts over once a process has run that long. A process
replaced because a tick overran ``--tick-timeout`` starts again at once: that death is
expected. The run stops when a process cannot start for a reason no restart fixes
(``EXIT_WORKER_CONFIG``), or when one slot died quickly ``crash_loop_limit`` times in
a row.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from martian_doves.clock import Clock
from martian_doves.config import SupervisorOptions
from martian_doves.supervisor.exits import EXIT_TICK_TIMEOUT, EXIT_WORKER_CONFIG


@dataclass(frozen=True)
class Respawn:
    """Start a new process in the slot at ``at``."""

    #: Monotonic time (of the clock given to ``after_exit``) at which to start it.
    at: float
    #: ``at`` minus the time of the decision.
    delay_seconds: float
    #: Quick deaths in a row of this slot, to give to the next ``after_exit``.
    quick_deaths: int


class GiveUp(enum.Enum):
    """Why the run stops instead of replacing a process."""

    #: The process can never start with this configuration.
    CANNOT_START = "cannot_start"
    #: The slot's processes died quickly ``crash_loop_limit`` times in a row.
    CRASH_LOOP = "crash_loop"


def after_exit(options: SupervisorOptions, exit_code: int | None, started_at: float, quick_deaths: int,
               clock: Clock) -> Respawn | GiveUp:
    """Decide what follows the death of a worker process that the supervisor did not stop.

    Args:
        options: ``respawn_base_seconds``, ``respawn_max_seconds``, ``min_uptime_seconds``
            and ``crash_loop_limit``.
        exit_code: the process's exit status (negative: killed by that signal).
        started_at: when the process started, on ``clock.monotonic()``.
        quick_deaths: the slot's quick deaths in a row before this one (0 at first).
        clock: the time now.

    Returns:
        When to start a new process, or why the run must stop instead.
    """
    if exit_code == EXIT_WORKER_CONFIG:
        return GiveUp.CANNOT_START
    now = clock.monotonic()
    if exit_code == EXIT_TICK_TIMEOUT:
        # The process ran a tick for at least --tick-timeout: it did not die quickly.
        return Respawn(now, 0.0, quick_deaths)
    quick = quick_deaths + 1 if now - started_at < options.min_uptime_seconds else 1
    if quick >= options.crash_loop_limit:
        return GiveUp.CRASH_LOOP
    delay = min(options.respawn_max_seconds, options.respawn_base_seconds * 2.0 ** min(quick - 1, 64))
    return Respawn(now + delay, delay, quick)
