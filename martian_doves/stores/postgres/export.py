"""``doves export``: a PostgreSQL store's states written back as a folder store.

The folder gets what the lease directory store would hold for the same states: state
files by lineage name, ``done/`` markers, ``failed/NAME`` with its reason, ``pending/``
hints (claimed states too: a claim means nothing elsewhere), so ``doves run DIRECTORY``
or any file tool reads them. The files are written by the folder store's own ``Layout``
(``write_exported``), so their formats are that store's, never a copy of them. Nothing
is ever overwritten, so exporting again into the same folder, or retrying after a lost
connection, adds only what is missing.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

from martian_doves import codec
from martian_doves.errors import CodecError, ConfigError
from martian_doves.model import JSONDict, Status
from martian_doves.stores.directory.layout import Layout
from martian_doves.stores.postgres.connector import Unreadable
from martian_doves.stores.postgres.machines import state_of
from martian_doves.stores.postgres.sql import Q

if TYPE_CHECKING:
    from martian_doves.stores.postgres.connector import Conn, PostgresConnector

log = logging.getLogger(__name__)

#: Rows fetched per round trip by the export's server-side cursor.
_EXPORT_BATCH = 500


def export(connector: PostgresConnector, directory: str) -> int:
    """Write every state of the connector's schema to ``directory`` in the folder-store layout.

    Args:
        connector: the store's connections.
        directory: the folder to write (created if missing; may hold an earlier export).

    Returns:
        How many state files were written (or found there already, identical).

    Raises:
        ConfigError: the directory cannot be created, or is a file.
        StoreUnavailable: the server stayed unreachable.
    """
    root = os.path.abspath(directory)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ConfigError(f"cannot export to {root}: it is a file, not a folder")
    try:
        layout = Layout(root, create=True)
    except OSError as e:
        raise ConfigError(f"cannot export to {root}: {e.strerror}") from e
    try:
        return _export_all(connector, layout)
    finally:
        layout.close()


def _export_all(connector: PostgresConnector, layout: Layout) -> int:
    clashes: list[str] = []

    def dump(conn: Conn, _: int) -> int:
        clashes.clear()  # a retry after a lost connection starts over (and finds its own files)
        # A server-side cursor: millions of states stream through in small batches.
        with conn.transaction(), conn.cursor(name=f"doves_export_{secrets.token_hex(4)}") as cursor:
            cursor.itersize = _EXPORT_BATCH
            return sum(_export_one(layout, clashes, *row) for row in cursor.execute(Q["export"]))

    exported = connector.run("export", dump)
    if clashes:
        log.warning("%d state(s) not exported: %s holds other files of those names (%s%s)", len(clashes),
                    layout.root, ", ".join(clashes[:5]), ", ..." if len(clashes) > 5 else "",
                    extra={"action": "export"})
    return exported


def _export_one(layout: Layout, clashes: list[str], name: str, state: str, payload: JSONDict | Unreadable,
                parent: str | None, status: str, attempts: int, errors: list[str], not_before: float,
                worker: str | None, token: str | None, claimed_at: float | None, reason: JSONDict | None,
                *model: Any) -> int:
    """Write one row (the columns of the ``export`` query) unless its state file clashes.

    Returns:
        1 when the state file is there now, 0 when it was skipped (unexportable, or a
        different file holds its name: then the name is added to ``clashes``).
    """
    if isinstance(payload, Unreadable):  # e.g. an integer of more digits than Python converts
        log.warning("not exporting %r: its payload is %s", name, payload.reason, extra={"action": "export"})
        return 0
    try:
        codec.check_name(name)
        # Its machine, wait and origin go in the state file, as the folder store keeps them.
        data = codec.encode(state_of(name, state, payload, parent, *model))
    except CodecError as e:
        log.warning("not exporting %r: %s", name, e.message, extra={"action": "export"})
        return 0
    # The folder store's own formats; only what is missing is written, so an earlier
    # try of this export that stopped short, or an earlier export, is completed.
    if not layout.write_exported(name, data, Status(status), attempts=attempts, errors=errors,
                                 not_before=not_before, worker=worker, token=token, claimed_at=claimed_at,
                                 reason=reason):
        clashes.append(name)
        return 0
    return 1
