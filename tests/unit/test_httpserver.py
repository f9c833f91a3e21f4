"""Which Host names a ``GuardedHTTPServer`` answers to (the sockets are in the acceptance tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from martian_doves.httpserver import GuardedHandler, GuardedHTTPServer, host_name


@pytest.mark.parametrize(("value", "name"), [
    ("localhost", "localhost"), ("LocalHost:8080", "localhost"), ("[::1]:8080", "::1"), ("[::1]", "::1"),
    ("::1", "::1"), ("Example.COM.:80", "example.com"), (" 127.0.0.1:1 ", "127.0.0.1"), ("0.0.0.0", "0.0.0.0"),
])
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[GuardedHTTPServer]:
    host, allowed = request.param
    guarded = GuardedHTTPServer((host, 0), GuardedHandler, allowed)
    yield guarded
    guarded.server_close()


@pytest.mark.parametrize("server", [("127.0.0.1", ("dash.example",))], indirect=True)
def test_a_loopback_server_answers_to_its_names_only(server: GuardedHTTPServer) -> None:
    port = server.server_address[1]
    for host in (None, "localhost", f"localhost:{port}", "127.0.0.1", "[::1]:1", "DASH.example.", "dash.example:9"):
        assert server.host_allowed(host), host
    for host in ("evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "10.0.0.1", "", "0x7f000001"):
        assert not server.host_allowed(host), host


@pytest.mark.parametrize("server", [("0.0.0.0", ())], indirect=True)
def test_a_server_on_every_interface_also_answers_to_any_address(server: GuardedHTTPServer) -> None:
    for host in ("10.1.2.3:8080", "[fe80::1]", "localhost", "192.168.0.7"):
        assert server.host_allowed(host), host
    for host in ("evil.example", "0.0.0.0.evil.example"):
        assert not server.host_allowed(host), host
