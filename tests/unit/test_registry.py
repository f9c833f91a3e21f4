"""The machine registry: marking, tick normalisation, payload validation, loading user code.

Loading is tested for real: machine files are written to ``tmp_path``, import paths
are made importable with ``monkeypatch.syspath_prepend``, and the entry-point group
is exercised through a real ``*.dist-info`` folder on a temporary ``sys.path``.
"""

from __future__ import annotations

import ast
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from martian_doves import builtin, registry
from martian_doves.errors import BadReturn, ConfigError, InvalidPayload, MachineLoadError, UnknownState
from martian_doves.loader import default_registry
from martian_doves.model import Successor
from martian_doves.registry import ENTRY_POINT_GROUP, MachineSpec, Registry, machine


@dataclass
class Light:
    """A typed payload used by the validation tests."""

    colour: str
    count: int = 0
    ratio: float = 1.0
    on: bool = True
    tags: list[str] = field(default_factory=list)


@pytest.fixture
def unique() -> str:
    """A module name no other test uses, so sys.modules never mixes tests up."""
    return f"doves_test_{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _forget_test_modules() -> Iterator[None]:
    """Modules imported by a test are removed afterwards (they live in its tmp_path)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith(("doves_test_", "doves_user_")):
            del sys.modules[name]


def _registry(name: str, handler: Any, payload: type | None = None) -> Registry:
    registry = Registry()
    registry.register(name, handler, payload)
    return registry


# -- marking ---------------------------------------------------------------------------


def test_machine_marks_without_a_global_registry() -> None:
    """``@machine`` only marks the function: no registry anywhere learns of it by import."""

    @machine("marked-only")
    def handler(payload: dict[str, Any]) -> None:
        return None

    assert handler({}) is None  # still the plain function
    assert isinstance(handler.__doves_machine__, MachineSpec)  # type: ignore[attr-defined]
    assert "marked-only" not in Registry()
    assert "marked-only" not in default_registry(entry_points=False)


def test_machine_rejects_bad_arguments() -> None:
    """An empty name or a payload type that is not a dataclass is a programming error at import."""
    with pytest.raises(TypeError):
        machine("")
    with pytest.raises(TypeError):
        machine("x", payload=dict)


def test_unknown_state_raises_unknown_state() -> None:
    """Looking up, validating or ticking an unregistered state is UnknownState (code unknown_state)."""
    registry = Registry()
    for call in (lambda: registry.spec("nope"), lambda: registry.validate("nope", {}),
                 lambda: registry.tick("nope", {})):
        with pytest.raises(UnknownState) as info:
            call()
        assert info.value.code == "unknown_state"


# -- tick normalisation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        (None, None),
        ({"count": 2}, ("s", {"count": 2})),
        ({}, ("s", {})),
        (("other", {"x": 1}), ("other", {"x": 1})),
        (("other", Light("red")), ("other", {"colour": "red", "count": 0, "ratio": 1.0, "on": True, "tags": []})),
        (Light("green", 3), ("s", {"colour": "green", "count": 3, "ratio": 1.0, "on": True, "tags": []})),
    ],
    ids=["none-ends", "dict-same-state", "empty-dict", "pair", "pair-with-dataclass", "dataclass"],
)
def test_tick_normalises_results(returned: Any, expected: Any) -> None:
    """None ends; a dict (or dataclass) continues in the same state; (state, dict) switches state."""
    result = _registry("s", lambda payload: returned).tick("s", {})
    assert result == (None if expected is None else Successor(*expected))


@pytest.mark.parametrize(
    "returned",
    [
        [1, 2],
        "next",
        42,
        True,
        ("other",),
        ("other", {"x": 1}, "extra"),
        ("", {"x": 1}),
        (3, {"x": 1}),
        ("other", [1]),
        ("other", None),
        {"a"},
    ],
    ids=["list", "str", "int", "bool", "1-tuple", "3-tuple", "empty-state", "int-state", "list-payload",
         "none-payload", "set"],
)
def test_tick_refuses_other_returns(returned: Any) -> None:
    """Anything outside the contract is BadReturn, naming the state and the returned type."""
    with pytest.raises(BadReturn) as info:
        _registry("s", lambda payload: returned).tick("s", {})
    assert info.value.code == "bad_return"
    assert "'s'" in info.value.message


def test_tick_passes_handler_exceptions_through() -> None:
    """A handler that raises propagates its own exception (the worker decides on retries)."""

    def boom(payload: dict[str, Any]) -> None:
        raise KeyError("count")

    with pytest.raises(KeyError):
        _registry("s", boom).tick("s", {})


# -- payload dataclasses -------------------------------------------------------------------


def test_typed_handler_receives_the_dataclass() -> None:
    """With ``payload=`` the handler gets an instance, converted from the JSON payload."""
    seen: list[Light] = []

    def handler(light: Light) -> None:
        seen.append(light)

    _registry("light", handler, Light).tick("light", {"colour": "red", "count": 2, "ratio": 3, "tags": ["a"]})
    assert seen == [Light("red", 2, 3, True, ["a"])]


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({}, "does not fit Light: object missing required field `colour`"),
        ({"count": 1}, "missing required field `colour`"),
        ({"colour": 3}, "colour: expected `str`, got `int`"),
        ({"colour": "red", "count": "3"}, "count: expected `int`, got `str`"),
        ({"colour": "red", "count": True}, "count: expected `int`, got `bool`"),
        ({"colour": "red", "count": 1.5}, "count: expected `int`, got `float`"),
        ({"colour": "red", "ratio": "fast"}, "ratio: expected `float`, got `str`"),
        ({"colour": "red", "on": 1}, "on: expected `bool`, got `int`"),
        ({"colour": "red", "tags": "a,b"}, "tags: expected `array`, got `str`"),
        ({"colour": "red", "brightness": 3}, "brightness: unknown field"),
    ],
    ids=["empty", "missing-required", "wrong-str", "str-for-int", "bool-for-int", "float-for-int",
         "str-for-float", "int-for-bool", "str-for-list", "unknown-field"],
)
def test_invalid_payload_is_refused_before_the_tick(payload: dict[str, Any], match: str) -> None:
    """A payload that does not fit the dataclass is InvalidPayload, and the handler never runs."""
    calls: list[object] = []
    registry = _registry("light", calls.append, Light)
    with pytest.raises(InvalidPayload, match=match) as info:
        registry.validate("light", payload)
    assert info.value.code == "invalid_payload"
    assert info.value.message.startswith("payload of 'light' does not fit Light: ")
    with pytest.raises(InvalidPayload):
        registry.tick("light", payload)
    assert calls == []


def test_valid_payload_passes_validation() -> None:
    """An int where a float is declared is fine (JSON has one number type)."""
    _registry("light", lambda light: None, Light).validate("light", {"colour": "red", "ratio": 2})


def test_untyped_handler_skips_validation() -> None:
    """Without ``payload=`` anything that is a JSON object is accepted."""
    _registry("free", lambda payload: None).validate("free", {"anything": [1, {"x": None}]})


# -- loading from files and import paths ----------------------------------------------------


def _write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


MACHINES_SOURCE = """
    from __future__ import annotations
    from martian_doves import machine

    @machine("ping")
    def ping(payload):
        return ("pong", payload)

    @machine("pong")
    def pong(payload):
        return None
