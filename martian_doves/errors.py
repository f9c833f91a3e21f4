"""Error tree: one root, a subtree per layer, a stable ``code`` on each class.

The ``code`` is what lands in a failed state's machine-readable reason, so it never
changes once released. Each class's docstring is its default message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: Longest duration any option accepts (about 31 years, i.e. "never"), well within
#: what thread timeouts (threading.TIMEOUT_MAX) and PostgreSQL intervals can hold.
MAX_SECONDS = 1e9


class DovesError(Exception):
    """Martian Doves error."""

    #: Stable, machine-readable identifier written to ``failed/*.reason.json``.
    code = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.code).strip().splitlines()[0])

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(DovesError):
    """Invalid configuration."""

    code = "config"


def check_seconds(durations: Mapping[str, float | None]) -> None:
    """Raise ``ConfigError`` unless each duration (by flag; None: unset) is finite and at most ``MAX_SECONDS``.

    Range checks such as ``value <= 0`` let NaN through, and an infinite or huge
    lease or delay overflows a PostgreSQL interval or a timer deep inside a worker.
    """
    for flag, value in durations.items():
        if value is not None and not (math.isfinite(value) and abs(value) <= MAX_SECONDS):
            raise ConfigError(f"{flag} must be a finite number of seconds, at most {MAX_SECONDS:.0f}; got {value}")


def workers_alive_error(live: list[str]) -> ConfigError:
    """Why ``reset`` refuses: it must never pull states from under running workers."""
    return ConfigError(f"workers are running on this store ({', '.join(live)}); stop them first (a worker "
                       "killed without a clean stop counts as running until its lease runs out)")


class CodecError(DovesError):
    """The state file cannot be read as a state."""

    code = "codec"


class MalformedJSON(CodecError):
    """The file is not valid UTF-8 JSON."""

    code = "malformed_json"


class InvalidDocument(CodecError):
    """The JSON is not a state document ({"state": name, "payload": {...}})."""

    code = "invalid_document"


class FileTooLarge(CodecError):
    """The file is larger than the size limit."""

    code = "file_too_large"


class UnsafeName(CodecError):
    """The file name is unsafe (path separators, '..', control characters, too long)."""

    code = "unsafe_name"


class NotARegularFile(CodecError):
    """The entry is a symlink or not a regular file; state files are plain files."""

    code = "not_a_regular_file"


class RegistryError(DovesError):
    """Machine registry error."""

    code = "registry"


class UnknownState(RegistryError):
    """No machine is registered under this state name."""

    code = "unknown_state"


class InvalidPayload(RegistryError):
    """The payload does not validate for this machine."""

    code = "invalid_payload"


class BadReturn(RegistryError):
    """The handler returned something other than None, a dict or a (state, dict) pair."""

    code = "bad_return"


class MachineLoadError(RegistryError, ConfigError):
    """The machines module could not be loaded."""

    code = "machine_load"


class TickFailed(DovesError):
    """The tick raised on every attempt."""

    code = "tick_failed"


class TickTimeout(DovesError):
    """The tick ran longer than the tick time limit."""

    code = "tick_timeout"


class WaitTimedOut(DovesError):
    """The machine waited for an event that did not come in time, and had no on_timeout state."""

    code = "wait_timeout"


class RetryLimit(DovesError):
    """The handler asked for more retries (raise Retry) than --max-requested-retries allows."""

    code = "retry_limit"


class StoreError(DovesError):
    """Store error."""

    code = "store"


class StoreUnavailable(StoreError):
    """The store cannot be reached."""

    code = "store_unavailable"


class ClaimLost(StoreError):
    """The claim was taken over by another worker; this worker may not commit it."""

    code = "claim_lost"


class SendRefused(StoreError):
    """The event cannot be sent to that machine."""

    code = "send_refused"


class NoSuchMachine(SendRefused):
    """No machine of that name is in the store."""

    code = "no_such_machine"


class MachineEnded(SendRefused):
    """The machine has ended: no state of it will ever wait for an event again."""

    code = "machine_ended"


class NameTaken(StoreError):
    """A state with this name already exists in the store."""

    code = "name_taken"


#: Longest delay a handler may ask for with ``Retry`` (a year).
MAX_RETRY_DELAY_SECONDS = 366 * 86400.0


class Retry(Exception):
    """Raised by a handler to ask for this tick to run again later.

    Args:
        delay_seconds: how long to wait before the next attempt; None uses the
            retry policy's backoff.
    """

    def __init__(self, delay_seconds: float | None = None, reason: str = "retry requested") -> None:
        # Checked here, in the handler's frame: a delay no store can honour (NaN, infinite,
        # beyond any file timestamp, not a number) would otherwise surface inside the store
        # and stop the worker loop instead of failing this one tick.
        if delay_seconds is not None and (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, int | float)
            or not 0 <= delay_seconds <= MAX_RETRY_DELAY_SECONDS
        ):
            raise ValueError(f"Retry(delay_seconds={delay_seconds!r}): the delay must be a number of seconds "
                             f"from 0 to {MAX_RETRY_DELAY_SECONDS:g}")
        super().__init__(reason)
        self.delay_seconds = delay_seconds
        self.reason = reason
