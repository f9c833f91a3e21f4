"""Commands that change a store as a whole: ``reset``, ``retry``, ``migrate`` and ``export``.

What a store can do beyond running states is a capability protocol of the store side
(``stores.base``), checked here with ``isinstance``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from martian_doves import api
from martian_doves.cli.options import option, split_store, store_argument, store_config, store_options
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED
from martian_doves.errors import ConfigError
from martian_doves.stores.base import AdminStore, ExportableStore, MigratableStore, Store


def _admin(store: Store) -> AdminStore:
    if not isinstance(store, AdminStore):
        raise ConfigError(f"{store.description} cannot be reset or retried from here")
    return store


@click.command()
@store_argument
@option("--successors", is_flag=True, default=False,
        help="Also delete the successor files (x.state-1, x.state-2 ...), keeping only the submitted roots.")
@option("--yes", "-y", is_flag=True, default=False, help="Do not ask for confirmation.")
@store_options(visible=False)
def reset(store: str | None, successors: bool, yes: bool, **params: Any) -> int:
    """Forget every outcome in STORE so all its states run again.

    The seed's "Re-Runs" recipe (rm workers/* done/* in_progress/*, optionally
    *.state-*) as one safe command: it refuses while workers are alive, and failed
    states come back too. Asks for confirmation on a terminal unless --yes.
    """
    with api.opened(store_config(store, params)) as opened:
        if not yes and sys.stdin.isatty():
            what = "and DELETE every successor file" if successors else "(successor files are kept)"
            if not click.confirm(f"Make every state in {opened.description} pending again {what}?"):
                click.echo("nothing changed")
                return EXIT_SOME_FAILED
        count = _admin(opened).reset(successors=successors)
        click.echo(f"reset {opened.description}: {count} state(s) pending again"
                   + ("; successor files deleted" if successors else ""))
    return EXIT_OK


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] [NAME...]")
@store_options(visible=False)
def retry(args: Sequence[str], **params: Any) -> int:
    """Make failed states pending again with fresh attempts: all of them, or the NAMEs given.

    Run 'doves run' (or let a --watch run pick them up) afterwards.
    STORE may be left out when DOVES_STORE is set. Exits 1 if a NAME was not failed.
    """
    target, names = split_store(args, None)
    with api.opened(store_config(target, params)) as store:
        count = _admin(store).retry_failed([os.path.basename(n) for n in names] if names else None)
        click.echo(f"{count} failed state(s) in {store.description} pending again")
    if names and count < len(names):
        click.echo(f"doves: {len(names) - count} of the {len(names)} named state(s) are not failed states "
                   "of this store (not failed, or no such name)", err=True)
        return EXIT_SOME_FAILED
    return EXIT_OK


@click.command()
@store_argument
@store_options(visible=False)
def migrate(store: str | None, **params: Any) -> int:
    """Create or upgrade the store's schema (PostgreSQL); folders need no migration."""
    with api.opened(store_config(store, params), existing=False) as opened:
        if not isinstance(opened, MigratableStore):
            click.echo(f"nothing to migrate: {opened.description} has no schema")
            return EXIT_OK
        click.echo(f"migrated {opened.description} to schema version {opened.migrate()}")
    return EXIT_OK


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] DIR")
@store_options(visible=False)
def export(args: Sequence[str], **params: Any) -> int:
    """Write every state of a database store to DIR as state files (the same format).

    STORE may be left out when DOVES_STORE is set.
    """
    target, (directory,) = split_store(args, 1)
    with api.opened(store_config(target, params)) as store:
        if not isinstance(store, ExportableStore):
            raise ConfigError(f"{store.description} cannot export: it already is a folder of state files "
                              "(copy it instead)")
        click.echo(f"exported {store.export(directory)} state(s) to {directory}")
    return EXIT_OK
