"""A folder the seed left mid-run is taken over without running any machine twice.

An interrupted seed run leaves its example states with flags: an empty ``done/hello.state``
(hello ran), an empty ``in_progress/countdown.state`` (countdown was running), a
registration ``workers/dove-1``, and the successor the seed had already written,
``countdown.state-1``, in its own compact JSON and without a ``parent`` field. ``doves run``
must run countdown again, find that its tick produced exactly that document, adopt the
file as the successor (never a ``~2`` branch, never a second root) and run the lineage
once; hello runs again only when its done flag is missing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from acceptance_helpers import EXAMPLES, Doves

#: What the seed wrote for countdown's first successor, byte for byte.
SEED_SUCCESSOR = '{"state": "countdown", "payload": {"count": 4}}'
#: The same document as another tool would format it.
REFORMATTED = '{\n    "payload": {\n        "count": 4\n    },\n    "state": "countdown"\n}\n'
COUNTDOWN = ["countdown.state", *(f"countdown.state-{step}" for step in range(1, 5))]
SIMPLE = ["goodbye.state", "hello.state", "howdoyoudo.state"]


def seed_folder(store: Path, successor: str, *, hello_done: bool) -> None:
    """Lay ``store`` out as an interrupted seed run leaves it (slowcountdown left out: 10 s ticks)."""
    for folder in ("done", "in_progress", "workers"):
        (store / folder).mkdir(parents=True)
    for name in ("countdown.state", *SIMPLE):
        (store / name).write_bytes((EXAMPLES / name).read_bytes())
    (store / "countdown.state-1").write_text(successor)
    (store / "in_progress" / "countdown.state").touch()
    (store / "workers" / "dove-1").touch()
    if hello_done:
        (store / "done" / "hello.state").touch()
    old = time.time() - 120  # written by an earlier run, not being copied now
    for path in store.rglob("*"):
        os.utime(path, (old, old))


@pytest.mark.slow
@pytest.mark.parametrize(("successor", "hello_done"), [(SEED_SUCCESSOR, True), (REFORMATTED, True),
                                                       (SEED_SUCCESSOR, False)],
                         ids=["seed", "reformatted", "hello-not-done"])
def test_a_folder_the_seed_left_mid_run_runs_each_lineage_once(doves: Doves, tmp_path: Path, successor: str,
                                                               hello_done: bool) -> None:
    store = tmp_path / "store"
    seed_folder(store, successor, hello_done=hello_done)
    # A short lease: the seed's in_progress flag was made just now, and is dropped once it is that old.
    result = doves("run", str(store), "--workers", "2", "--lease-seconds", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "Traceback" not in log and "taken by another machine" not in log, log[-4000:]
    names = sorted(name for name in os.listdir(store) if name.endswith(".state") or ".state-" in name)
    assert names == sorted(COUNTDOWN + SIMPLE)
    assert sorted(os.listdir(store / "done")) == sorted(COUNTDOWN + SIMPLE)
    assert os.listdir(store / "pending") == [] and os.listdir(store / "in_progress") == []
    assert (store / "countdown.state-1").read_text() == successor  # adopted as it is, never rewritten
    ticks = [log.index(f"Counting down! {remaining} remaining.") for remaining in range(4, -1, -1)]
    assert ticks == sorted(ticks), "the lineage ran out of order: a successor before its parent"
    for remaining in range(5):  # each tick of the one countdown, once
        assert log.count(f"Counting down! {remaining} remaining.") == 1, log[-4000:]
    assert log.count("I am saying Hello.") == (0 if hello_done else 1), log[-4000:]
    assert log.count("I am saying Goodbye!") == 1
    history = doves("history", str(store), "countdown.state", "--json")
    assert history.returncode == 0, history.stderr
    assert [entry["name"] for entry in json.loads(history.stdout)] == COUNTDOWN  # one lineage, whole
