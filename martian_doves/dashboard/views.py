"""The data behind each view of the dashboard: the JSON its endpoints serve.

Two kinds of view. The overview (counts, rate, counts by state name, workers with
their claims) comes from the sampler's last snapshot and never reaches the store. The
lists and the pages of one state or one lineage ask the store, on demand, within
bounds: a page holds at most ``MAX_PAGE`` rows and starts at most ``MAX_OFFSET`` rows
in, a lineage shows at most ``MAX_LINEAGE_STEPS`` steps, and ``QueryGate`` lets one such
query run at a time, however many pages are open. Lists and lineages carry no payload
(a payload may be a megabyte); the page of one state carries its own.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Mapping, Sequence

from martian_doves.model import JSONDict, StateQuery, StateRecord, Status, WorkerInfo
from martian_doves.sampler import Snapshot
from martian_doves.stores.base import InspectableStore, Store

#: Rows a list page holds at most, and by default.
MAX_PAGE = 100
DEFAULT_PAGE = 50
#: How far into a list a page may start: deeper pages would have the store read that many states first.
MAX_OFFSET = 10_000
#: Steps of a lineage shown at most (around the state asked for).
MAX_LINEAGE_STEPS = 500
#: Characters of a failure message in a list row (the state's page shows it whole).
MESSAGE_CHARS = 500
#: Longest text a filter may be (state name, code, search).
MAX_FILTER_CHARS = 200
#: How long a request waits for the query before it, before it is answered 503.
QUERY_WAIT_SECONDS = 5.0


class ViewError(Exception):
    """A request the dashboard answers with an error status and one line (as ``{"error": ...}``).

    Args:
        status: the HTTP status.
        message: what went wrong, for the page to show.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QueryGate:
    """One store query at a time for all of the dashboard's requests; the others wait a little, then 503.

    The sampler reads the store in a thread of its own besides, so the store never sees
    more than two of the dashboard's reads at once.

    Args:
        wait_seconds: how long a request waits for the query before it.
    """

    def __init__(self, wait_seconds: float = QUERY_WAIT_SECONDS) -> None:
        self._lock = threading.Lock()
        self._wait_seconds = wait_seconds

    @contextlib.contextmanager
    def query(self) -> Iterator[None]:
        """Hold the store for one query.

        Raises:
            ViewError: 503, another query held it for longer than ``wait_seconds``.
        """
        if not self._lock.acquire(timeout=self._wait_seconds):
            raise ViewError(503, "the store is busy with another of the dashboard's queries: try again")
        try:
            yield
        finally:
            self._lock.release()


def inspectable(store: Store) -> InspectableStore:
    """``store`` as an ``InspectableStore``.

    Raises:
        ViewError: 501, this store cannot be searched.
    """
    if not isinstance(store, InspectableStore):
        raise ViewError(501, f"{store.description} cannot list or open states")
    return store


# -- parameters --------------------------------------------------------------------------------


def _one(params: Mapping[str, Sequence[str]], key: str) -> str | None:
    values = params.get(key) or []
    value = values[-1].strip() if values else ""
    if len(value) > MAX_FILTER_CHARS:
        raise ViewError(400, f"{key} is longer than {MAX_FILTER_CHARS} characters")
    return value or None


