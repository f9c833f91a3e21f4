"""``doves run --metrics-port``: Prometheus metrics summed over the worker processes.

Scraped over HTTP from a real run; a worker killed with SIGKILL is replaced and its
counts stay in the totals. Timeouts are hang guards only.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from acceptance_helpers import Doves, Running, read_ticks
from test_signals import submit_counted

pytestmark = pytest.mark.slow


def scrape(url: str) -> dict[str, float]:
    """Every sample of a Prometheus text page: ``name{labels}`` → value."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (over every other label)."""
    found = 0.0
    for key, value in samples.items():
        metric, _, rest = key.partition("{")
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if metric == name and all(pairs.get(k) == v for k, v in labels.items()):
            found += value
    return found


def test_metrics_count_every_transition_across_workers_and_restarts(
        start_doves: Callable[..., Running], doves: Doves, store_dir: Path, machines_py: Path,
        tick_log: Path) -> None:
    submit_counted(doves, store_dir, machines_py, tick_log, lineages=4, count=25, sleep=0.01)
    running = start_doves("run", str(store_dir), "--watch", "--workers", "2", "--lease-seconds", "2",
                          "--metrics-port", "0", "--metrics-host", "127.0.0.1", "--machines", str(machines_py))
    running.wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", running.output) is not None,
                     "the metrics address")
    match = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", running.output)
    assert match is not None
    url = match.group(1)

    running.wait_for(lambda: len(read_ticks(tick_log)) >= 10, "some ticks")
    os.kill(read_ticks(tick_log)[-1][2], signal.SIGKILL)  # its counts so far must survive it
    running.wait_for(lambda: doves.status(store_dir)["done"] == 100, "every transition")
    running.wait_for(lambda: scrape(url)['doves_states{status="done"}'] == 100, "the store's gauges")
    # The killed worker is shown dead at once (its supervisor says so); its replacement counts
    # once it has registered and a status sample has seen it.
    running.wait_for(lambda: scrape(url)["doves_workers_alive"] >= 2, "the replacement worker alive")

    samples = scrape(url)
    # Each transition committed once; the one cut off by the kill committed by the other worker.
    assert total(samples, "doves_transitions_total", outcome="committed") == 100
    assert total(samples, "doves_transitions_total", state="counted", outcome="committed") == 100
    assert total(samples, "doves_transitions_total", outcome="failed") == 0
    # Per machine: every series is labelled with its state name, and only the machines' names.
    assert total(samples, "doves_tick_seconds_count", state="counted") >= 100
    assert {re.findall(r'state="([^"]*)"', key)[0] for key in samples if key.startswith("doves_tick_seconds_count")} \
        == {"counted"}
    # Every root waited in the queue for a claim (chained successors wait nothing and are not counted).
    assert 4 <= total(samples, "doves_queue_wait_seconds_count", state="counted") <= 100
    assert samples["doves_worker_restarts_total"] == 1
    assert samples["doves_worker_processes"] == 2
    assert samples['doves_states{status="pending"}'] == 0
    assert samples["doves_workers_alive"] >= 2

    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output


def test_a_metrics_port_in_use_is_a_one_line_error(doves: Doves, store_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = doves("run", str(store_dir), "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"doves: error: cannot serve metrics on 127.0.0.1:{port}")
    assert "Traceback" not in result.stderr


def test_idle_connections_do_not_stop_scrapes(start_doves: Callable[..., Running], store_dir: Path) -> None:
    # More sockets that send nothing than the run may open descriptors: a plain threading
    # server gives each a thread and a descriptor until nothing is accepted any more.
    from test_dashboard_guard import DASHBOARD_DESCRIPTORS, IDLE_CONNECTIONS, connections, descriptor_limit, request

    with descriptor_limit(DASHBOARD_DESCRIPTORS):
        running = start_doves("run", str(store_dir), "--watch", "--workers", "1", "--metrics-port", "0",
                              "--metrics-host", "127.0.0.1")
    running.wait_for(lambda: re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", running.output) is not None,
                     "the metrics address")
    match = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", running.output)
    assert match is not None
    port = int(match.group(1))
    with connections(port, IDLE_CONNECTIONS):
        status, body = request(port, "/metrics")
        assert status == 200 and b"doves_worker_processes" in body
        assert request(port, "/other")[0] == 404
    running.send(signal.SIGTERM)
    assert running.wait() == 0, running.output
