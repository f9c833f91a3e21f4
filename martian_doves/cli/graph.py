"""``doves graph``: the state graph of machines, observed in a store or declared in their code."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from martian_doves import api
from martian_doves.cli.options import machines_option, option, store_argument, store_config, store_options
from martian_doves.cli.output import EXIT_OK, EXIT_SOME_FAILED
from martian_doves.errors import ConfigError
from martian_doves.graph import DEFAULT_LIMIT, Graph, observed_graph
from martian_doves.graph_render import FORMATS, to_mermaid, to_svg
from martian_doves.graph_source import declared_graph
from martian_doves.loader import default_registry

#: What a file name's end says about the format it wants, when ``--format`` is not given.
_FORMAT_OF_SUFFIX = {".svg": "svg", ".json": "json"}


def _from_command_line(name: str) -> bool:
    return click.get_current_context().get_parameter_source(name) is ParameterSource.COMMANDLINE


def render(graph: Graph, output_format: str) -> str:
    """``graph`` as text in ``output_format`` (one of ``graph_render.FORMATS``)."""
    if output_format == "svg":
        return to_svg(graph)
    if output_format == "json":
        return json.dumps(graph.as_dict(), indent=2) + "\n"
    return to_mermaid(graph)


def _declared(machines: Sequence[str], states: Sequence[str], title: str | None) -> Graph:
    registry = default_registry(machines)
    missing = [state for state in states if state not in registry]
    if missing:
        raise ConfigError(f"no machine is loaded for state {missing[0]!r} (loaded: {', '.join(registry.names())}); "
                          "load it with --machines")
    if states:
        return declared_graph(registry, states, title=title)
    # The machines of --machines, not the built-in ones loaded beside them.
    builtin = default_registry(entry_points=False)
    return declared_graph(registry, [s for s in registry.names() if s not in builtin] or None, entries=False,
                          title=title)


@click.command()
@store_argument
@machines_option
@option("--state", "states", env="DOVES_GRAPH_STATE", multiple=True, metavar="NAME", show_default=False,
        help="From STORE: only the machines (among those read) that start in state NAME, and their children. "
             "From code: draw NAME and every state it leads to. Repeat for several.")
@option("--format", "output_format", env="DOVES_GRAPH_FORMAT", type=click.Choice(FORMATS), default=FORMATS[0],
        help="mermaid: a flowchart GitHub draws in a README; svg: a picture; json: the nodes and edges. "
             "Default: from --output's name (.svg, .json), else mermaid.", show_default=False)
@option("--output", "-o", env="DOVES_GRAPH_OUTPUT", type=click.Path(dir_okay=False, writable=True), default=None,
        help="Write to this file instead of standard output.")
@option("--limit", env="DOVES_GRAPH_LIMIT", type=click.IntRange(min=1), default=DEFAULT_LIMIT,
        help="Read at most this many machines of STORE, the newest: a sample of a large store.")
@option("--title", env="DOVES_GRAPH_TITLE", default=None, help="The graph's title (a comment in Mermaid).")
@store_options(visible=False)
def graph(store: str | None, machines: Sequence[str], states: Sequence[str], output_format: str,
          output: str | None, limit: int, title: str | None, **params: Any) -> int:
    """Draw the state graph of machines: which state leads to which.

    \b
    From STORE: as the machines there went, read from their lineages: how many
    machines started in each state, moved from one state to the next, waited for an
    event or timed out, spawned children, ended or failed; and how many states are
    still pending or waiting in each. A large store is sampled (--limit).

    \b
    From code (--machines, --state, no STORE): what the handlers can return, read
    from their source without running them: successors, timers (Next(after=...)),
    waits (Wait: the event, then, on_timeout), children (Spawn: their first states
    and the join's then), the end. What cannot be told from the source is drawn as
    "?" and said in a note. With --machines alone, its machines; with --state, those
    states and all they lead to (built-in ones too: --state countdown).

    \b
    Examples:
      doves graph ./store --format svg -o graph.svg
      doves graph --machines traffic.py
      doves graph --state shop-order-placed
    """
    store_given = _from_command_line("store")
    machines_given = _from_command_line("machines")
    if store_given and machines_given:
        raise click.UsageError("give STORE (the graph observed there) or --machines (the graph in the code), "
                               "not both")
    if output_format == FORMATS[0] and output and not _from_command_line("output_format"):
        output_format = _FORMAT_OF_SUFFIX.get(os.path.splitext(output)[1].lower(), output_format)
    if store is not None and not machines_given:
        with api.opened(store_config(store, params), read_only=True) as opened:
            drawn = observed_graph(opened, limit=limit, states=states or None, title=title)
            where = opened.description  # never the URL itself: it may hold a password
        if len(drawn.nodes) == 1:
            starting = f" starting in {', '.join(states)}" if states else ""
            click.echo(f"doves: no machine{starting} found in {where}", err=True)
            return EXIT_SOME_FAILED
    elif machines or states:
        drawn = _declared(machines, states, title)
    else:
        raise click.UsageError("give STORE (the graph observed there), or --machines or --state (the graph "
                               "declared in the code)")
    text = render(drawn, output_format)
    if output:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    else:
        click.echo(text, nl=False)
    for note in drawn.notes:
        click.echo(f"doves: note: {note}", err=True)
    return EXIT_OK
