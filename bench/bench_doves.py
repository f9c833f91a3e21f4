"""Benchmark Martian Doves on the peers' "countdown" workload, measured the same way.

M machines ``{"state": "countdown", "payload": {"count": K, "tick_seconds": 0}}``, one
transition per tick, M x K transitions. ``doves run --watch --workers W`` is started
and warmed up first; the clock starts just before the driver submits the M states
(submit time included, also reported as ``enqueue_s``) and stops when the store has
nothing pending or in progress (polled every 10 ms), after which the done count is
checked to be exactly M x K. Idle latency: sequential probes, each after the fleet
has been idle for ``--idle-gap`` seconds: submit time to the tick's first statement.

    python bench/bench_doves.py --store dir --workers 2
    python bench/bench_doves.py --store postgresql://postgres@127.0.0.1:5432/test --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from martian_doves import State, open_store
from martian_doves.stores import is_postgres_url
from martian_doves.stores.base import Store

HERE = Path(__file__).resolve().parent


def _store_target(args: argparse.Namespace, run: int) -> tuple[str, str | None]:
    if args.store == "dir":
        folder = tempfile.mkdtemp(prefix=f"doves-bench-{run}-", dir=args.tmp)
        return folder, folder
    if is_postgres_url(args.store):
        schema = f"doves_bench_{secrets.token_hex(4)}"
        sep = "&" if "?" in args.store else "?"
        return f"{args.store}{sep}schema={schema}", None
    raise SystemExit("--store is 'dir' or a postgresql:// URL")


def _drop_schema(target: str) -> None:
    if not is_postgres_url(target):
        return
    import psycopg

    base, _, query = target.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&") if "=" in part)["schema"]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _start_fleet(target: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "martian_doves", "run", target, "--watch", "--workers", str(args.workers),
               "--mode", args.mode, "--machines", str(HERE / "probe_machines.py"), "--no-progress",
               "--log-level", "warning", *args.extra]
    if args.durable:
        command.append("--durable")
    return subprocess.Popen(command, start_new_session=True)


def _stop_fleet(fleet: subprocess.Popen[bytes]) -> None:
    os.killpg(fleet.pid, signal.SIGTERM)
    try:
        fleet.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(fleet.pid, signal.SIGKILL)
        fleet.wait()


def _wait_finished(store: Store, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not store.is_finished():
        if time.monotonic() > deadline:
            raise SystemExit("benchmark timed out")
        time.sleep(0.01)


def _warm_up(store: Store, args: argparse.Namespace, log: Path) -> None:
    deadline = time.monotonic() + 120
    while sum(w.alive for w in store.status().workers) < args.workers:
        if time.monotonic() > deadline:
            raise SystemExit("workers did not start")
        time.sleep(0.05)
    store.submit([State(f"warm{i}.state", "probe", {"id": -1, "log": str(log)}) for i in range(10 * args.workers)])
    _wait_finished(store, 60)


def _latency(store: Store, args: argparse.Namespace, log: Path) -> list[float]:
    samples = []
    for i in range(args.probes):
        time.sleep(args.idle_gap)
        before = log.read_text().count("\n") if log.exists() else 0
        submitted = time.time()
        store.submit([State(f"probe{i}.state", "probe", {"id": i, "log": str(log)})])
        deadline = time.monotonic() + 30
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) > before and any(line.split()[0] == str(i) for line in lines[before:]):
                break
            if time.monotonic() > deadline:
                raise SystemExit("probe lost")
            time.sleep(0.001)
        started = next(float(line.split()[1]) for line in lines[before:] if line.split()[0] == str(i))
        samples.append((started - submitted) * 1000)
    return samples


def run_once(args: argparse.Namespace, run: int, with_latency: bool) -> dict[str, Any]:
    target, folder = _store_target(args, run)
    log = Path(tempfile.mkdtemp(prefix="doves-bench-log-", dir=args.tmp)) / "probes.log"
    store = open_store(target, args.mode)
    fleet = _start_fleet(target, args)
    try:
        _warm_up(store, args, log)
        latency = _latency(store, args, log) if with_latency and args.probes else []
        _wait_finished(store, 60)  # the last probe's tick has started; let it commit
        done_before = store.status().done
        states = [State(f"m{i}.state", "countdown", {"count": args.K, "tick_seconds": 0}) for i in range(args.M)]
        started = time.perf_counter()
        store.submit(states)
        enqueue_s = time.perf_counter() - started
        _wait_finished(store, 600)
        elapsed = time.perf_counter() - started
        done = store.status().done - done_before
        if done != args.M * args.K:
            raise SystemExit(f"expected {args.M * args.K} transitions, store says {done}")
        result: dict[str, Any] = {
            "transitions": done, "seconds": round(elapsed, 3), "enqueue_s": round(enqueue_s, 3),
            "transitions_per_s": round(done / elapsed, 1),
        }
        if latency:
            result["latency_p50_ms"] = round(statistics.median(latency), 2)
            result["latency_p99_ms"] = round(sorted(latency)[max(0, int(len(latency) * 0.99) - 1)], 2)
        return result
    finally:
        _stop_fleet(fleet)
        store.close()
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)
        _drop_schema(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default="dir", help="'dir' (a fresh temporary folder) or a postgresql:// URL")
    parser.add_argument("--mode", default="lease", choices=["lease", "semaphore"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("-M", type=int, default=1000, help="machines")
    parser.add_argument("-K", type=int, default=10, help="transitions per machine")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--probes", type=int, default=50, help="idle-latency probes (first run only)")
    parser.add_argument("--idle-gap", type=float, default=0.5)
    parser.add_argument("--durable", action="store_true", help="fsync before every name becomes visible")
    parser.add_argument("--tmp", default=None, help="folder for the temporary stores (default: the system's)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("extra", nargs="*", help="extra options for doves run (after --)")
    args = parser.parse_args()
    runs = [run_once(args, run, with_latency=(run == 0)) for run in range(args.runs)]
    rates = [r["transitions_per_s"] for r in runs]
    summary = {
        "system": "martian-doves", "store": "dir" if args.store == "dir" else "postgresql", "mode": args.mode,
        "workers": args.workers, "durable": args.durable, "M": args.M, "K": args.K, "runs": runs,
        "median_transitions_per_s": statistics.median(rates),
        "latency_p50_ms": runs[0].get("latency_p50_ms"), "latency_p99_ms": runs[0].get("latency_p99_ms"),
        "python": platform.python_version(), "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
