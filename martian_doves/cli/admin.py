"""Commands that change a store: ``reset``, ``retry``, ``forget``, ``migrate`` and ``export``.

What a store can do beyond running states is a capability protocol of the store side
(``stores.base``), checked here with ``isinstance``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from martian_doves import api, listing
from martian_doves.cli.filters import any_filter, filter_options, inspectable, query_from
from martian_doves.cli.options import option, split_store, store_argument, store_config, store_options
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED
from martian_doves.errors import ConfigError
from martian_doves.model import Status
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


def _chosen(store: Store, names: Sequence[str], params: Mapping[str, Any], *, status: Status | None,
            settled_only: bool = False) -> list[str] | None:
    """The state names a command acts on: those given, or those the filters find (None: every failed state).

    Raises:
        click.UsageError: both names and filters were given.
    """
    if names and any_filter(params):
        raise click.UsageError("give state NAMEs or choose states with filters, not both")
    if names:
        return [os.path.basename(name) for name in names]
    if not any_filter(params) and status is Status.FAILED and params.get("limit") is None:
        return None
    records = inspectable(store).find(query_from(params, status=status))
    return [r.name for r in records if not settled_only or listing.is_settled(r)]


def _confirmed(yes: bool, question: str) -> bool:
    """True with --yes or off a terminal (scripts); otherwise asks."""
    return yes or not sys.stdin.isatty() or click.confirm(question)


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] [NAME...]")
@filter_options(None, limit=None)
@option("--yes", "-y", is_flag=True, default=False, help="Do not ask for confirmation.")
@store_options(visible=False)
def retry(args: Sequence[str], yes: bool, **params: Any) -> int:
    """Make failed states pending again with fresh attempts: all of them, the NAMEs given, or
    those the filters choose (--state, --code, --since, --text, --limit).

    Says how many first, and asks on a terminal unless --yes. Run 'doves run' (or let a
    --watch run pick them up) afterwards. STORE may be left out when DOVES_STORE is set.
    Exits 1 if a NAME was not failed.
    """
    target, names = split_store(args, None)
    with api.opened(store_config(target, params)) as store:
        chosen = _chosen(store, names, params, status=Status.FAILED)
        count = store.status().failed if chosen is None else len(chosen)
        if count and not _confirmed(
                yes, f"Make {count} failed state(s) in {store.description} pending again?"):
            click.echo("nothing changed")
            return EXIT_SOME_FAILED
        retried = _admin(store).retry_failed(chosen) if count else 0
        click.echo(f"{retried} failed state(s) in {store.description} pending again")
    if names and retried < len(names):
        click.echo(f"doves: {len(names) - retried} of the {len(names)} named state(s) are not failed states "
                   "of this store (not failed, or no such name)", err=True)
        return EXIT_SOME_FAILED
    return EXIT_OK


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] [NAME...]")
@filter_options((Status.DONE, Status.FAILED), limit=None)
@option("--yes", "-y", is_flag=True, default=False, help="Do not ask for confirmation.")
@store_options(visible=False)
def forget(args: Sequence[str], yes: bool, **params: Any) -> int:
    """Delete the machines of the states named (or chosen by the filters) from STORE, for good,
    once they have ended: every state of each such machine.

    A machine with a state still pending, waiting or running is left whole, and so is a child
    machine whose parent has not ended. Says how many states match first, and asks on a
    terminal unless --yes. STORE may be left out when DOVES_STORE is set. Exits 1 if nothing
    could be forgotten.

    \b
    doves forget ./store --status failed --code invalid_json   bad input, looked at already
    doves forget ./store --status done --since 30d ...         finished machines
    """
    target, names = split_store(args, None)
    if not names and not any_filter(params):
        raise click.UsageError("name the states to forget, or choose them with --status, --state, --code, "
                               "--since or --text")
    with api.opened(store_config(target, params)) as store:
        status = params.get("status")
        chosen = _chosen(store, names, params, status=None if status is None else Status(status), settled_only=True)
        assert chosen is not None
        if not chosen:
            click.echo("no done or failed state matches: nothing forgotten")
            return EXIT_SOME_FAILED
        if not _confirmed(yes, f"Delete the machines of {len(chosen)} state(s) from {store.description} "
                               "(every state of each, for good)?"):
            click.echo("nothing changed")
            return EXIT_SOME_FAILED
        removed = inspectable(store).forget(chosen)
        click.echo(f"forgot {removed} state(s) of the machines of {len(chosen)} state(s) in {store.description}")
    if not removed:
        click.echo("doves: nothing was forgotten: those machines have not ended (or are not there)", err=True)
        return EXIT_SOME_FAILED
    return EXIT_OK


@click.command()
@store_argument
@store_options(visible=False)
def migrate(store: str | None, **params: Any) -> int:
    """Create or upgrade the store's schema (PostgreSQL); folders need no migration."""
    with api.opened(store_config(store, params), existing=False) as opened:
        if not isinstance(opened, MigratableStore):
            # Opening it made its folders (a new store) or checked them: that is all a folder needs.
            click.echo(f"{opened.description} is ready: a folder store has no schema to migrate")
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
    with api.opened(store_config(target, params), read_only=True) as store:
        if not isinstance(store, ExportableStore):
            raise ConfigError(f"{store.description} cannot export: it already is a folder of state files "
                              "(copy it instead)")
        click.echo(f"exported {store.export(directory)} state(s) to {directory}")
    return EXIT_OK
