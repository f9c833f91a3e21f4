"""A state whose tick kills its worker every time fails after --max-attempts, instead of
taking the fleet down forever (each takeover after a lost lease counts as an attempt)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MACHINES = '''
import os
from martian_doves import machine

@machine("suicide")
def suicide(payload):
    with open(payload["log"], "a") as log:
        log.write("tick\\n")
    os._exit(137)  # as if the OOM killer took the process mid-tick

@machine("fine")
def fine(payload):
    return None
'''


def test_a_tick_that_kills_its_worker_fails_after_max_attempts(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    machines = tmp_path / "machines.py"
    machines.write_text(MACHINES)
    log = tmp_path / "ticks.log"
    (store / "bomb.state").write_text(json.dumps({"state": "suicide", "payload": {"log": str(log)}}))
    (store / "ok.state").write_text(json.dumps({"state": "fine", "payload": {}}))
    result = subprocess.run(
        [sys.executable, "-m", "martian_doves", "run", str(store), "--workers", "2", "--machines", str(machines),
         "--lease-seconds", "1", "--heartbeat-seconds", "0.2", "--max-attempts", "3", "--no-progress",
         "--scan-seconds", "0.2"],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    reason = json.loads((store / "failed" / "bomb.state.reason.json").read_text())
    assert reason["code"] == "tick_failed"
    assert "worker" in reason["message"]
    assert log.read_text().count("tick") == 3
    assert (store / "done" / "ok.state").exists()
    assert not list((store / "in_progress").iterdir())
