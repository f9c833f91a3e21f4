"""Reading a directory store for people: ``status`` and ``history``. No coordination here.

Both directory modes share it; it only looks at the folders the lease store's
protocol maintains (see ``stores/lease.py``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from martian_doves import codec
from martian_doves.errors import CodecError, UnsafeName
from martian_doves.model import HistoryEntry, JSONDict, Status, StatusReport, WorkerInfo
from martian_doves.stores import fsops
from martian_doves.stores.fsops import REASON_SUFFIX, TOKEN_SEP

if TYPE_CHECKING:
    from martian_doves.stores.lease import LeaseStore



def _count(folder: str, suffix: str = "") -> int:
    return sum(1 for entry in fsops.listdir_quiet(folder) if entry.endswith(suffix))


def _as_count(value: object) -> int:
    """A count from one of our JSON files; 0 for anything a person's edit left there."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _as_time(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _read_json(path: str) -> JSONDict:
    return fsops.read_json_object(path, 65536) or {}


def _registrations(store: LeaseStore) -> list[tuple[WorkerInfo, str]]:
    now = store.clock.time()
    found = []
    for entry in sorted(fsops.listdir_quiet(store.layout.workers)):
        path = os.path.join(store.layout.workers, entry)
        try:
            seen = os.lstat(path).st_mtime
        except OSError:
            continue
        info = _read_json(path)
        liveness = _as_time(info.get("liveness_seconds")) or store._liveness_seconds()
        worker = WorkerInfo(entry, str(info.get("host", "?")), _as_count(info.get("pid")), seen, now - seen < liveness)
        found.append((worker, str(info.get("mode", store.mode))))
    return found


def workers(store: LeaseStore) -> list[WorkerInfo]:
    """The registrations in ``workers/``, alive if stamped within the store's liveness window."""
    return [worker for worker, _ in _registrations(store)]


def status(store: LeaseStore) -> StatusReport:
    """Counts from the folders, the oldest pending hint, the last few failures."""
    layout = store.layout
    stamps = [mtime for _, mtime in fsops.stamped_entries(layout.pending)]
    reasons = sorted(
        (entry for entry in fsops.listdir_quiet(layout.failed) if entry.endswith(REASON_SUFFIX)),
        key=lambda entry: os.path.getmtime(os.path.join(layout.failed, entry)),
    )
    recent = []
    for reason_file in reasons[-5:]:
        failed_name = reason_file[: -len(REASON_SUFFIX)]
        reason = store._reason(failed_name) or {}
        recent.append((failed_name, str(reason.get("code")), str(reason.get("message"))))
    registrations = _registrations(store)
    # Both modes share these folders: report the mode the live workers run in.
    modes = sorted({mode for worker, mode in registrations if worker.alive}) or [store.mode]
    return StatusReport(
        pending=len(stamps),
        in_progress=_count(layout.in_progress),
        done=_count(layout.done),
        failed=len(reasons),
        workers=[worker for worker, _ in registrations],
        oldest_pending_at=min(stamps, default=None),
        recent_failures=recent,
        details={"store": layout.root, "mode": ", ".join(modes)},
    )


def _entry(store: LeaseStore, name: str, claimed: dict[str, str]) -> HistoryEntry | None:
    folder = store.layout.root if os.path.lexists(os.path.join(store.layout.root, name)) else store.layout.failed
    try:
        raw = fsops.read_regular(os.path.join(folder, name), store.options.max_state_bytes)
        state = codec.decode(raw, name)
    except (FileNotFoundError, CodecError):
        return None
    done = os.path.join(store.layout.done, name)
    if os.path.lexists(done):
        info = _read_json(done)
        return HistoryEntry(name, state.state, Status.DONE, state.payload, info.get("worker"),
                            os.lstat(done).st_ctime, _as_count(info.get("attempts")))
    if os.path.lexists(store._reason_path(name)):
        reason = store._reason(name) or {"code": "?", "message": "its reason file is unreadable"}
        return HistoryEntry(name, state.state, Status.FAILED, state.payload, reason.get("worker"),
                            _as_time(reason.get("failed_at")), _as_count(reason.get("attempts")),
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


def history(store: LeaseStore, name: str) -> list[HistoryEntry]:
    """The lineage containing ``name``: up through recorded parents, then down by successor names."""
    claimed: dict[str, str] = {}
    for claim_file in fsops.listdir_quiet(store.layout.in_progress):
        state_name = claim_file.rpartition(TOKEN_SEP)[0]
        claimed[state_name] = str(_read_json(os.path.join(store.layout.in_progress, claim_file)).get("worker", "?"))
    if not _is_safe_state_name(name) or _entry(store, name, claimed) is None:
        return []
    seen = {name}
    root = name
    while True:  # walk up to the root through recorded parents (names, never paths: see codec)
        parent = store._parent_of(root)
        if (_entry(store, root, claimed) is None or not parent or parent in seen
                or not codec.is_successor_name(root, parent)):
            break
        seen.add(parent)
        root = parent
    entries = []
    current: str | None = root
    while current is not None:
        found = _entry(store, current, claimed)
        if found is None:
            break
        entries.append(found)
        following = None
        for candidate in codec.successor_names(current):
            owner = store._parent_of(candidate)
            if owner is None:
                break
            if owner == current:
                following = candidate
                break
        current = following
    return entries
