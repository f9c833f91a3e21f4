"""A worker killed with ``kill -9`` is shown dead, and its claim taken over, as soon as its supervisor
sees it die: not after its lease (issue 10, item 3). Real processes, a real ``kill -9``.

The lease is ten minutes, far beyond the hang guard, so the test can only pass through the
supervisor's word. Timeouts are hang guards only; nothing here measures speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from procs import HANG_GUARD_SECONDS, wait_until

#: Longer than any wait of this test: the claim must not come back by its lease.
LEASE_SECONDS = 600
#: The machine: holds its claim until the test lets it go.
MACHINES = '''
import os
import time

from martian_doves import machine


@machine("hold")
def hold(payload):
    while not os.path.exists(payload["release"]):
        time.sleep(0.05)
    return None
'''


def _doves(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOVES_")}
    return subprocess.run([sys.executable, "-m", "martian_doves", *args], capture_output=True, text=True,
                          env=env, timeout=HANG_GUARD_SECONDS, stdin=subprocess.DEVNULL)


def _status(target: str) -> dict[str, Any]:
    result = _doves("status", target, "--json")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    return status


def _holder(target: str, name: str) -> dict[str, Any] | None:
    """The live worker that holds the claim on ``name`` now, if any."""
    for worker in _status(target)["workers"]:
        if worker["alive"] and any(claim["name"] == name for claim in worker["claims"]):
            return dict(worker)
    return None


def test_a_killed_worker_is_dead_at_once_and_its_claim_taken_over(target: str, tmp_path: Path) -> None:
    machines = tmp_path / "hold_machines.py"
    machines.write_text(MACHINES)
    release = tmp_path / "release"
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "held.state").write_text(json.dumps({"state": "hold", "payload": {"release": str(release)}}))
    assert _doves("submit", target, str(incoming), "--machines", str(machines)).returncode == 0

    log = tmp_path / "run.log"
    with open(log, "wb") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "martian_doves", "run", target, "--watch", "--workers", "2", "--machines",
             str(machines), "--lease-seconds", str(LEASE_SECONDS), "--name", "mortal", "--no-progress"],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("DOVES_")})
    try:
        victim = wait_until(lambda: _holder(target, "held.state"), "a worker holding the state")
        assert victim["name"].startswith("mortal-") and victim["claims"][0]["state"] == "hold"
        os.kill(int(victim["name"].rsplit("-", 1)[1]), signal.SIGKILL)

        def buried() -> dict[str, Any] | None:
            workers = {w["name"]: w for w in _status(target)["workers"]}
            dead = workers.get(victim["name"])
            return dead if dead is not None and not dead["alive"] and dead["ended"] else None

        dead = wait_until(buried, "the killed worker shown dead")
        assert "SIGKILL" in dead["ended"] and dead["claims"] == []
        heir = wait_until(lambda: _holder(target, "held.state"), "the state taken over by another worker")
        assert heir["name"] != victim["name"]

        release.touch()
        wait_until(lambda: _status(target)["done"] == 1, "the state done")
        shown = json.loads(_doves("show", target, "held.state", "--json").stdout)
        assert shown["attempts"] == 1 and shown["worker"] == heir["name"]
        assert any(victim["name"] in error and "SIGKILL" in error for error in shown["errors"])
    finally:
        release.touch()
        run.send_signal(signal.SIGTERM)
        try:
            code = run.wait(HANG_GUARD_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()
    assert "gave back 1 state(s) worker " + victim["name"] + " held" in log.read_text()
