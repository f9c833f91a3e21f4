"""Rate and status time of the PostgreSQL store against the history its table holds.

For each history size H: a fresh schema gets H done states (H/10 finished countdown(10)
lineages, written with ``INSERT ... SELECT generate_series``, so ten million take minutes,
not hours), then M x countdown(K) are submitted and W worker processes run them to the
end; the rate is transitions per second from the moment the warm workers are released.
``doves status`` is timed on the full table. A benchmark, not a test.

    .venv/bin/python bench/pg_history.py --history 0,10000000 --prefetch 16
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

import psycopg

from martian_doves.stores import open_store

# The fleet runner of the throughput test: the same workers, measured the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
from test_postgres_throughput import run_fleet

#: Done lineages of ten states each, as a finished countdown(10) leaves them.
FILL = """
INSERT INTO states (name, parent, root, step, state, payload, status, worker, token, submitted_at, claimed_at,
                    finished_at, not_before)
SELECT CASE WHEN k = 0 THEN r ELSE r || '-' || k END, CASE WHEN k = 0 THEN NULL WHEN k = 1 THEN r
       ELSE r || '-' || (k - 1) END, r, k, 'countdown', jsonb_build_object('count', 10 - k), 'done', 'history',
       'h.' || g, now(), now(), now(), now()
FROM (SELECT g, 'h' || lpad((g / 10)::text, 8, '0') || '.state' AS r, (g %% 10)::int AS k
      FROM generate_series(0, %(rows)s - 1) AS g) AS rows
"""


def fill(url: str, rows: int) -> float:
    """Write ``rows`` done states into the store's schema (counters kept right); seconds taken."""
    schema = url.rsplit("schema=", 1)[1]
    started = time.perf_counter()
    with psycopg.connect(url.split("?")[0], autocommit=True, options=f"-c search_path={schema}") as conn:
        with conn.transaction():
            # The counters' trigger would write a delta per row: off for the load, the total set at once.
            conn.execute("ALTER TABLE states DISABLE TRIGGER USER")
            conn.execute(FILL, {"rows": rows})
            conn.execute("INSERT INTO state_counts VALUES ('countdown', 'done', 'history', %(rows)s)", {"rows": rows})
            conn.execute("ALTER TABLE states ENABLE TRIGGER USER")
        conn.execute("VACUUM ANALYZE states")
        conn.execute("CHECKPOINT")  # the load's own writes are not the fleet's to pay for
    return time.perf_counter() - started


def measure(url: str, run: int, machines: int, steps: int, workers: int, prefetch: int) -> float:
    """Transitions per second of ``workers`` processes over M x countdown(K)."""
    seconds = run_fleet(url, machines, steps, workers, {}, {"prefetch": prefetch, "poll_seconds": 0.2},
                        prefix=f"r{run}m")
    return machines * steps / seconds


def status_ms(url: str, times: int = 5) -> float:
    store = open_store(url)
    try:
        samples = []
        for _ in range(times):
            started = time.perf_counter()
            store.status()
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--history", default="0,10000000", help="history sizes, separated by commas")
    parser.add_argument("-M", type=int, default=1000)
    parser.add_argument("-K", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the schemas in place")
    args = parser.parse_args()
    results = []
    for size in (int(part) for part in args.history.split(",")):
        schema = f"doves_history_{secrets.token_hex(3)}"
        url = f"{args.url}?schema={schema}"
        open_store(url).close()  # creates the schema
        try:
            filled = fill(url, size) if size else 0.0
            rates = []
            for run in range(args.runs):
                rates.append(measure(url, run, args.M, args.K, args.workers, args.prefetch))
            results.append({"history": size, "fill_s": round(filled, 1), "rates": [round(r) for r in rates],
                            "median_transitions_per_s": round(statistics.median(rates)),
                            "status_ms": round(status_ms(url), 1)})
            print(json.dumps(results[-1]), flush=True)
        finally:
            if not args.keep:
                with psycopg.connect(args.url, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
