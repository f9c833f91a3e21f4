"""A PostgreSQL store's schema: whether it exists, and its migrations (``sql/migrations``).

Runs on a connection of its own, outside the pool: a store migrates before it opens
the pool, and ``doves migrate`` does nothing else.
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from martian_doves.errors import ConfigError, StoreError, StoreUnavailable
from martian_doves.stores.postgres.connector import PostgresConnector
from martian_doves.stores.postgres.sql import Q, migrations
from martian_doves.text import first_line

log = logging.getLogger(__name__)


def require(connector: PostgresConnector, *, current: bool = False) -> None:
    """Raise ``ConfigError`` unless the store's schema exists (see ``create_schema``).

    Args:
        current: it must also be at this release's version (it is read as it is, never migrated).
    """
    latest = migrations()[-1][0]
    try:
        with connector.connect() as conn:
            found = conn.execute(Q["has_versions"], {"table": f"{connector.schema}.schema_version"}).fetchone()
            row = conn.execute(Q["version"]).fetchone() if current and found != (None,) else None
    except psycopg.Error as e:
        raise StoreError(f"cannot read {connector.description}: {first_line(e)}") from e
    if found == (None,):
        raise ConfigError(f"not a store (schema {connector.schema} does not exist; doves submit or doves migrate "
                          f"creates it): {connector.description}")
    if current and (row is None or row[0] != latest):
        version = 0 if row is None else int(row[0])
        fix = "doves migrate upgrades it" if version < latest else "upgrade martian-doves"
        raise ConfigError(f"schema {connector.schema} is at version {version}, this release reads version {latest} "
                          f"({fix}): {connector.description}")


#: How often a store's opening is tried again when the server ends its session meanwhile.
_SESSION_ENDED_RETRIES = 3


def migrate(connector: PostgresConnector) -> int:
    """Create the schema or bring it to the latest version; safe to run concurrently.

    A session the server ends meanwhile (an administrator, a failover) is opened again
    and the whole check retried, as every other statement is, a few times.

    Returns:
        The schema version reached.

    Raises:
        StoreUnavailable: the server cannot be reached.
        ConfigError: the schema is newer than this release understands.
    """
    attempt = 1
    while True:
        try:
            return _migrate_once(connector)
        except StoreUnavailable as e:
            if attempt == _SESSION_ENDED_RETRIES or not isinstance(e.__cause__, psycopg.errors.AdminShutdown):
                raise
        time.sleep(0.1 * attempt)
        attempt += 1


def _migrate_once(connector: PostgresConnector) -> int:
    scripts = migrations()
    with connector.connect() as conn:
        try:
            # Read-only first: an up-to-date schema needs no lock and no CREATE privilege.
            if conn.execute(Q["has_versions"], {"table": f"{connector.schema}.schema_version"}).fetchone() != (None,):
                row = conn.execute(Q["version"]).fetchone()
                if row is not None and row[0] == scripts[-1][0]:
                    return int(row[0])
            with conn.transaction():
                # Serialises concurrent first opens (two workers starting at once).
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"doves-migrate:{connector.schema}",))
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(connector.schema)))
                conn.execute(Q["version_table"])
                row = conn.execute(Q["version"]).fetchone()
                current = int(row[0]) if row else 0
                if current > scripts[-1][0]:
                    raise ConfigError(f"schema {connector.schema} is at version {current}, newer than this "
                                      f"release supports ({scripts[-1][0]}); upgrade martian-doves")
                for version, script in scripts:
                    if version > current:
                        conn.execute(script.encode())
                        conn.execute(Q["set_version"], {"version": version})
                        log.info("schema %s migrated to version %d", connector.schema, version,
                                 extra={"action": "migrate"})
                        current = version
        except psycopg.OperationalError as e:
            raise StoreUnavailable(f"cannot migrate {connector.description}: {first_line(e)}") from e
        except psycopg.Error as e:
            raise StoreError(f"cannot migrate {connector.description}: {first_line(e)}") from e
    return current
