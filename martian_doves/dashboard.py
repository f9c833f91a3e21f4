"""``doves dashboard``: a small, read-only web page of a store's status, for operators.

One sampler thread (``sampler.Sampler``, the same as ``doves run``'s) reads
``store.status()`` at most every ``refresh_seconds``, and never more than a tenth of
the time (counting a big store is slow); HTTP requests only read its last sample, so
no number of open pages or scrapers adds load on the store. Served with the standard
library's ``ThreadingHTTPServer``:

- ``/``: the page (``dashboard.html``, self-contained: no external URL of any kind);
- ``/api/status``: ``status --json`` plus ``sampled_at``, ``rate``, ``series`` and ``error``;
- ``/metrics``: the store's Prometheus gauges (the same as ``doves run --metrics-port``);
- ``/healthz``: ``ok``.

The HTTP side is a ``GuardedHTTPServer``: idle and slow connections time out and are
bounded, and only requests for the server's own names (``--allow-host``) are answered,
so a web page elsewhere cannot read the dashboard by DNS rebinding.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.resources
import json
import logging
import re
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from martian_doves.errors import ConfigError
from martian_doves.httpserver import GuardedHandler, GuardedHTTPServer
from martian_doves.metrics import StoreCollector, store_registry
from martian_doves.sampler import Sampler
from martian_doves.stores.base import Store

log = logging.getLogger(__name__)

#: Headers of every answer (with its Content-Type, Content-Length and Content-Security-Policy).
_COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_TEXT = "text/plain; charset=utf-8"
#: The answer to a request for a name the dashboard is not served under (421 Misdirected Request).
_UNKNOWN_HOST = (421, _TEXT, b"doves: this dashboard does not answer to that host name "
                             b"(start it with --allow-host NAME to add one)\n")
#: How many distinct refused host names are logged (a flood of them is not).
_LOGGED_REFUSALS = 16


def load_page() -> tuple[bytes, str]:
    """The page, and a Content-Security-Policy that allows nothing but its own script and style."""
    html = importlib.resources.files("martian_doves").joinpath("dashboard.html").read_text(encoding="utf-8")

    def hashes(tag: str) -> str:  # the page writes its <script> and <style> without attributes
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.DOTALL)
        return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'"
                        for b in blocks) or "'none'"

    policy = (f"default-src 'none'; script-src 'self' {hashes('script')}; style-src 'self' {hashes('style')}; "
              "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html.encode(), policy


class DashboardServer(GuardedHTTPServer):
    """The HTTP side: serves the sampler's last snapshot; never calls the store.

    Args:
        host: address (or name) to listen on.
        port: port to listen on; 0 picks a free one.
        sampler: where the answers come from.
        allowed_hosts: names besides the bound address and the loopback ones that
            requests may use in their Host header (``--allow-host``).
    """

    def __init__(self, host: str, port: int, sampler: Sampler, allowed_hosts: Sequence[str] = ()) -> None:
        self.sampler = sampler
        self.page, self.policy = load_page()
        self.registry = store_registry(StoreCollector(sampler.latest))
        #: Host names refused so far (logged once each, up to ``_LOGGED_REFUSALS``).
        self.refused_hosts: set[str] = set()
        try:
            self.address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            super().__init__((host, port), _Handler, allowed_hosts, listen_host=host)
        except OSError as e:
            raise ConfigError(f"cannot serve the dashboard on {host}:{port}: {e.strerror or e}") from e

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr; a client gone away is routine."""
        error = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(error, ConnectionError) else logging.WARNING
        log.log(level, "request from %s failed: %r", client_address[0], error, extra={"action": "http"})


class _Handler(GuardedHandler):
    server: DashboardServer

    def version_string(self) -> str:
        return "doves-dashboard"

    def _route(self) -> tuple[int, str, bytes]:
        """(status, content type, body) of a GET of ``self.path``."""
        path = urlsplit(self.path).path
        if path == "/":
            return 200, "text/html; charset=utf-8", self.server.page
        if path == "/api/status":
            document = self.server.sampler.snapshot.as_dict(self.server.sampler.every_seconds)
            return 200, "application/json; charset=utf-8", json.dumps(document, default=str).encode()
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry)
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        return 404, _TEXT, b"not found\n"

    def _answer(self, *, body: bool) -> None:
        status, content_type, content = self._route() if self.host_allowed() else self._refuse_host()
        self.allow_answer_time()
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(content)), **_COMMON_HEADERS,
                   "Content-Security-Policy": self.server.policy}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(content)

    def _refuse_host(self) -> tuple[int, str, bytes]:
        name = " ".join(self.headers.get_all("Host") or [])[:100]
        refused = self.server.refused_hosts
        if name not in refused and len(refused) < _LOGGED_REFUSALS:
            refused.add(name)
            log.warning("refused a request for host %r from %s: not a name of this dashboard (--allow-host)",
                        name, self.address_string(), extra={"action": "http"})
        return _UNKNOWN_HOST

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args, extra={"action": "http"})


@contextlib.contextmanager
def serving(store: Store, host: str, port: int, refresh_seconds: float,
            allowed_hosts: Sequence[str] = ()) -> Iterator[DashboardServer]:
    """Sample ``store`` and serve the dashboard while in the block (port 0: any free port)."""
    sampler = Sampler(store, refresh_seconds, option="--refresh-seconds")
    server = DashboardServer(host, port, sampler, allowed_hosts)
    thread = threading.Thread(target=server.serve_forever, name="doves-dashboard-http", daemon=True)
    sampler.start()
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10.0)
        sampler.stop()


def serve_dashboard(store: Store, host: str, port: int, refresh_seconds: float,
                    allowed_hosts: Sequence[str] = ()) -> None:
    """Serve the dashboard until SIGTERM or SIGINT (Ctrl-C); call from the main thread.

    Args:
        store: the store to show.
        host: address (or name) to listen on.
        port: port to listen on; 0 picks a free one (logged).
        refresh_seconds: how often the store's status is sampled.
        allowed_hosts: more names the page may be requested under (``--allow-host``).
    """
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        with serving(store, host, port, refresh_seconds, allowed_hosts) as server:
            log.info("dashboard on %s", server.url, extra={"action": "dashboard", "url": server.url})
            while not stop.wait(1.0):
                pass
            log.info("stop signal received: dashboard stopping", extra={"action": "stop"})
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
