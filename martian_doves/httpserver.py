"""An HTTP server whose clients cannot exhaust it, and that answers only to its own names.

The standard library's ``ThreadingHTTPServer`` gives every connection a thread for as
long as the client keeps it open: enough idle sockets use up threads and descriptors
and nothing is answered any more. And it answers whatever ``Host`` a request names, so
a web page whose name an attacker points at 127.0.0.1 (DNS rebinding) can read it.
``GuardedHTTPServer`` is the same server with bounds:

- a connection that has sent nothing waits in one selector, without a thread; at most
  ``max_idle_connections`` wait (fewer if the process may open few descriptors; the
  oldest is closed to make room), each for at most ``request_timeout_seconds``;
- a connection that has sent something gets a thread, if fewer than
  ``max_busy_connections`` are at work (else it is answered 503 and closed), and has
  ``request_timeout_seconds`` to finish sending its request, and as long again to take
  its answer;
- ``GuardedHandler.host_allowed`` says whether a request's ``Host`` is one of the
  server's names (``allowed_host_names``); handlers answer 421 to the others.
"""

from __future__ import annotations

import collections
import io
import ipaddress
import logging
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: Names every server answers to: those of this host's loopback interface.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: Addresses that mean "every interface": the server is reachable under any of the host's addresses.
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")
#: Descriptors kept free for everything but waiting connections (the store, logs, busy connections).
_RESERVED_DESCRIPTORS = 64
#: Answer to a connection beyond ``max_busy_connections`` (sent without waiting, then closed).
_BUSY_ANSWER = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 5\r\nRetry-After: 1\r\nConnection: close\r\n\r\nbusy\n")


