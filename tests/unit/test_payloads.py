"""Typed payloads: ``@machine(name, payload=T)`` validates and converts before the tick, and back.

Each case goes through ``Registry.validate`` (what ``doves validate``/``submit`` use) and
``Registry.tick`` (what a worker runs): a refused payload is ``InvalidPayload`` (reason
``invalid_payload``) with one line naming the field, and the handler never runs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pytest

from martian_doves.errors import BadReturn, InvalidPayload, MachineLoadError
from martian_doves.model import Successor
from martian_doves.registry import Registry, machine


class Colour(enum.Enum):
    """An enum field: its JSON form is the value."""

    RED = "red"
    GREEN = "green"


@dataclass
class Item:
    """A nested record."""

    sku: str
    quantity: int


@dataclass
class Order:
    """A typical payload: nested records, typed lists and dicts, optional, literal, enum."""

    id: int
    items: list[Item]
    codes: list[int]
    priority: Literal["low", "high"]
    colour: Colour
    discount: int | None = None
    ratio: float = 1.0
    by_name: dict[str, Item] = field(default_factory=dict)
    gift: Item | None = None


GOOD: dict[str, Any] = {
    "id": 7,
    "items": [{"sku": "dove", "quantity": 2}, {"sku": "seed", "quantity": 1}],
    "codes": [1, 2],
    "priority": "high",
    "colour": "green",
    "discount": None,
    "ratio": 2,
    "by_name": {"first": {"sku": "dove", "quantity": 2}},
    "gift": {"sku": "card", "quantity": 1},
}


def _registry(payload_type: type, handler: Any = None, name: str = "order") -> Registry:
    registry = Registry()
    registry.register(name, handler or (lambda payload: None), payload_type)
    return registry


def _refused(registry: Registry, payload: dict[str, Any], name: str = "order") -> str:
    """The one-line message a refused payload gets, from validate and from tick alike."""
    with pytest.raises(InvalidPayload) as info:
        registry.validate(name, payload)
    assert info.value.code == "invalid_payload"
    with pytest.raises(InvalidPayload) as at_tick:
        registry.tick(name, payload)
    assert at_tick.value.message == info.value.message
    assert "\n" not in info.value.message
    return info.value.message


def test_nested_records_arrive_as_instances() -> None:
    """Nested dataclasses (in lists, dicts, optionals) become instances; enums and floats are converted."""
    seen: list[Order] = []
    _registry(Order, seen.append).tick("order", GOOD)
    (order,) = seen
    assert order == Order(7, [Item("dove", 2), Item("seed", 1)], [1, 2], "high", Colour.GREEN, None, 2.0,
                          {"first": Item("dove", 2)}, Item("card", 1))
    assert isinstance(order.items[0], Item) and isinstance(order.by_name["first"], Item)
    assert isinstance(order.gift, Item) and order.colour is Colour.GREEN and isinstance(order.ratio, float)


def test_defaults_fill_missing_optional_fields() -> None:
    """Fields with defaults may be left out."""
    seen: list[Order] = []
    minimal = {"id": 1, "items": [], "codes": [], "priority": "low", "colour": "red"}
    _registry(Order, seen.append).tick("order", minimal)
    assert seen == [Order(1, [], [], "low", Colour.RED)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"codes": ["a"]}, "codes[0]: expected `int`, got `str`"),
        ({"discount": "old"}, "discount: expected `int | null`, got `str`"),
        ({"priority": "urgent"}, "priority: invalid enum value 'urgent'"),
        ({"colour": "blue"}, "colour: invalid enum value 'blue'"),
        ({"items": [{"sku": "dove", "quantity": "2"}]}, "items[0].quantity: expected `int`, got `str`"),
        ({"items": [{"sku": "dove"}]}, "items[0]: object missing required field `quantity`"),
        ({"items": {"sku": "dove", "quantity": 2}}, "items: expected `array`, got `object`"),
        ({"id": True}, "id: expected `int`, got `bool`"),
        ({"id": "7"}, "id: expected `int`, got `str`"),
        ({"extra": 1}, "extra: unknown field"),
        ({"items": [{"sku": "dove", "quantity": 2, "colour": "red"}]}, "items[0].colour: unknown field"),
        ({"by_name": {"first": {"sku": "a", "quantity": 1, "note": "x"}}}, "by_name['first'].note: unknown field"),
        ({"gift": {"sku": "card", "quantity": 1, "wrap": True}}, "gift.wrap: unknown field"),
    ],
    ids=["str-in-list-int", "str-for-optional-int", "literal", "enum", "nested-type", "nested-missing",
         "object-for-list", "bool-for-int", "str-for-int", "unknown-field", "nested-unknown-field",
         "unknown-in-dict-value", "unknown-in-optional"],
)
def test_payloads_that_do_not_fit_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    """Each refusal is one line: the state, the type, the field's path and what is wrong with it."""
    calls: list[object] = []
    assert _refused(_registry(Order, calls.append), {**GOOD, **change}) == (
        f"payload of 'order' does not fit Order: {message}")
    assert calls == []


