"""Helpers for the acceptance tests: the ``doves`` CLI in a subprocess against a temporary folder store.

Every command runs as ``python -m martian_doves ...`` with the caller's ``DOVES_*``
variables removed (see ``tests/conftest.py``). Timeouts here are hang guards only;
no test asserts how fast anything is.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "martian_doves" / "examples"
#: The seed project's five example states (the package also ships ``traffic.state``).
SEED_EXAMPLES = ("countdown.state", "goodbye.state", "hello.state", "howdoyoudo.state", "slowcountdown.state")
#: Hang guard for one CLI command.
COMMAND_TIMEOUT = 180.0

#: A user machine module, loaded with ``--machines``. Each tick appends one line
#: ``<id> <count> <pid> <event>`` to the file named in its payload, with O_APPEND so
#: lines from concurrent processes never mix.
MACHINES_SOURCE = '''
import os
import time

from martian_doves import machine


def _record(payload, event):
    fd = os.open(payload["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{payload['id']} {payload.get('count', 0)} {os.getpid()} {event}\\n".encode())
    finally:
        os.close(fd)


@machine("counted")
def counted(payload):
    """Counts down from ``count``: one tick (and one log line) per step."""
    _record(payload, "tick")
    time.sleep(payload.get("sleep", 0))
    if payload["count"] <= 1:
        return None
    return {**payload, "count": payload["count"] - 1}


@machine("always-fails")
def always_fails(payload):
    raise RuntimeError("this machine always fails")


@machine("fails-until-fixed")
def fails_until_fixed(payload):
    if not os.path.exists(payload["fixed_flag"]):
        raise RuntimeError("not fixed yet")
    return None


@machine("breaks-the-store")
def breaks_the_store(payload):
    """Replaces the store's pending/ folder with a file: every later claim fails."""
    import shutil

    shutil.rmtree(payload["pending"])
    open(payload["pending"], "w").close()
    return None


@machine("blocks")
def blocks(payload):
    """Logs its start, then sleeps for ``sleep`` seconds: an in-flight tick to stop around."""
    _record(payload, "start")
    time.sleep(payload["sleep"])
    _record(payload, "end")
    return None


@machine("chatty")
def chatty(payload):
    """Prints (not logs) a line to stdout and one to stderr, as careless user code does."""
    import sys

    print(f"chatty says hello from {payload['id']}")
    print(f"chatty complains on stderr from {payload['id']}", file=sys.stderr)
    return None


@machine("exits-quietly")
def exits_quietly(payload):
    """Ends its worker process with status 0, as a careless os._exit(0) in user code would."""
    _record(payload, "exit")
    os._exit(0)
'''


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "martian_doves", *args]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
    env.update(extra or {})
    return env


def write_state(folder: Path, name: str, state: str, payload: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps({"state": state, "payload": payload}))
    return path


def copy_seed_examples(folder: Path, tick_seconds: float = 0) -> None:
    """Copy the seed's examples into ``folder`` by hand, as the seed README does, without the sleeps."""
    for name in SEED_EXAMPLES:
        document = json.loads((EXAMPLES / name).read_text())
        document["payload"]["tick_seconds"] = tick_seconds
        (folder / name).write_text(json.dumps(document))


def read_ticks(log: Path) -> list[tuple[str, int, int, str]]:
    """The lines the test machines logged: (id, count, pid, event)."""
    if not log.exists():
        return []
    ticks = []
    for line in log.read_text().splitlines():
        ident, count, pid, event = line.split()
        ticks.append((ident, int(count), int(pid), event))
    return ticks


def one_line(stderr: str) -> str:
    """The single line of ``stderr``; fails if there are more, or a traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Doves:
    """Runs ``doves`` commands to completion."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, env: Mapping[str, str] | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command(*args), env=environment(env), cwd=self.cwd, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def status(self, store: Path | str) -> dict[str, Any]:
        result = self("status", str(store), "--json")
        assert result.returncode == 0, result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status


#: The descriptor limit of the ``doves`` processes ``Running`` starts, while ``descriptor_limit`` holds one.
_child_descriptors: int | None = None


@contextlib.contextmanager
def descriptor_limit(count: int) -> Iterator[None]:
    """Processes started in the block may open at most ``count`` descriptors.

    Set in each child before it runs ``doves``, never in the test process: a process that has run
    many tests may hold more descriptors than ``count`` already, and could then start nothing.
    """
    global _child_descriptors
    _child_descriptors = count
    try:
        yield
    finally:
        _child_descriptors = None


def _limit_descriptors(count: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (count if hard == resource.RLIM_INFINITY else min(count, hard), hard))


class Running:
    """A ``doves`` command in the background, its output collected as it comes."""

    def __init__(self, args: tuple[str, ...], env: Mapping[str, str] | None, cwd: Path) -> None:
        # A session of its own: the test's signals reach the supervisor only (as from
        # a service manager), and cleanup can reach every process it started.
        limit = _child_descriptors
        self.process = subprocess.Popen(command(*args), env=environment(env), cwd=cwd, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True,
                                        preexec_fn=None if limit is None else lambda: _limit_descriptors(limit))
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                         for stream in (self.process.stdout, self.process.stderr)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = COMMAND_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"doves exited ({self.process.returncode}) before {what}:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}:\n{self.output}")
            time.sleep(0.05)

    def wait_for_output(self, text: str, timeout: float = COMMAND_TIMEOUT) -> None:
        self.wait_for(lambda: text in self.output, repr(text), timeout)

    def send(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = COMMAND_TIMEOUT) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"doves did not exit within {timeout:.0f} s:\n{self.output}")
        for reader in self._readers:
            reader.join(10)
        return code

    def cleanup(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(30)
