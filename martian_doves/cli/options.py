"""The ``doves`` options: derived from the configuration's fields, each reading a ``DOVES_*`` variable.

procrastinate's CLI taught the variable part: one helper binds a flag to its
environment variable, so compose files and systemd units configure everything
without a command line. The rest comes from ``config``: every field declared with a
``Setting`` becomes an option named after it, with the field's default, help text and
bounds, and ``options_from``/``store_config`` turn what the user gave back into the
same dataclasses, validated once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from martian_doves import codec
from martian_doves.config import (
    DIRECTORY_MODES,
    STORE_ENV,
    DirectoryOptions,
    PostgresOptions,
    SemaphoreOptions,
    StoreConfig,
    StoreOptions,
    options_class,
    require_target,
)
from martian_doves.errors import ConfigError, DovesError
from martian_doves.loader import default_registry
from martian_doves.registry import Registry
from martian_doves.settings import Checked, Setting, flag_of, settings_of
from martian_doves.stores import is_directory_store

F = TypeVar("F", bound=Callable[..., Any])

#: The store families whose options the commands share (``--lease-seconds`` once for all).
_STORE_FAMILIES = (DirectoryOptions, SemaphoreOptions, PostgresOptions)


def env_name(flag: str) -> str:
    """``--max-attempts`` → ``DOVES_MAX_ATTEMPTS``; ``--chain/--no-chain`` → ``DOVES_CHAIN``."""
    return "DOVES_" + flag.split("/")[0].lstrip("-").replace("-", "_").upper()


def option(*decls: str, env: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """A click option that also reads ``DOVES_<NAME>`` and shows it in ``--help``.

    The variable is named after the first long flag unless ``env`` says otherwise.
    """
    long_flag = next(d for d in decls if d.startswith("--"))
    kwargs.setdefault("show_default", True)
    return click.option(*decls, envvar=env or env_name(long_flag), show_envvar=True, **kwargs)


def compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Apply ``decorators`` in the order listed (so ``--help`` lists options in that order)."""
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function
    return apply


# -- options derived from configuration fields --------------------------------------------------


def _click_type(kind: Any, described: Setting) -> Any:
    """The click type of a field: its choices, or its number type within its bounds."""
    if described.choices is not None:
        return click.Choice(described.choices, case_sensitive=False)
    base = next(arg for arg in getattr(kind, "__args__", (kind,)) if arg is not type(None))  # X of X | None
    low, high = described.minimum, described.maximum
    if base not in (int, float):
        return click.STRING
    if low is None and high is None:
        return click.INT if base is int else click.FLOAT
    if base is int:
        return click.IntRange(None if low is None else int(low), None if high is None else int(high),
                              min_open=described.above_minimum)
    return click.FloatRange(low, high, min_open=described.above_minimum)


def _field_option(name: str, kind: Any, default: Any, described: Setting, *, hidden: bool,
                  help: str | None) -> Callable[[F], F]:
    flag = flag_of(name, described)
    decls = [described.short] if described.short else []
    show: bool | str = True if default is not None else False
    if described.show_default is not None:
        show = described.show_default
    extra: dict[str, Any] = {}
    if kind is bool and described.negate:
        decls.append(flag)
        extra.update(is_flag=True, default=not default)
        show = False
    elif kind is bool:
        decls.append(flag if "/" in flag else f"{flag}/--no-{flag.removeprefix('--')}")
        extra["default"] = default
    elif getattr(kind, "__origin__", None) is tuple:  # repeatable: --allow-host A --allow-host B
        decls.append(flag)
        extra.update(multiple=True, default=default, metavar=described.metavar)
        show = False
    else:
        decls.append(flag)
        extra.update(type=_click_type(kind, described), default=default)
        if described.metavar:
            extra["metavar"] = described.metavar
    return option(*decls, name, env=described.env, help=help or described.help, hidden=hidden,
                  show_default=show, **extra)


def _cli_fields(*classes: type) -> Iterator[tuple[str, Any, Any, Setting]]:
    """(name, type, default, setting) of each field with a flag in ``classes``, once per name."""
    seen: set[str] = set()
    for cls in classes:
        for item, described, kind in settings_of(cls):
            if described.cli and item.name not in seen:
                seen.add(item.name)
                yield item.name, kind, item.default, described


def fields_options(*classes: type, hidden: bool = False, only: Sequence[str] | None = None,
                   help: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None,
                   ) -> Callable[[F], F]:
    """The options of every field with a flag in ``classes`` (each name once), in field order.

    Args:
        hidden: keep them out of ``--help`` (their variables are still read).
        only: just these fields.
        help: help texts that differ for this command, by field name.
        defaults: defaults that differ for this command, by field name (the command then
            passes the value on itself: ``options_from`` leaves out what was not given).
    """
    help, defaults = help or {}, defaults or {}
    return compose(*(
        _field_option(name, kind, defaults.get(name, default), described, hidden=hidden, help=help.get(name))
        for name, kind, default, described in _cli_fields(*classes) if only is None or name in only
    ))


