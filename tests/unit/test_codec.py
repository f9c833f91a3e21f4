"""The state-file codec: JSON only, validated, safely named, successor naming.

These tests pin down what a state file may be before any store sees it: what
decodes, what is refused with which stable error, which directory entries count as
state files, and which names a successor may take.
"""

from __future__ import annotations

import json
from itertools import islice

import pytest

from martian_doves import codec
from martian_doves.errors import CodecError, FileTooLarge, InvalidDocument, MalformedJSON, UnsafeName
from martian_doves.model import State


def _doc(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# -- decode / encode ------------------------------------------------------------------


def test_round_trip_keeps_state_payload_and_parent() -> None:
    """encode then decode gives back the same state, parent included."""
    state = State("x.state-1", "countdown", {"count": 4, "nested": {"a": [1, 2.5, None, True]}}, parent="x.state")
    assert codec.decode(codec.encode(state), "x.state-1") == state


def test_round_trip_of_a_root_has_no_parent_key() -> None:
    """A root state's file carries no ``parent`` key, as the seed's files do."""
    state = State("x.state", "simple", {"target": "Hello."})
    raw = codec.encode(state)
    assert "parent" not in json.loads(raw)
    assert codec.decode(raw, "x.state") == state


def test_encode_looks_like_the_seed_files() -> None:
    """Files are indented JSON ending in a newline, readable by a human and by any JSON tool."""
    raw = codec.encode(State("x.state", "countdown", {"count": 5}))
    assert raw.endswith(b"\n")
    assert json.loads(raw) == {"state": "countdown", "payload": {"count": 5}}
    assert b'\n    "state": "countdown"' in raw


def test_non_ascii_payload_round_trips() -> None:
    """UTF-8 text survives a round trip unchanged."""
    state = State("x.state", "simple", {"target": "Grüß dich, 火星の鳩"})
    assert codec.decode(codec.encode(state), "x.state").payload == state.payload


def test_parent_is_kept_when_decoding() -> None:
    """The ``parent`` key is how a re-run recognises the successor it wrote before."""
    state = codec.decode(_doc(state="countdown", payload={"count": 1}, parent="c.state"), "c.state-1")
    assert state.parent == "c.state"


def test_unknown_extra_keys_are_ignored() -> None:
    """Files written by later versions (extra top-level keys) still load."""
    state = codec.decode(_doc(state="simple", payload={"target": "x"}, priority=3, meta={"a": 1}), "x.state")
    assert state == State("x.state", "simple", {"target": "x"})


def test_missing_payload_defaults_to_empty() -> None:
    """A document without ``payload`` has an empty payload (the optional field has a default)."""
    assert codec.decode(_doc(state="simple"), "x.state").payload == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b'{"state": "simple", "payload": {}',
        b'{"state": "simple", "payload": {"n": NaN}}',
        b'{"state": "simple", "payload": {"n": Infinity}}',
        b"\xef\xbb\xbf" + b'{"state": "simple"}',
    ],
    ids=["garbage", "empty", "truncated", "nan", "infinity", "bom"],
)
def test_malformed_json_is_refused(raw: bytes) -> None:
    """Anything that is not strict JSON (RFC 8259: no NaN/Infinity) is MalformedJSON, with the file name."""
    with pytest.raises(MalformedJSON) as info:
        codec.decode(raw, "bad.state")
    assert info.value.code == "malformed_json"
    assert "bad.state" in info.value.message


def test_undecodable_bytes_are_malformed_json() -> None:
    """Bytes that are not UTF-8 are refused as MalformedJSON, not a UnicodeDecodeError."""
    with pytest.raises(MalformedJSON, match="not UTF-8"):
        codec.decode(b"\xff\xfe\x00{\x00}", "bad.state")


def test_huge_integer_literal_is_a_codec_error() -> None:
    """A number longer than Python's int-conversion limit is a CodecError, not a stray ValueError.

    Without this the error escapes every ``except CodecError`` in the stores and one
    bad file crashes the worker that claims it.
    """
    raw = b'{"state": "simple", "payload": {"n": ' + b"7" * 5000 + b"}}"
    with pytest.raises(MalformedJSON):
        codec.decode(raw, "big.state")


