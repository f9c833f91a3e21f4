"""The ``doves`` command (also ``python -m martian_doves``): the operator's interface.

It holds no coordination logic: each command builds its configuration from its
options (``options``), opens the store through the API and prints what happened.
Every option also reads a ``DOVES_*`` environment variable (shown in ``--help``), so
a compose file needs no command line. Errors a user can fix print one line,
``doves: error: ...``, on stderr and exit with ``EXIT_USAGE``; nothing the user did
wrong shows a traceback.

Commands live by what they touch: ``running`` (run), ``files`` (submit, validate),
``inspecting`` (status, list, show, history, dashboard), ``graph``, ``sending`` (send),
``admin`` (reset, retry, forget, migrate, export), ``demo`` and ``bench``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from martian_doves.cli.admin import export, forget, migrate, reset, retry
from martian_doves.cli.bench import bench
from martian_doves.cli.demo import demo
from martian_doves.cli.files import submit, validate
from martian_doves.cli.graph import graph
from martian_doves.cli.inspecting import dashboard, history, list_states, show_state, status
from martian_doves.cli.output import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, error
from martian_doves.cli.running import run
from martian_doves.cli.sending import send
from martian_doves.errors import DovesError

__all__ = ["EXIT_OK", "EXIT_SOME_FAILED", "EXIT_USAGE", "cli", "main", "run_cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="martian-doves", prog_name="doves")
def cli() -> None:
    """Martian Doves: process folders of JSON state files with many workers, no coordinator.

    A state file is {"state": NAME, "payload": {...}}. Each tick runs the machine
    registered under NAME and writes its successor next to it (x.state → x.state-1 → ...).
    STORE is a folder or a postgresql:// URL; every command defaults it to $DOVES_STORE.
    Every option can also be set through the DOVES_* variable shown in its help.

    \b
    Quick start:
      doves demo                        see it work on the packaged examples
      doves validate my-states/         check state files without a store
      doves submit ./store my-states/   add them to a store
      doves run ./store --workers 4     process everything, then exit
      doves status ./store              counts, workers, failures (--watch: live)
      doves list ./store --status failed   find states; doves show ./store NAME opens one
    """


for _command in (run, submit, send, status, list_states, show_state, history, graph, dashboard, reset, retry, forget,
                 validate, migrate, export, demo, bench):
    cli.add_command(_command)


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the ``doves`` command line and return its exit status (no ``sys.exit``)."""
    try:
        result = cli.main(args=list(argv) if argv is not None else None, prog_name="doves",
                          standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help())
        return EXIT_USAGE
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        error(e.format_message() + hint)
        return EXIT_USAGE
    except (click.Abort, KeyboardInterrupt):
        error("interrupted")
        return EXIT_INTERRUPTED
    except click.ClickException as e:
        error(e.format_message())
        return e.exit_code
    except DovesError as e:
        error(e.message)
        return EXIT_USAGE
    except OSError as e:
        error(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        return EXIT_USAGE
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    """Console-script entry point: ``doves``."""
    sys.exit(run_cli())
