"""The seed's machines (same payloads, messages and timing), a multi-state example, and
the machine model's examples (an order that waits for an event, a timer, a fan-out).

Every built-in tick sleeps as the seed's did (1 s, or 10 s for ``slow-countdown``,
which deliberately outlasts a semaphore cycle). An optional ``tick_seconds`` payload
field overrides that, e.g. ``0`` for benchmarks; it is carried to successors.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from martian_doves.contract import Next, Spawn, Wait
from martian_doves.model import JSONDict
from martian_doves.registry import machine

log = logging.getLogger("martian_doves.machines")


def _pause(payload: JSONDict, default_seconds: float) -> None:
    seconds = payload.get("tick_seconds", default_seconds)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        time.sleep(float(seconds))


def _carry(payload: JSONDict, **fields: Any) -> JSONDict:
    successor = dict(fields)
    if "tick_seconds" in payload:
        successor["tick_seconds"] = payload["tick_seconds"]
    return successor


@machine("simple")
def simple(payload: JSONDict) -> None:
    """Say ``target`` and end (the seed's SimpleMachine)."""
    log.info(" * From SimpleMachine: I am saying %s", payload["target"])
    _pause(payload, 1.0)


def _countdown(payload: JSONDict, who: str, default_seconds: float) -> JSONDict | None:
    count = int(payload["count"]) - 1
    log.info(" * From %s: Counting down! %d remaining.", who, count)
    _pause(payload, default_seconds)
    return _carry(payload, count=count) if count > 0 else None


@machine("countdown")
def countdown(payload: JSONDict) -> JSONDict | None:
    """Count down by one per tick; ``count`` ticks in all (the seed's CountdownMachine)."""
    return _countdown(payload, "CountdownMachine", 1.0)


@machine("slow-countdown")
def slow_countdown(payload: JSONDict) -> JSONDict | None:
    """As ``countdown`` but 10 s per tick, longer than a whole semaphore cycle."""
    return _countdown(payload, "SlowCountdownMachine", 10.0)


# A multi-state machine: a traffic light that cycles green → yellow → red a number
# of times. It shows a successor in *another* state and a payload carried along.

@machine("traffic-light-green")
def traffic_light_green(payload: JSONDict) -> tuple[str, JSONDict]:
    """Green: go to yellow."""
    log.info(" * Traffic light %s: green", payload.get("light", "?"))
    _pause(payload, 0.0)
    return "traffic-light-yellow", payload


@machine("traffic-light-yellow")
def traffic_light_yellow(payload: JSONDict) -> tuple[str, JSONDict]:
    """Yellow: go to red."""
    log.info(" * Traffic light %s: yellow", payload.get("light", "?"))
    _pause(payload, 0.0)
    return "traffic-light-red", payload


@machine("traffic-light-red")
def traffic_light_red(payload: JSONDict) -> tuple[str, JSONDict] | None:
    """Red: start another cycle until ``cycles`` is used up, then end."""
    cycles = int(payload.get("cycles", 1)) - 1
    log.info(" * Traffic light %s: red (%d cycles left)", payload.get("light", "?"), cycles)
    _pause(payload, 0.0)
    if cycles <= 0:
        return None
    return "traffic-light-green", {**payload, "cycles": cycles}


# The machine model's examples (``doves demo`` runs them): an order that waits for its
# payment or gives up, a timer, and a fan-out of child machines joined at the end.

@machine("shop-order-placed")
def shop_order_placed(payload: JSONDict) -> Wait:
    """Wait for the event ``payment``; cancel the order if none comes within ``pay_within_seconds``."""
    within = float(payload.get("pay_within_seconds", 60))
    log.info(" * Order %s placed: waiting for its payment (at most %g s)", payload.get("order", "?"), within)
    _pause(payload, 0.0)
    return Wait("payment", then="shop-order-paid", timeout=within, on_timeout="shop-order-cancelled", payload=payload)


@machine("shop-order-paid")
def shop_order_paid(payload: JSONDict) -> Next:
    """Paid: ship it after ``ship_after_seconds`` (a durable timer)."""
    after = float(payload.get("ship_after_seconds", 1))
    log.info(" * Order %s paid (%s); shipping in %g s", payload.get("order", "?"),
             payload.get("event", {}).get("data"), after)
    _pause(payload, 0.0)
    return Next("shop-order-shipped", {k: v for k, v in payload.items() if k != "event"}, after=after)


@machine("shop-order-shipped")
def shop_order_shipped(payload: JSONDict) -> None:
    """Shipped: the order machine ends."""
    log.info(" * Order %s shipped", payload.get("order", "?"))


@machine("shop-order-cancelled")
def shop_order_cancelled(payload: JSONDict) -> None:
    """No payment in time: the order machine ends cancelled."""
    log.info(" * Order %s cancelled: no payment in time", payload.get("order", "?"))


@machine("thumbnails")
def thumbnails(payload: JSONDict) -> Spawn:
    """One ``thumbnail`` child machine per image; ``thumbnails-done`` once all have ended."""
    images = payload.get("images", [])
    log.info(" * Making %d thumbnails in parallel", len(images))
    children = [("thumbnail", _carry(payload, image=image)) for image in images]
    return Spawn(children, then="thumbnails-done", payload=payload)


@machine("thumbnail")
def thumbnail(payload: JSONDict) -> None:
    """Make one thumbnail (an image whose name says ``corrupt`` fails, to show a failed child)."""
    image = str(payload.get("image"))
    _pause(payload, 0.0)
    if "corrupt" in image:
        raise ValueError(f"cannot read {image}")
    log.info(" * Thumbnail of %s made", image)


@machine("thumbnails-done")
def thumbnails_done(payload: JSONDict) -> None:
    """The join: every child has ended, each with its outcome in ``payload["children"]``."""
    children = payload.get("children", [])
    failed = [c["payload"].get("image") for c in children if c["status"] == "failed"]
    log.info(" * %d of %d thumbnails made%s", len(children) - len(failed), len(children),
             f"; failed: {', '.join(map(str, failed))}" if failed else "")