@pytest.mark.parametrize(
    ("doc", "what"),
    [
        ([1, 2, 3], "list"),
        ("countdown", "str"),
        (42, "int"),
        (None, "NoneType"),
    ],
)
def test_non_object_top_level_is_invalid(doc: object, what: str) -> None:
    """The top level must be an object; the message names what it was instead."""
    with pytest.raises(InvalidDocument, match=f"got {what}") as info:
        codec.decode(json.dumps(doc).encode(), "bad.state")
    assert info.value.code == "invalid_document"


@pytest.mark.parametrize(
    "doc",
    [
        {"payload": {}},
        {"state": "", "payload": {}},
        {"state": "   ", "payload": {}},
        {"state": None, "payload": {}},
        {"state": 3, "payload": {}},
        {"state": "a\nb", "payload": {}},
        {"state": "x" * (codec.MAX_STATE_NAME_CHARS + 1), "payload": {}},
    ],
    ids=["missing", "empty", "blank", "null", "number", "control-char", "too-long"],
)
def test_missing_or_bad_state_name_is_invalid(doc: dict[str, object]) -> None:
    """``state`` must be a non-empty, printable, bounded string."""
    with pytest.raises(InvalidDocument):
        codec.decode(json.dumps(doc).encode(), "bad.state")


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None, True])
def test_non_dict_payload_is_invalid(payload: object) -> None:
    """``payload`` must be an object when present (``null`` included)."""
    with pytest.raises(InvalidDocument, match="payload"):
        codec.decode(_doc(state="simple", payload=payload), "bad.state")


def test_non_string_parent_is_invalid() -> None:
    """A ``parent`` that is not a string is refused (it is used to find lineages)."""
    with pytest.raises(InvalidDocument, match="parent"):
        codec.decode(_doc(state="simple", payload={}, parent=7), "bad.state")


@pytest.mark.parametrize("parent", [
    "/etc/passwd", "/tmp/outside/victim.state", "../victim.state", "../../x.state-1", "sub/x.state", "..", ".",
    "", ".hidden.state", "notes.txt", "x.state\n", "x\x1b[31m.state", "x.state\x00", "a\\b.state",
    "y" * 300 + ".state",
])
def test_a_parent_that_is_not_a_state_file_name_is_invalid(parent: str) -> None:
    """``parent`` is a name in the same store, never a path: anything else makes the file invalid,
    so no store joins it to its folder and reads (history) or decides on (reset) a file outside."""
    with pytest.raises(InvalidDocument, match="parent") as caught:
        codec.decode(json.dumps({"state": "simple", "payload": {}, "parent": parent}).encode(), "bad.state")
    assert len(caught.value.message) < 200  # a huge field is not quoted whole


@pytest.mark.parametrize("parent", ["x.state", "x.state-3", "x.state-3~2", "my machine.state-12", "été.state"])
def test_a_parent_that_is_a_state_file_name_is_kept(parent: str) -> None:
    raw = json.dumps({"state": "simple", "payload": {}, "parent": parent}).encode()
    assert codec.decode(raw, "child.state").parent == parent


@pytest.mark.parametrize("where", ["top", "payload"])
def test_100k_nested_lists_are_refused_without_crashing(where: str) -> None:
    """A deeply nested document is refused with a CodecError; no RecursionError or crash escapes."""
    deep = b"[" * 100_000 + b"]" * 100_000
    raw = deep if where == "top" else b'{"state": "simple", "payload": {"x": ' + deep + b"}}"
    with pytest.raises((MalformedJSON, InvalidDocument)):
        codec.decode(raw, "deep.state")


def test_payload_nested_beyond_max_depth_is_invalid() -> None:
    """Parseable but absurdly deep payloads are refused before any handler sees them."""
    depth = codec.MAX_DEPTH + 5
    raw = b'{"state": "simple", "payload": {"x": ' + b"[" * depth + b"]" * depth + b"}}"
    with pytest.raises(InvalidDocument, match="nested"):
        codec.decode(raw, "deep.state")


def test_payload_at_a_sane_depth_is_accepted() -> None:
    """The depth limit does not refuse ordinary nesting."""
    raw = b'{"state": "simple", "payload": {"x": ' + b"[" * 20 + b"]" * 20 + b"}}"
    assert codec.decode(raw, "ok.state").payload == {"x": json.loads(b"[" * 20 + b"]" * 20)}


