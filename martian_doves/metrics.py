"""Prometheus metrics: what workers did, and what a store holds.

Two sources, served on one endpoint by ``doves run --metrics-port`` (and the store's
part by ``doves dashboard`` at ``/metrics``):

- **Worker events** (``doves_transitions_total``, ``doves_tick_seconds``,
  ``doves_queue_wait_seconds``, each by ``state`` name) are counted in the worker
  processes by ``WorkerMetrics``, an event hook. Each process writes its
  counts to its own files in a folder the supervisor makes (prometheus-client's
  multiprocess mode, chosen by ``PROMETHEUS_MULTIPROC_DIR``); the supervisor sums them
  when scraped, so a worker that is killed and replaced keeps its counts in the totals.
- **Store gauges** (``doves_states``, ``doves_workers_alive``, ...) come from the last
  ``status()`` sample the supervisor (or dashboard) already takes (``sampler``), never
  from a query per scrape, so a scraper cannot add load on the store.
- **The supervisor's own** (``doves_worker_processes``, ``doves_worker_restarts_total``).

``RunMetrics`` serves all three for ``doves run``.

Every worker on a store sees the same store gauges: in a fleet, aggregate them with
``max`` rather than ``sum`` (the README shows the queries).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from martian_doves.httpserver import GuardedHandler, GuardedHTTPServer
from martian_doves.model import INTERNAL_STATES, Claim, StatusReport
from martian_doves.steps import Event

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

#: prometheus-client reads this (at import) to keep each process's values in files.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Tick durations, from 1 ms (a tick that does nothing) to the seed's 10 s slow ticks and beyond.
TICK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

#: Queue waits, from a state due at once to one that waited hours for a worker with its machine.
QUEUE_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
#: The ``state`` label of a state name the worker has no machine for (bad input must not add series).
OTHER_STATE = "other"

#: Events that end a claim, and the outcome label each is counted under.
_OUTCOMES = {Event.COMMITTED: "committed", Event.RETRIED: "retried", Event.FAILED: "failed",
             Event.LOST: "lost", Event.RELEASED: "released"}


class WorkerMetrics:
    """A ``Worker`` event hook counting transitions by state name and outcome, timing each claim,
    and measuring how long each state waited for a worker.

    The time of a claim runs from the moment its tick starts to its outcome (commit
    included): what a transition costs the worker. The queue wait runs from when the
    state became runnable (submitted, written by its parent, or due after a timer or a
    retry's backoff: ``Claim.due_at``) to its claim; chained successors wait nothing, and
    claims taken over from a dead worker are not counted.

    Args:
        registry: where the metrics are registered (the process's default one if None).
        states: the state names the worker has machines for: the only values of the
            ``state`` label besides the worker's own steps (anything else counts as
            ``other``), so bad input cannot add series. None: every name is its own.
    """

    def __init__(self, registry: CollectorRegistry | None = None, states: Collection[str] | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = REGISTRY if registry is None else registry
        self._states = None if states is None else frozenset(states) | INTERNAL_STATES
        self.transitions = Counter(
            "doves_transitions", "Claims ended by this host's workers, by state name and outcome: committed (a "
            "successor written or the machine ended), retried, failed, lost (taken over), released (at a stop).",
            ["state", "outcome"], registry=registry)
        self.tick_seconds = Histogram(
            "doves_tick_seconds", "Seconds from the start of a tick to its outcome, commit included, by state name.",
            ["state"], buckets=TICK_BUCKETS, registry=registry)
        self.queue_wait_seconds = Histogram(
            "doves_queue_wait_seconds", "Seconds from when a state became runnable (submitted, written, or due) "
            "to its claim, by state name.", ["state"], buckets=QUEUE_WAIT_BUCKETS, registry=registry)
        for state in sorted(self._states or ()):
            for outcome in _OUTCOMES.values():
                self.transitions.labels(state, outcome)  # every series exists from the start, at 0
        self._started: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def state_label(self, state: str) -> str:
        """The ``state`` label of a state name: itself if the worker has its machine, else ``other``."""
        return state if self._states is None or state in self._states else OTHER_STATE

    def __call__(self, event: Event, claim: Claim) -> None:
        key = (claim.name, claim.token)
        state = self.state_label(claim.state.state)
        if event is Event.CLAIMED:
            with self._lock:
                first = key not in self._started
                self._started[key] = time.monotonic()
            if first and claim.due_at is not None:
                self.queue_wait_seconds.labels(state).observe(max(0.0, time.time() - claim.due_at))
            return
        outcome = _OUTCOMES.get(event)
        if outcome is None:
            return
        with self._lock:
            started = self._started.pop(key, None)
        self.transitions.labels(state, outcome).inc()
        if started is not None and event is not Event.RELEASED:
            self.tick_seconds.labels(state).observe(time.monotonic() - started)


class StoreCollector:
    """Gauges of a store from its last status sample, for a ``CollectorRegistry``.

    Args:
        latest: returns the last ``StatusReport`` (or None before the first sample)
            and the time it was taken.
        extra: more metrics of the serving process (the supervisor's own), if any.
    """

    def __init__(self, latest: Callable[[], tuple[StatusReport | None, float]],
                 extra: Callable[[], Iterator[Metric]] | None = None) -> None:
        self._latest = latest
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if self._extra is not None:
            yield from self._extra()
        report, sampled_at = self._latest()
        if report is None:
            return
        states = GaugeMetricFamily("doves_states", "States in the store by status (whole store).",
                                   labels=["status"])
        for status, count in (("pending", report.pending), ("in_progress", report.in_progress),
                              ("done", report.done), ("failed", report.failed)):
            states.add_metric([status], count)
        yield states
        yield GaugeMetricFamily("doves_workers_alive", "Workers registered with the store and alive "
                                "(every host's).", value=sum(1 for w in report.workers if w.alive))
        oldest = 0.0
        if report.oldest_pending_at is not None and report.pending:
            oldest = max(0.0, sampled_at - report.oldest_pending_at)
        yield GaugeMetricFamily("doves_oldest_pending_age_seconds",
                                "Age of the oldest pending state (0 when none is pending).", value=oldest)
        yield GaugeMetricFamily("doves_status_sampled_timestamp_seconds",
                                "When the store's counts above were read (epoch seconds).", value=sampled_at)


def store_registry(collector: StoreCollector, multiprocess_dir: str | None = None) -> CollectorRegistry:
    """A registry with the store's gauges and, given their folder, the workers' summed counts."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if multiprocess_dir is not None:
        MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]
    return registry


class MetricsFolder:
    """The folder worker processes write their counts to, set in the environment they inherit.

    Made on ``__enter__`` and removed, with the environment restored, on ``__exit__``.
    """

    def __init__(self) -> None:
        self.path: str | None = None
        self._previous: str | None = None

    def __enter__(self) -> MetricsFolder:
        self.path = tempfile.mkdtemp(prefix="doves-metrics-")
        self._previous = os.environ.get(MULTIPROCESS_ENV)
        os.environ[MULTIPROCESS_ENV] = self.path
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is None:
            os.environ.pop(MULTIPROCESS_ENV, None)
        else:
            os.environ[MULTIPROCESS_ENV] = self._previous
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    @staticmethod
    def process_exited(pid: int) -> None:
        """Forget a dead worker's live gauges (its counters stay in the totals)."""
        from prometheus_client import multiprocess

        path = os.environ.get(MULTIPROCESS_ENV)
        if path:
            multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class _MetricsHandler(GuardedHandler):
    """Answers ``GET /metrics`` with the registry's text; 404 to anything else.

    No Host check: a scraper may use any name of this host, and the page holds counts,
    not the failure messages and payloads the dashboard shows.
    """

    registry: CollectorRegistry

    def _answer(self, body: bool) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.path.partition("?")[0] == "/metrics":
            status, content_type, content = 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        else:
            status, content_type, content = 404, "text/plain; charset=utf-8", b"not found: try /metrics\n"
        self.allow_answer_time()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args, extra={"action": "http"})


