"""Typed payloads: a state's JSON payload validated into the handler's type, and back to JSON.

``@machine("order", payload=Order)`` names a dataclass (or a ``msgspec.Struct`` or a
``TypedDict``). msgspec validates and converts the payload before
the tick: nested records become instances, lists and dicts are checked item by
item, optional types, literals, enums and ``Annotated[..., msgspec.Meta(...)]``
constraints hold, and nothing is coerced (``"3"`` is not an int, ``1`` is not a bool;
an int is a float, as JSON has one number type). It was chosen over pydantic v2 for
the hot path and the install: about 3 µs to convert and check a typical payload
against 7 µs for pydantic's strict mode (which takes only JSON text; its lax mode
turns ``"3"`` into 3), and a wheel of 230 KB against 2.8 MB (``bench/bench_payloads.py``).

msgspec ignores unknown fields of dataclasses and TypedDicts (only a
``Struct`` can forbid them), so a check compiled once per payload type from msgspec's
own description of the type walks the parts of a payload that are records and
refuses any field the record does not declare, at every depth.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
import msgspec.inspect as mi

from martian_doves.errors import InvalidPayload
from martian_doves.model import JSONDict
from martian_doves.text import describe_error, one_line

#: Checks the unknown fields of one (already converted) JSON value; raises ``_UnknownField``.
_Check = Callable[[Any], None]
#: msgspec's descriptions of record types: encoded as JSON objects with named fields.
_RECORDS = (mi.DataclassType, mi.StructType, mi.TypedDictType)
#: msgspec's descriptions of types encoded as JSON arrays of like items.
_SEQUENCES = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)


def is_payload_type(obj: object) -> bool:
    """Whether ``obj`` is a record type a payload can be validated into.

    Args:
        obj: what ``@machine(payload=...)`` was given.

    Returns:
        True for a dataclass, ``msgspec.Struct`` or ``TypedDict`` type.
    """
    return isinstance(obj, type) and (
        dataclasses.is_dataclass(obj) or issubclass(obj, msgspec.Struct) or typing.is_typeddict(obj)
    )


def to_json_value(value: Any) -> Any:
    """A record instance a handler returned as plain JSON values; anything else unchanged.

    Nested records become dicts, enums their values, sets and tuples lists, and dict
    keys strings, so the codec sees only what a state file can hold.

    Raises:
        TypeError: the record holds a value JSON cannot represent.
    """
    if isinstance(value, msgspec.Struct) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        return msgspec.to_builtins(value, str_keys=True)
    return value


class PayloadType:
    """A payload type prepared once: validates JSON payloads into instances of it.

    Args:
        cls: a type for which ``is_payload_type`` holds.

    Raises:
        TypeError: one line: an annotation does not resolve, or a field's type is
            one no JSON value can fill.
    """

    def __init__(self, cls: type) -> None:
        #: The record type handlers receive.
        self.cls = cls
        try:
            info = mi.type_info(cls)
        except Exception as e:  # NameError of an unresolved annotation, TypeError of msgspec
            raise TypeError(describe_error(e)) from e
        if not isinstance(info, _RECORDS) or (isinstance(info, mi.StructType) and info.array_like):
            raise TypeError(f"{cls.__name__} is not encoded as a JSON object")
        #: Refuses fields the type's records do not declare (msgspec ignores them).
        self._check_unknown = _record(info, {})

    def convert(self, state_name: str, payload: JSONDict) -> Any:
        """``payload`` as an instance of the type.

        Args:
            state_name: the state, for the message.
            payload: the state's JSON payload.

        Returns:
            An instance of ``cls``, nested records converted too.

        Raises:
            InvalidPayload: one line naming the state, the type and the field that does not fit.
        """
        try:
            value: Any = msgspec.convert(payload, self.cls, str_keys=True)
            self._check_unknown(payload)
        except msgspec.ValidationError as e:
            raise InvalidPayload(self._message(state_name, *_split_path(str(e)))) from e
        except _UnknownField as e:
            path = "".join(reversed(e.path))
            raise InvalidPayload(self._message(state_name, "unknown field", f"{path}.{e.name}")) from e
        except Exception as e:  # a __post_init__ that raises something else still only refuses the payload
            raise InvalidPayload(self._message(state_name, describe_error(e), "")) from e
        return value

    def _message(self, state_name: str, problem: str, path: str) -> str:
        where = f"{path.lstrip('.')}: " if path else ""
        return one_line(f"payload of {state_name!r} does not fit {self.cls.__name__}: {where}{problem}")


def _split_path(message: str) -> tuple[str, str]:
    """msgspec's ``"Expected `int`, got `str` - at `$.items[0].n`"`` as the problem and the path (``.items[0].n``)."""
    problem, marker, rest = message.rpartition(" - at `$")
    if not marker or not rest.endswith("`"):
        problem, rest = message, "`"
    if problem[:2].istitle():  # "Expected `int`, got `str`" reads on after the field's name
        problem = problem[0].lower() + problem[1:]
    return problem, rest[:-1]


