"""The PostgreSQL store package keeps its layers: connections apart from states, SQL apart from both.

Read from the source (no server needed): which module imports which, and that every
named query the code asks for is in ``queries.sql``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "martian_doves" / "stores" / "postgres"
PREFIX = "martian_doves."


def imports(module: str, prefix: str = PREFIX) -> set[str]:
    """The modules ``module`` imports whose names start with ``prefix`` (run time or type checking)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(prefix))
    return found


def test_the_connector_knows_nothing_about_states() -> None:
    """Sessions, retries and wake-ups only: no state records, codec, store contract or queries."""
    states = {"martian_doves.model", "martian_doves.codec", "martian_doves.stores.base"}
    assert not imports("connector") & states
    assert not {m for m in imports("connector") if m.startswith("martian_doves.stores.postgres")}
    assert "Q[" not in (PACKAGE / "connector.py").read_text()


@pytest.mark.parametrize("module", ["url", "sql", "connector", "schema", "commits", "machines", "views", "export"])
def test_only_the_package_entry_imports_the_store(module: str) -> None:
    """The store sits on top: nothing below it imports it back (no cycle through the package)."""
    assert "martian_doves.stores.postgres.store" not in imports(module)
    assert "martian_doves.stores.postgres" not in imports(module)


def test_export_writes_through_the_folder_store_layout() -> None:
    """The folder store's file formats are written by its Layout, never re-implemented here."""
    assert "martian_doves.stores.directory.layout" in imports("export")
    assert not imports("export", "martian_doves.stores.directory.fsops")
    assert not imports("export", "json")
    source = (PACKAGE / "export.py").read_text()
    assert "os.path.join" not in source and "open(" not in source


def test_no_module_of_the_package_is_large() -> None:
    for path in PACKAGE.glob("*.py"):
        assert len(path.read_text().splitlines()) <= 500, path.name


def test_every_query_the_code_names_is_in_queries_sql() -> None:
    pytest.importorskip("psycopg")
    from martian_doves.stores.postgres import Q, migrations

    named = {name for path in PACKAGE.glob("*.py") for name in re.findall(r'Q\["(\w+)"\]', path.read_text())}
    assert named and named <= set(Q)
    assert all(Q[name] and not Q[name].startswith("--") for name in named)
    versions = [version for version, _ in migrations()]
    assert versions == list(range(1, len(versions) + 1))
