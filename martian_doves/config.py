"""Typed configuration: one frozen dataclass per concern, each with ``validate()``.

Stores, workers and the supervisor take these objects; the CLI and the Python API
build them. Every default is written here once.
"""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field

from martian_doves import codec
from martian_doves.errors import ConfigError, check_seconds
from martian_doves.retry import RetryPolicy

#: Schema used when neither the options nor the URL (``?schema=``) name one.
DEFAULT_SCHEMA = "doves"
#: Schema names are restricted so they need no quoting anywhere (search_path, channel).
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")


@dataclass(frozen=True)
class DirectoryOptions:
    """Tuning shared by both directory modes."""

    #: A claim whose heartbeat is older than this is taken over by another worker.
    lease_seconds: float = 30.0
    #: fsync data and directories before a name becomes visible (survives power loss).
    durable: bool = False
    #: Larger state files are quarantined unread.
    max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES
    #: A file copied in by hand is admitted once it is this old (its writer is done).
    admission_grace_seconds: float = 1.0
    #: How often the whole folder is re-listed for files copied in without an event
    #: (NFS delivers no inotify events for other hosts' writes).
    scan_seconds: float = 10.0

    def validate(self) -> DirectoryOptions:
        check_seconds({"--lease-seconds": self.lease_seconds, "--scan-seconds": self.scan_seconds})
        if self.lease_seconds <= 0:
            raise ConfigError("--lease-seconds must be positive")
        if self.max_state_bytes < 64:
            raise ConfigError("--max-state-bytes is too small")
        if self.scan_seconds <= 0 or self.admission_grace_seconds < 0:
            raise ConfigError("--scan-seconds must be positive")
        return self


#: Smallest skew bound the guard can measure against: filesystem timestamps come from
#: the kernel's coarse clock (ticks of 1 to 10 ms), so a reading is only that fine.
MIN_SKEW_SECONDS = 0.025


class Phase(enum.StrEnum):
    ASSIGNMENT = "assignment"
    COMMITMENT = "commitment"
    UPDATE = "update"
    BUFFER = "buffer"


