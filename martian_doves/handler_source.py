"""What a handler may return, read from its source code with ``ast`` (the handler never runs).

Every value a handler may return is classified as the contract reads it
(``contract.successor_of``): ``None`` (the end), a dict or a payload record (the same
state again), ``(name, payload)``, ``Next(name, ..., after=...)``, ``Wait(event,
then=..., on_timeout=...)`` and ``Spawn([(name, ...), ...], then=...)``. State names
may be literals, constants (module-level or enum members) or local variables assigned
literals; returns may go through helper functions, whose parameters are bound to the
caller's arguments. What cannot be told without running the handler (a state name
built at run time, a value from elsewhere) is ``Unknown``, with where and why.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import FunctionType
from typing import Any

from martian_doves.contract import Next, Spawn, Wait
from martian_doves.graph import timeout_label
from martian_doves.payloads import is_payload_type

#: How deep returns are followed through helper functions.
MAX_CALL_DEPTH = 8
#: Longest piece of source code quoted in a note.
_QUOTED_CHARS = 60
#: Functions whose result is a payload (a copy of a record or dict): the same state again.
_SAME_STATE_FUNCTIONS: tuple[Callable[..., Any], ...] = (dict, dataclasses.replace, copy.copy, copy.deepcopy)

_Function = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


# -- what a handler may return --------------------------------------------------------------------


@dataclass(frozen=True)
class End:
    """``None``: the machine ends."""


@dataclass(frozen=True)
class Same:
    """A payload alone: the same state again."""


@dataclass(frozen=True)
class Go:
    """A successor in ``state``; ``timer`` labels a ``Next(after=/at=)``."""

    state: str
    timer: str | None = None


@dataclass(frozen=True)
class WaitsFor:
    """``Wait(event, then=..., on_timeout=..., timeout=...)``."""

    #: The event's name; None when it is not a literal.
    event: str | None
    #: The states ``then`` may be (the event arrived).
    then: tuple[str, ...]
    #: The states ``on_timeout`` may be; empty without one.
    on_timeout: tuple[str, ...]
    #: The timeout's label (None: no timeout).
    timeout: str | None


@dataclass(frozen=True)
class Spawns:
    """``Spawn([(state, payload), ...], then=...)``."""

    #: The children's first states, in order (repeats possible).
    children: tuple[str, ...]
    #: The states the join's ``then`` may be.
    then: tuple[str, ...]


@dataclass(frozen=True)
class Unknown:
    """Something the source does not tell without running it."""

    #: Where and why, one line: ``traffic.py:12: the state name is computed at run time: (name, p)``.
    why: str
    #: Its line in that file (0 if none).
    line: int


Outcome = End | Same | Go | WaitsFor | Spawns | Unknown


@dataclass
class _Scope:
    """One function being read: its syntax, the names it sees, and its bound parameters."""

    function: _Function
    globals: dict[str, Any]
    #: Where it is, for notes: ``traffic.py``.
    where: str
    #: The handler's payload parameter (the same state when returned); None in helpers.
    payload: str | None = None
    #: Parameters of a helper bound to the caller's argument expressions.
    bindings: dict[str, tuple[ast.expr, _Scope]] = field(default_factory=dict)
    #: Functions being read, outermost first (recursion stops there).
    stack: tuple[Any, ...] = ()


class SourceReader:
    """Source files parsed once each."""

    def __init__(self) -> None:
        self._trees: dict[str, ast.Module | None] = {}

    def tree(self, path: str) -> ast.Module | None:
        if path not in self._trees:
            try:
                with open(path, encoding="utf-8") as file:
                    self._trees[path] = ast.parse(file.read(), path)
            except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
                self._trees[path] = None
        return self._trees[path]

    def scope(self, function: Any, stack: tuple[Any, ...] = ()) -> tuple[_Scope, list[str]] | str:
        """A scope for ``function`` and its parameter names (self left out), or why there is none."""
        skip = 0
        call = next((vars(k)["__call__"] for k in type(function).__mro__ if "__call__" in vars(k)), None)
        if inspect.ismethod(function):
            function, skip = function.__func__, 1
        elif not inspect.isfunction(function) and inspect.isfunction(call):
            function, skip = call, 1  # a callable object: its class's __call__
        try:
            function = inspect.unwrap(function)
        except ValueError:  # a cycle of __wrapped__
            return "its handler wraps itself"
        if not isinstance(function, FunctionType):
            return f"{type(function).__name__} is not a Python function"
        code = function.__code__
        parsed = self.tree(code.co_filename)
        if parsed is None:
            return f"the source of {function.__qualname__} cannot be read"
        found = _find_function(parsed, code.co_name, code.co_firstlineno)
        if found is None:
            return f"the source of {function.__qualname__} cannot be found in {code.co_filename}"
        names = [a.arg for a in (*found.args.posonlyargs, *found.args.args)][skip:]
        scope = _Scope(found, function.__globals__, os.path.basename(code.co_filename), stack=(*stack, code))
        return scope, names


def _find_function(tree: ast.Module, name: str, first_line: int) -> _Function | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            if first_line in (node.lineno, *(d.lineno for d in node.decorator_list)):
                return node
        elif isinstance(node, ast.Lambda) and name == "<lambda>" and node.lineno == first_line:
            return node
    return None


def _own_nodes(function: _Function) -> Iterator[ast.AST]:
    """The function's own syntax: nested functions, classes and lambdas left out."""
    if isinstance(function, ast.Lambda):
        yield from ast.walk(function.body)
        return
    pending: list[ast.AST] = list(function.body)
    while pending:
        node = pending.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def _position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _always_exits(body: Sequence[ast.stmt]) -> bool:
    """Whether running ``body`` always ends in ``return`` or ``raise`` (a cautious answer: False if unsure)."""
    if not body:
        return False
    last = body[-1]
    if isinstance(last, ast.Return | ast.Raise):
        return True
    if isinstance(last, ast.If):
        return _always_exits(last.body) and _always_exits(last.orelse)
    if isinstance(last, ast.With | ast.AsyncWith):
        return _always_exits(last.body)
    if isinstance(last, ast.Try | ast.TryStar):
        return _always_exits(last.finalbody) or (
            _always_exits(last.orelse or last.body) and all(_always_exits(h.body) for h in last.handlers))
    if isinstance(last, ast.Match):
        catch_all = any(isinstance(c.pattern, ast.MatchAs) and c.pattern.pattern is None and c.guard is None
                        for c in last.cases)
        return catch_all and all(_always_exits(c.body) for c in last.cases)
    if isinstance(last, ast.While):
        loops_forever = isinstance(last.test, ast.Constant) and bool(last.test.value)
        return loops_forever and not any(isinstance(n, ast.Break) for n in ast.walk(last))
    return False


