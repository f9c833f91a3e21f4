"""The one status sampler of ``doves run`` and ``doves dashboard``, on the memory store and a fake
clock; and the supervisor's stop signals, counted on a fake clock."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import pytest

from martian_doves.clock import FakeClock
from martian_doves.errors import ConfigError
from martian_doves.model import State, StatusReport
from martian_doves.sampler import SAMPLER_NICENESS, Sampler, next_status_after
from martian_doves.stores.memory import MemoryStore
from martian_doves.supervisor.signals import SAME_SIGNAL_SECONDS, StopSignals


class FlakyStore(MemoryStore):
    """The memory store, whose ``status`` fails while ``down`` is set."""

    down = False

    def status(self) -> StatusReport:
        if self.down:
            raise ConnectionError("server closed the connection\n unexpectedly")
        return super().status()


def test_a_sample_is_kept_with_its_time_and_rate_and_shown() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.submit([State(f"s{i}.state", "simple", {}) for i in range(4)])
    shown: list[StatusReport] = []
    sampler = Sampler(store, 1.0, on_sample=shown.append, clock=clock)
    assert sampler.latest() == (None, 0.0)
    first = sampler.sample()
    assert first is not None and first.pending == 4 and shown == [first]
    for claim in store.claim("w", 2):
        store.commit(claim, None)
    clock.advance(2.0)
    second = sampler.sample()
    assert second is not None and second.done == 2
    snapshot = sampler.snapshot
    assert snapshot.report == second and snapshot.sampled_at == clock.time() and snapshot.error is None
    assert snapshot.rate == pytest.approx(1.0)  # two more finished in two seconds
    assert [finished for _, finished in snapshot.series] == [0, 2]
    assert sampler.latest() == (second, clock.time())


def test_a_failing_sample_keeps_the_last_report_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    store = FlakyStore(clock=clock)
    sampler = Sampler(store, 1.0, clock=clock)
    good = sampler.sample()
    store.down = True
    with caplog.at_level(logging.INFO, logger="martian_doves.sampler"):
        assert sampler.sample() is None and sampler.sample() is None
        assert sampler.snapshot.report == good
        assert sampler.snapshot.error == "server closed the connection unexpectedly"  # one line
        store.down = False
        assert sampler.sample() is not None and sampler.snapshot.error is None
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["cannot read the store's status: server closed the connection unexpectedly",
                        "the store's status can be read again"]


def test_a_broken_display_does_not_stop_the_samples() -> None:
    def broken(report: StatusReport) -> None:
        raise RuntimeError("terminal gone")

    sampler = Sampler(MemoryStore(), 1.0, on_sample=broken)
    assert sampler.sample() is not None
    assert sampler.snapshot.report is not None


def test_a_slow_count_waits_nine_times_its_duration() -> None:
    assert next_status_after(1.0, 0.01) == 1.0
    assert next_status_after(1.0, 2.0) == 18.0


def test_an_unusable_interval_is_refused_naming_its_option() -> None:
    with pytest.raises(ConfigError, match="--refresh-seconds must be a finite number"):
        Sampler(MemoryStore(), float("nan"), option="--refresh-seconds")


def test_one_stop_delivered_twice_at_once_counts_once_and_a_later_one_twice() -> None:
    clock = FakeClock()
    signals = StopSignals(clock)
    signals.handle(signal.SIGTERM, None)
    signals.handle(signal.SIGTERM, None)  # the process group's copy of the same stop
    assert signals.count == 1
    clock.advance(SAME_SIGNAL_SECONDS)
    signals.handle(signal.SIGINT, None)  # a person's second Ctrl-C
    assert signals.count == 2


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own nice value is Linux's")
def test_the_sampling_thread_yields_the_cpu_to_the_workers() -> None:
    """A status of a large store takes a core for a while: its thread runs at a lower priority than
    the process (the supervisor's other threads, the workers it starts), which keeps its own."""
    seen: list[int] = []
    taken = threading.Event()

    def note(_: StatusReport) -> None:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        taken.set()

    own = os.getpriority(os.PRIO_PROCESS, 0)
    sampler = Sampler(MemoryStore(), 60.0, on_sample=note)
    sampler.start()
    try:
        assert taken.wait(10.0)
    finally:
        sampler.stop()
    assert seen == [min(19, own + SAMPLER_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == own
