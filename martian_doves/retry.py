"""Retry policy: how many attempts a failing tick gets and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass

from martian_doves.settings import Checked, setting


@dataclass(frozen=True)
class RetryPolicy(Checked):
    """Exponential backoff with full jitter, capped.

    Attempt ``n`` (1-based) that fails waits ``min(max_delay, base * 2**(n-1))``
    scaled by a random factor in ``[1 - jitter, 1]``; after ``max_attempts`` failed
    attempts the state fails for good.
    """

    max_attempts: int = setting(
        3, "Attempts a tick gets (the first included) before its state fails with the traceback.", minimum=1)
    base_delay_seconds: float = setting(
        1.0, "Wait after the first failed attempt; doubles with each further failure (with jitter).",
        flag="--retry-base-seconds", minimum=0)
    max_delay_seconds: float = setting(
        60.0, "Longest wait between two attempts.", flag="--retry-max-seconds", minimum=0)
    jitter: float = setting(
        0.5, "Share of each wait that is random, so retries of many states spread out.",
        flag="--retry-jitter", minimum=0, maximum=1)

    def delay_after(self, failed_attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before the next attempt, or None when attempts are used up.

        Args:
            failed_attempts: attempts that have failed so far, this one included.
        """
        if failed_attempts >= self.max_attempts:
            return None
        return self.backoff_seconds(failed_attempts, rng)

    def backoff_seconds(self, count: int, rng: random.Random | None = None) -> float:
        """The wait after the ``count``-th (1-based) failure or requested retry, jitter applied."""
        raw = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** min(count - 1, 64))
        factor = 1 - self.jitter * (rng or random).random()
        return float(raw * factor)
