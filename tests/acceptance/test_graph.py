"""``doves graph``: the state graph of a store's machines, or of machines' code, as Mermaid, SVG or JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from acceptance_helpers import Doves, copy_seed_examples, one_line, write_state


def _counts(graph: dict[str, Any]) -> dict[tuple[str, str, str], int]:
    return {(e["source"], e["target"], e["kind"]): e.get("count") for e in graph["edges"]}


@pytest.fixture
def ran_store(doves: Doves, store_dir: Path, machines_py: Path, tmp_path: Path) -> Path:
    """The seed's examples, a traffic light and a machine that fails, run to their end."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy_seed_examples(incoming)
    write_state(incoming, "traffic.state", "traffic-light-green", {"cycles": 2})
    write_state(incoming, "doomed.state", "always-fails", {})
    assert doves("submit", str(store_dir), str(incoming), "--machines", str(machines_py)).returncode == 0
    result = doves("run", str(store_dir), "--workers", "2", "--max-attempts", "1", "--machines", str(machines_py))
    assert result.returncode == 1, result.stderr  # the doomed state failed
    return store_dir


def test_the_graph_of_a_store_counts_every_step(doves: Doves, ran_store: Path) -> None:
    result = doves("graph", str(ran_store), "--format", "json")
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    assert graph["observed"] is True and graph["notes"] == []
    assert _counts(graph) == {
        ("doves.start", "simple", "start"): 3, ("simple", "doves.end", "end"): 3,
        ("doves.start", "countdown", "start"): 1, ("countdown", "countdown", "next"): 4,
        ("countdown", "doves.end", "end"): 1,
        ("doves.start", "slow-countdown", "start"): 1, ("slow-countdown", "slow-countdown", "next"): 4,
        ("slow-countdown", "doves.end", "end"): 1,
        ("doves.start", "traffic-light-green", "start"): 1,
        ("traffic-light-green", "traffic-light-yellow", "next"): 2,
        ("traffic-light-yellow", "traffic-light-red", "next"): 2,
        ("traffic-light-red", "traffic-light-green", "next"): 1, ("traffic-light-red", "doves.end", "end"): 1,
        ("doves.start", "always-fails", "start"): 1, ("always-fails", "doves.failed", "fail"): 1,
    }


def test_mermaid_by_default_and_svg_or_json_into_a_file(doves: Doves, ran_store: Path, tmp_path: Path) -> None:
    mermaid = doves("graph", str(ran_store))
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD\n")
    assert '-->|"4"|' in mermaid.stdout and '(["failed"])' in mermaid.stdout and "linkStyle" in mermaid.stdout

    picture = tmp_path / "graph.svg"
    result = doves("graph", str(ran_store), "-o", str(picture))  # the format follows the file's name
    assert result.returncode == 0 and result.stdout == "", result.stderr
    texts = {t.text for t in ET.parse(picture).getroot().iter("{http://www.w3.org/2000/svg}text")}
    assert {"countdown", "traffic-light-red", "failed", "4", "3"} <= texts

    data = tmp_path / "graph.json"
    assert doves("graph", str(ran_store), "--output", str(data)).returncode == 0
    assert json.loads(data.read_text())["observed"] is True
    forced = tmp_path / "graph.svg.txt"
    assert doves("graph", str(ran_store), "-o", str(forced), "--format", "svg").returncode == 0
    assert forced.read_text().startswith("<svg")


def test_a_sample_and_a_choice_of_machines(doves: Doves, ran_store: Path) -> None:
    result = doves("graph", str(ran_store), "--limit", "2", "--format", "json")
    assert result.returncode == 0
    assert sum(e["count"] for e in json.loads(result.stdout)["edges"] if e["kind"] == "start") == 2
    assert "doves: note: read the newest 2 machines (the limit, --limit): a sample of the store" in result.stderr

    result = doves("graph", "--state", "countdown", "--format", "json", env={"DOVES_STORE": str(ran_store)})
    assert result.returncode == 0, result.stderr
    assert {n["id"] for n in json.loads(result.stdout)["nodes"]} == {"doves.start", "countdown", "doves.end"}

    result = doves("graph", str(ran_store), "--state", "nothing-starts-here")
    assert result.returncode == 1
    assert one_line(result.stderr) == f"doves: no machine starting in nothing-starts-here found in {ran_store}"


def test_the_graph_declared_in_code(doves: Doves, machines_py: Path) -> None:
    result = doves("graph", "--machines", str(machines_py), "--format", "json")
    assert result.returncode == 0, result.stderr
    graph = json.loads(result.stdout)
    assert graph["observed"] is False
    edges = {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
    assert ("counted", "counted", "next") in edges and ("counted", "doves.end", "end") in edges
    assert "countdown" not in {n["id"] for n in graph["nodes"]}  # the built-in machines are left out
    assert graph["title"] == "state graph declared in test_machines.py"

    result = doves("graph", "--state", "shop-order-placed")
    assert result.returncode == 0, result.stderr
    assert '{{"wait for payment"}}' in result.stdout and '-.->|"timeout"|' in result.stdout


def test_mistakes_are_one_line(doves: Doves, store_dir: Path, machines_py: Path, tmp_path: Path) -> None:
    both = doves("graph", str(store_dir), "--machines", str(machines_py))
    assert both.returncode == 2
    assert one_line(both.stderr).startswith("doves: error: give STORE (the graph observed there) or --machines")

    neither = doves("graph")
    assert neither.returncode == 2 and "give STORE" in one_line(neither.stderr)

    unknown = doves("graph", "--state", "no-such-state")
    assert unknown.returncode == 2
    assert one_line(unknown.stderr).startswith("doves: error: no machine is loaded for state 'no-such-state'")

    missing = doves("graph", str(tmp_path / "typo"))
    assert missing.returncode == 2 and "no store at" in one_line(missing.stderr)

    plain = doves("graph", str(store_dir))
    assert plain.returncode == 2 and "not a store" in one_line(plain.stderr)

    (store_dir / "pending").mkdir()  # a store with nothing in it
    empty = doves("graph", str(store_dir))
    assert empty.returncode == 1
    assert one_line(empty.stderr) == f"doves: no machine found in {store_dir}"


def test_a_postgresql_store(doves: Doves, pg_url: str, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    copy_seed_examples(incoming)
    assert doves("submit", pg_url, str(incoming)).returncode == 0
    assert doves("run", pg_url, "--workers", "1").returncode == 0
    result = doves("graph", pg_url, "--format", "json")
    assert result.returncode == 0, result.stderr
    counts = _counts(json.loads(result.stdout))
    assert counts[("doves.start", "simple", "start")] == 3
    assert counts[("countdown", "countdown", "next")] == 4
