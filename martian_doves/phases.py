"""Optional timing of the phases of a transition: claim, read, tick, write, commit.

Off by default, and then free: nothing is wrapped and no clock is read. When asked
(``doves run --phase-timings DIR``, which ``doves bench --phase-timings`` uses), a
``PhaseTimer`` replaces a few methods of the live objects of one worker process with
wrappers that add the time spent in them (``time.perf_counter``) to their phase: the
worker's calls to ``store.claim``, ``registry.tick`` and ``store.commit`` (or
``commit_many``, counted once per transition it commits), and the
points a store names in its ``phase_points`` (where it reads a state and writes a
successor, which happen inside its claim and its commit). The totals are written as
JSON when the worker stops.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

#: The phases, in the order a transition goes through them. ``read`` happens inside
#: ``claim`` (and ``write`` inside ``commit``) where a store reports them apart.
PHASES = ("claim", "read", "tick", "write", "commit")

#: Phases that other phases' points may be called from, never the other way round: a read
#: inside a write (a look at a name the write may take) is part of the write.
_LEAVES = frozenset(("read", "tick", "write"))

#: Where a store reads and writes, as (attribute path from the store, method, phase).
PhasePoint = tuple[str, str, str]


class PhaseTimer:
    """Totals of the time spent in each phase, from the methods ``wrap`` instrumented."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(PHASES, 0)

    def _add(self, phase: str, seconds: float, calls: int = 1) -> None:
        with self._lock:  # ticks run on several threads
            self.seconds[phase] += seconds
            self.calls[phase] += calls

    def wrap(self, owner: object, method: str, phase: str,
             count: Callable[[tuple[Any, ...]], int] | None = None) -> None:
        """Replace ``owner.method`` (on that instance only) with a timed wrapper.

        Args:
            count: how many calls one call stands for, from its positional arguments
                (a batch commit of n transitions counts n); one if None.
        """
        original: Callable[..., Any] = getattr(owner, method)
        add, clock, local, leaf = self._add, time.perf_counter, self._local, phase in _LEAVES

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if leaf and getattr(local, "in_leaf", False):
                return original(*args, **kwargs)  # counted in the phase around it
            local.in_leaf = leaf
            started = clock()
            try:
                return original(*args, **kwargs)
            finally:
                add(phase, clock() - started, 1 if count is None else count(args))
                local.in_leaf = False

        setattr(owner, method, timed)

    def instrument(self, store: object, registry: object) -> None:
        """Time a worker's claims, ticks and commits, and the read and write points ``store`` names."""
        self.wrap(store, "claim", "claim")
        self.wrap(store, "commit", "commit")
        if callable(getattr(store, "commit_many", None)):  # a round of transitions in one call
            self.wrap(store, "commit_many", "commit", count=lambda args: len(args[0]))
        self.wrap(registry, "tick", "tick")
        points: Iterable[PhasePoint] = getattr(store, "phase_points", ())
        for path, method, phase in points:
            owner = functools.reduce(getattr, path.split(".") if path else [], store)
            self.wrap(owner, method, phase)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{phase: {"calls": n, "seconds": s}}``; ``claim`` includes ``read``, ``commit`` includes ``write``."""
        with self._lock:
            return {phase: {"calls": self.calls[phase], "seconds": self.seconds[phase]} for phase in PHASES}

    def dump(self, path: str) -> None:
        """Write the totals to ``path`` as JSON (whole: written aside, then renamed)."""
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as out:
            json.dump(self.as_dict(), out)
        os.replace(tmp, path)


def exclusive_seconds(totals: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Seconds of each phase with ``read`` taken out of ``claim`` and ``write`` out of ``commit``:
    the five then add up to the time of the transitions, store and tick."""
    seconds = {phase: float(totals[phase]["seconds"]) for phase in PHASES}
    seconds["claim"] = max(0.0, seconds["claim"] - seconds["read"])
    seconds["commit"] = max(0.0, seconds["commit"] - seconds["write"])
    return seconds


def combine(totals: Iterable[Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """The sum of several workers' totals (``PhaseTimer.as_dict``), phase by phase."""
    combined: dict[str, dict[str, float]] = {phase: {"calls": 0, "seconds": 0.0} for phase in PHASES}
    for one in totals:
        for phase in PHASES:
            if phase in one:
                combined[phase]["calls"] += one[phase].get("calls", 0)
                combined[phase]["seconds"] += one[phase].get("seconds", 0.0)
    return combined
