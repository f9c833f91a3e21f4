"""The retry policy: exponential backoff, a cap, bounded jitter, and a limit on attempts."""

from __future__ import annotations

import random

import pytest

from martian_doves.errors import ConfigError
from martian_doves.retry import RetryPolicy


class _Fixed(random.Random):
    """A random source stuck at one value, to reach the jitter's extremes exactly."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_doubles_without_jitter() -> None:
    """Attempt n waits base * 2**(n-1)."""
    policy = RetryPolicy(max_attempts=10, base_delay_seconds=1.5, max_delay_seconds=1000, jitter=0)
    assert [policy.delay_after(n) for n in range(1, 6)] == [1.5, 3.0, 6.0, 12.0, 24.0]


def test_backoff_is_capped() -> None:
    """No single delay exceeds max_delay_seconds, however many attempts failed."""
    policy = RetryPolicy(max_attempts=100, base_delay_seconds=1, max_delay_seconds=10, jitter=0)
    delays = [policy.delay_after(n) for n in range(1, 60)]
    assert delays[:4] == [1, 2, 4, 8]
    assert all(delay == 10 for delay in delays[4:])


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 1.0])
def test_jitter_stays_within_bounds(jitter: float) -> None:
    """With jitter j each delay lies in [raw * (1 - j), raw]."""
    policy = RetryPolicy(max_attempts=10, base_delay_seconds=2, max_delay_seconds=100, jitter=jitter)
    rng = random.Random(1234)
    for attempt in range(1, 8):
        raw = min(100, 2 * 2 ** (attempt - 1))
        for _ in range(200):
            delay = policy.delay_after(attempt, rng)
            assert delay is not None
            assert raw * (1 - jitter) - 1e-9 <= delay <= raw + 1e-9


def test_jitter_extremes() -> None:
    """The random factor maps 0 to the full delay and (almost) 1 to (1 - jitter) of it."""
    policy = RetryPolicy(max_attempts=5, base_delay_seconds=4, max_delay_seconds=100, jitter=0.5)
    assert policy.delay_after(1, _Fixed(0.0)) == 4.0
    assert policy.delay_after(1, _Fixed(0.999999)) == pytest.approx(2.0, abs=1e-4)


def test_jitter_spreads_retries() -> None:
    """Jitter actually randomises: many states failing together do not retry in lockstep."""
    policy = RetryPolicy(max_attempts=5, base_delay_seconds=10, jitter=0.5)
    rng = random.Random(7)
    assert len({policy.delay_after(2, rng) for _ in range(50)}) > 10


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 7])
def test_gives_up_after_max_attempts(max_attempts: int) -> None:
    """After max_attempts failed attempts (the first included) there is no further delay."""
    policy = RetryPolicy(max_attempts=max_attempts, jitter=0)
    for failed in range(1, max_attempts):
        assert policy.delay_after(failed) is not None
    assert policy.delay_after(max_attempts) is None
    assert policy.delay_after(max_attempts + 5) is None


def test_delays_are_floats() -> None:
    """Delays are plain floats (they go into logs, JSON and timestamps)."""
    delay = RetryPolicy(base_delay_seconds=1, jitter=0).delay_after(1)
    assert type(delay) is float


@pytest.mark.parametrize(
    "policy",
    [
        RetryPolicy(max_attempts=0),
        RetryPolicy(base_delay_seconds=-1),
        RetryPolicy(max_delay_seconds=-1),
        RetryPolicy(jitter=-0.1),
        RetryPolicy(jitter=1.5),
    ],
)
def test_validate_refuses_nonsense(policy: RetryPolicy) -> None:
    """Impossible settings are a ConfigError (exit 2), not a worker that misbehaves later."""
    with pytest.raises(ConfigError):
        policy.validate()


def test_defaults_validate() -> None:
    """The defaults are a usable policy: 3 attempts, backoff starting at 1 s."""
    policy = RetryPolicy().validate()
    assert policy.max_attempts == 3
    assert policy.delay_after(3) is None