"""


def test_load_a_py_file(tmp_path: Path) -> None:
    """A ``.py`` file's ``@machine`` handlers are registered and run."""
    path = _write(tmp_path / "my_machines.py", MACHINES_SOURCE)
    registry = Registry()
    assert registry.load(str(path)) == 2
    assert registry.names() == ["ping", "pong"]
    assert registry.tick("ping", {"n": 1}) == Successor("pong", {"n": 1})
    assert registry.sources == [str(path)]


def test_load_the_same_file_twice_is_harmless(tmp_path: Path) -> None:
    """Loading a file again (a worker re-reading its sources) is not a duplicate definition."""
    path = _write(tmp_path / "my_machines.py", MACHINES_SOURCE)
    registry = Registry()
    registry.load(str(path))
    registry.load(str(path))
    assert registry.names() == ["ping", "pong"]


def test_load_an_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str) -> None:
    """An import path (``pkg.machines``) is imported and its handlers registered."""
    package = tmp_path / unique
    package.mkdir()
    (package / "__init__.py").write_text("")
    _write(package / "machines.py", MACHINES_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    assert registry.load(f"{unique}.machines") == 2
    assert "ping" in registry


def test_a_typed_machine_in_a_file(tmp_path: Path) -> None:
    """A file may declare a dataclass payload; validation uses it."""
    path = _write(tmp_path / "typed.py", """
        from __future__ import annotations
        from dataclasses import dataclass
        from martian_doves import machine

        @dataclass
        class Order:
            item: str
            quantity: int

        @machine("order", payload=Order)
        def order(o: Order):
            return None
    """)
    registry = Registry()
    registry.load(str(path))
    registry.validate("order", {"item": "dove", "quantity": 2})
    with pytest.raises(InvalidPayload):
        registry.validate("order", {"item": "dove", "quantity": "two"})


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("def broken(:\n    pass\n", "SyntaxError"),
        ("x = 1\n", "no @machine handlers found"),
        ("import doves_no_such_module_anywhere\n", "ModuleNotFoundError"),
        ("raise RuntimeError('first line\\nsecond line\\n  third')\n", "RuntimeError: first line"),
    ],
    ids=["syntax-error", "no-machines", "bad-import", "multi-line-error"],
)
def test_bad_machine_files_fail_with_one_line(tmp_path: Path, source: str, match: str) -> None:
    """A file that cannot give machines is a MachineLoadError (a ConfigError: exit 2) in one line."""
    path = tmp_path / "bad_machines.py"
    path.write_text(source)
    with pytest.raises(MachineLoadError, match=match) as info:
        Registry().load(str(path))
    assert isinstance(info.value, ConfigError)
    assert "\n" not in info.value.message
    assert "bad_machines.py" in info.value.message


