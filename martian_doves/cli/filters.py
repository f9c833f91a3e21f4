"""The filters ``list``, ``retry`` and ``forget`` share: which states, as a ``StateQuery``.

``--status``, ``--state``, ``--code``, ``--since``, ``--text`` and ``--limit`` mean the same
on each command; ``--since`` takes a time or an age (``10m``, ``2h``, ``1d``).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import click

from martian_doves.cli.options import compose, option
from martian_doves.errors import ConfigError
from martian_doves.model import StateQuery, Status
from martian_doves.stores.base import InspectableStore, Store

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds in each unit an age may be given in (``--since 90s``, ``10m``, ``2h``, ``1d``, ``1w``).
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
#: The filters' parameter names, as the commands receive them.
FILTERS = ("status", "state", "code", "since", "text")


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: an age (``90s``, ``10m``, ``2h``, ``1d``, ``1w``: that long ago), an ISO 8601 time
    (``2024-05-19``, ``2024-05-19T14:00``, with a zone or in local time) or epoch seconds.

    Returns:
        Epoch seconds.

    Raises:
        ConfigError: none of these (one line).
    """
    now = time.time() if now is None else now
    found = _AGE.match(text)
    if found:
        return now - float(found[1]) * _AGE_UNITS[found[2]]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since: expected an age (90s, 10m, 2h, 1d), a time (2024-05-19T14:00) or epoch "
                          f"seconds, got {text!r}") from None
    return moment.timestamp()  # a naive time is local time, as the tables show times


def filter_options(statuses: Sequence[Status] | None = tuple(Status), *, limit: int | None) -> Callable[[F], F]:
    """The filter options; ``statuses``: the ``--status`` choices (None: no ``--status``); ``limit``: its default."""
    decorators = []
    if statuses is not None:
        decorators.append(option(
            "--status", type=click.Choice([s.value for s in statuses]), default=None, show_default=False,
            help="Only states in this status" + (" (a timer not yet due is 'scheduled')."
                                                 if Status.SCHEDULED in statuses else ".")))
    decorators += [
        option("--state", metavar="NAME", default=None, show_default=False,
               help="Only states of this state name (one machine)."),
        option("--code", metavar="CODE", default=None, show_default=False,
               help="Only failed states whose failure has this code (tick_failed, invalid_json, bad_return ...)."),
        option("--since", metavar="TIME|AGE", default=None, show_default=False,
               help="Only states changed since then: an age (10m, 2h, 1d), a time (2024-05-19T14:00) or epoch "
                    "seconds."),
        option("--text", metavar="TEXT", default=None, show_default=False,
               help="Only states whose name, state name, failure or payload contains TEXT (ignoring case)."),
        option("--limit", type=click.IntRange(min=1), default=limit, show_default=limit is not None,
               help="At most this many states, newest first." if limit is not None
               else "At most this many states, newest first (default: all that match)."),
    ]
    return compose(*decorators)


def query_from(params: Mapping[str, Any], *, status: Status | None = None, offset: int = 0) -> StateQuery:
    """The ``StateQuery`` the filter options ask for (``status``: the command's own, if it has one).

    Raises:
        ConfigError: ``--since`` is not a time or an age.
    """
    chosen = params.get("status")
    return StateQuery(
        status=status if status is not None else (None if chosen is None else Status(chosen)),
        state=params.get("state"), code=params.get("code"),
        since=None if params.get("since") is None else parse_since(str(params["since"])),
        text=params.get("text"), limit=params.get("limit"), offset=offset)


def any_filter(params: Mapping[str, Any]) -> bool:
    """Whether the user chose states with a filter (a limit alone chooses nothing)."""
    return any(params.get(name) is not None for name in FILTERS)


def inspectable(store: Store) -> InspectableStore:
    """``store`` as an ``InspectableStore``.

    Raises:
        ConfigError: this kind of store cannot be searched.
    """
    if not isinstance(store, InspectableStore):
        raise ConfigError(f"{store.description} cannot be searched or opened state by state")
    return store
