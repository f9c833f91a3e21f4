"""``doves bench``: the peers' countdown workload on a fresh store, measured as their harness measures.

- ``workload.py``: the options, the countdown machines, percentiles, a run's throughput.
- ``target.py``: a fresh store (a folder, or a schema of a PostgreSQL database), removed after.
- ``fleet.py``: the warm fleet, ``doves run --watch`` in a session of its own.
- ``probe.py``: the machines the fleet loads: the idle-latency probe, the timer, the fan-out.
- ``procfs.py``: CPU time and resident memory of processes, from ``/proc``.
- ``ceiling.py``: the peers' file-operation ceiling, on the same filesystem.
- ``measure.py``: one benchmark (latency, idle CPU, throughput, memory, phases).
- ``scenarios.py``: ``--scenario``: timer lateness and idle CPU with many timers, a fan-out's join.
- ``scale.py``: the curves of ``--scale``: worker memory over a long run, rate against the backlog.
- ``plots.py``: the curves as PNG, when matplotlib is installed (the ``bench`` extra).
- ``render.py``: tables and text.

Phase timings themselves are ``martian_doves.phases`` (the workers time, the benchmark adds up).
"""

from __future__ import annotations