def test_missing_file_fails_with_one_line(tmp_path: Path) -> None:
    """A ``.py`` path that does not exist says so."""
    with pytest.raises(MachineLoadError, match="not found") as info:
        Registry().load(str(tmp_path / "nowhere.py"))
    assert "\n" not in info.value.message


def test_missing_module_fails_with_one_line() -> None:
    """An import path that does not import says which and why."""
    with pytest.raises(MachineLoadError, match=r"doves_no_such_pkg\.machines") as info:
        Registry().load("doves_no_such_pkg.machines")
    assert "\n" not in info.value.message


def test_duplicate_state_name_across_sources(tmp_path: Path) -> None:
    """Two different handlers for one state name are refused, never silently replaced."""
    first = _write(tmp_path / "first.py", MACHINES_SOURCE)
    second = _write(tmp_path / "second.py", """
        from martian_doves import machine

        @machine("ping")
        def another_ping(payload):
            return None
    """)
    registry = Registry()
    registry.load(str(first))
    with pytest.raises(MachineLoadError, match="'ping' is defined twice"):
        registry.load(str(second))
    assert registry.tick("ping", {}) == Successor("pong", {})  # the first definition still stands


def test_duplicate_state_name_within_a_file(tmp_path: Path) -> None:
    """Two handlers for one state in a single file are refused too."""
    path = _write(tmp_path / "dup.py", """
        from martian_doves import machine

        @machine("same")
        def one(payload):
            return None

        @machine("same")
        def two(payload):
            return None
    """)
    with pytest.raises(MachineLoadError, match="defined twice"):
        Registry().load(str(path))


