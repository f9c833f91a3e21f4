"""``doves dashboard``: the read-only web page of a store, over real HTTP.

Each test starts the real command and reads it with urllib; the numbers it serves are
compared with ``doves status --json`` of the same store. Timeouts are hang guards only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from acceptance_helpers import Doves, Running, copy_seed_examples, one_line, write_state
from test_metrics import scrape

pytestmark = pytest.mark.slow

#: Hang guard for a command expected to stop on its own (errors before serving).
QUICK_TIMEOUT = 60.0
#: Keys ``/api/status`` adds to ``status --json``.
SAMPLE_KEYS = {"sampled_at", "rate", "series", "error", "refresh_seconds", "by_state", "actions"}

#: No proxy from the environment between the test and 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, method: str = "GET") -> tuple[int, Message, bytes]:
    """(status, headers, body) of one request; error statuses are answers too."""
    try:
        with _opener.open(urllib.request.Request(url, method=method), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def api_status(base: str) -> dict[str, Any]:
    status, _, body = fetch(base + "api/status")
    assert status == 200, body
    document: dict[str, Any] = json.loads(body)
    return document


def status_json(doves: Doves, store: str) -> dict[str, Any]:
    result = doves("status", store, "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def start_dashboard(start_doves: Callable[..., Running], *args: str,
                    env: dict[str, str] | None = None) -> tuple[Running, str]:
    """The dashboard (on a free port unless ``env`` says), once it says where; (process, base URL ending in /)."""
    options = ("--port", "0", "--refresh-seconds", "0.2") if env is None else ()
    running = start_doves("dashboard", *args, *options, env=env)
    address = re.compile(r"dashboard on (http://127\.0\.0\.1:\d+/)")
    running.wait_for(lambda: address.search(running.output) is not None, "the dashboard's address")
    match = address.search(running.output)
    assert match is not None
    return running, match.group(1)


def wait_for_counts(running: Running, base: str, expected: dict[str, Any]) -> dict[str, Any]:
    """Wait until the dashboard's sample has ``expected``'s counts; the whole answer."""
    keys = ("pending", "in_progress", "done", "failed")

    def sampled() -> bool:
        document = api_status(base)
        return document["sampled_at"] is not None and all(document.get(k) == expected[k] for k in keys)

    running.wait_for(sampled, f"the dashboard to show {[expected[k] for k in keys]}")
    return api_status(base)


def without_samples(document: dict[str, Any]) -> dict[str, Any]:
    """What ``status --json`` says too, less the workers (whose liveness is judged at each call)."""
    return {key: value for key, value in document.items() if key not in SAMPLE_KEYS | {"workers"}}


def submit_seed_and_doomed(doves: Doves, store: str, machines_py: Path, incoming: Path) -> None:
    """Submit and run the seed's examples plus one state whose machine always fails."""
    incoming.mkdir()
    copy_seed_examples(incoming)
    write_state(incoming, "doomed.state", "always-fails", {})
    submitted = doves("submit", store, str(incoming), "--machines", str(machines_py))
    assert submitted.returncode == 0, submitted.stderr
    run = doves("run", store, "--workers", "2", "--max-attempts", "1", "--machines", str(machines_py))
    assert run.returncode == 1, run.stderr  # one state failed


