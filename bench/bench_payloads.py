"""What a typed payload costs per tick: validating and converting it before, and the result after.

A typical payload (a dataclass holding a list of nested dataclasses, ``list[int]``,
``int | None``, a ``Literal``, an enum, a float) goes through what ``Registry.tick``
does, next to a tick of the same handler without a payload type. When pydantic v2
is installed (``pip install pydantic``; it is no dependency), the same payload through
a ``TypeAdapter`` is shown too: lax ``validate_python`` (which turns ``"3"`` into 3)
and strict ``validate_json`` (strict Python mode refuses dicts for dataclasses).

    python bench/bench_payloads.py [--number N]

Prints microseconds per call, the best of ``--rounds`` rounds in which the cases take turns.
"""

from __future__ import annotations

import argparse
import enum
import json
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from martian_doves.payloads import PayloadType, to_json_value
from martian_doves.registry import Registry


class Wrap(enum.Enum):
    PAPER = "paper"
    BOX = "box"


@dataclass
class Item:
    sku: str
    quantity: int


@dataclass
class Order:
    id: int
    customer: str
    items: list[Item]
    codes: list[int]
    priority: Literal["low", "high"]
    wrap: Wrap
    discount: int | None = None
    ratio: float = 1.0


PAYLOAD: dict[str, Any] = {
    "id": 1, "customer": "x", "items": [{"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 1}],
    "codes": [1, 2, 3], "priority": "high", "wrap": "box", "discount": None, "ratio": 2,
}


def _cases() -> dict[str, Callable[[], object]]:
    typed = Registry()
    typed.register("order", lambda order: order, Order)
    untyped = Registry()
    untyped.register("order", lambda payload: payload)
    payload_type = PayloadType(Order)
    instance = payload_type.convert("order", PAYLOAD)
    cases: dict[str, Callable[[], object]] = {
        "tick, no payload type": lambda: untyped.tick("order", PAYLOAD),
        "tick, typed (validate, convert, back to JSON)": lambda: typed.tick("order", PAYLOAD),
        "msgspec: validate and convert": lambda: payload_type.convert("order", PAYLOAD),
        "msgspec: instance back to JSON": lambda: to_json_value(instance),
    }
    try:
        import pydantic
    except ImportError:
        return cases
    Order.__pydantic_config__ = pydantic.ConfigDict(extra="forbid")  # type: ignore[attr-defined]
    adapter = pydantic.TypeAdapter(Order)
    cases["pydantic: lax validate_python"] = lambda: adapter.validate_python(PAYLOAD)
    cases["pydantic: strict validate_json(json.dumps)"] = lambda: adapter.validate_json(json.dumps(PAYLOAD),
                                                                                         strict=True)
    cases["pydantic: instance back to JSON"] = lambda: adapter.dump_python(instance, mode="json")
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--number", type=int, default=10_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=20, help="rounds; the cases take turns in each")
    args = parser.parse_args()
    cases = _cases()
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):  # taking turns, a busy moment on the machine hits every case alike
        for name, call in cases.items():
            best[name] = min(best[name], timeit.timeit(call, number=args.number) / args.number)
    for name, seconds in best.items():
        print(f"{name:48s} {seconds * 1e6:7.2f} µs")


if __name__ == "__main__":
    main()
