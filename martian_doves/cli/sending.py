"""``doves send``: deliver an event to a machine that waits for it (or will)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from martian_doves import api
from martian_doves.cli.options import option, split_store, store_config, store_options
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED, error
from martian_doves.errors import ConfigError, SendRefused


def _data(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--data is not JSON: {e.msg} (column {e.colno})") from e


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] MACHINE EVENT")
@option("--data", default=None, metavar="JSON", show_default="null",
        help="What the event carries (any JSON value); the machine gets it as payload['event']['data'].")
@store_options(visible=False)
def send(args: Sequence[str], data: str | None, **params: Any) -> int:
    """Send EVENT to MACHINE, a machine waiting for it (Wait) or that will wait for it.

    MACHINE is the machine's root name (order-42.state; any state of its lineage works
    too). An event sent before the machine waits for it is kept until a Wait for that name
    takes it, once, in order of sending. Exits 1 if the machine does not exist or has
    ended. STORE may be left out when DOVES_STORE is set.
    """
    target, (machine, event) = split_store(args, 2)
    value = _data(data)
    with api.opened(store_config(target, params)) as store:
        try:
            store.send(machine, event, value)
        except SendRefused as e:
            error(e.message)
            return EXIT_SOME_FAILED
        click.echo(f"sent {event} to {machine}")
    return EXIT_OK
