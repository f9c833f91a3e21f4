"""Commands that read state files: ``submit`` (into a store) and ``validate`` (no store)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from martian_doves import api
from martian_doves.cli.options import (
    allow_unknown_option,
    machines_option,
    registry_from,
    split_store,
    state_size_options,
    store_config,
    store_options,
)
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED


def _none_found(paths: Sequence[str]) -> int:
    click.echo(f"doves: no state files (*.state, *.state-N) found in {' '.join(paths)}", err=True)
    return EXIT_SOME_FAILED


@click.command()
@click.argument("args", nargs=-1, metavar="[STORE] PATH...")
@machines_option
@allow_unknown_option
@store_options(visible=False)
def submit(args: Sequence[str], **params: Any) -> int:
    """Validate state files (or folders of them) and add the good ones to STORE.

    Safe at any time, while workers run, in any mode: a state is written under a
    temporary name and published atomically, and an existing name is never replaced.
    Each refused file gets one line on stderr (why); the others are still added.
    Exits 1 if anything was refused. Folders contribute their *.state and *.state-N files.
    STORE may be left out when DOVES_STORE is set.
    """
    target, paths = split_store(args, None)
    if not paths:
        raise click.UsageError("no PATH given: name state files or folders of them")
    config = store_config(target, params)
    checks = api.check_paths(paths, registry_from(params), config.options.max_state_bytes)
    if not checks:
        return _none_found(paths)
    for check in checks:
        if check.error is not None:
            click.echo(f"doves: refused {check.path} ({check.error.code}): {check.error.message}", err=True)
    with api.opened(config, existing=False) as store:
        results = api.submit_checked(store, checks)
        where = store.description
    for check, result in results:
        if not result.added:
            click.echo(f"doves: refused {check.path}: {result.reason}", err=True)
    added = sum(result.added for _, result in results)
    refused = len(checks) - added
    click.echo(f"submitted {added} state file(s) to {where}" + (f"; refused {refused}" if refused else ""))
    return EXIT_SOME_FAILED if refused else EXIT_OK


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@machines_option
@allow_unknown_option
@state_size_options
def validate(paths: Sequence[str], **params: Any) -> int:
    """Check state files (or folders of them) without touching any store.

    Checks each file's name, size and JSON, that it is a state document, and that a
    loaded machine handles its state (and accepts its payload). Prints one line per
    problem; exits 1 if any file is invalid.
    """
    checks = api.check_paths(paths, registry_from(params), params["max_state_bytes"], params["max_join_bytes"])
    if not checks:
        return _none_found(paths)
    bad = [check for check in checks if check.error is not None]
    for check in bad:
        assert check.error is not None
        click.echo(f"{check.path}: {check.error.code}: {check.error.message}")
    click.echo(f"{len(checks) - len(bad)} valid, {len(bad)} invalid", err=True if bad else False)
    return EXIT_SOME_FAILED if bad else EXIT_OK