def test_a_user_machine_may_not_shadow_a_builtin(tmp_path: Path) -> None:
    """default_registry refuses a source that redefines a built-in state."""
    path = _write(tmp_path / "shadow.py", """
        from martian_doves import machine

        @machine("countdown")
        def my_countdown(payload):
            return None
    """)
    with pytest.raises(MachineLoadError, match="'countdown' is defined twice"):
        default_registry([str(path)], entry_points=False)


def _imported_modules(module: Any) -> set[str]:
    """Every module ``module``'s source imports, at the top or inside functions."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(Path(module.__file__).read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    return imported


def test_the_registry_never_imports_the_builtins_back() -> None:
    """builtin marks its machines with registry.machine, so registry must not import builtin (or the
    loader that assembles both), not even inside a function: no import cycle."""
    assert "martian_doves.registry" in _imported_modules(builtin)
    assert not {"martian_doves.builtin", "martian_doves.loader"} & _imported_modules(registry)


def test_default_registry_has_the_builtins() -> None:
    """The seed's machines and the traffic-light example are always there."""
    names = default_registry(entry_points=False).names()
    for name in ("simple", "countdown", "slow-countdown", "traffic-light-green", "traffic-light-yellow",
                 "traffic-light-red"):
        assert name in names
    assert Registry().load_module(builtin) == len(names)


# -- entry points ---------------------------------------------------------------------------


def _dist(site: Path, dist: str, entry_points: str) -> None:
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_entry_point_group_loads_modules_and_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     unique: str) -> None:
    """Installed packages publish machines under ``martian_doves.machines``: modules or single handlers."""
    site = tmp_path / "site"
    site.mkdir()
    _write(site / f"{unique}_mod.py", MACHINES_SOURCE)
    _write(site / f"{unique}_one.py", """
        from martian_doves import machine

        @machine("solo")
        def solo(payload):
            return {"n": 1}
    """)
    _dist(site, f"{unique}_dist", f"""
        [{ENTRY_POINT_GROUP}]
        mod = {unique}_mod
        one = {unique}_one:solo
    """)
    monkeypatch.syspath_prepend(str(site))
    registry = Registry()
    assert registry.load_entry_points() == 3
    assert {"ping", "pong", "solo"} <= set(registry.names())
    registry = default_registry()
    assert "solo" in registry and "countdown" in registry


@pytest.mark.parametrize(
    ("target", "match"),
    [("{unique}_missing", "ModuleNotFoundError"), ("{unique}_plain:value", "not a @machine module")],
    ids=["unimportable", "not-a-machine"],
)
def test_broken_entry_point_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unique: str,
                                                target: str, match: str) -> None:
    """A broken entry point is a MachineLoadError that names it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{unique}_plain.py").write_text("value = 3\n")
    _dist(site, f"{unique}_broken", f"[{ENTRY_POINT_GROUP}]\nbroken = {target.format(unique=unique)}\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(MachineLoadError, match=match) as info:
        Registry().load_entry_points()
    assert "'broken'" in info.value.message
    assert "\n" not in info.value.message


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "returned",
    [("bad\nstate", {}), ("x" * 201, {}), ("   ", {}), {"nested": _nested(100)}, ("next", {"nested": _nested(100)})],
    ids=["control-char", "too-long", "blank", "too-deep", "too-deep-pair"],
)
def test_tick_refuses_successors_that_no_state_file_could_hold(returned: Any) -> None:
    """The successor's state name and payload obey the same rules as a state file's, so every store
    fails the producing state (bad_return) instead of writing something unreadable."""
    with pytest.raises(BadReturn, match="'s'"):
        _registry("s", lambda payload: returned).tick("s", {})


def test_tick_accepts_a_reasonably_nested_successor() -> None:
    """Nesting well within the limit is an ordinary successor."""
    returned = ("next", {"nested": _nested(30), "x": None})
    assert _registry("s", lambda payload: returned).tick("s", {}) == Successor(*returned)