def given(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the user set, on the command line or in the environment."""
    ctx = click.get_current_context()
    return {name: value for name, value in params.items()
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


V = TypeVar("V", bound=Checked)


def options_from(cls: type[V], params: Mapping[str, Any], **fixed: Any) -> V:
    """An instance of the options class ``cls`` from what the user gave, validated.

    Args:
        fixed: field values the command sets itself.

    Raises:
        ConfigError: a value is out of range (one line, naming the flag).
    """
    chosen = given(params)
    values = dict(fixed)
    for name, kind, _default, described in _cli_fields(cls):
        if name in chosen:
            values[name] = not chosen[name] if kind is bool and described.negate else chosen[name]
    instance = cls(**values)
    instance.validate()
    return instance


def store_config(target: str | None, params: Mapping[str, Any]) -> StoreConfig:
    """The configuration of the store a command names: STORE, ``--mode`` and the store options given.

    Options of another store family than STORE's (``--durable`` for a database, say,
    from a variable shared with folder workers) do not apply and are left out.

    Raises:
        ConfigError: no STORE, or a bad one, or an option out of range.
    """
    mode = params.get("mode") or DIRECTORY_MODES[0]
    names = {item.name for item in dataclasses.fields(options_class(require_target(target), mode))}
    return StoreConfig.of(require_target(target), mode, **{k: v for k, v in given(params).items() if k in names})


# -- options that are the CLI's own -------------------------------------------------------------


def _split_sources(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> tuple[str, ...]:
    """``--machines`` values, each also split on commas (``DOVES_MACHINES`` is split on spaces by click)."""
    return tuple(part for value in values for part in re.split(r"[\s,]+", value) if part)


store_argument = click.argument("store", required=False, envvar=STORE_ENV, metavar="[STORE]")

mode_option = option(
    "--mode", type=click.Choice(DIRECTORY_MODES), default=DIRECTORY_MODES[0],
    help="How workers share a directory store: 'lease' (atomic claims with heartbeats) or "
         "'semaphore' (the seed's time-phased protocol). Ignored for postgresql:// stores.",
)


def store_options(*, visible: bool, with_mode: bool = True) -> Callable[[F], F]:
    """``--mode`` and the store tuning options; tuning is hidden outside ``run`` but still read.

    Hidden options still read their ``DOVES_*`` variables, so a command run in the same
    environment as the workers (a compose service) opens the store the same way.
    """
    tuning = fields_options(*_STORE_FAMILIES, hidden=not visible)
    return compose(mode_option, tuning) if with_mode else tuning


machines_option = option(
    "--machines", "-m", multiple=True, callback=_split_sources, metavar="MODULE|FILE.py", show_default=False,
    help="Load machines from an import path (mypkg.machines) or a .py file; repeat for several. "
         "Built-in machines and the 'martian_doves.machines' entry points are always loaded. "
         "DOVES_MACHINES takes several, separated by spaces or commas.",
)
allow_unknown_option = option(
    "--allow-unknown-states", is_flag=True, default=False,
    help="Accept state names no loaded machine handles (when the machines live elsewhere).",
)
state_size_options = fields_options(
    StoreOptions, only=("max_state_bytes", "max_join_bytes"),
    help={"max_state_bytes": "Larger state files are invalid (a join's successor: see --max-join-bytes).",
          "max_join_bytes": "A join's successor (its parent, a join entry, beside it) may be this large."})


def registry_from(params: Mapping[str, Any]) -> Registry | None:
    """The machines to validate against, or None with ``--allow-unknown-states``."""
    if params.get("allow_unknown_states"):
        return None
    return default_registry(params.get("machines") or ())


def split_store(args: Sequence[str], rest_count: int | None) -> tuple[str, list[str]]:
    """Split ``[STORE] REST...`` where STORE may come from ``$DOVES_STORE``.

    Args:
        rest_count: how many arguments follow STORE, or None for any number. With a
            variable count and ``DOVES_STORE`` set, the first argument is the store only
            if it looks like one (a URL, or a folder with ``pending/``, ``done/`` ...).
    """
    env_store = os.environ.get(STORE_ENV) or None
    if rest_count is not None:
        if len(args) == rest_count + 1:
            return args[0], list(args[1:])
        if len(args) == rest_count and env_store:
            return env_store, list(args)
        raise click.UsageError(f"expected {'STORE ' if not env_store else '[STORE] '}followed by "
                               f"{rest_count} argument(s), got {len(args)}")
    if env_store and (not args or not ("://" in args[0] or is_directory_store(args[0]))):
        return env_store, list(args)
    return require_target(args[0] if args else None), list(args[1:])


def worker_name_prefix(prefix: str) -> str:
    """``--name``, checked: worker names are ``PREFIX-<pid>`` and must be usable as file names."""
    try:
        codec.check_name(f"{prefix}-0")
    except DovesError as e:
        raise ConfigError(f"--name {prefix!r} cannot be used in worker names: {e.message}") from e
    return prefix
