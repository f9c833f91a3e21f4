"""What the benchmark reads of processes from ``/proc`` (Linux): CPU time, resident memory, sessions."""

from __future__ import annotations

import os
from collections.abc import Iterable

#: Clock ticks per second, the unit of the CPU times in ``/proc/PID/stat``.
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except OSError:  # gone meanwhile
        return None
    return raw.rsplit(")", 1)[1].split()


def session_members(session: int) -> list[int]:
    """The processes of session ``session`` (a fleet started in a session of its own)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[3]) == session:  # field 6 of stat: session
                members.append(int(entry))
    return members


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time used so far by ``pids`` (all their threads); gone ones count 0."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat: utime, stime
    return total / _TICKS


def memory_mb(pid: int, key: str = "VmHWM") -> float | None:
    """A memory figure of ``pid`` in MB (10^6 bytes): ``VmHWM`` its peak resident set, ``VmRSS`` the
    current one; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024 / 1e6  # reported in kB (KiB)
    except OSError:
        pass
    return None
