"""``doves dashboard``: a small web page of a store for operators, and the JSON behind it.

One sampler thread (``sampler.Sampler``, the same as ``doves run``'s) reads the store's
status and its counts by state name at most every ``refresh_seconds``, and never more
than a tenth of the time (counting a big store is slow); the overview, ``/metrics`` and
``/healthz`` read its last sample, so no number of open pages or scrapers adds load
there. Lists and pages of one state or lineage ask the store within bounds, one query
at a time (``views``). Retry and forget need the token printed at start-up
(``actions``); without it the dashboard is read-only.

- ``page.html``, ``page.css``, ``page.js``: the page, served as one self-contained
  document (no external URL of any kind) under a hash-based Content-Security-Policy;
- ``server``: routes and answers (``GuardedHTTPServer``: bounded connections, Host check);
- ``views``: the data behind each view; ``actions``: the token, retry and forget.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator, Sequence

from martian_doves.dashboard.actions import Actions, new_token
from martian_doves.dashboard.server import DashboardServer, load_page
from martian_doves.sampler import Sampler
from martian_doves.stores.base import Store

__all__ = ["DashboardServer", "load_page", "serve_dashboard", "serving"]

log = logging.getLogger(__name__)

#: How long serving waits for the first status sample, so /healthz has something to judge at once.
FIRST_SAMPLE_WAIT_SECONDS = 5.0


@contextlib.contextmanager
def serving(store: Store, host: str, port: int, refresh_seconds: float, allowed_hosts: Sequence[str] = (),
            token: str | None = None) -> Iterator[DashboardServer]:
    """Sample ``store`` and serve the dashboard while in the block (port 0: any free port).

    Args:
        token: the token retry and forget need; None: the dashboard is read-only.
    """
    sampler = Sampler(store, refresh_seconds, option="--refresh-seconds", by_state=True)
    server = DashboardServer(host, port, sampler, store, Actions(token), allowed_hosts)
    thread = threading.Thread(target=server.serve_forever, name="doves-dashboard-http", daemon=True)
    sampler.start()
    sampler.wait_for_first(FIRST_SAMPLE_WAIT_SECONDS)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10.0)
        sampler.stop()


def serve_dashboard(store: Store, host: str, port: int, refresh_seconds: float, allowed_hosts: Sequence[str] = (),
                    *, token: str | None = None, read_only: bool = False) -> None:
    """Serve the dashboard until SIGTERM or SIGINT (Ctrl-C); call from the main thread.

    Args:
        store: the store to show.
        host: address (or name) to listen on.
        port: port to listen on; 0 picks a free one (logged).
        refresh_seconds: how often the store's status is sampled.
        allowed_hosts: more names the page may be requested under (``--allow-host``).
        token: the token retry and forget need; None: a new one, printed here.
        read_only: no token at all: every action is refused.
    """
    chosen = None if read_only else token or new_token()
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serving(store, host, port, refresh_seconds, allowed_hosts, chosen) as server:
            log.info("dashboard on %s", server.url, extra={"action": "dashboard", "url": server.url})
            if chosen is None:
                log.info("read-only: retry and delete are refused", extra={"action": "dashboard"})
            elif token is None:  # one the user chose is theirs to know; a new one must be told
                log.info("retry and delete need the token %s: open %s#token=%s", chosen, server.url, chosen,
                         extra={"action": "dashboard"})
            while not stop.wait(1.0):
                pass
            log.info("stop signal received: dashboard stopping", extra={"action": "stop"})
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
