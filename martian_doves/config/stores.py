"""Store configuration: the options of each store family, and ``StoreConfig`` (target, mode, options).

``open_store`` takes a ``StoreConfig``; ``StoreConfig.of`` builds one from option values
and refuses names that are no option of the store's family.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from martian_doves import codec
from martian_doves.errors import ConfigError
from martian_doves.settings import Checked, check_settings, setting, settings_of

#: Environment variable every command reads its STORE from when none is given.
STORE_ENV = "DOVES_STORE"
#: Directory-store modes, the first being the default.
DIRECTORY_MODES = ("lease", "semaphore")
#: The mode of a ``postgresql://`` store (it has only one).
POSTGRES_MODE = "postgres"
#: Schema used when neither the options nor the URL (``?schema=``) name one.
DEFAULT_SCHEMA = "doves"
#: Schema names are restricted so they need no quoting anywhere (search_path, channel).
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
#: Smallest skew bound the guard can measure against: filesystem timestamps come from
#: the kernel's coarse clock (ticks of 1 to 10 ms), so a reading is only that fine.
MIN_SKEW_SECONDS = 0.025


def is_postgres_url(target: str) -> bool:
    """Whether a store target names a PostgreSQL database rather than a folder."""
    return target.startswith(("postgresql://", "postgres://"))


@dataclass(frozen=True)
class StoreOptions(Checked):
    """What every store family shares: the lease and the largest state."""

    #: What the family is called in messages.
    family: ClassVar[str] = "store"

    lease_seconds: float = setting(
        30.0, "A claim whose worker has not renewed it for this long is taken over by another worker, "
              "e.g. after kill -9.", minimum=0, above_minimum=True, in_url=True)
    max_state_bytes: int = setting(
        codec.DEFAULT_MAX_STATE_BYTES, "Larger state files are refused (submit) or failed unread (run).",
        minimum=64)
    #: A join's successor holds one entry per child, each child within max_state_bytes.
    max_join_bytes: int = setting(
        codec.DEFAULT_MAX_JOIN_BYTES, "A join's successor (one entry per child in payload['children']) may be "
        "this large; a larger one fails the join (bad_return).", minimum=64)



@dataclass(frozen=True)
class DirectoryOptions(StoreOptions):
    """Tuning shared by both directory modes."""

    family: ClassVar[str] = "folder store"

    durable: bool = setting(
        False, "fsync every write before it becomes visible, so commits also survive a power loss.")
    admission_grace_seconds: float = setting(
        1.0, "A file copied in by hand is admitted once it is this old (its writer is done).",
        minimum=0, cli=False)
    #: NFS delivers no inotify events for other hosts' writes, hence the scan.
    scan_seconds: float = setting(
        10.0, "How often the whole folder is re-listed for state files copied in by hand (inotify wakes "
              "workers sooner on local disks).", minimum=0, above_minimum=True)


class Phase(enum.StrEnum):
    ASSIGNMENT = "assignment"
    COMMITMENT = "commitment"
    UPDATE = "update"
    BUFFER = "buffer"


@dataclass(frozen=True)
class Phases:
    """Phase arithmetic: which phase a wall-clock time falls in, and when the next begins.

    Built from ``SemaphoreOptions.phases``, which holds the defaults.
    """

    assignment_seconds: float
    commitment_seconds: float
    update_seconds: float
    buffer_seconds: float

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
        """Return ``self`` if the phases make a usable cycle.

        Raises:
            ConfigError: a phase is empty, or the buffer leaves the skew guard no room.
        """
        # The same bounds as the options the phases come from (phases built by hand included).
        check_settings(SemaphoreOptions(**dataclasses.asdict(self)))
        if self.buffer_seconds < MIN_SKEW_SECONDS * 2:
            raise ConfigError(f"--buffer-seconds must be at least {MIN_SKEW_SECONDS * 2:g}: the skew guard "
                              f"needs half of it, and file timestamps are only a few milliseconds fine")
        return self


@dataclass(frozen=True)
class SemaphoreOptions(DirectoryOptions):
    """Directory options plus the semaphore's phase lengths (the seed's defaults)."""

    family: ClassVar[str] = "folder store in semaphore mode"

    assignment_seconds: float = setting(
        3.0, "Semaphore mode: length of the assignment phase.", minimum=0, above_minimum=True)
    commitment_seconds: float = setting(
        3.0, "Semaphore mode: length of the commitment phase.", minimum=0, above_minimum=True)
    update_seconds: float = setting(
        3.0, "Semaphore mode: length of the update phase.", minimum=0, above_minimum=True)
    buffer_seconds: float = setting(
        1.0, f"Semaphore mode: gap between phases; must exceed clock skew plus filesystem delay (at least "
             f"{MIN_SKEW_SECONDS * 2:g}: file timestamps are only a few milliseconds fine).", minimum=0)
    #: The other half of the buffer is left for filesystem propagation delay.
    max_skew_seconds: float | None = setting(
        None, f"Semaphore mode: a worker whose clock is further off the shared filesystem's stays out "
              f"(at least {MIN_SKEW_SECONDS:g}).", minimum=0, show_default="half of --buffer-seconds")

    @property
    def phases(self) -> Phases:
        return Phases(self.assignment_seconds, self.commitment_seconds, self.update_seconds,
                      self.buffer_seconds).validate()

    def validate(self) -> Self:
        super().validate()
        self.phases  # noqa: B018 (validates the phases)
        if self.max_skew_seconds is not None and self.max_skew_seconds < MIN_SKEW_SECONDS:
            raise ConfigError(f"--max-skew-seconds must be at least {MIN_SKEW_SECONDS:g}: below that, the "
                              "coarse timestamps of the filesystem alone look like skew and nobody takes part")
        return self

    @property
    def skew_limit_seconds(self) -> float:
        return self.buffer_seconds / 2 if self.max_skew_seconds is None else self.max_skew_seconds


@dataclass(frozen=True)
class PostgresOptions(StoreOptions):
    """Tuning of the PostgreSQL store. Options marked ``in_url`` may also come from the URL."""

    family: ClassVar[str] = "PostgreSQL store"

    schema: str | None = setting(
        None, "PostgreSQL: schema holding the tables.", show_default=f"{DEFAULT_SCHEMA}, or the URL's ?schema=",
        in_url=True)
    #: Extras wait in this process (renewed by its heartbeats) for the next ``claim``.
    claim_batch: int = setting(
        1, "States locked per claim round trip: more saves round trips, fewer balances better.",
        minimum=1, cli=False, in_url=True)
    #: Opened only as threads need them, plus one for LISTEN.
    pool_size: int = setting(
        8, "PostgreSQL: most connections per worker process; at least --concurrency + 1.", minimum=1,
        in_url=True)
    poll_seconds: float = setting(
        5.0, "Longest wait for a NOTIFY before looking again (missed wake-ups, leases expiring).",
        minimum=0, above_minimum=True, cli=False, in_url=True)
    #: Off: a *server* crash may undo the last fraction of a second of transitions; those
    #: ticks run again (ticks are at-least-once anyway), and nothing is half-written, lost
    #: or doubled, because the WAL is replayed in order. Submits, resets and retries of
    #: failed states stay synchronous. Worker crashes are unaffected.
    synchronous_commit: bool = setting(
        True, "PostgreSQL: wait for the WAL flush on every commit. Off is faster; a server crash may then "
              "re-run the last transitions (never half-write or double them).", in_url=True)
    reconnect_seconds: float = setting(
        30.0, "How long an operation keeps retrying on a lost connection (a restarting server) before "
              "giving up with StoreUnavailable.", minimum=0, cli=False, in_url=True)
    connect_timeout_seconds: float = setting(
        10.0, "Time allowed to open a connection.", minimum=0, above_minimum=True, cli=False)
    #: Off for commands that only read or change existing states, so a mistyped schema is
    #: an error, not a new empty store.
    create_schema: bool = setting(True, "Create (or upgrade) the schema on open.", cli=False)

    def validate(self) -> Self:
        """Return ``self`` if every value is usable.

        Raises:
            ConfigError: a value is out of range (one line, naming the option).
        """
        super().validate()
        if self.schema is not None and not _SCHEMA_NAME.match(self.schema):
            raise ConfigError(f"schema {self.schema!r}: use lowercase letters, digits and _ (at most 50)")
        return self

    @classmethod
    def url_options(cls) -> tuple[str, ...]:
        """The options a store URL may carry (``?synchronous_commit=off&claim_batch=4``)."""
        return tuple(item.name for item, described, _ in settings_of(cls) if described.in_url)


def require_target(target: str | None) -> str:
    """``target``, unless no store was named at all.

    Raises:
        ConfigError: ``target`` is empty (no STORE argument, no ``DOVES_STORE``).
    """
    if not target:
        raise ConfigError(f"no store given: pass STORE (a folder or postgresql:// URL) or set {STORE_ENV}")
    return target


def options_class(target: str, mode: str) -> type[StoreOptions]:
    """The options class of the store family ``target`` and ``mode`` name.

    Raises:
        ConfigError: no target, an unsupported URL scheme or an unknown mode.
    """
    if is_postgres_url(require_target(target)):
        return PostgresOptions
    if "://" in target:
        raise ConfigError(f"unsupported store URL {target!r}: use a directory or postgresql://")
    if mode == DIRECTORY_MODES[0]:
        return DirectoryOptions
    if mode == DIRECTORY_MODES[1]:
        return SemaphoreOptions
    raise ConfigError(f"unknown mode {mode!r}: choose one of {', '.join(DIRECTORY_MODES)}")


@dataclass(frozen=True)
class StoreConfig:
    """Which store to open and how: its target, its mode, and the options of its family.

    ``StoreConfig.of`` builds one from option values; ``open_store`` takes it.
    """

    #: A folder (created if missing) or a ``postgresql://`` URL.
    target: str
    #: ``lease`` or ``semaphore`` for a folder; ``postgres`` for a URL.
    mode: str
    #: ``DirectoryOptions`` (lease), ``SemaphoreOptions`` (semaphore) or ``PostgresOptions``.
    options: StoreOptions
    #: The options given on purpose. A PostgreSQL URL's own ``?lease_seconds=`` and the
    #: like fill in only the others: what was given wins, even at its default value.
    explicit: frozenset[str] = frozenset()

    @classmethod
    def of(cls, target: str, mode: str = DIRECTORY_MODES[0], **values: Any) -> StoreConfig:
        """The validated configuration of the store at ``target``.

        Args:
            target: a folder or a ``postgresql://`` URL.
            mode: ``lease`` or ``semaphore`` for a folder; ignored for a URL.
            values: options of that store family by field name (``lease_seconds=5``);
                None means "not given".

        Raises:
            ConfigError: a bad target or mode, a name that is no option of this store
                family, or a value out of range (one line).
        """
        family = options_class(target, mode)
        known = {item.name for item in dataclasses.fields(family)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{', '.join(unknown)}: not an option of a {family.family} "
                              f"(its options: {', '.join(sorted(known))})")
        given = {name: value for name, value in values.items() if value is not None}
        return cls(target, _mode_of(family), family(**given), frozenset(given)).validate()

    def validate(self) -> StoreConfig:
        """Return ``self`` if the options fit the target and mode and are usable.

        Raises:
            ConfigError: options of another store family, or a value out of range.
        """
        family = options_class(self.target, self.mode)
        if type(self.options) is not family or self.mode != _mode_of(family):
            raise ConfigError(f"{self.target} in {self.mode} mode takes {family.__name__}, "
                              f"not {type(self.options).__name__}")
        self.options.validate()
        return self

    @property
    def is_postgres(self) -> bool:
        return self.mode == POSTGRES_MODE

    def with_options(self, **changes: Any) -> StoreConfig:
        """This configuration with some options changed (not counted as given on purpose)."""
        return dataclasses.replace(self, options=dataclasses.replace(self.options, **changes)).validate()


def _mode_of(family: type[StoreOptions]) -> str:
    if family is PostgresOptions:
        return POSTGRES_MODE
    return DIRECTORY_MODES[1] if family is SemaphoreOptions else DIRECTORY_MODES[0]
