"""Exit statuses of a worker process: what the supervisor reads from a worker's death.

These are the process's own (from ``sysexits.h`` where one fits), not ``doves``'
exit codes, which the CLI owns.
"""

from __future__ import annotations

import signal

#: Worker process exit status: its loop crashed (e.g. a fatal store error); replaced.
EXIT_WORKER_CRASHED = 70
#: Worker process exit status: a tick overran ``--tick-timeout`` and its thread cannot be
#: stopped, so the process ends and is replaced at once.
EXIT_TICK_TIMEOUT = 75
#: Worker process exit status: it cannot start for a reason no restart fixes (its
#: machines fail to import, its configuration or the store refuses it); the run stops.
EXIT_WORKER_CONFIG = 78


def describe_exit(code: int | None) -> str:
    """How a worker process ended, for a log line: ``was killed by SIGKILL``, ``crashed`` ..."""
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    if code == EXIT_TICK_TIMEOUT:
        return "exited after a tick overran --tick-timeout"
    if code == EXIT_WORKER_CRASHED:
        return "crashed"
    if code == EXIT_WORKER_CONFIG:
        return "cannot start"
    return f"exited with status {code}"
