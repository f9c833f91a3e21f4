"""The PostgreSQL store's URL: what libpq gets, the store options it carries, a description.

Kept apart from the store so a URL can be checked, and its options read and validated,
without opening a connection. The option dataclass itself is ``config.PostgresOptions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import psycopg
import psycopg.conninfo

from martian_doves.config import DEFAULT_SCHEMA, PostgresOptions
from martian_doves.errors import ConfigError
from martian_doves.text import first_line

#: Store options a URL may carry (``?synchronous_commit=off&claim_batch=4``), so a
#: ``DOVES_STORE`` URL alone can configure a deployment; libpq never sees them.
URL_OPTIONS = PostgresOptions.url_options()


def is_system_schema(schema: str) -> bool:
    """Whether ``schema`` is one of PostgreSQL's own (``pg_catalog``, ``pg_toast``, ``pg_temp_N``,
    ``information_schema`` ...): a store's tables never go there."""
    return schema.startswith("pg_") or schema == "information_schema"


def parse_url(url: str, options: PostgresOptions | None = None,
              explicit: Collection[str] | None = None) -> tuple[str, PostgresOptions, str]:
    """Split a store URL into what libpq gets, the full options, and a description.

    Args:
        url: ``postgresql://user@host:port/db?schema=NAME&...``, any ``URL_OPTIONS`` in the query.
        options: given explicitly; the fields named in ``explicit`` win over the URL (a
            flag set to its default value too), or, without ``explicit``, those that
            differ from their defaults.
        explicit: the fields of ``options`` that were given (on the command line, say).

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
    if is_system_schema(options.schema or DEFAULT_SCHEMA):
        raise ConfigError(f"schema {options.schema!r} belongs to PostgreSQL itself: name a schema of your own "
                          f"(?schema=NAME, default {DEFAULT_SCHEMA})")
    # The URL as given, less our own parameters (rebuilt by hand: urlunsplit would turn a
    # host-less postgresql:///db?host=/run/postgresql into postgresql:/db).
    rest = urlencode([(k, v) for k, v in query if k not in URL_OPTIONS], quote_via=quote)  # libpq: no "+"
    conninfo = url.split("?", 1)[0] + (f"?{rest}" if rest else "")
    try:
        psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error as e:
        raise ConfigError(f"invalid PostgreSQL URL: {first_line(e)}") from e
    user = f"{parts.username}@" if parts.username else ""
    return conninfo, options, f"postgresql://{user}{where} (schema {options.schema})"