@dataclass(frozen=True)
class Phases:
    """Phase arithmetic: which phase a wall-clock time falls in, and when the next begins."""

    assignment_seconds: float = 3.0
    commitment_seconds: float = 3.0
    update_seconds: float = 3.0
    buffer_seconds: float = 1.0

    @property
    def cycle_seconds(self) -> float:
        return self.assignment_seconds + self.commitment_seconds + self.update_seconds + 3 * self.buffer_seconds

    def starts(self) -> list[tuple[float, Phase]]:
        """Offsets within a cycle at which each phase (and buffer) begins."""
        a, c, u, b = self.assignment_seconds, self.commitment_seconds, self.update_seconds, self.buffer_seconds
        return [
            (0.0, Phase.ASSIGNMENT), (a, Phase.BUFFER), (a + b, Phase.COMMITMENT),
            (a + b + c, Phase.BUFFER), (a + 2 * b + c, Phase.UPDATE), (a + 2 * b + c + u, Phase.BUFFER),
        ]

    def at(self, now: float) -> tuple[int, Phase, float]:
        """(cycle number, phase, seconds into the cycle) at wall time ``now``."""
        cycle = int(now // self.cycle_seconds)
        offset = now - cycle * self.cycle_seconds
        phase = Phase.BUFFER
        for start, candidate in self.starts():
            if offset >= start:
                phase = candidate
        return cycle, phase, offset

    def cycle_start(self, cycle: int) -> float:
        return cycle * self.cycle_seconds

    def next_boundary(self, now: float) -> float:
        """Wall time at which the next phase or buffer begins."""
        cycle, _, offset = self.at(now)
        for start, _phase in self.starts():
            if start > offset + 1e-9:
                return self.cycle_start(cycle) + start
        return self.cycle_start(cycle + 1)

    def validate(self) -> Phases:
        check_seconds({"--assignment-seconds": self.assignment_seconds, "--commitment-seconds": self.commitment_seconds,
                       "--update-seconds": self.update_seconds, "--buffer-seconds": self.buffer_seconds})
        if min(self.assignment_seconds, self.commitment_seconds, self.update_seconds) <= 0:
            raise ConfigError("semaphore phases must be longer than 0 s")
        if self.buffer_seconds < MIN_SKEW_SECONDS * 2:
            raise ConfigError(f"--buffer-seconds must be at least {MIN_SKEW_SECONDS * 2:g}: the skew guard "
                              f"needs half of it, and file timestamps are only a few milliseconds fine")
        return self


@dataclass(frozen=True)
class SemaphoreOptions(DirectoryOptions):
    """Directory options plus the semaphore's phase lengths (seed defaults)."""

    assignment_seconds: float = 3.0
    commitment_seconds: float = 3.0
    update_seconds: float = 3.0
    buffer_seconds: float = 1.0
    #: Largest |skew| tolerated; default half a buffer (the other half is left for
    #: filesystem propagation delay).
    max_skew_seconds: float | None = None

    @property
    def phases(self) -> Phases:
        return Phases(self.assignment_seconds, self.commitment_seconds, self.update_seconds,
                      self.buffer_seconds).validate()

    def validate(self) -> SemaphoreOptions:
        super().validate()
        self.phases  # noqa: B018 (validates the phases)
        if self.max_skew_seconds is not None and not MIN_SKEW_SECONDS <= self.max_skew_seconds <= 1e9:
            raise ConfigError(f"--max-skew-seconds must be at least {MIN_SKEW_SECONDS:g}: below that, the "
                              "coarse timestamps of the filesystem alone look like skew and nobody takes part")
        return self

    @property
    def skew_limit_seconds(self) -> float:
        return self.buffer_seconds / 2 if self.max_skew_seconds is None else self.max_skew_seconds


@dataclass(frozen=True)
class PostgresOptions:
    """Tuning of the PostgreSQL store."""

    #: A claim not renewed for this long (database clock) is taken over by the next claim.
    lease_seconds: float = 30.0
    #: Schema holding the tables; wins over the URL's ``?schema=``; default ``doves``.
    schema: str | None = None
    #: States locked per claim round trip; extras wait in this process (renewed by its
    #: heartbeats) for the next ``claim``. More saves round trips, fewer balances better.
    claim_batch: int = 1
    #: Most connections this process opens (plus one for LISTEN), opened only as threads
    #: need them. Keep it above the worker's concurrency (+1 for the heartbeat thread).
    pool_size: int = 8
    #: Longest wait for a NOTIFY before looking again (missed wake-ups, leases expiring).
    poll_seconds: float = 5.0
    #: Wait for the WAL flush on every transition. ``False`` makes them much cheaper, but a
    #: *server* crash may then undo the last fraction of a second of transitions: those
    #: ticks run again (ticks are at-least-once anyway), and nothing is half-written,
    #: lost or doubled, because the WAL is replayed in order. Submits, resets and
    #: retries of failed states stay synchronous. Worker crashes are unaffected.
    synchronous_commit: bool = True
    #: How long an operation keeps retrying on a lost connection (a restarting server)
    #: before giving up with ``StoreUnavailable``.
    reconnect_seconds: float = 30.0
    #: Time allowed to open a connection.
    connect_timeout_seconds: float = 10.0
    #: Largest state accepted, measured as the state file it exports to: submits over
    #: it are refused and a tick whose successor is over it fails (as in a folder).
    max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES
    #: Create (or upgrade) the schema on open. Off for commands that only read or
    #: change existing states, so a mistyped schema is an error, not a new empty store.
    create_schema: bool = True

    def validate(self) -> PostgresOptions:
        """Return ``self`` if every value is usable.

        Raises:
            ConfigError: a value is out of range (one line, naming the option).
        """
        check_seconds({"--lease-seconds": self.lease_seconds, "--poll-seconds": self.poll_seconds,
                       "--reconnect-seconds": self.reconnect_seconds,
                       "--connect-timeout-seconds": self.connect_timeout_seconds})
        if self.lease_seconds <= 0:
            raise ConfigError("--lease-seconds must be positive")
        if self.max_state_bytes < 64:
            raise ConfigError("--max-state-bytes is too small")
        if self.claim_batch < 1 or self.pool_size < 1:
            raise ConfigError("claim_batch and pool_size must be at least 1")
        if self.poll_seconds <= 0 or self.reconnect_seconds < 0 or self.connect_timeout_seconds <= 0:
            raise ConfigError("poll, reconnect and connect timeouts must be positive")
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ConfigError(f"schema {self.schema!r}: use lowercase letters, digits and _ (at most 50)")
        return self


@dataclass(frozen=True)
class WorkerOptions:
    """How one worker process behaves. Every field has a ``doves run`` flag."""

    name: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    #: Ticks run at once in this process (threads).
    concurrency: int = 1
    #: States claimed per request; more saves round trips, fewer balances slow ticks.
    prefetch: int = 1
    #: How often leases are renewed. Must be well below the store's lease.
    heartbeat_seconds: float = 2.0
    #: Longest sleep between looks for work when no wake-up arrives.
    poll_seconds: float = 1.0
    #: Exit when the store has nothing pending or claimed (``--watch`` turns it off).
    exit_when_finished: bool = True
    #: A tick running longer than this is retried (or failed) and the process replaced.
    tick_timeout_seconds: float | None = None
    #: On stop, how long in-flight ticks may run before their claims are released.
    shutdown_grace_seconds: float = 10.0
    #: Follow a machine's lineage in this worker while it runs (saves a claim per tick).
    chain: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def validate(self) -> WorkerOptions:
        check_seconds({"--heartbeat-seconds": self.heartbeat_seconds, "--poll-seconds": self.poll_seconds,
                       "--tick-timeout": self.tick_timeout_seconds,
                       "--shutdown-grace-seconds": self.shutdown_grace_seconds})
        if self.concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        if self.prefetch < 1:
            raise ConfigError("--prefetch must be at least 1")
        if self.heartbeat_seconds <= 0 or self.poll_seconds <= 0:
            raise ConfigError("heartbeat and poll intervals must be positive")
        if self.tick_timeout_seconds is not None and self.tick_timeout_seconds <= 0:
            raise ConfigError("--tick-timeout must be positive")
        self.retry.validate()
        return self


@dataclass(frozen=True)
class SupervisorOptions:
    """How the supervisor runs its workers."""

    #: Worker processes kept running.
    workers: int = 1
    #: Time beyond the workers' shutdown grace before stragglers are killed.
    stop_margin_seconds: float = 5.0
    #: First delay before a dead worker is replaced; doubles per quick death of the same slot.
    respawn_base_seconds: float = 0.5
    #: Upper bound of the respawn delay (a dead worker is replaced however often it dies).
    respawn_max_seconds: float = 30.0
    #: A worker that dies sooner than this after its start doubles the delay; one that
    #: ran longer starts the backoff over.
    min_uptime_seconds: float = 10.0
    #: How often ``store.status()`` is sampled for the progress display and metrics.
    status_seconds: float = 1.0
    #: Serve Prometheus metrics on this port (0: any free port); None: no metrics.
    metrics_port: int | None = None
    #: Address the metrics endpoint listens on.
    metrics_host: str = "0.0.0.0"

    def validate(self) -> SupervisorOptions:
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.stop_margin_seconds < 0 or self.respawn_base_seconds < 0 or self.respawn_max_seconds < 0:
            raise ConfigError("supervisor delays must not be negative")
        if self.status_seconds <= 0:
            raise ConfigError("invalid supervisor options")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port must be between 0 and 65535, not {self.metrics_port}")
        return self


