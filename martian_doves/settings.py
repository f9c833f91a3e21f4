"""How a configuration field meets its users: its flag, variable, help text and bounds.

A field declared with ``setting(default, help, ...)`` is the one place where its
default, its ``doves`` flag, its ``DOVES_*`` environment variable, its help text and
its bounds are written. The CLI builds its options from these (``cli.options``), and
``check_settings`` applies the same bounds to objects built in Python, so a value is
judged by one rule whether it came from a flag, a variable, a URL or a constructor.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self, TypeVar

from martian_doves.errors import ConfigError, check_seconds

T = TypeVar("T")

#: Key of the ``Setting`` in a dataclass field's metadata.
SETTING = "doves.setting"


@dataclass(frozen=True)
class Setting:
    """What users see of one configuration field."""

    #: One or two sentences for ``--help`` (and the documentation of the field).
    help: str
    #: The long flag; ``--`` and the field name with dashes when None.
    flag: str | None = None
    #: A one-letter alias (``-w``).
    short: str | None = None
    #: The environment variable; ``DOVES_`` and the flag's name when None.
    env: str | None = None
    metavar: str | None = None
    #: What ``--help`` shows as the default when the value alone would mislead (None means "...").
    show_default: str | None = None
    #: Smallest value allowed (None: no bound).
    minimum: float | None = None
    #: Whether the minimum itself is refused (``> 0`` rather than ``>= 0``).
    above_minimum: bool = False
    #: Largest value allowed (None: no bound).
    maximum: float | None = None
    #: Allowed values of a text field.
    choices: tuple[str, ...] | None = None
    #: A flag that sets a boolean field to False (``--watch`` turns ``exit_when_finished`` off).
    negate: bool = False
    #: Whether the field has a command-line flag at all (False: Python, URL or file only).
    cli: bool = True
    #: Whether a ``postgresql://`` URL may carry it as a query parameter (``?lease_seconds=5``).
    in_url: bool = False


def setting(default: T, help: str, **details: Any) -> T:
    """A dataclass field with ``default`` and the ``Setting`` that describes it to users.

    Args:
        default: the field's default (an immutable value).
        help: see ``Setting.help``.
        details: the other ``Setting`` attributes.
    """
    return dataclasses.field(default=default, metadata={SETTING: Setting(help, **details)})


def flag_of(name: str, described: Setting | None) -> str:
    """The long flag of field ``name`` (``lease_seconds`` → ``--lease-seconds``)."""
    if described is not None and described.flag is not None:
        return described.flag
    return "--" + name.replace("_", "-")


def settings_of(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Setting, Any]]:
    """Each field of dataclass ``cls`` that has a ``Setting``: (field, setting, resolved type)."""
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        described = item.metadata.get(SETTING)
        if described is not None:
            yield item, described, hints[item.name]


def _bound_error(label: str, value: float, described: Setting) -> ConfigError | None:
    low, high = described.minimum, described.maximum
    below = low is not None and (value < low or (described.above_minimum and value == low))
    if not below and (high is None or value <= high):
        return None
    if low is not None and high is not None:
        return ConfigError(f"{label} must be between {low:g} and {high:g}, not {value:g}")
    if low is not None:
        return ConfigError(f"{label} must be {'greater than' if described.above_minimum else 'at least'} "
                           f"{low:g}, not {value:g}")
    return ConfigError(f"{label} must be at most {high:g}, not {value:g}")


def check_settings(options: Any) -> None:
    """Check every field of the dataclass instance ``options`` against its ``Setting``.

    Durations (fields named ``*_seconds``) must be finite and at most ``MAX_SECONDS``
    (a NaN passes every comparison, and an infinite lease overflows a timer or a
    PostgreSQL interval); numbers must lie within their bounds; text within its
    choices. None means "not set" and is not checked.

    Raises:
        ConfigError: one line naming the first value out of range by its flag (by its
            field name if it has no flag).
    """
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        described: Setting | None = item.metadata.get(SETTING)
        if value is None or described is None:
            continue
        # Named as users give it: by its flag, or (Python, URL) by its field name.
        label = flag_of(item.name, described) if described.cli else item.name
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            if item.name.endswith("_seconds"):
                check_seconds({label: value})
            error = _bound_error(label, value, described)
            if error is not None:
                raise error
        elif described.choices is not None and value not in described.choices:
            raise ConfigError(f"{label} must be one of {', '.join(described.choices)}, not {value!r}")



class Checked:
    """Base of the options dataclasses: ``validate`` checks every field against its ``Setting``."""

    def validate(self) -> Self:
        """Return ``self`` if every value is usable.

        Raises:
            ConfigError: a value is out of range (one line, naming it as users give it).
        """
        check_settings(self)
        return self
