"""When a worker process that died starts again: a pure function of its exit, its slot's history
and a ``Clock``.

As Kubernetes' CrashLoopBackOff: a worker that dies (killed from outside by the OOM
killer, an operator or chaos testing, crashed, or exited with work left) is replaced,
forever, while the other workers keep going. The delay doubles with each quick death
of the same slot (one sooner than ``min_uptime_seconds`` after its start), from
``respawn_base_seconds`` up to ``respawn_max_seconds``, and starts over once a process
has run that long. A process replaced because a tick overran ``--tick-timeout``
starts again at once: that death is expected. Only a process that cannot start for a
reason no restart fixes (``EXIT_WORKER_CONFIG``: its machines fail to import, its
configuration or the store refuses it) ends the run.
"""

from __future__ import annotations

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


def after_exit(options: SupervisorOptions, exit_code: int | None, started_at: float, quick_deaths: int,
               clock: Clock) -> Respawn | None:
    """Decide what follows the death of a worker process that the supervisor did not stop.

    Args:
        options: ``respawn_base_seconds``, ``respawn_max_seconds`` and ``min_uptime_seconds``.
        exit_code: the process's exit status (negative: killed by that signal).
        started_at: when the process started, on ``clock.monotonic()``.
        quick_deaths: the slot's quick deaths in a row before this one (0 at first).
        clock: the time now.

    Returns:
        When to start a new process, or None when the run must stop because this
        process can never start.
    """
    if exit_code == EXIT_WORKER_CONFIG:
        return None
    now = clock.monotonic()
    if exit_code == EXIT_TICK_TIMEOUT:
        # The process ran a tick for at least --tick-timeout: it did not die quickly.
        return Respawn(now, 0.0, quick_deaths)
    quick = quick_deaths + 1 if now - started_at < options.min_uptime_seconds else 1
    delay = min(options.respawn_max_seconds, options.respawn_base_seconds * 2.0 ** min(quick - 1, 64))
    return Respawn(now + delay, delay, quick)
