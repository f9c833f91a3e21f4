"""What the commands print (one-line errors on stderr, reports as JSON, a table or plain text) and exit with."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console, RenderableType

from martian_doves.text import json_text

#: ``doves`` exit status: everything finished and no state failed during the run.
EXIT_OK = 0
#: ``doves`` exit status: not all done well: some states failed, something was refused,
#: or a signal stopped a ``run`` (without ``--watch``) before the work was finished.
EXIT_SOME_FAILED = 1
#: ``doves`` exit status: usage or configuration error (one line on stderr).
EXIT_USAGE = 2
#: ``doves`` exit status after Ctrl-C outside a run (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def error(message: str) -> None:
    """``doves: error: MESSAGE`` on stderr (the caller then exits 2)."""
    click.echo(f"doves: error: {message}", err=True)


def show(as_json: bool, data: Any, table: RenderableType, text: str) -> None:
    """Print a report: ``data`` as JSON with ``--json``, ``table`` on a terminal, else ``text``."""
    if as_json:
        click.echo(json_text(data, indent=2))
    elif stdout_is_terminal():
        Console().print(table)
    else:
        click.echo(text)
