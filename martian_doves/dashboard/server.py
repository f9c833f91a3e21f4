"""The dashboard's HTTP side: routes, answers, the page and its Content-Security-Policy.

Served with a ``GuardedHTTPServer``: idle and slow connections time out and are
bounded, and only requests for the server's own names (``--allow-host``) are answered,
so a web page elsewhere cannot read the dashboard by DNS rebinding. Every ``GET`` of
the overview reads the sampler's last snapshot; lists and pages of one state ask the
store within the bounds of ``views``; a ``POST`` acts only with the token (``actions``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.resources
import json
import logging
import socket
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from martian_doves.dashboard import actions, views
from martian_doves.dashboard.actions import Actions
from martian_doves.dashboard.views import QueryGate, ViewError
from martian_doves.errors import ConfigError
from martian_doves.httpserver import GuardedHandler, GuardedHTTPServer
from martian_doves.metrics import StoreCollector, store_registry
from martian_doves.model import JSONDict
from martian_doves.sampler import Sampler
from martian_doves.stores.base import Store

log = logging.getLogger("martian_doves.dashboard")

#: Headers of every answer (with its Content-Type, Content-Length and Content-Security-Policy).
_COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json; charset=utf-8"
#: The answer to a request for a name the dashboard is not served under (421 Misdirected Request).
_UNKNOWN_HOST = (421, _TEXT, b"doves: this dashboard does not answer to that host name "
                             b"(start it with --allow-host NAME to add one)\n")
#: How many distinct refused host names are logged (a flood of them is not).
_LOGGED_REFUSALS = 16
#: Where the page's style and script are put into it (``page.css``, ``page.js``).
_STYLE_SLOT, _SCRIPT_SLOT = "<style>/* page.css */</style>", "<script>/* page.js */</script>"
#: ``/api/states/NAME`` and ``/api/states/NAME/lineage``.
_STATES_PREFIX, _LINEAGE_SUFFIX = "/api/states/", "/lineage"

Answer = tuple[int, str, bytes]


def load_page() -> tuple[bytes, str]:
    """The page (``page.html`` with ``page.css`` and ``page.js`` inside), and a Content-Security-Policy
    that allows nothing but that style and script: no other file, no URL elsewhere."""
    folder = importlib.resources.files("martian_doves.dashboard")
    style, script = (folder.joinpath(name).read_text(encoding="utf-8") for name in ("page.css", "page.js"))
    html = folder.joinpath("page.html").read_text(encoding="utf-8")
    html = html.replace(_STYLE_SLOT, f"<style>{style}</style>").replace(_SCRIPT_SLOT, f"<script>{script}</script>")

    def digest(block: str) -> str:
        return f"'sha256-{base64.b64encode(hashlib.sha256(block.encode()).digest()).decode()}'"

    policy = (f"default-src 'none'; script-src {digest(script)}; style-src {digest(style)}; "
              "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html.encode(), policy


def _json(status: int, document: JSONDict) -> Answer:
    return status, _JSON, json.dumps(document, default=str).encode()


class DashboardServer(GuardedHTTPServer):
    """The HTTP side of ``doves dashboard``.

    Args:
        host: address (or name) to listen on.
        port: port to listen on; 0 picks a free one.
        sampler: where the overview comes from.
        store: what lists and pages of one state read, and actions change.
        actions: who may retry and forget.
        allowed_hosts: names besides the bound address and the loopback ones that
            requests may use in their Host header (``--allow-host``).
    """

    def __init__(self, host: str, port: int, sampler: Sampler, store: Store, actions: Actions,
                 allowed_hosts: Sequence[str] = ()) -> None:
        self.sampler = sampler
        self.store = store
        self.actions = actions
        #: One store query at a time, whatever the number of requests.
        self.gate = QueryGate()
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

    def status_document(self) -> JSONDict:
        """``/api/status``: the last sample, its counts by state name, and whether actions need a token."""
        return {**self.sampler.document(), "by_state": views.by_state_document(self.sampler.snapshot)["states"],
                "actions": "token" if self.actions.enabled else "read-only"}

    def query(self, read: Callable[[], JSONDict]) -> Answer:
        """Run one store query within the gate; a store that fails is a 503 with one line."""
        with self.gate.query():
            try:
                return _json(200, read())
            except ViewError:
                raise
            except Exception as e:
                error = " ".join((str(e) or type(e).__name__).split())
                log.warning("a query of the store failed: %s", error, extra={"action": "http"})
                raise ViewError(503, f"cannot read the store: {error}") from e

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr; a client gone away is routine."""
        error = sys.exc_info()[1]
        level = logging.DEBUG if isinstance(error, ConnectionError) else logging.WARNING
        log.log(level, "request from %s failed: %r", client_address[0], error, extra={"action": "http"})