@pytest.mark.parametrize(("payload", "match"), [
    ({"when": object()}, "holds a object, which is not JSON"),
    ({"tags": {1, 2}}, "holds a set"),
    ({"x": float("nan")}, "nan, which is not JSON"),
    ({"x": [float("inf")]}, "inf, which is not JSON"),
    ({1: "int key"}, "key 1 is not a string"),
])
def test_encode_refuses_unserialisable_payload(payload: dict[object, object], match: str) -> None:
    """A handler returning something JSON cannot hold gets a CodecError, not a TypeError."""
    with pytest.raises(InvalidDocument, match=match):
        codec.encode(State("x.state-1", "countdown", payload))  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [{"x": "a\x00b"}, {"a\x00b": 1}, {"deep": [{"x": "\ud800"}]}])
def test_text_no_store_can_hold_is_refused_everywhere(payload: dict[str, object]) -> None:
    """NUL is valid JSON but PostgreSQL's jsonb refuses it; a lone surrogate is not Unicode.
    Refused in files, in handler returns and in encoding alike, so a payload never works in
    one store and breaks a worker in another."""
    with pytest.raises(InvalidDocument, match=r"NUL|lone surrogate"):
        codec.encode(State("x.state", "countdown", payload))
    raw = json.dumps({"state": "countdown", "payload": payload}).encode()
    with pytest.raises(InvalidDocument, match=r"NUL|lone surrogate"):
        codec.decode(raw, "x.state")


def test_encode_enforces_the_size_limit() -> None:
    state = State("big.state", "countdown", {"blob": "x" * 5000})
    assert len(codec.encode(state, max_bytes=6000)) < 6000
    with pytest.raises(FileTooLarge, match="over the 1000-byte limit"):
        codec.encode(state, max_bytes=1000)


def test_encode_refuses_nan() -> None:
    """NaN is not JSON: it must never be written into a state file."""
    with pytest.raises(CodecError):
        codec.encode(State("x.state-1", "countdown", {"n": float("nan")}))


# -- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "a/b",
        "../x.state",
        "a\\b.state",
        "x\x00.state",
        "x\n.state",
        "x\r.state",
        "x\t.state",
        "x\x1b[31m.state",
        "x\x7f.state",
        "x\u200b.state",
        ".hidden.state",
        "x" * (codec.MAX_NAME_BYTES + 1),
        "é" * (codec.MAX_NAME_BYTES // 2 + 1),
    ],
    ids=[
        "empty", "dot", "dotdot", "slash", "parent-path", "backslash", "nul", "newline", "cr", "tab",
        "escape", "del", "zero-width", "hidden", "too-long", "too-long-utf8",
    ],
)
def test_check_name_rejects_unsafe_names(name: str) -> None:
    """Only a single, visible, printable path component of bounded length is a safe name."""
    with pytest.raises(UnsafeName) as info:
        codec.check_name(name)
    assert info.value.code == "unsafe_name"


@pytest.mark.parametrize("name", ["x.state", "countdown.state-12", "a b.state", "grüße.state", "x.state-3~2"])
def test_check_name_accepts_ordinary_names(name: str) -> None:
    """Ordinary names, spaces and non-ASCII letters included, are safe."""
    codec.check_name(name)


@pytest.mark.parametrize("name", ["x.state", "x.state-3", "x.state-3~2", "a.b.state", "x.state~2"])
def test_is_state_file_name_accepts(name: str) -> None:
    """``*.state``, ``*.state-N`` and branch names ``*.state-N~B`` are state files."""
    assert codec.is_state_file_name(name)


@pytest.mark.parametrize(
    "name",
    ["notes.statement.txt", "x.states", ".x.state", "README.md", "x.state-", "x.state-a", "x.state.bak", ".state"],
)
def test_is_state_file_name_rejects(name: str) -> None:
    """Other files in a store folder (notes, READMEs, hidden temporaries) are not state files."""
    assert not codec.is_state_file_name(name)


@pytest.mark.parametrize(
    ("name", "is_state"),
    [("a\nb.state", True), ("a\rb.state", True), ("x.state\n", False), ("x.state\n-1", False)],
    ids=["inner-lf", "inner-cr", "trailing-lf", "lf-before-step"],
)
def test_names_with_line_breaks_are_judged_by_their_end(name: str, is_state: bool) -> None:
    """Whether a name is a state file depends only on how it ends, line breaks or not.

    ``is_state_file_name`` decides whether a store picks an entry up (and quarantines it
    if unsafe); if a line break hid ``a<LF>b.state`` from it, that unsafe name would sit
    in the store forever instead of going to ``failed/`` as ``unsafe_name``.
    """
    assert codec.is_state_file_name(name) is is_state
    with pytest.raises(UnsafeName):
        codec.check_name(name)


