"""The folder store's package stays layered: no import cycles, and one module forms every path.

Later work (no-follow access through directory descriptors, per-state folders) changes
how paths are formed in one place only if ``layout.py`` stays that place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import martian_doves.stores.directory as package

PACKAGE = "martian_doves.stores.directory"
FOLDER = Path(package.__file__).parent
#: Modules allowed to join paths: the layout, the primitives that act on a folder's entries,
#: and the held-open folders (whose paths are only ever shown in messages).
PATH_FORMERS = {"layout", "fsops", "folders"}


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(FOLDER.glob("*.py"))}


def _imports(tree: ast.Module) -> set[str]:
    """The modules of the package that ``tree`` imports (at any depth, lazily or not)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == PACKAGE:
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(PACKAGE + "."):
                found.add(node.module.rsplit(".", 1)[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.rsplit(".", 1)[1] for a in node.names if a.name.startswith(PACKAGE + "."))
    return found


def test_the_modules_of_the_folder_store_import_each_other_without_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(tree) & set(modules) - {"__init__"} for name, tree in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())
    assert "lease" not in graph["semaphore"], "the semaphore composes the lease protocol, not the lease mode"


def test_only_the_layout_forms_paths() -> None:
    for name, tree in _modules().items():
        if name in PATH_FORMERS:
            continue
        joins = [node.lineno for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr == "join"
                 and isinstance(node.value, ast.Attribute) and node.value.attr == "path"]
        assert not joins, f"{name}.py forms paths itself (lines {joins}): ask the Layout"