class _Reader:
    """Classifies what the functions of one scope return."""

    def __init__(self, modules: SourceReader) -> None:
        self.modules = modules

    def returns(self, scope: _Scope) -> list[Outcome]:
        function = scope.function
        if isinstance(function, ast.Lambda):
            return self.value(function.body, scope)
        found: list[Outcome] = []
        for node in sorted((n for n in _own_nodes(function) if isinstance(n, ast.Return)), key=_position):
            found += [End()] if node.value is None else self.value(node.value, scope)
        if not _always_exits(function.body):
            found.append(End())
        return found

    # -- values ------------------------------------------------------------------------------------

    def value(self, expr: ast.expr, scope: _Scope) -> list[Outcome]:
        """What returning ``expr`` may lead to."""
        if isinstance(expr, ast.Constant) and expr.value is None:
            return [End()]
        if isinstance(expr, ast.Dict | ast.DictComp):
            return [Same()]
        if isinstance(expr, ast.IfExp):
            return self.value(expr.body, scope) + self.value(expr.orelse, scope)
        if isinstance(expr, ast.BoolOp):
            return [o for operand in expr.values for o in self.value(operand, scope)]
        if isinstance(expr, ast.Tuple | ast.List) and len(expr.elts) == 2:
            names = self.state_names(expr.elts[0], scope)
            if names is None:
                return [self.unknown(expr, scope, "the state name is computed at run time")]
            return [Go(name) for name in names]
        if isinstance(expr, ast.Name):
            return self.name(expr, scope)
        if isinstance(expr, ast.Call):
            return self.call(expr, scope)
        return [self.unknown(expr, scope, "cannot tell what this is")]

    def name(self, expr: ast.Name, scope: _Scope) -> list[Outcome]:
        bound = scope.bindings.get(expr.id)
        if bound is not None:
            return self.value(*bound)
        if expr.id == scope.payload:
            return [Same()]
        assigned = _assigned(expr.id, scope.function)
        if assigned:
            return [o for value in assigned for o in self.value(value, scope)]
        if expr.id in _parameters(scope.function):
            return [self.unknown(expr, scope, f"returns its parameter {expr.id!r}")]
        if expr.id in scope.globals:
            return _runtime_value(scope.globals[expr.id]) or [self.unknown(expr, scope, "cannot tell what this is")]
        return [self.unknown(expr, scope, f"{expr.id!r} is not defined where it can be read")]

    def call(self, expr: ast.Call, scope: _Scope) -> list[Outcome]:
        callee = _runtime(expr.func, scope)
        if callee is Next:
            return self.next(expr, scope)
        if callee is Wait:
            return [self.wait(expr, scope)]
        if callee is Spawn:
            return [self.spawn(expr, scope)]
        if any(callee is same for same in _SAME_STATE_FUNCTIONS) or (isinstance(callee, type)
                                                                       and is_payload_type(callee)):
            return [Same()]
        if callable(callee):
            return self.helper(callee, expr, scope)
        return [self.unknown(expr, scope, "returns what a call returns, which cannot be read")]

    def helper(self, callee: Any, expr: ast.Call, scope: _Scope) -> list[Outcome]:
        if len(scope.stack) >= MAX_CALL_DEPTH:
            return [self.unknown(expr, scope, "calls too deep to follow")]
        found = self.modules.scope(callee, scope.stack)
        if isinstance(found, str):
            return [self.unknown(expr, scope, found)]
        inner, params = found
        if inner.stack[-1] in scope.stack:
            return [self.unknown(expr, scope, "a recursive call")]
        if any(isinstance(a, ast.Starred) for a in expr.args) or any(k.arg is None for k in expr.keywords):
            return [self.unknown(expr, scope, "arguments passed with * or **")]
        inner.bindings = {name: (arg, scope) for name, arg in zip(params, expr.args, strict=False)}
        inner.bindings.update({k.arg: (k.value, scope) for k in expr.keywords if k.arg is not None})
        return self.returns(inner)

    # -- the contract's classes ---------------------------------------------------------------------

    def next(self, expr: ast.Call, scope: _Scope) -> list[Outcome]:
        args = _arguments(expr, ("state", "payload"))
        names = None if "state" not in args else self.state_names(args["state"], scope)
        if names is None:
            return [self.unknown(expr, scope, "the state name of Next is computed at run time")]
        timer = None
        if "after" in args and not _is_none(args["after"]):
            seconds = _number(args["after"])
            timer = "timer" if seconds is None else f"after {seconds:g} s"
        elif "at" in args and not _is_none(args["at"]):
            timer = "timer"
        return [Go(name, timer) for name in names]

    def wait(self, expr: ast.Call, scope: _Scope) -> Outcome:
        args = _arguments(expr, ("event",))
        event = args.get("event")
        event_name = event.value if isinstance(event, ast.Constant) and isinstance(event.value, str) else None
        then = None if "then" not in args else self.state_names(args["then"], scope)
        on_timeout = () if _is_none(args.get("on_timeout")) else self.state_names(args["on_timeout"], scope)
        if then is None or on_timeout is None:
            return self.unknown(expr, scope, "a state name of Wait is computed at run time")
        timeout = None if _is_none(args.get("timeout")) else timeout_label(_number(args["timeout"]))
        return WaitsFor(event_name, tuple(then), tuple(on_timeout), timeout)

    def spawn(self, expr: ast.Call, scope: _Scope) -> Outcome:
        args = _arguments(expr, ("children",))
        then = None if "then" not in args else self.state_names(args["then"], scope)
        children = None if "children" not in args else self.child_states(args["children"], scope)
        if then is None or children is None:
            return self.unknown(expr, scope, "the states of Spawn's children or then are computed at run time")
        return Spawns(tuple(children), tuple(then))

    def child_states(self, expr: ast.expr, scope: _Scope) -> list[str] | None:
        if isinstance(expr, ast.Name):
            bound = scope.bindings.get(expr.id)
            if bound is not None:
                return self.child_states(*bound)
            values = _assigned(expr.id, scope.function)
            found = [self.child_states(value, scope) for value in values]
            return None if not found or any(f is None for f in found) else [s for f in found for s in f or ()]
        if isinstance(expr, ast.ListComp | ast.GeneratorExp):
            return self.child_states(ast.List([expr.elt]), scope)
        if isinstance(expr, ast.List | ast.Tuple):
            states: list[str] = []
            for child in expr.elts:
                if not (isinstance(child, ast.Tuple | ast.List) and len(child.elts) == 2):
                    return None
                names = self.state_names(child.elts[0], scope)
                if names is None:
                    return None
                states += names
            return states
        return None

    # -- state names --------------------------------------------------------------------------------

    def state_names(self, expr: ast.expr, scope: _Scope) -> list[str] | None:
        """The state names ``expr`` may be, or None if one of them cannot be known without running it."""
        if isinstance(expr, ast.Constant):
            return [expr.value] if isinstance(expr.value, str) else None
        if isinstance(expr, ast.IfExp):
            body, orelse = self.state_names(expr.body, scope), self.state_names(expr.orelse, scope)
            return None if body is None or orelse is None else body + orelse
        if isinstance(expr, ast.Name):
            bound = scope.bindings.get(expr.id)
            if bound is not None:
                return self.state_names(*bound)
            assigned = _assigned(expr.id, scope.function)
            if assigned:
                found = [self.state_names(value, scope) for value in assigned]
                return None if any(f is None for f in found) else [s for f in found for s in f or ()]
        value = _runtime(expr, scope)
        return [str(value)] if isinstance(value, str) else None

    def unknown(self, expr: ast.expr, scope: _Scope, why: str) -> Unknown:
        try:
            quoted = ast.unparse(expr)
        except (ValueError, AttributeError, RecursionError):
            quoted = "?"
        if len(quoted) > _QUOTED_CHARS:
            quoted = quoted[: _QUOTED_CHARS - 3] + "..."
        return Unknown(f"{scope.where}:{expr.lineno}: {why}: {quoted}", expr.lineno)


