"""Worker processes on one host, supervised: ``doves run``.

One job per module:

- ``core``: the ``Supervisor``: starts N worker processes, replaces the ones that
  die, stops them cleanly, and reports how the run went (``RunResult``);
- ``process``: what runs inside each worker process, and how that process ends;
- ``exits``: the worker processes' exit statuses, and how to describe them;
- ``respawn``: when a dead worker starts again, a pure function of a ``Clock``;
- ``signals``: SIGTERM and SIGINT, in the supervisor and in each worker process;
- ``output``: the workers' output, copied to one writer as whole lines;
- ``spec``: the plain data a worker process is started with (``WorkerSpec``).

The store's status is sampled by ``martian_doves.sampler`` (shared with the
dashboard) and served as metrics by ``martian_doves.metrics``.
"""

from __future__ import annotations

from martian_doves.supervisor.core import ProgressSink, RunResult, Supervisor, WorkerCannotStart
from martian_doves.supervisor.spec import WorkerSpec

__all__ = ["ProgressSink", "RunResult", "Supervisor", "WorkerCannotStart", "WorkerSpec"]
