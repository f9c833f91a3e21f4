"""The registry a worker runs with: the built-in machines, installed packages' and the user's.

It sits above ``registry`` and ``builtin`` (which marks its machines with
``registry.machine``), so neither imports the other back.
"""

from __future__ import annotations

from collections.abc import Iterable

from martian_doves import builtin
from martian_doves.registry import Registry


def default_registry(sources: Iterable[str] = (), *, entry_points: bool = True) -> Registry:
    """The built-in machines, the entry-point group, then ``sources`` in order.

    Args:
        sources: machine modules: import paths (``pkg.machines``) or ``.py`` files.
        entry_points: also load the ``martian_doves.machines`` entry-point group.

    Returns:
        A registry holding all of them; ``sources`` are recorded so worker processes load them too.

    Raises:
        MachineLoadError: one line: a source or entry point does not load, or defines a state twice.
    """
    registry = Registry()
    registry.load_module(builtin)
    if entry_points:
        registry.load_entry_points()
    for source in sources:
        registry.load(source)
    return registry