def _number(params: Mapping[str, Sequence[str]], key: str, default: int, low: int, high: int) -> int:
    value = _one(params, key)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ViewError(400, f"{key} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise ViewError(400, f"{key} must be between {low} and {high}, not {number}")
    return number


def states_query(params: Mapping[str, Sequence[str]]) -> StateQuery:
    """The ``StateQuery`` of ``/api/states``'s parameters (as ``urllib.parse.parse_qs`` gives them).

    ``status`` (a status, or none for any), ``state``, ``code``, ``q`` (text searched in
    names, failures and payloads), ``since`` (epoch seconds), ``offset`` and ``limit``
    (at most ``MAX_PAGE``, ``MAX_OFFSET`` rows in).

    Raises:
        ViewError: 400, a parameter is not usable (one line naming it).
    """
    status = _one(params, "status")
    if status is not None and status not in {s.value for s in Status}:
        raise ViewError(400, f"status must be one of {', '.join(s.value for s in Status)}, not {status!r}")
    since_text = _one(params, "since")
    since = None
    if since_text is not None:
        try:
            since = float(since_text)
        except ValueError:
            raise ViewError(400, f"since must be a time in epoch seconds, not {since_text!r}") from None
        if not math.isfinite(since):
            raise ViewError(400, f"since must be a time in epoch seconds, not {since_text!r}")
    return StateQuery(status=None if status is None else Status(status), state=_one(params, "state"),
                      code=_one(params, "code"), since=since, text=_one(params, "q"),
                      limit=_number(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE),
                      offset=_number(params, "offset", 0, 0, MAX_OFFSET))


# -- states --------------------------------------------------------------------------------------


def _clipped(text: str | None, chars: int = MESSAGE_CHARS) -> str | None:
    if text is None or len(text) <= chars:
        return text
    return text[:chars] + "…"


def state_summary(record: StateRecord) -> JSONDict:
    """A state as a row of a list or a step of a lineage: no payload, no traceback, a short message."""
    failure = record.failure
    return {
        "name": record.name, "state": record.state, "status": record.status.value, "machine": record.machine_name,
        "worker": record.worker, "updated_at": record.updated_at, "submitted_at": record.submitted_at,
        "claimed_at": record.claimed_at, "finished_at": record.finished_at,
        "duration_seconds": record.duration_seconds, "not_before": record.not_before, "attempts": record.attempts,
        "retries": record.retries, "code": None if failure is None else failure.code,
        "message": _clipped(None if failure is None else failure.message),
        "wait": None if record.wait is None else record.wait.as_dict(),
        "event": None if record.event is None else record.event.name,
        "origin": None if record.origin is None else record.origin.as_dict(),
        "children": list(record.children),
    }


def is_settled(record: StateRecord) -> bool:
    """Done or failed: the state no longer moves by itself."""
    return record.status in (Status.DONE, Status.FAILED)


def states_page(store: Store, query: StateQuery) -> JSONDict:
    """``/api/states``: one page of the states ``query`` finds, newest first, and whether more follow."""
    limit = query.limit if query.limit is not None else DEFAULT_PAGE
    found = inspectable(store).find(StateQuery(query.status, query.state, query.code, query.since, query.text,
                                               limit + 1, query.offset))
    return {"states": [state_summary(record) for record in found[:limit]], "offset": query.offset,
            "limit": limit, "more": len(found) > limit}


def state_document(store: Store, name: str) -> JSONDict:
    """``/api/states/NAME``: everything known of one state (payload, errors, traceback included).

    Raises:
        ViewError: 404, no state of that name.
    """
    record = inspectable(store).show(name)
    if record is None:
        raise ViewError(404, f"no state named {name}")
    return {**record.as_dict(), "settled": is_settled(record)}


def lineage_window(steps: Sequence[StateRecord], name: str,
                   most: int = MAX_LINEAGE_STEPS) -> tuple[int, Sequence[StateRecord]]:
    """At most ``most`` consecutive ``steps`` around the one named ``name``: (index of the first, the window)."""
    if len(steps) <= most:
        return 0, steps
    at = next((index for index, step in enumerate(steps) if step.name == name), len(steps) - 1)
    first = min(max(0, at - most // 2), len(steps) - most)
    return first, steps[first:first + most]


def lineage_document(store: Store, name: str) -> JSONDict:
    """``/api/states/NAME/lineage``: the machine ``name`` belongs to, as a timeline of its states.

    Each step is a ``state_summary``; ``skipped_before``/``skipped_after`` count the steps of
    a long lineage left out around the window shown.

    Raises:
        ViewError: 404, no state of that name.
    """
    steps = store.history(name)
    if not steps:
        raise ViewError(404, f"no state named {name}")
    first, window = lineage_window(steps, name)
    last = steps[-1]
    return {"name": name, "machine": steps[0].machine_name, "length": len(steps), "status": last.status.value,
            "started_at": steps[0].submitted_at, "finished_at": last.finished_at if is_settled(last) else None,
            "skipped_before": first, "skipped_after": len(steps) - first - len(window),
            "steps": [state_summary(step) for step in window]}


# -- from the sample -------------------------------------------------------------------------------


def worker_document(worker: WorkerInfo, now: float) -> JSONDict:
    """A worker as the page shows it: ``status --json``'s fields, its uptime, and how it stands."""
    standing = "ended" if worker.ended is not None else "alive" if worker.alive else "silent"
    return {**worker.as_dict(), "uptime_seconds": worker.uptime_seconds(now), "standing": standing}


def workers_document(snapshot: Snapshot, now: float) -> JSONDict:
    """``/api/workers``: every registered worker of the last sample, the live ones first, with their claims."""
    workers = snapshot.report.workers if snapshot.report is not None else []
    ordered = sorted(workers, key=lambda w: (not w.alive, w.name))
    return {"sampled_at": snapshot.sampled_at, "workers": [worker_document(w, now) for w in ordered]}


def by_state_document(snapshot: Snapshot) -> JSONDict:
    """``/api/by-state``: for each state name, how many of its states are in each status (last sample)."""
    counts = snapshot.by_state or {}
    return {"sampled_at": snapshot.sampled_at,
            "states": [{"state": state, "counts": {status.value: count for status, count in found.items()},
                        "total": sum(found.values())} for state, found in sorted(counts.items())]}
