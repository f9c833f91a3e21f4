"""Reading a directory store for people: ``status`` and ``history``. No coordination here.

Both directory modes share it; it only reads what ``layout.Layout`` reads and writes.
"""

from __future__ import annotations

from martian_doves import codec
from martian_doves.errors import CodecError, UnsafeName
from martian_doves.model import HistoryEntry, Status, StatusReport, WorkerInfo
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.layout import Layout, Registration, as_count, as_time

#: How many of the latest failures ``status`` lists.
RECENT_FAILURES = 5


def _registered(files: Layout, now: float, liveness_seconds: float) -> list[tuple[WorkerInfo, Registration]]:
    found = []
    for registration in files.registrations():
        # A registration carries its worker's own liveness window: the reader may have
        # opened the store with other options than that worker.
        liveness = registration.liveness_seconds or liveness_seconds
        alive = now - registration.seen_at < liveness
        found.append((WorkerInfo(registration.name, registration.host, registration.pid, registration.seen_at, alive),
                      registration))
    return found


def workers(files: Layout, now: float, liveness_seconds: float) -> list[WorkerInfo]:
    """The registrations in ``workers/``.

    Args:
        now: this host's time, epoch seconds.
        liveness_seconds: how recently a worker must have been stamped to count as alive,
            for registrations that do not say.
    """
    return [worker for worker, _ in _registered(files, now, liveness_seconds)]


def status(files: Layout, now: float, mode: str, liveness_seconds: float) -> StatusReport:
    """Counts from the folders, the oldest pending hint, the last few failures.

    Args:
        mode: the mode to report when no live worker says which it runs in.
        now, liveness_seconds: as for ``workers``.
    """
    stamps = [mtime for _, mtime in fsops.stamped_entries(files.pending)]
    failed = files.failed_names()
    recent = []
    for failed_name in failed[-RECENT_FAILURES:]:
        reason = files.read_reason(failed_name) or {}
        recent.append((failed_name, str(reason.get("code")), str(reason.get("message"))))
    registered = _registered(files, now, liveness_seconds)
    # Both modes share these folders: report the mode the live workers run in.
    modes = sorted({mode if registration.mode is None else registration.mode
                    for worker, registration in registered if worker.alive}) or [mode]
    return StatusReport(
        pending=len(stamps),
        in_progress=len(fsops.listdir_quiet(files.in_progress)),
        done=len(fsops.listdir_quiet(files.done)),
        failed=len(failed),
        workers=[worker for worker, _ in registered],
        oldest_pending_at=min(stamps, default=None),
        recent_failures=recent,
        details={"store": files.root, "mode": ", ".join(modes)},
    )


def machine_names(files: Layout, limit: int | None) -> list[str]:
    """Lineage roots by their names (``x.state``, children's ``x.state-1+0.state``), in the root or
    failed, newest file first."""
    stamped = {name: mtime for folder in (files.failed, files.root) for name, mtime in fsops.stamped_entries(folder)
               if codec.is_root_name(name)}
    return [name for _, name in sorted(((m, n) for n, m in stamped.items()), reverse=True)[:limit]]


def _entry(files: Layout, name: str, claimed: dict[str, str]) -> HistoryEntry | None:
    try:
        state = files.read_state(name, failed=not files.has_state(name))
    except (FileNotFoundError, CodecError):
        return None
    done = files.read_done(name)
    if done is not None:
        info, committed_at = done
        return HistoryEntry(name, state.state, Status.DONE, state.payload, info.get("worker"), committed_at,
                            as_count(info.get("attempts")))
    if files.has_reason(name):
        reason = files.read_reason(name) or {"code": "?", "message": "its reason file is unreadable"}
        return HistoryEntry(name, state.state, Status.FAILED, state.payload, reason.get("worker"),
                            as_time(reason.get("failed_at")), as_count(reason.get("attempts")),
                            f"{reason.get('code')}: {reason.get('message')}")
    if name in claimed:
        return HistoryEntry(name, state.state, Status.IN_PROGRESS, state.payload, claimed[name])
    return HistoryEntry(name, state.state, Status.PENDING, state.payload)


def _is_safe_state_name(name: str) -> bool:
    try:
        codec.check_state_file_name(name)
    except UnsafeName:
        return False
    return True


def history(files: Layout, name: str) -> list[HistoryEntry]:
    """The lineage containing ``name``: up through recorded parents, then down by successor names."""
    claimed = files.claimed_workers()
    if not _is_safe_state_name(name) or _entry(files, name, claimed) is None:
        return []
    seen = {name}
    root = name
    while True:  # walk up to the root through recorded parents (names, never paths: see codec)
        parent = files.parent_of(root)
        if (_entry(files, root, claimed) is None or not parent or parent in seen
                or not codec.is_successor_name(root, parent)):
            break
        seen.add(parent)
        root = parent
    entries = []
    current: str | None = root
    while current is not None:
        found = _entry(files, current, claimed)
        if found is None:
            break
        entries.append(found)
        following = None
        for candidate in codec.successor_names(current):
            owner = files.parent_of(candidate)
            if owner is None:
                break
            if owner == current:
                following = candidate
                break
        current = following
    return entries
