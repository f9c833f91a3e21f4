"""Throughput of the PostgreSQL store with real worker processes.

As a test (small, correctness only, never timed): every machine's lineage completes
with each successor written once. As a script, the benchmark quoted in the report::

    .venv/bin/python tests/integration/test_postgres_throughput.py --procs 2 --concurrency 4

It submits M machines x countdown(K) (``tick_seconds`` 0) to a fresh schema, starts P
worker processes that each run ``Worker(open_store(url), default_registry(), ...).run()``
and prints transitions per second from the moment they are released to the moment
the last one exits.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import secrets
import statistics
import time
from typing import Any

import pytest

from martian_doves.config import WorkerOptions
from martian_doves.loader import default_registry
from martian_doves.model import State, Status
from martian_doves.stores import open_store
from martian_doves.worker import Worker

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _worker(url: str, name: str, ready: Any, options: dict[str, Any], worker_options: dict[str, Any]) -> None:
    store = open_store(url, **options)
    worker = Worker(store, default_registry(), WorkerOptions(name=name, **worker_options))
    ready.wait()  # every process imported, connected and migrated: the clock starts now
    try:
        worker.run()
    finally:
        store.close()


def run_fleet(url: str, machines: int, ticks: int, procs: int, options: dict[str, Any],
              worker_options: dict[str, Any], prefix: str = "m") -> float:
    """Submit the machines (named ``prefix``NNNNN.state), run ``procs`` worker processes to the end;
    return seconds taken (also used by ``bench/pg_history.py``)."""
    store = open_store(url, **options)
    store.submit([State(f"{prefix}{i:05d}.state", "countdown", {"count": ticks, "tick_seconds": 0})
                  for i in range(machines)])
    store.close()
    # spawn, not fork: the parent may hold threads and connections a child must not inherit.
    context = mp.get_context("spawn")
    ready = context.Barrier(procs + 1)
    workers = [context.Process(target=_worker, args=(url, f"bench-{k}", ready, options, worker_options))
               for k in range(procs)]
    for process in workers:
        process.start()
    ready.wait(120)
    started = time.perf_counter()
    for process in workers:
        process.join(600)
    return time.perf_counter() - started


def check_complete(url: str, machines: int, ticks: int) -> None:
    """Every lineage has exactly ``ticks`` states, all done, named x.state .. x.state-(ticks-1)."""
    store = open_store(url)
    try:
        report = store.status()
        assert (report.pending, report.in_progress, report.failed) == (0, 0, 0)
        assert report.done == machines * ticks
        for i in range(machines):
            history = store.history(f"m{i:05d}.state")
            expected = [f"m{i:05d}.state"] + [f"m{i:05d}.state-{n}" for n in range(1, ticks)]
            assert [entry.name for entry in history] == expected
            assert [entry.payload["count"] for entry in history if entry.payload] == list(range(ticks, 0, -1))
            assert all(entry.status is Status.DONE for entry in history)
    finally:
        store.close()


@pytest.mark.slow
def test_two_worker_processes_finish_every_lineage_once(pg_url: str) -> None:
    run_fleet(pg_url, 40, 5, 2, {"lease_seconds": 10.0}, {"concurrency": 2, "poll_seconds": 0.2})
    check_complete(pg_url, 40, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("DOVES_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="ticks in flight per worker process")
    parser.add_argument("--claim-batch", type=int, default=1)
    parser.add_argument("--no-chain", action="store_true")
    parser.add_argument("--async-commit", action="store_true", help="synchronous_commit off")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    args = parser.parse_args()
    import psycopg

    options = {"claim_batch": args.claim_batch, "pool_size": args.concurrency + 2,
               "synchronous_commit": not args.async_commit}
    worker_options = {"concurrency": args.concurrency, "chain": not args.no_chain, "poll_seconds": 0.2}
    transitions = args.machines * args.ticks
    rates = []
    for _ in range(args.repeat):
        schema = f"doves_bench_{secrets.token_hex(4)}"
        url = f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}"
        try:
            seconds = run_fleet(url, args.machines, args.ticks, args.procs, options, worker_options)
            check_complete(url, args.machines, args.ticks)
            rates.append(transitions / seconds)
        finally:
            with psycopg.connect(args.url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"postgres store: {statistics.median(rates):.0f} transitions/s (median of "
          f"{', '.join(f'{rate:.0f}' for rate in rates)}; {transitions} transitions, {args.procs} procs x "
          f"concurrency {args.concurrency}, chain={not args.no_chain}, claim_batch={args.claim_batch}, "
          f"synchronous_commit={'off' if args.async_commit else 'on'})")


if __name__ == "__main__":
    main()
