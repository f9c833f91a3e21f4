"""PostgreSQL store configuration: options, the store URL, and the SQL files.

Kept apart from ``postgres.py`` (the protocol) so the options can be read and
validated, and the URL parsed, without opening a connection.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
import psycopg.conninfo

from martian_doves import codec
from martian_doves.errors import ConfigError, check_seconds

#: Schema used when neither the options nor the URL (``?schema=``) name one.
DEFAULT_SCHEMA = "doves"
#: Schema names are restricted so they need no quoting anywhere (search_path, channel).
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
#: Store options a URL may carry (``?synchronous_commit=off&claim_batch=4``), so a
#: ``DOVES_STORE`` URL alone can configure a deployment; libpq never sees them.
URL_OPTIONS = ("schema", "lease_seconds", "claim_batch", "pool_size", "poll_seconds", "synchronous_commit",
               "reconnect_seconds")



def _sql_file(*parts: str) -> Any:
    return resources.files("martian_doves.stores").joinpath("sql", *parts)


def _load_queries() -> dict[str, str]:
    """The named queries of ``queries.sql`` (comment lines dropped)."""
    queries: dict[str, list[str]] = {}
    name = ""
    for line in _sql_file("queries.sql").read_text("utf-8").splitlines():
        if line.startswith("-- name:"):
            name = line.split(":", 1)[1].strip()
            queries[name] = []
        elif name and not line.lstrip().startswith("--"):
            queries[name].append(line)
    return {key: "\n".join(lines).strip() for key, lines in queries.items()}


Q = _load_queries()


def _migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts (``0001_initial.sql`` ...) in version order."""
    found = [(re.match(r"^(\d+)_.*\.sql$", entry.name), entry) for entry in _sql_file("migrations").iterdir()]
    return sorted((int(match[1]), entry.read_text("utf-8")) for match, entry in found if match)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclasses.dataclass(frozen=True)
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


def parse_url(url: str, options: PostgresOptions | None = None,
              explicit: Collection[str] | None = None) -> tuple[str, PostgresOptions, str]:
    """Split a store URL into what libpq gets, the full options, and a description.

    Args:
        url: ``postgresql://user@host:port/db?schema=NAME&...``, any ``URL_OPTIONS`` in the query.
        options: given explicitly; the fields named in ``explicit`` win over the URL (a
            flag set to its default value too), or, without ``explicit``, those that
            differ from their defaults.

    Returns:
        ``(conninfo, validated options with the schema set, password-free description)``.

    Raises:
        ConfigError: the URL, a parameter or the schema name is unusable.
    """
    options = options or PostgresOptions()
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        where = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
    except ValueError as e:
        raise ConfigError(f"invalid PostgreSQL URL: {e}") from e
    defaults, changes = PostgresOptions(), dict[str, Any](schema=options.schema or DEFAULT_SCHEMA)
    for key, raw in query:
        if key not in URL_OPTIONS:
            continue  # libpq's own parameter
        if key in explicit if explicit is not None else getattr(options, key) != getattr(defaults, key):
            continue  # given explicitly: it wins
        kind: type = str if key == "schema" else type(getattr(defaults, key))
        flag = raw.lower() in ("on", "true", "1", "yes")
        if kind is bool and not flag and raw.lower() not in ("off", "false", "0", "no"):
            raise ConfigError(f"URL parameter {key}={raw!r} is not on or off")
        try:
            changes[key] = flag if kind is bool else kind(raw)
        except ValueError as e:
            raise ConfigError(f"URL parameter {key}={raw!r} is not a valid {kind.__name__}") from e
    options = dataclasses.replace(options, **changes).validate()
    # The URL as given, less our own parameters (rebuilt by hand: urlunsplit would turn a
    # host-less postgresql:///db?host=/run/postgresql into postgresql:/db).
    rest = urlencode([(k, v) for k, v in query if k not in URL_OPTIONS], quote_via=quote)  # libpq: no "+"
    conninfo = url.split("?", 1)[0] + (f"?{rest}" if rest else "")
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as e:
        raise ConfigError(f"invalid PostgreSQL URL: {_one_line(e)}") from e
    user = f"{parts.username}@" if parts.username else ""
    return conninfo, options, f"postgresql://{user}{where} (schema {options.schema})"