class _Handler(GuardedHandler):
    server: DashboardServer

    def version_string(self) -> str:
        return "doves-dashboard"

    # -- GET ---------------------------------------------------------------------------------------

    def _route(self) -> Answer:
        """(status, content type, body) of a GET of ``self.path``."""
        parts = urlsplit(self.path)
        path, server = parts.path, self.server
        if path == "/":
            return 200, "text/html; charset=utf-8", server.page
        if path == "/api/status":
            return _json(200, server.status_document())
        if path == "/api/workers":
            return _json(200, views.workers_document(server.sampler.snapshot, time.time()))
        if path == "/api/by-state":
            return _json(200, views.by_state_document(server.sampler.snapshot))
        if path == "/api/states":
            query = views.states_query(parse_qs(parts.query))
            return server.query(lambda: views.states_page(server.store, query))
        if path.startswith(_STATES_PREFIX) and len(path) > len(_STATES_PREFIX):
            name = unquote(path[len(_STATES_PREFIX):])
            if name.endswith(_LINEAGE_SUFFIX):
                name = name[: -len(_LINEAGE_SUFFIX)]
                return server.query(lambda: views.lineage_document(server.store, name))
            return server.query(lambda: views.state_document(server.store, name))
        if path == "/favicon.ico":  # browsers ask for one: no icon, and no error in their console
            return 204, _TEXT, b""
        if path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return 200, CONTENT_TYPE_LATEST, generate_latest(server.registry)
        if path == "/healthz":
            problem = server.sampler.problem()
            return (200, _TEXT, b"ok\n") if problem is None else (503, _TEXT, f"unhealthy: {problem}\n".encode())
        return 404, _TEXT, b"not found\n"

    # -- POST --------------------------------------------------------------------------------------

    def _act(self) -> Answer:
        """(status, content type, body) of a POST: an action on the store, with the token."""
        path = urlsplit(self.path).path
        act = {"/api/retry": actions.retry, "/api/forget": actions.forget}.get(path)
        if act is None:
            return 404, _TEXT, b"not found\n"
        self._refuse_other_origins()
        self.server.actions.authorize(self.headers.get("Authorization"))
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            raise ViewError(415, "an action's body must be application/json")
        names = actions.names_of(self._body())
        server = self.server
        answer = server.query(lambda: act(server.store, names))
        log.info("%s from the dashboard (%s): %s", path.rpartition("/")[2], self.address_string(),
                 answer[2].decode(), extra={"action": "dashboard"})
        return answer

    def _refuse_other_origins(self) -> None:
        """A request a page of another site made (its Origin, or the browser's word) is refused."""
        origin, host = self.headers.get("Origin"), self.headers.get("Host")
        if origin is not None and (host is None or urlsplit(origin).netloc.lower() != host.strip().lower()):
            raise ViewError(403, "actions are taken from the dashboard's own page only")
        if (self.headers.get("Sec-Fetch-Site") or "same-origin") not in ("same-origin", "none"):
            raise ViewError(403, "actions are taken from the dashboard's own page only")

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            raise ViewError(411, "an action needs a Content-Length") from None
        if not 0 < length <= actions.MAX_BODY_BYTES:
            raise ViewError(413, f"an action's body is 1 to {actions.MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    # -- answering ---------------------------------------------------------------------------------

    def _answer(self, route: Callable[[], Answer], *, body: bool = True) -> None:
        if not self.host_allowed():
            status, content_type, content = self._refuse_host()
        else:
            try:
                status, content_type, content = route()
            except ViewError as e:
                status, content_type, content = _json(e.status, {"error": e.message})
        self.allow_answer_time()
        self.send_response(status)
        headers = {"Content-Type": content_type, "Content-Length": str(len(content)), **_COMMON_HEADERS,
                   "Content-Security-Policy": self.server.policy}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(content)

    def _refuse_host(self) -> Answer:
        name = " ".join(self.headers.get_all("Host") or [])[:100]
        refused = self.server.refused_hosts
        if name not in refused and len(refused) < _LOGGED_REFUSALS:
            refused.add(name)
            log.warning("refused a request for host %r from %s: not a name of this dashboard (--allow-host)",
                        name, self.address_string(), extra={"action": "http"})
        return _UNKNOWN_HOST

    def do_GET(self) -> None:
        self._answer(self._route)

    def do_HEAD(self) -> None:
        self._answer(self._route, body=False)

    def do_POST(self) -> None:
        self._answer(self._act)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args, extra={"action": "http"})