def test_handler_may_return_instances() -> None:
    """A returned record (alone or in a pair) becomes plain JSON: nested records, enums, optionals."""
    order = Order(1, [Item("dove", 2)], [3], "low", Colour.RED, gift=Item("card", 1))
    as_json = {"id": 1, "items": [{"sku": "dove", "quantity": 2}], "codes": [3], "priority": "low",
               "colour": "red", "discount": None, "ratio": 1.0, "by_name": {},
               "gift": {"sku": "card", "quantity": 1}}
    assert _registry(Order, lambda o: order).tick("order", GOOD) == Successor("order", as_json)
    assert _registry(Order, lambda o: ("shipped", order)).tick("order", GOOD) == Successor("shipped", as_json)
    # What the handler returns goes round again: the successor's payload fits the type.
    _registry(Order).validate("order", as_json)


def test_round_trip_through_the_handler() -> None:
    """A handler that changes its instance and returns it produces the next payload."""

    def ship(order: Order) -> tuple[str, Order]:
        order.items.append(Item("extra", 1))
        return "order", order

    result = _registry(Order, ship).tick("order", GOOD)
    assert result is not None
    payload = result[1]
    assert payload["items"][-1] == {"sku": "extra", "quantity": 1}
    assert payload["colour"] == "green"


def test_fields_left_out_at_their_default_stay_out() -> None:
    """An instance returned as received keeps the payload's shape: a field it left out at its default
    stays out of the successor, and reading the successor back gives the same instance."""
    minimal = {"id": 1, "items": [{"sku": "a", "quantity": 1}], "codes": [], "priority": "low", "colour": "red"}
    result = _registry(Order, lambda o: o).tick("order", minimal)
    assert result is not None
    seen: list[Order] = []
    _registry(Order, seen.append).tick("order", result[1])
    _registry(Order, seen.append).tick("order", minimal)
    assert seen[0] == seen[1]
    assert set(result[1]) - set(minimal) <= {"by_name"}  # default_factory fields are filled in


def test_returning_a_record_that_json_cannot_hold_is_a_bad_return() -> None:
    """A returned record holding something JSON cannot represent fails the state (bad_return), one line."""

    @dataclass
    class Holder:
        thing: object

    with pytest.raises(BadReturn, match="Holder") as info:
        _registry(Order, lambda o: Holder(object())).tick("order", GOOD)
    assert "\n" not in info.value.message


def test_untyped_handlers_get_the_payload_itself() -> None:
    """Without ``payload=`` nothing is converted: the handler gets the very dict it was given."""
    seen: list[object] = []
    payload = {"anything": [1, {"x": None}]}
    registry = Registry()
    registry.register("free", seen.append)
    registry.validate("free", payload)
    registry.tick("free", payload)
    assert seen[0] is payload


# -- what else msgspec gives for free ---------------------------------------------------------


@dataclass
class Node:
    """A recursive record."""

    name: str
    children: list[Node] = field(default_factory=list)


def test_recursive_records() -> None:
    """A record that contains itself converts and checks unknown fields at every depth."""
    seen: list[Node] = []
    registry = _registry(Node, seen.append, "tree")
    registry.tick("tree", {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]})
    assert seen == [Node("a", [Node("b", [Node("c")])])]
    bad = {"name": "a", "children": [{"name": "b", "children": [{"name": "c", "age": 3}]}]}
    assert _refused(registry, bad, "tree").endswith("children[0].children[0].age: unknown field")


class Point(msgspec.Struct):
    """A msgspec.Struct payload, with a nested dataclass."""

    x: int
    y: int
    label: Item | None = None


def test_msgspec_struct_payloads() -> None:
    """A ``msgspec.Struct`` works as a payload type; unknown fields are refused as for dataclasses."""
    seen: list[Point] = []
    registry = _registry(Point, seen.append, "point")
    registry.tick("point", {"x": 1, "y": 2, "label": {"sku": "a", "quantity": 1}})
    assert seen == [Point(1, 2, Item("a", 1))]
    assert _refused(registry, {"x": 1, "y": 2, "z": 3}, "point").endswith("z: unknown field")
    assert _refused(registry, {"x": 1, "y": 2, "label": {"sku": "a", "quantity": 1, "q": 0}},
                    "point").endswith("label.q: unknown field")
    assert _registry(Point, lambda p: Point(3, 4), "point").tick("point", {"x": 1, "y": 2}) == Successor(
        "point", {"x": 3, "y": 4, "label": None})


class Circle(msgspec.Struct, tag="circle"):
    """One member of a tagged union."""

    radius: float


class Square(msgspec.Struct, tag="square"):
    """Another member of a tagged union."""

    side: float
    corner: Item | None = None


class Pair(msgspec.Struct, array_like=True):
    """A Struct encoded as a JSON array."""

    left: Item
    right: int


@dataclass
class Drawing:
    """Tagged unions and array-like Structs inside a dataclass."""

    shapes: list[Circle | Square]
    pair: Pair | None = None


