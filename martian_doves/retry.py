"""Retry policy: how many attempts a failing tick gets and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from martian_doves.errors import ConfigError, check_seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped.

    Attempt ``n`` (1-based) that fails waits ``min(max_delay, base * 2**(n-1))``
    scaled by a random factor in ``[1 - jitter, 1]``; after ``max_attempts`` failed
    attempts the state fails for good.
    """

    #: Total attempts, the first included.
    max_attempts: int = 3
    #: Delay after the first failure.
    base_delay_seconds: float = 1.0
    #: Upper bound on any one delay.
    max_delay_seconds: float = 60.0
    #: Share of the delay that is randomised, so retries of many states spread out.
    jitter: float = 0.5

    def validate(self) -> RetryPolicy:
        check_seconds({"--retry-base-seconds": self.base_delay_seconds, "--retry-max-seconds": self.max_delay_seconds})
        if self.max_attempts < 1:
            raise ConfigError("--max-attempts must be at least 1")
        if self.base_delay_seconds < 0 or self.max_delay_seconds < 0:
            raise ConfigError("retry delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("--retry-jitter must be between 0 and 1")
        return self

    def delay_after(self, failed_attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when attempts are used up.

        Args:
            failed_attempts: attempts that have failed so far, this one included.
        """
        if failed_attempts >= self.max_attempts:
            return None
        raw = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (failed_attempts - 1))
        factor = 1 - self.jitter * (rng or random).random()
        return float(raw * factor)
