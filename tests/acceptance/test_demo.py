"""``doves demo``: a newcomer sees the examples run, and is told where to look."""

from __future__ import annotations

import json
from pathlib import Path

from acceptance_helpers import Doves


def test_demo_runs_the_examples_in_a_fresh_folder(doves: Doves, tmp_path: Path) -> None:
    result = doves("demo", "--workers", "2")
    assert result.returncode == 0, result.stderr
    folders = list(tmp_path.glob("doves-demo-*"))
    assert len(folders) == 1
    demo = folders[0]
    assert str(demo) in result.stdout  # it says where

    names = {p.name for p in demo.iterdir() if p.is_file()}
    assert {f"countdown.state-{i}" for i in range(1, 5)} <= names
    assert {f"slowcountdown.state-{i}" for i in range(1, 5)} <= names
    assert " * From CountdownMachine: Counting down! 4 remaining." in result.stderr
    assert " * From SimpleMachine: I am saying Hello." in result.stderr
    # The closing status and hints.
    assert any(line.split() == ["failed:", "0"] for line in result.stdout.splitlines()), result.stdout
    assert any(line.split() == ["pending:", "0"] for line in result.stdout.splitlines()), result.stdout
    assert f"doves history {demo} countdown.state" in result.stdout
    assert doves.status(demo)["done"] >= 13
    # The machine model: the paid order waited for the payment the demo sent, then a timer; the
    # unpaid one timed out; the thumbnails were child machines, joined once.
    assert "Sent the event payment to order-1.state" in result.stderr
    assert " * Order 1 shipped" in result.stderr and " * Order 2 cancelled: no payment in time" in result.stderr
    assert " * 3 of 3 thumbnails made" in result.stderr
    history = doves("history", str(demo), "order-1.state", "--json")
    paid = json.loads(history.stdout)
    assert [step["state"] for step in paid] == ["shop-order-placed", "doves.wait", "shop-order-paid",
                                                "shop-order-shipped"]
    assert paid[1]["event"]["name"] == "payment" and paid[1]["event"]["data"]["amount"] == 42


def test_demo_into_a_chosen_folder(doves: Doves, tmp_path: Path) -> None:
    target = tmp_path / "my-demo"
    result = doves("demo", "--dir", str(target))
    assert result.returncode == 0, result.stderr
    assert (target / "countdown.state-4").is_file()

    # A folder that already holds something is not reused.
    again = doves("demo", "--dir", str(target))
    assert again.returncode == 2
    assert "Traceback" not in again.stderr and len(again.stderr.strip().splitlines()) == 1