def test_tagged_unions_and_array_like_structs() -> None:
    """The tag picks the union's member; an array-like Struct's fields are checked by position."""
    seen: list[Drawing] = []
    registry = _registry(Drawing, seen.append, "drawing")
    good = {"shapes": [{"type": "circle", "radius": 1}, {"type": "square", "side": 2}],
            "pair": [{"sku": "a", "quantity": 1}, 3]}
    registry.tick("drawing", good)
    assert seen == [Drawing([Circle(1.0), Square(2.0)], Pair(Item("a", 1), 3))]
    bad_square = {"shapes": [{"type": "square", "side": 2, "corner": {"sku": "a", "quantity": 1, "z": 0}}]}
    assert _refused(registry, bad_square, "drawing").endswith("shapes[0].corner.z: unknown field")
    assert _refused(registry, {"shapes": [{"type": "circle", "radius": 1, "side": 2}]},
                    "drawing").endswith("shapes[0].side: unknown field")
    assert _refused(registry, {"shapes": [], "pair": [{"sku": "a", "quantity": 1, "z": 0}, 3]},
                    "drawing").endswith("pair[0].z: unknown field")


class Settings(TypedDict):
    """A TypedDict payload: the handler gets a validated dict."""

    level: int
    name: str


@dataclass
class Limits:
    """Constraints, dict keys that JSON writes as strings, tuples."""

    percent: Annotated[int, msgspec.Meta(ge=0, le=100)]
    by_code: dict[int, str] = field(default_factory=dict)
    span: tuple[int, Item] | None = None


def test_typed_dicts_constraints_and_int_keys() -> None:
    """TypedDicts, ``Annotated`` constraints, int-keyed dicts (string keys in JSON) and tuples."""
    seen: list[object] = []
    settings = _registry(Settings, seen.append, "settings")
    settings.tick("settings", {"level": 1, "name": "x"})
    assert _refused(settings, {"level": 1, "name": "x", "colour": "red"}, "settings").endswith(
        "colour: unknown field")
    limits = _registry(Limits, seen.append, "limits")
    limits.tick("limits", {"percent": 5, "by_code": {"1": "one"}, "span": [1, {"sku": "a", "quantity": 1}]})
    assert seen == [{"level": 1, "name": "x"}, Limits(5, {1: "one"}, (1, Item("a", 1)))]
    assert "percent: expected `int` <= 100" in _refused(limits, {"percent": 101}, "limits")
    assert _refused(limits, {"percent": 1, "span": [1, {"sku": "a", "quantity": 1, "z": 0}]},
                    "limits").endswith("span[1].z: unknown field")
    assert _registry(Limits, lambda x: Limits(1, {2: "two"}), "limits").tick("limits", {"percent": 1}) == Successor(
        "limits", {"percent": 1, "by_code": {"2": "two"}, "span": None})


@dataclass
class Checked:
    """A record whose own ``__post_init__`` refuses values."""

    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError("low must not exceed high\n(second line)")
        if self.low < 0:
            raise KeyError("negative")


def test_post_init_refusals_are_invalid_payloads() -> None:
    """A record's own checks refuse the payload in one line; never the worker's crash."""
    registry = _registry(Checked, name="range")
    assert "low must not exceed high" in _refused(registry, {"low": 2, "high": 1}, "range")
    assert _refused(registry, {"low": -1, "high": 1}, "range").endswith("KeyError: 'negative'")


# -- payload types that cannot work fail at load -----------------------------------------------


class Opaque:
    """Not a type a JSON value can fill."""


@dataclass
class HoldsOpaque:
    """A payload type with a field no JSON value can fill."""

    thing: Opaque


@dataclass
class MaybeOpaque:
    """The same, behind an optional."""

    thing: Opaque | None = None


@dataclass
class Unresolved:
    """A payload type whose annotation names something that does not exist."""

    thing: NoSuchType  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(
    ("payload_type", "match"),
    [(HoldsOpaque, "Opaque is not a type a JSON value can fill"),
     (MaybeOpaque, "Opaque is not a type a JSON value can fill"),
     (Unresolved, "NameError.*NoSuchType")],
    ids=["opaque-field", "optional-opaque-field", "unresolved-annotation"],
)
def test_unusable_payload_types_fail_at_load(payload_type: type, match: str) -> None:
    """A payload type that could never validate is a MachineLoadError (exit 2) when registered, in one line."""
    with pytest.raises(MachineLoadError, match=match) as info:
        _registry(payload_type)
    assert f"payload type {payload_type.__name__} of state 'order'" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize("payload_type", [dict, int, list[int], Item(sku="a", quantity=1)],
                         ids=["dict", "int", "generic", "instance"])
def test_machine_refuses_payload_types_that_are_not_records(payload_type: Any) -> None:
    """``payload=`` takes a record type: anything else is a programming error at import."""
    with pytest.raises(TypeError, match="takes a dataclass type"):
        machine("x", payload=payload_type)
