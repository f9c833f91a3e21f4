"""The folder store: states as files in a folder (local, or a volume many hosts share).

Two modes over one layout:

- ``lease.py``: ``LeaseStore``, the default mode: every worker claims whatever is due.
- ``semaphore.py``: ``SemaphoreStore``, the seed's temporal semaphore, which decides
  from the clock who claims what.

Both compose ``engine.py``'s ``LeaseEngine``: the lease protocol (atomic claims,
heartbeats, takeovers, fenced commits) and everything else they do alike.

Beneath them: ``layout.py`` (every entry, and the store's own small files),
``records.py`` (what those files say), ``folders.py`` (the store's folders, verified
and held open), ``fsops.py`` (atomic file primitives relative to them, no links
followed), ``admission.py`` (files copied into the root),
``views.py`` (status and history), ``watch.py`` (inotify wake-ups), ``outage.py`` (a
full disk or a failing volume: an outage ridden out, not a crash).
"""

from __future__ import annotations

from martian_doves.stores.directory.engine import LeaseEngine
from martian_doves.stores.directory.layout import REASON_SUFFIX, Layout
from martian_doves.stores.directory.lease import LeaseStore
from martian_doves.stores.directory.semaphore import SemaphoreStore

__all__ = ["REASON_SUFFIX", "Layout", "LeaseEngine", "LeaseStore", "SemaphoreStore"]