def serve(registry: CollectorRegistry, host: str, port: int) -> tuple[Callable[[], None], int]:
    """Serve ``registry`` at http://host:port/metrics in a thread; (stop function, bound port).

    The server is the dashboard's guarded one: clients that open connections and send
    nothing cannot use up its threads. Port 0 picks a free port (the bound one is returned).
    """
    handler = type("MetricsHandler", (_MetricsHandler,), {"registry": registry})
    try:
        server = GuardedHTTPServer((host, port), handler, listen_host=host)
    except OSError as e:
        from martian_doves.errors import ConfigError

        raise ConfigError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from e
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2.0)

    return stop, int(server.server_address[1])


def supervisor_metrics(processes: int, restarts: int) -> Iterator[Metric]:
    """The supervisor's own metrics: worker processes running now, and how many it replaced."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily("doves_worker_processes", "Worker processes this supervisor runs now.", value=processes)
    yield CounterMetricFamily("doves_worker_restarts", "Worker processes replaced after dying.", value=restarts)


class RunMetrics:
    """``doves run --metrics-port``: the workers' summed counts, the store's gauges and the
    supervisor's own, served while in the block.

    Enter it before the first worker process starts: the processes find the folder for
    their counts in the environment they inherit.

    Args:
        latest: the last status sample and its time (``sampler.Sampler.latest``).
        counts: the supervisor's (processes running, processes replaced), read per scrape.
        host: address to listen on.
        port: port to listen on; 0 picks a free one (then in ``port``).
    """

    def __init__(self, latest: Callable[[], tuple[StatusReport | None, float]],
                 counts: Callable[[], tuple[int, int]], host: str, port: int) -> None:
        self._latest = latest
        self._counts = counts
        self.host = host
        #: The port served on (the one picked, once serving, if 0 was asked for).
        self.port = port
        self._folder = MetricsFolder()
        self._stop: Callable[[], None] | None = None

    def __enter__(self) -> RunMetrics:
        self._folder.__enter__()
        try:
            collector = StoreCollector(self._latest, lambda: supervisor_metrics(*self._counts()))
            self._stop, self.port = serve(store_registry(collector, self._folder.path), self.host, self.port)
        except BaseException:
            self._folder.__exit__()
            raise
        log.info("metrics on http://%s:%d/metrics", self.host, self.port,
                 extra={"action": "metrics", "port": self.port})
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop()
        self._folder.__exit__()