def _arguments(call: ast.Call, positional: Sequence[str]) -> dict[str, ast.expr]:
    """A call's arguments by parameter name (the first ones may be passed by position)."""
    found = {name: arg for name, arg in zip(positional, call.args, strict=False)}
    found.update({k.arg: k.value for k in call.keywords if k.arg is not None})
    return found


def _is_none(expr: ast.expr | None) -> bool:
    return expr is None or (isinstance(expr, ast.Constant) and expr.value is None)


def _number(expr: ast.expr) -> float | None:
    if isinstance(expr, ast.Constant) and isinstance(expr.value, int | float) and not isinstance(expr.value, bool):
        return float(expr.value)
    return None


def _parameters(function: _Function) -> set[str]:
    args = function.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    return {a.arg for a in every if a is not None}


def _assigned(name: str, function: _Function) -> list[ast.expr]:
    """The values the function assigns to the local ``name`` (``name = ...``, ``name: T = ...``, ``:=``)."""
    found: list[ast.expr] = []
    for node in sorted(_own_nodes(function), key=_position):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            found.append(node.value)
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and isinstance(node.target, ast.Name) \
                and node.target.id == name and node.value is not None:
            found.append(node.value)
    return found


def _runtime(expr: ast.expr, scope: _Scope) -> Any:
    """What a name or dotted name (``States.PAID``, ``contract.Next``) is in the function's module, or None."""
    if isinstance(expr, ast.Name):
        if expr.id in scope.bindings or expr.id in _parameters(scope.function) or _assigned(expr.id, scope.function):
            return None
        if expr.id in scope.globals:
            return scope.globals[expr.id]
        builtins = scope.globals.get("__builtins__")
        return (builtins if isinstance(builtins, dict) else vars(builtins)).get(expr.id) if builtins else None
    if isinstance(expr, ast.Attribute):
        owner = _runtime(expr.value, scope)
        if not (inspect.ismodule(owner) or inspect.isclass(owner)):
            return None  # an attribute of an instance may be a property: nothing runs here
        try:
            return getattr(owner, expr.attr, None)
        except Exception:  # a class's metaclass may compute attributes
            return None
    return None


def _runtime_value(value: Any) -> list[Outcome] | None:
    """What returning a module-level constant leads to."""
    if value is None:
        return [End()]
    if isinstance(value, dict):
        return [Same()]
    if isinstance(value, Next) and isinstance(value.state, str):
        return [Go(value.state, None if value.after is None and value.at is None else "timer")]
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return [Go(value[0])]
    return None


def handler_outcomes(reader: SourceReader, handler: Any, state: str) -> list[Outcome]:
    """Every way the handler of ``state`` may lead on, in source order (repeats possible).

    Args:
        reader: parses each source file once; share one for many handlers.
        handler: the registered handler (a function, a method, a callable object, a lambda).
        state: its state name, for messages.
    """
    found = reader.scope(handler)
    if isinstance(found, str):
        return [Unknown(f"state {state!r}: {found}", 0)]
    scope, params = found
    scope.payload = params[0] if params else None
    return _Reader(reader).returns(scope)


__all__ = ["End", "Go", "Outcome", "Same", "SourceReader", "Spawns", "Unknown", "WaitsFor", "handler_outcomes"]
