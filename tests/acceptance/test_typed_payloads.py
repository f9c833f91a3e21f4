"""Typed payloads through the CLI: ``validate`` and ``submit`` refuse a bad nested payload in one line,
and ``run`` hands the handler instances and writes what it returns as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from acceptance_helpers import Doves, write_state

TYPED_MACHINES = '''
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from martian_doves import machine


class Wrap(enum.Enum):
    PAPER = "paper"
    BOX = "box"


@dataclass
class Item:
    sku: str
    quantity: int


@dataclass
class Order:
    items: list[Item]
    codes: list[int]
    priority: Literal["low", "high"]
    wrap: Wrap
    discount: int | None = None


@machine("order", payload=Order)
def order(o: Order):
    assert isinstance(o.items[0], Item) and isinstance(o.wrap, Wrap)  # instances, not dicts
    o.items.append(Item("receipt", 1))
    return "shipped", o


@machine("shipped")
def shipped(payload):
    return None
'''

GOOD = {"items": [{"sku": "dove", "quantity": 2}], "codes": [1], "priority": "high", "wrap": "box"}


@pytest.fixture
def typed_py(tmp_path: Path) -> Path:
    path = tmp_path / "typed_machines.py"
    path.write_text(TYPED_MACHINES)
    return path


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    """One good order and three whose payloads do not fit, each in its own way."""
    folder = tmp_path / "orders"
    folder.mkdir()
    write_state(folder, "good.state", "order", GOOD)
    write_state(folder, "nested-unknown.state", "order",
                {**GOOD, "items": [{"sku": "dove", "quantity": 2, "colour": "red"}]})
    write_state(folder, "nested-type.state", "order", {**GOOD, "items": [{"sku": "dove", "quantity": "2"}]})
    write_state(folder, "old-discount.state", "order", {**GOOD, "discount": "old"})
    return folder


REFUSED = {
    "nested-unknown.state": "items[0].colour: unknown field",
    "nested-type.state": "items[0].quantity: expected `int`, got `str`",
    "old-discount.state": "discount: expected `int | null`, got `str`",
}


def test_validate_refuses_bad_nested_payloads_one_line_each(doves: Doves, orders: Path, typed_py: Path) -> None:
    result = doves("validate", str(orders), "--machines", str(typed_py))
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(REFUSED), result.stdout
    for name, problem in REFUSED.items():
        (line,) = [line for line in lines if name in line]
        assert line == f"{orders / name}: invalid_payload: payload of 'order' does not fit Order: {problem}"
    assert "1 valid, 3 invalid" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_submit_and_run_typed_machines(doves: Doves, orders: Path, typed_py: Path, store_dir: Path) -> None:
    submit = doves("submit", str(store_dir), str(orders), "--machines", str(typed_py))
    assert submit.returncode == 1
    refused = submit.stderr.strip().splitlines()
    assert len(refused) == len(REFUSED), submit.stderr
    assert all(any(problem in line for line in refused) for problem in REFUSED.values())
    run = doves("run", str(store_dir), "--machines", str(typed_py))
    assert run.returncode == 0, run.stderr
    successor = json.loads((store_dir / "good.state-1").read_text())
    assert successor["state"] == "shipped"
    # A field the payload left out at its default stays out (reading it back gives the default again).
    items = [{"sku": "dove", "quantity": 2}, {"sku": "receipt", "quantity": 1}]
    assert successor["payload"] == {**GOOD, "items": items}
