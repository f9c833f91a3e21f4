"""The supervisor's respawn policy on a fake clock: a worker killed from outside is replaced forever
with capped backoff; only a worker that can never start stops the run."""

from __future__ import annotations

import signal

from martian_doves.clock import FakeClock
from martian_doves.config import SupervisorOptions
from martian_doves.supervisor.exits import EXIT_TICK_TIMEOUT, EXIT_WORKER_CONFIG, EXIT_WORKER_CRASHED
from martian_doves.supervisor.respawn import Respawn, after_exit

OPTIONS = SupervisorOptions(respawn_base_seconds=0.5, respawn_max_seconds=30.0, min_uptime_seconds=10.0)
KILLED = -signal.SIGKILL


def die_after(clock: FakeClock, uptime_seconds: float, code: int | None, quick_deaths: int,
              options: SupervisorOptions = OPTIONS) -> Respawn | None:
    """A process of a slot starts now, dies ``uptime_seconds`` later with ``code``: the decision."""
    started_at = clock.monotonic()
    clock.advance(uptime_seconds)
    return after_exit(options, code, started_at, quick_deaths, clock)


def test_a_worker_killed_again_and_again_is_replaced_forever_with_capped_backoff() -> None:
    """The chaos of issue 9: kill -9 every 0.4 s after each start. On main the fifth quick death
    in a row gave up and stopped the healthy workers; here the slot is replaced every time, the
    delay doubles up to the cap and stays there."""
    clock = FakeClock()
    quick_deaths = 0
    delays = []
    for _ in range(200):
        respawn = die_after(clock, 0.4, KILLED, quick_deaths)
        assert respawn is not None, f"gave up after {quick_deaths} quick deaths"
        assert respawn.at == clock.monotonic() + respawn.delay_seconds
        delays.append(respawn.delay_seconds)
        quick_deaths = respawn.quick_deaths
        clock.advance(respawn.delay_seconds)  # the new process starts when due
    assert delays[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert set(delays[6:]) == {30.0}
    assert quick_deaths == 200


def test_every_kind_of_death_but_a_refused_start_is_replaced() -> None:
    clock = FakeClock()
    for code in (KILLED, -signal.SIGTERM, EXIT_WORKER_CRASHED, 0, 1, 137, EXIT_TICK_TIMEOUT, None):
        assert die_after(clock, 0.1, code, 4) is not None, code


def test_a_worker_that_ran_long_enough_starts_its_backoff_over() -> None:
    clock = FakeClock()
    respawn = die_after(clock, 10.0, KILLED, quick_deaths=9)  # at the cap before; then up 10 s
    assert respawn is not None and (respawn.delay_seconds, respawn.quick_deaths) == (0.5, 1)
    respawn = die_after(clock, 9.9, KILLED, respawn.quick_deaths)
    assert respawn is not None and (respawn.delay_seconds, respawn.quick_deaths) == (1.0, 2)


def test_a_tick_timeout_is_replaced_at_once_without_growing_the_backoff() -> None:
    clock = FakeClock()
    respawn = die_after(clock, 1.0, EXIT_TICK_TIMEOUT, quick_deaths=3)
    assert respawn == Respawn(clock.monotonic(), 0.0, 3)


def test_a_worker_that_cannot_start_stops_the_run_at_once() -> None:
    clock = FakeClock()
    assert die_after(clock, 0.5, EXIT_WORKER_CONFIG, quick_deaths=0) is None
    assert die_after(clock, 3600.0, EXIT_WORKER_CONFIG, quick_deaths=0) is None


def test_the_cap_bounds_the_delay_however_many_deaths() -> None:
    clock = FakeClock()
    small_cap = SupervisorOptions(respawn_base_seconds=0.25, respawn_max_seconds=2.0)
    respawn = die_after(clock, 0.0, KILLED, quick_deaths=10_000, options=small_cap)
    assert respawn is not None and respawn.delay_seconds == 2.0