def check_serves_the_store(doves: Doves, running: Running, base: str, store: str) -> None:
    """``/api/status`` and ``/metrics`` agree with ``status --json``: 13 done, ``doomed.state`` failed."""
    expected = status_json(doves, store)
    assert (expected["done"], expected["failed"]) == (13, 1)
    served = wait_for_counts(running, base, expected)
    assert without_samples(served) == without_samples(expected)
    assert [w["name"] for w in served["workers"]] == [w["name"] for w in expected["workers"]]
    assert served["error"] is None
    assert isinstance(served["rate"], float) and served["series"]
    failures = {f["name"]: f for f in served["recent_failures"]}
    assert "this machine always fails" in failures["doomed.state"]["message"]

    samples = scrape(base + "metrics")
    assert samples['doves_states{status="done"}'] == 13
    assert samples['doves_states{status="failed"}'] == 1
    assert samples['doves_states{status="pending"}'] == 0
    status, headers, _ = fetch(base + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")


def test_a_folder_store_after_a_run(doves: Doves, start_doves: Callable[..., Running], store_dir: Path,
                                    machines_py: Path, tmp_path: Path) -> None:
    submit_seed_and_doomed(doves, str(store_dir), machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, str(store_dir))
    check_serves_the_store(doves, running, base, str(store_dir))

    status, headers, page = fetch(base)
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    html = page.decode()
    assert "<html" in html
    # Self-contained: works offline, loads nothing from anywhere else.
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", html)
    # Data reaches the page through textContent only: a state name cannot become markup.
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in html
    # The policy lets the page's own inline script run, and nothing else.
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    script = re.search(r"<script>(.*?)</script>", html, re.DOTALL)
    assert script is not None
    digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy

    status, _, body = fetch(base + "healthz")
    assert (status, body) == (200, b"ok\n")
    assert fetch(base + "api/status?pretty=1")[0] == 200
    assert fetch(base + "nothing-here")[0] == 404
    status, headers, body = fetch(base + "api/status", method="HEAD")
    assert (status, body) == (200, b"") and headers["Content-Type"] == "application/json; charset=utf-8"
    assert fetch(base + "api/status", method="POST")[0] >= 400  # read-only: GET and HEAD only

    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
    assert "Traceback" not in running.output


def test_counts_follow_the_store_while_it_runs(doves: Doves, start_doves: Callable[..., Running],
                                               store_dir: Path, tmp_path: Path) -> None:
    # A store made before anything is submitted (a dashboard refuses a folder that is no store),
    # configured by the environment alone, as in a compose file.
    assert doves("migrate", str(store_dir)).returncode == 0
    running, base = start_dashboard(start_doves, env={"DOVES_STORE": str(store_dir), "DOVES_DASHBOARD_PORT": "0",
                                                      "DOVES_DASHBOARD_REFRESH_SECONDS": "0.2"})
    wait_for_counts(running, base, {"pending": 0, "in_progress": 0, "done": 0, "failed": 0})

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy_seed_examples(incoming)
    assert doves("submit", str(store_dir), str(incoming)).returncode == 0
    wait_for_counts(running, base, status_json(doves, str(store_dir)))

    assert doves("run", str(store_dir), "--workers", "2").returncode == 0
    served = wait_for_counts(running, base, status_json(doves, str(store_dir)))
    assert served["done"] == 13
    assert served["series"][-1][1] == 13  # the sparkline's last point: done + failed

    running.send(signal.SIGINT)  # Ctrl-C
    assert running.wait() == 0, running.output


def test_a_failing_sample_is_shown_and_sampling_goes_on(doves: Doves, start_doves: Callable[..., Running],
                                                        store_dir: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy_seed_examples(incoming)
    assert doves("submit", str(store_dir), str(incoming)).returncode == 0
    running, base = start_dashboard(start_doves, str(store_dir))
    wait_for_counts(running, base, {"pending": 5, "in_progress": 0, "done": 0, "failed": 0})

    pending = store_dir / "pending"
    pending.rename(tmp_path / "pending-aside")
    pending.write_text("")  # a file where the folder was: the store's status cannot be read
    running.wait_for(lambda: api_status(base)["error"] is not None, "the failed sample on the page")
    served = api_status(base)
    assert "pending" in served["error"]
    assert served["pending"] == 5  # the last good sample is still shown
    running.wait_for(lambda: "cannot read the store's status" in running.output, "the warning")

    pending.unlink()
    (tmp_path / "pending-aside").rename(pending)
    running.wait_for(lambda: api_status(base)["error"] is None, "sampling to recover")
    warnings = [line for line in running.output.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "Traceback" not in running.output, running.output

    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output


def test_a_postgresql_store(doves: Doves, start_doves: Callable[..., Running], pg_url: str, machines_py: Path,
                            tmp_path: Path) -> None:
    # With a password in the URL (the test server trusts local connections): the page must never show it.
    parts = urlsplit(pg_url)
    password = parts.password or "dashboard-test-secret"
    if parts.password is None and parts.username:
        pg_url = urlunsplit(parts._replace(netloc=f"{parts.username}:{password}@{parts.netloc.split('@', 1)[1]}"))
    submit_seed_and_doomed(doves, pg_url, machines_py, tmp_path / "incoming")
    running, base = start_dashboard(start_doves, pg_url)
    check_serves_the_store(doves, running, base, pg_url)
    for path in ("", "api/status", "metrics"):
        assert password not in fetch(base + path)[2].decode()
    assert password not in running.output

    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output


def test_a_missing_folder_or_schema_is_a_one_line_error(doves: Doves, tmp_path: Path, pg_url: str) -> None:
    missing = doves("dashboard", str(tmp_path / "no-such-store"), "--port", "0", timeout=QUICK_TIMEOUT)
    assert missing.returncode == 2
    assert one_line(missing.stderr).startswith("doves: error: no store at")
    assert not (tmp_path / "no-such-store").exists()

    no_schema = doves("dashboard", pg_url, "--port", "0", timeout=QUICK_TIMEOUT)  # a schema nobody created
    assert no_schema.returncode == 2
    assert one_line(no_schema.stderr).startswith("doves: error:")


def test_a_port_in_use_is_a_one_line_error(doves: Doves, store_dir: Path) -> None:
    assert doves("migrate", str(store_dir)).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = doves("dashboard", str(store_dir), "--port", str(port), timeout=QUICK_TIMEOUT)
    assert result.returncode == 2
    assert one_line(result.stderr).startswith(f"doves: error: cannot serve the dashboard on 127.0.0.1:{port}")


def test_the_page_is_package_data() -> None:
    """The page ships with the package (pyproject's package-data), so an installed doves serves it."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "dashboard/page.*" in pyproject["tool"]["setuptools"]["package-data"]["martian_doves"]