class _UnknownField(Exception):
    """A record in the payload has a field its type does not declare."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name
        #: Path pieces from the record outwards, added as the error passes each level.
        self.path: list[str] = []


def _compile(info: mi.Type, records: dict[int, _Check]) -> _Check | None:
    """A check of the unknown fields in values of type ``info``; None if it holds no record."""
    info = _unwrap(info)
    if isinstance(info, mi.CustomType):
        raise TypeError(f"{info.cls.__name__} is not a type a JSON value can fill")
    if isinstance(info, _RECORDS):
        return _record(info, records)
    if isinstance(info, _SEQUENCES):
        item = _compile(info.item_type, records)
        # An endless repeat of one check: zip takes one per element, however many calls.
        return None if item is None else _by_position(itertools.repeat(item))
    if isinstance(info, mi.TupleType):
        positions = [_compile(item_type, records) for item_type in info.item_types]
        return None if all(check is None for check in positions) else _by_position(positions)
    if isinstance(info, mi.DictType):
        value = _compile(info.value_type, records)
        return None if value is None else _by_key(value)
    if isinstance(info, mi.UnionType):
        return _union(info, records)
    return None


def _record(info: mi.DataclassType | mi.StructType | mi.TypedDictType, records: dict[int, _Check]) -> _Check:
    known = records.get(id(info))
    if known is not None:  # a recursive type: its check is being built further up
        return known
    # The fields' checks are filled in below, once this record's own check is known to them.
    if _array_like(info):
        positions: list[_Check | None] = []
        check = _by_position(positions)
        records[id(info)] = check
        positions.extend(_compile(field.type, records) for field in info.fields)
        return check
    names = {field.encode_name for field in info.fields}
    if isinstance(info, mi.StructType) and info.tag_field is not None:
        names.add(info.tag_field)
    fields: dict[str, _Check] = {}
    check = _named_fields(fields, frozenset(names))
    records[id(info)] = check
    checks = {field.encode_name: _compile(field.type, records) for field in info.fields}
    fields.update((name, field_check) for name, field_check in checks.items() if field_check is not None)
    return check


def _named_fields(fields: dict[str, _Check], allowed: frozenset[str]) -> _Check:
    """A record encoded as a JSON object: no other keys, and its fields' own checks."""

    def check(value: Any) -> None:
        if not allowed.issuperset(value):  # no set built on the way that passes
            raise _UnknownField(min(value.keys() - allowed))
        for name, field_check in fields.items():
            if name in value:
                try:
                    field_check(value[name])
                except _UnknownField as e:
                    e.path.append(f".{name}")
                    raise

    return check


def _by_position(checks: Iterable[_Check | None]) -> _Check:
    """A JSON array: lists and sets (one check, repeated), tuples and array-like Structs (one per position)."""

    def check(value: Any) -> None:
        for index, (element_check, element) in enumerate(zip(checks, value, strict=False)):
            if element_check is not None:
                try:
                    element_check(element)
                except _UnknownField as e:
                    e.path.append(f"[{index}]")
                    raise

    return check


def _by_key(item: _Check) -> _Check:
    """A dict's values."""

    def check(value: Any) -> None:
        for key, element in value.items():
            try:
                item(element)
            except _UnknownField as e:
                e.path.append(f"[{key!r}]")
                raise

    return check


def _union(info: mi.UnionType, records: dict[int, _Check]) -> _Check | None:
    """msgspec allows one object-like and one array-like member (tagged Structs aside):
    the JSON kind of a converted value says which member it is."""
    members = [_unwrap(member) for member in info.types]
    for member in members:
        if isinstance(member, mi.CustomType):
            _compile(member, records)  # refuses it
    objects = [m for m in members if isinstance(m, (*_RECORDS, mi.DictType)) and not _array_like(m)]
    arrays = [m for m in members if isinstance(m, (*_SEQUENCES, mi.TupleType)) or _array_like(m)]
    on_object = _tagged(objects, records) if len(objects) > 1 else _compile(objects[0], records) if objects else None
    on_array = _compile(arrays[0], records) if len(arrays) == 1 else None
    if on_object is None and on_array is None:
        return None

    def check(value: Any) -> None:
        if isinstance(value, dict):
            if on_object is not None:
                on_object(value)
        elif isinstance(value, list) and on_array is not None:
            on_array(value)

    return check


def _tagged(members: Sequence[mi.Type], records: dict[int, _Check]) -> _Check | None:
    """A union of tagged Structs: the tag field's value picks the member."""
    by_tag: dict[object, _Check] = {}
    tag_field = ""
    for member in members:
        if isinstance(member, mi.StructType) and member.tag_field is not None:
            tag_field = member.tag_field
            by_tag[member.tag] = _record(member, records)
    if not by_tag:
        return None

    def check(value: Any) -> None:
        member_check = by_tag.get(value.get(tag_field))
        if member_check is not None:
            member_check(value)

    return check


def _unwrap(info: mi.Type) -> mi.Type:
    while isinstance(info, mi.Metadata):
        info = info.type
    return info


def _array_like(info: mi.Type) -> bool:
    return isinstance(info, mi.StructType) and info.array_like