def host_name(value: str) -> str:
    """The name in a ``Host`` header or an address: ``[::1]:8080`` → ``::1``, ``Example.COM.:80`` → ``example.com``."""
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal, maybe with a port
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        value = value.partition(":")[0]
    return value.rstrip(".")


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _DeadlineReader(io.RawIOBase):
    """Reads a socket until a deadline: a client that sends a byte now and then still has to finish."""

    def __init__(self, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self._connection = connection
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining_seconds = self._deadline - time.monotonic()
        if remaining_seconds <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._connection.settimeout(remaining_seconds)
        return self._connection.recv_into(buffer)


class GuardedHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with bounded connections, timeouts and a list of its own names.

    Args:
        address: (host, port) to listen on; port 0 picks a free one.
        handler: the request handler class (a ``GuardedHandler``).
        allowed_hosts: more names requests may use in ``Host`` (``--allow-host``).
        listen_host: the host as the user gave it (a name is allowed as given).
    """

    daemon_threads = True
    #: Connections the kernel queues before the server accepts them (they are accepted at once).
    request_queue_size = 128
    #: How long a client may take to send a request, and again to take its answer.
    request_timeout_seconds = 10.0
    #: Most connections that have sent nothing yet (each costs a descriptor, no thread).
    max_idle_connections = 256
    #: Most requests handled at once (each costs a thread).
    max_busy_connections = 32

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 allowed_hosts: Iterable[str] = (), listen_host: str | None = None) -> None:
        # Ready before the socket is bound: a failed bind calls server_close.
        self._busy = threading.BoundedSemaphore(self.max_busy_connections)
        self._lock = threading.Lock()
        #: Accepted connections the watcher has not taken yet.
        self._arrivals: list[tuple[socket.socket, Any]] = []
        #: Connections waiting for their first byte, oldest first: (client address, deadline).
        self._idle: collections.OrderedDict[socket.socket, tuple[Any, float]] = collections.OrderedDict()
        self._selector = selectors.DefaultSelector()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._closing = False
        self._watcher = threading.Thread(target=self._watch, name="http-idle-connections", daemon=True)
        super().__init__(address, handler)
        bound = host_name(str(self.server_address[0]))
        given = host_name(listen_host if listen_host is not None else address[0])
        #: Names a request's Host may use.
        self.allowed_host_names = frozenset(
            {*LOOPBACK_NAMES, *(host_name(name) for name in allowed_hosts if name.strip())}
            | {name for name in (bound, given) if name not in WILDCARD_ADDRESSES}
        )
        #: Bound to every interface: any address of this host is one of its names.
        self.any_address_allowed = bound in WILDCARD_ADDRESSES or given in WILDCARD_ADDRESSES
        descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if descriptors != resource.RLIM_INFINITY:  # waiting connections never use up the descriptors
            spare = (descriptors - _RESERVED_DESCRIPTORS - self.max_busy_connections) // 2
            self.max_idle_connections = min(self.max_idle_connections, max(8, spare))
        self._watcher.start()

    def host_allowed(self, host: str | None) -> bool:
        """Whether a request naming ``host`` (its Host header; None if it has none) is for this server.

        A request without Host (HTTP/1.0) cannot come from a browser, so it cannot be a
        rebinding; an address cannot be rebound, so when the server listens on every
        interface any address is fine. Names must be among ``allowed_host_names``.
        """
        if host is None:
            return True
        name = host_name(host)
        return name in self.allowed_host_names or (self.any_address_allowed and is_ip_address(name))

    # -- connections ---------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        """Park a new connection until it sends something (called by ``serve_forever``)."""
        with self._lock:
            self._arrivals.append((request, client_address))
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_writer.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _watch(self) -> None:
        while not self._closing:
            with self._lock:
                deadlines = [deadline for _, deadline in self._idle.values()]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self._selector.select(timeout):
                if key.fileobj is self._wake_reader:
                    self._take_arrivals()
                else:
                    self._start(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            with self._lock:
                expired = [connection for connection, (_, deadline) in self._idle.items() if deadline <= now]
            for connection in expired:
                self._close_idle(connection)
        self._close_all_idle()

    def _take_arrivals(self) -> None:
        try:
            while self._wake_reader.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            arrivals, self._arrivals = self._arrivals, []
        for connection, client_address in arrivals:
            while len(self._idle) >= self.max_idle_connections:
                self._close_idle(next(iter(self._idle)))
            try:
                self._selector.register(connection, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed by the client already
                self.shutdown_request(connection)
                continue
            with self._lock:
                self._idle[connection] = (client_address, time.monotonic() + self.request_timeout_seconds)

    def _forget_idle(self, connection: socket.socket) -> Any:
        with self._lock:
            client_address, _ = self._idle.pop(connection)
        try:
            self._selector.unregister(connection)
        except (KeyError, ValueError):
            pass
        return client_address

    def _close_idle(self, connection: socket.socket) -> None:
        self._forget_idle(connection)
        self.shutdown_request(connection)

    def _close_all_idle(self) -> None:
        with self._lock:
            idle = list(self._idle)
            arrivals, self._arrivals = self._arrivals, []
        for connection in idle:
            self._close_idle(connection)
        for connection, _ in arrivals:
            self.shutdown_request(connection)

    def _start(self, connection: socket.socket) -> None:
        """A parked connection sent something: a thread handles it, if one may."""
        client_address = self._forget_idle(connection)
        if not self._busy.acquire(blocking=False):
            try:
                connection.setblocking(False)
                connection.send(_BUSY_ANSWER)
            except OSError:
                pass
            self.shutdown_request(connection)
            return
        thread = threading.Thread(target=self._handle, args=(connection, client_address),
                                  name="http-request", daemon=True)
        thread.start()

    def _handle(self, connection: socket.socket, client_address: Any) -> None:
        try:
            self.process_request_thread(connection, client_address)
        finally:
            self._busy.release()

    def server_close(self) -> None:
        """Stop listening, close every waiting connection and stop the watcher."""
        super().server_close()
        self._closing = True
        self._wake()
        if self._watcher.is_alive():
            self._watcher.join(timeout=10.0)
        else:
            self._close_all_idle()
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler whose reads end at the server's deadline, and writes after as long again."""

    server: GuardedHTTPServer

    def setup(self) -> None:
        super().setup()
        deadline = time.monotonic() + self.server.request_timeout_seconds
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def allow_answer_time(self) -> None:
        """Give the client ``request_timeout_seconds`` to take the answer (call before writing it)."""
        self.connection.settimeout(self.server.request_timeout_seconds)

    def host_allowed(self) -> bool:
        """Whether this request's Host is one of the server's names (a second Host never is)."""
        hosts = self.headers.get_all("Host") or []
        return len(hosts) <= 1 and self.server.host_allowed(hosts[0] if hosts else None)
