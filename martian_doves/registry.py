"""Machine registry: state name → handler, and loading user machine modules.

There is no global registry (an import-time singleton is what dramatiq users
fought for years): ``@machine`` only marks a function or class, and a ``Registry``
collects the marked objects of the modules it is asked to load.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from martian_doves.contract import successor_of
from martian_doves.errors import MachineLoadError, UnknownState
from martian_doves.model import RESERVED_PREFIX, JSONDict, Successor
from martian_doves.payloads import PayloadType, is_payload_type
from martian_doves.text import describe_error

#: Entry-point group scanned for machine modules of installed packages.
ENTRY_POINT_GROUP = "martian_doves.machines"
#: Attribute ``@machine`` sets on what it decorates.
_MARK = "__doves_machine__"

Handler = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class MachineSpec:
    """A registered state: its handler and, optionally, the payload type it validates."""

    name: str
    handler: Handler
    #: A dataclass (or msgspec.Struct, TypedDict): the payload is validated into it before the tick.
    payload_type: type | None = None

    @functools.cached_property
    def typed_payload(self) -> PayloadType | None:
        """The payload type prepared for validation, built on first use (by ``Registry.add``).

        Raises:
            TypeError: the type has a field no JSON value can fill, or an annotation that does not resolve.
        """
        return None if self.payload_type is None else PayloadType(self.payload_type)


def machine(name: str, *, payload: type | None = None) -> Callable[[F], F]:
    """Mark a function as the handler of state ``name``.

    The handler takes the payload and returns ``None`` (the machine ends), a dict (a
    successor in the same state), a ``(state, dict)`` pair (a successor in another
    state), or ``Next``, ``Wait`` or ``Spawn`` (see ``martian_doves.contract``). With
    ``payload=SomeDataclass`` the payload is validated and converted before the tick
    (nested dataclasses too), and the handler may return dataclass instances instead of
    dicts. A ``msgspec.Struct`` or a ``TypedDict`` works as well.

    Args:
        name: the state name this handler runs.
        payload: optional dataclass type describing the payload.

    Raises:
        TypeError: an empty name, or a payload type that is not a record type.
    """
    if not isinstance(name, str) or not name:
        raise TypeError("@machine needs a non-empty state name")
    if name.startswith(RESERVED_PREFIX):
        raise TypeError(f"@machine({name!r}): state names starting with {RESERVED_PREFIX!r} are reserved")
    if payload is not None and not is_payload_type(payload):
        raise TypeError("@machine(payload=...) takes a dataclass type (or a msgspec.Struct, a TypedDict)")

    def mark(handler: F) -> F:
        setattr(handler, _MARK, MachineSpec(name, handler, payload))
        return handler

    return mark


def _validate_payload(spec: MachineSpec, payload: JSONDict) -> Any:
    assert spec.typed_payload is not None
    return spec.typed_payload.convert(spec.name, payload)


def _origin(handler: Handler) -> str:
    """Where a handler was defined, for messages: ``module.name``."""
    module = getattr(handler, "__module__", None) or "?"
    return f"{module}.{getattr(handler, '__qualname__', type(handler).__name__)}"


class Registry:
    """State name → handler. Build one, ``load`` machine modules into it, pass it to workers."""

    def __init__(self, specs: Iterable[MachineSpec] = ()) -> None:
        self._specs: dict[str, MachineSpec] = {}
        #: Where each loaded machine module came from, so worker processes can load them too.
        self.sources: list[str] = []
        for spec in specs:
            self.add(spec)

    def add(self, spec: MachineSpec) -> None:
        """Register ``spec``, preparing its payload type.

        Raises:
            MachineLoadError: the state already has another handler, or its payload type
                cannot be validated (a field no JSON value can fill, an unresolved annotation).
        """
        existing = self._specs.get(spec.name)
        if existing is not None and existing.handler is not spec.handler:
            raise MachineLoadError(f"state {spec.name!r} is defined twice: by {_origin(existing.handler)} "
                                   f"and by {_origin(spec.handler)}")
        try:
            spec.typed_payload  # noqa: B018 -- prepared here, so a broken payload type fails at load, not per tick
        except TypeError as e:
            assert spec.payload_type is not None
            raise MachineLoadError(f"payload type {spec.payload_type.__name__} of state {spec.name!r} "
                                   f"({_origin(spec.handler)}): {e}") from e
        self._specs[spec.name] = spec

    def register(self, name: str, handler: Handler, payload: type | None = None) -> None:
        """Register ``handler`` for ``name`` without the decorator."""
        self.add(MachineSpec(name, handler, payload))

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def spec(self, name: str) -> MachineSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownState(f"no machine is registered for state {name!r}") from None

    def validate(self, state_name: str, payload: JSONDict) -> None:
        """Raise ``UnknownState`` or ``InvalidPayload`` if a state could not run."""
        spec = self.spec(state_name)
        if spec.payload_type is not None:
            _validate_payload(spec, payload)

    def tick(self, state_name: str, payload: JSONDict, now: float | None = None) -> Successor | None:
        """Run one tick and normalise its result (see ``contract.successor_of``).

        Args:
            now: the time the tick ends (epoch seconds), for timers; the system clock if None.

        Raises:
            UnknownState, InvalidPayload: the state cannot run at all (not retried).
            BadReturn: the handler returned something outside the contract.
            Exception: whatever the handler raised (retried by the worker).
        """
        spec = self.spec(state_name)
        argument: Any = payload
        if spec.payload_type is not None:
            argument = _validate_payload(spec, payload)
        result = spec.handler(argument)
        return successor_of(state_name, result, time.time() if now is None else now)

    # -- loading -----------------------------------------------------------------

    def load_module(self, module: types.ModuleType) -> int:
        """Register every ``@machine``-marked object of ``module``; return how many."""
        found = 0
        for _, obj in inspect.getmembers(module):
            spec = getattr(obj, _MARK, None)
            if isinstance(spec, MachineSpec):
                self.add(spec)
                found += 1
        return found

    def load(self, source: str) -> int:
        """Load machines from an import path (``pkg.machines``) or a ``.py`` file.

        Raises:
            MachineLoadError: one clear line saying what could not be loaded and why.
        """
        module = _import_source(source)
        found = self.load_module(module)
        if found == 0:
            raise MachineLoadError(f"{source}: no @machine handlers found")
        self.sources.append(source)
        return found

    def load_entry_points(self) -> int:
        """Load the modules published under the ``martian_doves.machines`` entry-point group."""
        found = 0
        for entry in _published_machines(tuple(sys.path)):
            try:
                loaded = entry.load()
            except Exception as e:
                raise MachineLoadError(f"entry point {entry.name!r}: {describe_error(e)}") from e
            if isinstance(loaded, types.ModuleType):
                found += self.load_module(loaded)
            else:
                spec = getattr(loaded, _MARK, None)
                if not isinstance(spec, MachineSpec):
                    raise MachineLoadError(f"entry point {entry.name!r} is not a @machine module")
                self.add(spec)
                found += 1
        return found


@functools.lru_cache(maxsize=4)
def _published_machines(path: tuple[str, ...]) -> importlib.metadata.EntryPoints:
    """The ``martian_doves.machines`` entry points of the distributions on ``path`` (``sys.path``),
    looked up once per process and path: the lookup reads the metadata of every installed
    distribution (a tenth of a second or more), and a supervisor loads its machines twice (to fail
    early, then to know what its workers run)."""
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def _import_source(source: str) -> types.ModuleType:
    path = Path(source)
    if source.endswith(".py") or path.is_file():
        if not path.is_file():
            raise MachineLoadError(f"machines file not found: {source}")
        module_name = f"doves_user_{abs(hash(str(path.resolve())))}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise MachineLoadError(f"cannot load {source} as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        # The file's folder goes on sys.path so it can import its neighbours.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:  # sys.exit() at import must not end doves quietly
            del sys.modules[module_name]
            raise MachineLoadError(f"{source}: {describe_error(e)}") from e
        return module
    try:
        return importlib.import_module(source)
    except (Exception, SystemExit) as e:
        raise MachineLoadError(f"cannot import machines module {source!r}: {describe_error(e)}") from e