# -- successor naming ------------------------------------------------------------------


def test_successor_names_follow_the_seed() -> None:
    """x.state → x.state-1 → x.state-2: the first candidate is always the seed's name."""
    assert next(codec.successor_names("x.state")) == "x.state-1"
    assert next(codec.successor_names("x.state-1")) == "x.state-2"
    assert next(codec.successor_names("countdown.state-41")) == "countdown.state-42"


def test_successor_names_branch_when_taken() -> None:
    """When the seed's name is taken by another machine, the candidates are branches ~2, ~3 ..."""
    expected = ["x.state-1", "x.state-1~2", "x.state-1~3", "x.state-1~4"]
    assert list(islice(codec.successor_names("x.state"), 4)) == expected


def test_a_branch_keeps_its_branch() -> None:
    """A lineage that branched stays on its branch, so it never collides with the main line."""
    assert list(islice(codec.successor_names("x.state-1~2"), 3)) == ["x.state-2~2", "x.state-2~3", "x.state-2~4"]


def test_successor_names_are_deterministic_and_safe() -> None:
    """The sequence depends only on the parent name (a re-run finds its earlier successor)."""
    first = list(islice(codec.successor_names("job.state-7~3"), 50))
    assert first == list(islice(codec.successor_names("job.state-7~3"), 50))
    assert len(set(first)) == 50
    for name in first:
        codec.check_name(name)
        assert codec.is_state_file_name(name)


def test_successor_names_are_finite() -> None:
    """After 10000 branches the generator gives up with UnsafeName instead of looping forever."""
    names = codec.successor_names("x.state")
    for _ in range(10_000):
        next(names)
    with pytest.raises(UnsafeName):
        next(names)



@pytest.mark.parametrize("parent", ["x.state", "x.state-1", "x.state-1~2", "job.state-7~3", "a.state-9~9999"])
def test_is_successor_name_agrees_with_successor_names(parent: str) -> None:
    """Every name a commit may give ``parent``'s successor is recognised, and nothing else."""
    candidates: set[str] = set()
    names = codec.successor_names(parent)
    with pytest.raises(UnsafeName):
        while True:
            candidates.add(next(names))
    assert all(codec.is_successor_name(name, parent) for name in candidates)
    near = ["x.state", "x.state-0", "x.state-1", "x.state-2", "x.state-1~1", "x.state-1~02", "x.state-1~",
            "x.state-1~x", "x.state-1~\u00b2", "x.state-1~10000", "x.state-1~10001", "x.state-2~2", "x.state-2~10002",
            "y.state-1", "job.state-8~3", "job.state-8", "job.state-8~10002", "a.state-10~9999", "a.state-10",
            "a.state-10~19998", "a.state-10~19999", f"{parent}-1"]
    for name in near:
        assert codec.is_successor_name(name, parent) == (name in candidates), name


@pytest.mark.parametrize(("name", "parent"), [
    ("x.state-1", "x.state"), ("x.state-3", "x.state-2"), ("a-1.state-10", "a-1.state-9"),
    ("x.state", None), ("x.state-1~2", None), ("x.state-01", None), ("x.state-0", None), ("notes.txt", None),
])
def test_first_parent_name_inverts_the_seed_s_naming(name: str, parent: str | None) -> None:
    assert codec.first_parent_name(name) == parent
    if parent is not None:
        assert next(codec.successor_names(parent)) == name


@pytest.mark.parametrize(("name", "spawner"), [
    ("x.state+0.state", "x.state"), ("x.state-1+12~2.state", "x.state-1"),
    ("x.state+0.state+3.state", "x.state+0.state"),
    ("x.state", None), ("x.state-1", None), ("+0.state", None), ("x.state+0.state-1", None), ("x.state+a.state", None),
])
def test_spawner_name_inverts_child_naming(name: str, spawner: str | None) -> None:
    assert codec.spawner_name(name) == spawner
    if spawner is not None and "~" not in name:
        assert next(codec.child_names(spawner, int(name[len(spawner) + 1:-len(".state")]))) == name
