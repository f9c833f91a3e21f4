"""``doves dashboard`` resists idle and slow sockets, and DNS rebinding (issue 12, item 9).

Real sockets against the real command: more connections that send nothing than the
dashboard may open descriptors, and dozens that send half a request, do not stop
``/healthz`` (the first not at all, the second not beyond their timeout); a request naming another host (what a page of
``evil.example`` rebound to 127.0.0.1 sends) is refused, the default names and those
given with ``--allow-host`` or ``DOVES_DASHBOARD_ALLOW_HOST`` are answered.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running, descriptor_limit, write_state
from test_dashboard import start_dashboard

pytestmark = pytest.mark.slow

#: The dashboard's descriptor limit in the idle-connection test (the test process's is higher).
DASHBOARD_DESCRIPTORS = 256
#: More idle connections than the dashboard has descriptors: one thread and one descriptor
#: each, as a plain ThreadingHTTPServer gives them, and nothing is accepted any more.
IDLE_CONNECTIONS = 300
#: More half-sent requests than the dashboard handles at once (32).
SLOW_CONNECTIONS = 40
#: Generous deadline for what must happen soon (the server's request timeout is 10 s).
DEADLINE_SECONDS = 90.0


@pytest.fixture
def store(doves: Doves, store_dir: Path, tmp_path: Path) -> str:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write_state(incoming, "a.state", "simple", {"target": "x"})
    result = doves("submit", str(store_dir), str(incoming))
    assert result.returncode == 0, result.stderr
    return str(store_dir)


def port_of(base: str) -> int:
    return int(base.rstrip("/").rpartition(":")[2])


def request(port: int, path: str = "/healthz", headers: tuple[str, ...] | None = None,
            version: str = "HTTP/1.1") -> tuple[int, bytes]:
    """(status, body) of one GET with exactly ``headers`` (default: ``Host: 127.0.0.1:PORT``)."""
    lines = headers if headers is not None else (f"Host: 127.0.0.1:{port}",)
    raw = f"GET {path} {version}\r\n" + "".join(f"{line}\r\n" for line in lines) + "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(raw.encode())
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def healthz_answers(port: int) -> bool:
    try:
        return request(port) == (200, b"ok\n")
    except (OSError, ValueError, IndexError):  # refused, reset, or closed before an answer
        return False


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@contextlib.contextmanager
def connections(port: int, count: int, send: bytes = b"") -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            connection = socket.create_connection(("127.0.0.1", port), timeout=30)
            opened.append(connection)
            if send:
                connection.sendall(send)
        yield opened
    finally:
        for connection in opened:
            connection.close()


def closed_by_server(connection: socket.socket) -> bool:
    """Wait (bounded) for the server to close ``connection``; whatever it sent first is ignored."""
    connection.settimeout(DEADLINE_SECONDS)
    try:
        while connection.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_idle_connections_do_not_stop_healthz(start_doves: Callable[..., Running], store: str) -> None:
    with descriptor_limit(DASHBOARD_DESCRIPTORS):
        running, base = start_dashboard(start_doves, store)
    port = port_of(base)
    with connections(port, IDLE_CONNECTIONS) as idle:
        wait_until(lambda: healthz_answers(port), "/healthz to answer beside idle connections")
        status, body = request(port, "/api/status")
        assert status == 200 and b'"pending"' in body
        # And none of them is kept for ever: the newest is closed once its time is up.
        assert closed_by_server(idle[-1])
    assert running.process.poll() is None, running.output


def test_half_sent_requests_time_out_and_healthz_comes_back(start_doves: Callable[..., Running],
                                                            store: str) -> None:
    running, base = start_dashboard(start_doves, store)
    port = port_of(base)
    with connections(port, SLOW_CONNECTIONS, send=b"GET /healthz HTTP/1.1\r\nHost: 127") as slow:
        # Still holding them: each gets its request timeout, then /healthz answers again.
        wait_until(lambda: healthz_answers(port), "/healthz to answer again")
        assert all(closed_by_server(connection) for connection in slow)
    assert running.process.poll() is None, running.output


def test_a_request_for_another_host_is_refused(start_doves: Callable[..., Running], store: str) -> None:
    running, base = start_dashboard(start_doves, store)
    port = port_of(base)
    for path in ("/", "/api/status", "/metrics", "/healthz"):
        for headers in (("Host: evil.example",), (f"Host: evil.example:{port}",),
                        (f"Host: localhost:{port}", "Host: evil.example"), ("Host: 127.0.0.1.evil.example",)):
            status, body = request(port, path, headers)
            assert status == 421, (path, headers)
            assert body.count(b"\n") == 1 and body.startswith(b"doves: ") and b"--allow-host" in body
    assert "refused a request for host 'evil.example'" in running.output


def test_the_default_names_are_answered(start_doves: Callable[..., Running], store: str) -> None:
    _, base = start_dashboard(start_doves, store)
    port = port_of(base)
    for headers in ((f"Host: 127.0.0.1:{port}",), (f"Host: localhost:{port}",), ("Host: LOCALHOST",),
                    (f"Host: [::1]:{port}",), ("Host: 127.0.0.1",)):
        assert request(port, "/api/status", headers)[0] == 200, headers
    assert request(port, "/healthz", (), version="HTTP/1.0") == (200, b"ok\n")  # no Host at all


def test_allow_host_adds_names(start_doves: Callable[..., Running], store: str) -> None:
    env = {"DOVES_DASHBOARD_ALLOW_HOST": "one.example two.example", "DOVES_DASHBOARD_PORT": "0",
           "DOVES_DASHBOARD_REFRESH_SECONDS": "0.2"}
    running, base = start_dashboard(start_doves, store, env=env)
    port = port_of(base)
    for name in ("one.example", f"two.example:{port}"):
        assert request(port, "/api/status", (f"Host: {name}",))[0] == 200, name
    assert request(port, "/api/status", ("Host: three.example",))[0] == 421
    running.cleanup()

    running, base = start_dashboard(start_doves, store, "--allow-host", "dash.example", "--allow-host",
                                    "other.example")
    port = port_of(base)
    for name in ("dash.example", f"other.example:{port}", "localhost"):
        assert request(port, "/api/status", (f"Host: {name}",))[0] == 200, name
    assert request(port, "/api/status", ("Host: one.example",))[0] == 421
