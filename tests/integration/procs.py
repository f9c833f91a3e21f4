"""Harness for integration tests with real worker processes on directory stores.

A ``Fleet`` starts worker processes (``python procs.py CONFIG``), each running::

    Worker(open_store(dir, mode, **store_options, clock=SystemClock(offset)),
           default_registry([machines_file]), WorkerOptions(...)).run()

with SIGTERM/SIGINT wired to ``Worker.stop`` as the supervisor does, its log in a
file of its own and, when ``run`` returns, a small JSON result (totals and, in
semaphore mode, the store's ``contended`` counter and ``refusing`` flag).

Tests attack the fleet with ``kill -9``, SIGSTOP/SIGCONT and SIGTERM, then check
the store folder with ``check_complete`` and the machines' own execution log
(``counting_machines.py``) with ``check_executions``. Every wait has a generous
timeout that only guards against hangs: nothing here asserts how fast anything is.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: The user machine file the workers load (``counted-countdown``).
MACHINES_FILE = HERE / "counting_machines.py"
#: Store folders that are not states.
LAYOUT_DIRS = frozenset({"pending", "in_progress", "done", "failed", "workers", ".doves-tmp", ".doves-admitted",
                         "scheduled", "waiting", "mailboxes", "joins"})
#: Suffix of a failed state's machine-readable reason.
REASON_SUFFIX = ".reason.json"
#: Upper bound on any single wait in these tests; it only guards against hangs
#: (lowered through the environment when checking that a test fails without its code).
HANG_GUARD_SECONDS = float(os.environ.get("INTEGRATION_HANG_GUARD_SECONDS", "90"))


def semaphore_options(phase_seconds: float = 0.3, buffer_seconds: float = 0.1, **extra: Any) -> dict[str, Any]:
    """Store options for a semaphore with short phases (cycle = 3 phases + 3 buffers)."""
    return {
        "assignment_seconds": phase_seconds,
        "commitment_seconds": phase_seconds,
        "update_seconds": phase_seconds,
        "buffer_seconds": buffer_seconds,
        **extra,
    }


def cycle_seconds(store_options: Mapping[str, Any]) -> float:
    """Length of one semaphore cycle for these options."""
    return float(
        store_options["assignment_seconds"] + store_options["commitment_seconds"]
        + store_options["update_seconds"] + 3 * store_options["buffer_seconds"]
    )


def wait_until(predicate: Callable[[], Any], what: str, timeout_seconds: float = HANG_GUARD_SECONDS,
               interval_seconds: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises:
        AssertionError: after ``timeout_seconds`` (a hang guard, not a speed check).
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_seconds:g} s waiting for {what}")
        time.sleep(interval_seconds)


# -- worker processes ------------------------------------------------------------------


@dataclass
class WorkerProc:
    """One worker process of a fleet."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    stderr_path: Path
    result_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """``kill -9`` and reap."""
        self.send(signal.SIGKILL)
        self.popen.wait(HANG_GUARD_SECONDS)

    def pause(self) -> None:
        """SIGSTOP: every thread freezes (no heartbeats, no commits)."""
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM: a clean stop."""
        self.send(signal.SIGTERM)

    def wait(self, timeout_seconds: float = HANG_GUARD_SECONDS) -> int:
        try:
            return self.popen.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGUSR1)  # the worker dumps every thread's stack to its stderr
            time.sleep(0.5)
            raise AssertionError(f"worker {self.name} did not exit within {timeout_seconds:g} s; "
                                 f"its threads:\n{self.log()[-6000:]}") from None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        if self.stderr_path.exists():
            text += self.stderr_path.read_text(errors="replace")
        return text

    def result(self) -> dict[str, Any] | None:
        """What the worker reported when ``run`` returned; None if it never did (killed)."""
        try:
            return dict(json.loads(self.result_path.read_text()))
        except FileNotFoundError:
            return None


class Fleet:
    """Starts and attacks worker processes on one store (a folder, or a PostgreSQL URL); kills leftovers on exit."""

    def __init__(self, workdir: Path, store: Path | str, mode: str, *, store_options: Mapping[str, Any] | None = None,
                 worker_options: Mapping[str, Any] | None = None,
                 machines: Iterable[Path] = (MACHINES_FILE,)) -> None:
        self.store = store
        self.mode = mode
        self.store_options = dict(store_options or {})
        self.worker_options = dict(worker_options or {})
        self.machines = [str(path) for path in machines]
        self.logs = workdir / "worker-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, WorkerProc] = {}
        self._serial = 0

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str | None = None, *, clock_offset_seconds: float = 0.0,
              **worker_options: Any) -> WorkerProc:
        """Start one worker process; ``worker_options`` override the fleet's ``WorkerOptions``.

        ``retry`` is given as a dict of ``RetryPolicy`` fields.
        """
        self._serial += 1
        name = name or f"w{self._serial}"
        assert name not in self.procs, f"worker name {name} used twice"
        config = {
            "store": str(self.store),
            "mode": self.mode,
            "store_options": self.store_options,
            "clock_offset_seconds": clock_offset_seconds,
            "machines": self.machines,
            "worker": {"heartbeat_seconds": 0.2, "poll_seconds": 0.2, **self.worker_options,
                       **worker_options, "name": name},
            "log": str(self.logs / f"{name}.log"),
            "result": str(self.logs / f"{name}.result.json"),
        }
        stderr_path = self.logs / f"{name}.stderr"
        with open(stderr_path, "ab") as stderr:
            popen = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), json.dumps(config)],
                                     stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
        proc = WorkerProc(name, popen, Path(config["log"]), stderr_path, Path(config["result"]))
        self.procs[name] = proc
        return proc

    def start_many(self, count: int, **worker_options: Any) -> list[WorkerProc]:
        return [self.start(**worker_options) for _ in range(count)]

    def running(self) -> list[WorkerProc]:
        return [proc for proc in self.procs.values() if proc.alive()]

    def wait_all(self, timeout_seconds: float = HANG_GUARD_SECONDS) -> dict[str, int]:
        """Wait for every worker to exit (hang guard); return their exit codes by name."""
        deadline = time.monotonic() + timeout_seconds
        codes = {}
        for name, proc in self.procs.items():
            codes[name] = proc.wait(max(0.1, deadline - time.monotonic()))
        return codes

    def kill_all(self) -> None:
        """``kill -9`` every running worker at once, then reap them."""
        running = self.running()
        for proc in running:
            proc.send(signal.SIGKILL)
        for proc in running:
            proc.popen.wait(HANG_GUARD_SECONDS)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.alive():
                proc.send(signal.SIGKILL)
                proc.popen.wait(HANG_GUARD_SECONDS)

    def log_text(self) -> str:
        return "".join(proc.log() for proc in self.procs.values())

    def assert_healthy(self, exited: Iterable[str] | None = None) -> None:
        """Workers that exited by themselves did so with 0 and no crash or traceback in their logs."""
        names = list(exited) if exited is not None else list(self.procs)
        for name in names:
            proc = self.procs[name]
            assert proc.popen.returncode == 0, f"{name} exited with {proc.popen.returncode}:\n{proc.log()[-3000:]}"
            log = proc.log()
            assert "Traceback" not in log and "loop crashed" not in log, f"{name} crashed:\n{log[-3000:]}"


# -- the store, seen from outside -------------------------------------------------------


def state_file_name(name: str) -> bool:
    from martian_doves import codec

    return codec.is_state_file_name(name)


@dataclass
class StoreSnapshot:
    """What a store folder holds, read with plain directory listings."""

    states: set[str]
    #: Visible root entries that are neither state files nor layout folders (e.g. a
    #: temporary left in the open); hidden entries are the store's own bookkeeping.
    strays: set[str]
    pending: set[str]
    #: ``in_progress`` entries as state names (the claim token stripped).
    in_progress: list[str]
    done: set[str]
    failed: set[str]
    reasons: dict[str, dict[str, Any]] = field(default_factory=dict)


def snapshot(store: Path) -> StoreSnapshot:
    root = sorted(os.listdir(store))
    failed_entries = os.listdir(store / "failed")
    reasons = {}
    for entry in failed_entries:
        if entry.endswith(REASON_SUFFIX):
            reasons[entry[: -len(REASON_SUFFIX)]] = json.loads((store / "failed" / entry).read_text())
    return StoreSnapshot(
        states={name for name in root if name not in LAYOUT_DIRS and state_file_name(name)},
        strays={name for name in root
                if name not in LAYOUT_DIRS and not name.startswith(".") and not state_file_name(name)},
        pending=set(os.listdir(store / "pending")),
        in_progress=[entry.rpartition("@")[0] or entry for entry in os.listdir(store / "in_progress")],
        done=set(os.listdir(store / "done")),
        failed={entry for entry in failed_entries if not entry.endswith(REASON_SUFFIX)},
        reasons=reasons,
    )


def claims(store: Path) -> dict[str, str]:
    """State name → worker name for every claim in ``in_progress`` whose info is written."""
    held = {}
    folder = store / "in_progress"
    for entry in os.listdir(folder):
        try:
            info = json.loads((folder / entry).read_text() or "{}")
        except (FileNotFoundError, ValueError):
            continue  # vanished, or still being written
        if info.get("worker"):
            held[entry.rpartition("@")[0]] = info["worker"]
    return held


def done_by(store: Path, name: str) -> str | None:
    """The worker recorded in ``done/NAME`` (the claim that committed it)."""
    try:
        return json.loads((store / "done" / name).read_text() or "{}").get("worker")
    except FileNotFoundError:
        return None


def lineage(root_name: str, ticks: int) -> list[str]:
    """The file names of a machine that ticks ``ticks`` times: root, root-1 … root-(ticks-1)."""
    return [root_name] + [f"{root_name}-{step}" for step in range(1, ticks)]


def check_complete(store: Path, machines: Mapping[str, int], *, failed: Iterable[str] = ()) -> StoreSnapshot:
    """Assert every machine (root file name → ticks) finished with its whole lineage on disk.

    Each successor name is present exactly once with the right parent (no ``~N``
    branch, nothing beyond the last step), every state is in ``done/``, nothing is
    left in ``pending/`` or ``in_progress/``, no temporary is visible as a state, and
    the only failed states are ``failed``.
    """
    snap = snapshot(store)
    problems = []
    expected: set[str] = set()
    for root_name, ticks in machines.items():
        names = lineage(root_name, ticks)
        expected.update(names)
        for parent, child in pairwise(names):
            try:
                recorded = json.loads((store / child).read_text()).get("parent")
            except FileNotFoundError:
                continue  # reported as missing below
            if recorded != parent:
                problems.append(f"{child} records parent {recorded!r}, expected {parent!r}")
    failed_set = set(failed)
    if missing := sorted(expected - snap.states):
        problems.append(f"{len(missing)} lineage state(s) missing: {missing[:10]}")
    if extra := sorted(snap.states - expected):
        problems.append(f"{len(extra)} unexpected state file(s) (duplicated successors?): {extra[:10]}")
    if branches := sorted(name for name in snap.states if "~" in name):
        problems.append(f"branch names: {branches[:10]}")
    if not_done := sorted(expected - snap.done):
        problems.append(f"{len(not_done)} state(s) not done: {not_done[:10]}")
    if stray_done := sorted(snap.done - expected):
        problems.append(f"unexpected done markers: {stray_done[:10]}")
    if snap.pending:
        problems.append(f"left in pending/: {sorted(snap.pending)[:10]}")
    if snap.in_progress:
        problems.append(f"left in in_progress/: {sorted(snap.in_progress)[:10]}")
    if snap.strays:
        problems.append(f"stray root entries (visible temporaries?): {sorted(snap.strays)[:10]}")
    if snap.failed != failed_set:
        problems.append(f"failed/ holds {sorted(snap.failed)}, expected {sorted(failed_set)}: {snap.reasons}")
    assert not problems, "store check failed:\n  " + "\n  ".join(problems)
    return snap


# -- machines and their execution log ----------------------------------------------------


def counting_payload(machine_id: str, count: int, log: Path, tick_seconds: float = 0.0,
                     gate: Path | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"id": machine_id, "count": count, "log": str(log), "tick_seconds": tick_seconds}
    if gate is not None:
        payload["gate"] = str(gate)
    return payload


def counting_document(machine_id: str, count: int, log: Path, tick_seconds: float = 0.0) -> dict[str, Any]:
    return {"state": "counted-countdown", "payload": counting_payload(machine_id, count, log, tick_seconds)}


def submit_counting(store: Path, mode: str, ids: Iterable[str], count: int, log: Path,
                    tick_seconds: float = 0.0, store_options: Mapping[str, Any] | None = None,
                    gate: Path | None = None) -> dict[str, int]:
    """Submit one ``counted-countdown`` machine per id as ``<id>.state``; return root name → ticks."""
    from martian_doves.model import State
    from martian_doves.stores import open_store

    ids = list(ids)
    opened = open_store(str(store), mode, **dict(store_options or {}))
    try:
        results = opened.submit([
            State(f"{machine_id}.state", "counted-countdown", counting_payload(machine_id, count, log, tick_seconds,
                                                                               gate))
            for machine_id in ids
        ])
    finally:
        opened.close()
    refused = [r for r in results if not r.added]
    assert not refused, f"submit refused: {refused[:5]}"
    return {f"{machine_id}.state": count for machine_id in ids}


def drop_file(store: Path, name: str, content: str | bytes, *, in_place: bool = False) -> None:
    """Put a file into the store folder by hand.

    By default it is moved in complete (as ``mv`` or ``rsync`` do); with ``in_place``
    it is written where it lands, as ``cp`` does.
    """
    data = content.encode() if isinstance(content, str) else content
    if in_place:
        (store / name).write_bytes(data)
        return
    tmp = store.parent / f".drop-{name}"
    tmp.write_bytes(data)
    os.rename(tmp, store / name)


@dataclass(frozen=True)
class Execution:
    """One line of the execution log: a tick that ran to its end."""

    machine: str
    count: int
    pid: int
    at: float


def read_executions(log: Path) -> list[Execution]:
    if not log.exists():
        return []
    executions = []
    for line in log.read_text().splitlines():
        machine_id, count, pid, at = line.split()
        executions.append(Execution(machine_id, int(count), int(pid), float(at)))
    return executions


def check_executions(log: Path, machines: Mapping[str, int], *, exactly_once: bool) -> Counter[tuple[str, int]]:
    """Assert every transition of every machine (root file name → ticks) ran at least once.

    With ``exactly_once`` also assert none ran twice. Returns the duplicated
    transitions with their extra runs (at-least-once allows them after a kill).
    """
    seen = Counter((e.machine, e.count) for e in read_executions(log))
    expected = {(root.removesuffix(".state"), count) for root, ticks in machines.items()
                for count in range(ticks, 0, -1)}
    lost = sorted(expected - set(seen))
    unknown = sorted(set(seen) - expected)
    assert not lost, f"{len(lost)} transition(s) never executed: {lost[:10]}"
    assert not unknown, f"executions of transitions that should not exist: {unknown[:10]}"
    duplicates = Counter({key: n - 1 for key, n in seen.items() if n > 1})
    if exactly_once:
        assert not duplicates, f"{len(duplicates)} transition(s) executed more than once: {duplicates.most_common(10)}"
    return duplicates


# -- the worker process ------------------------------------------------------------------


def _worker_main(config: dict[str, Any]) -> int:
    import faulthandler
    import logging

    from martian_doves.clock import SystemClock
    from martian_doves.config import WorkerOptions
    from martian_doves.loader import default_registry
    from martian_doves.retry import RetryPolicy
    from martian_doves.stores import open_store
    from martian_doves.worker import Worker

    logging.basicConfig(filename=config["log"], level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    store = open_store(config["store"], config["mode"], clock=SystemClock(config["clock_offset_seconds"]),
                       **config["store_options"])
    options = dict(config["worker"])
    if "retry" in options:
        options["retry"] = RetryPolicy(**options["retry"])
    worker = Worker(store, default_registry(config["machines"]), WorkerOptions(**options))

    def stop(signum: int, frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks for a hang report
    totals = worker.run()
    result = {
        "name": worker.name,
        "pid": os.getpid(),
        "claimed": totals.claimed,
        "committed": totals.committed,
        "retried": totals.retried,
        "failed": totals.failed,
        "lost": totals.lost,
        "contended": getattr(store, "contended", None),
        "refusing": getattr(store, "refusing", None),
    }
    tmp = config["result"] + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.rename(tmp, config["result"])
    logging.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(json.loads(sys.argv[1])))


# -- doves run through a store outage ----------------------------------------------------


@contextlib.contextmanager
def doves_run(output: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``doves run ARGS`` in the background, its output in ``output``; killed if still running after the block."""
    with open(output, "wb") as sink:
        run = subprocess.Popen([sys.executable, "-m", "martian_doves", "run", *args], stdout=sink,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def wait_while_running(run: subprocess.Popen[bytes], output: Path, predicate: Callable[[], Any], what: str) -> None:
    """``wait_until(predicate)`` while ``run`` (a ``doves_run``) runs; if it ends first, or the
    wait times out, fail with the end of its output."""
    def check() -> Any:
        return predicate() or run.poll() is not None
    try:
        wait_until(check, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; the run's output:\n{output.read_text(errors='replace')[-4000:]}") from None
    tail = output.read_text(errors="replace")[-4000:]
    assert predicate(), f"the run ended (exit {run.poll()}) before {what}:\n{tail}"


def doves_json(*args: str) -> dict[str, object]:
    """What ``doves ARGS --json`` prints (it must succeed)."""
    result = subprocess.run([sys.executable, "-m", "martian_doves", *args, "--json"], capture_output=True,
                            text=True, timeout=HANG_GUARD_SECONDS, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def check_ridden_out(output: Path, code: int | None, processes: int) -> str:
    """Assert a run that met a store outage ended well: exit 0, no traceback, no worker given up
    on, and each of at most ``processes`` processes logged the outage once when it began and once
    when it ended. Returns the run's output."""
    text = output.read_text(errors="replace")
    assert code == 0, text[-4000:]
    assert "Traceback" not in text and "giving up" not in text and "crashed" not in text, text[-4000:]
    began, ended = text.count("is unavailable ("), text.count("is available again after")
    assert "store unavailable" not in text, "a worker logged a retry, not only the outage"
    assert 1 <= began <= processes and began == ended, text[-4000:]
    return text
