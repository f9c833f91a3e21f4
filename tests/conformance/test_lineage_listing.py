"""Stores name their machines (``LineageStore``): what ``doves graph STORE`` walks, lineage by lineage."""

from __future__ import annotations

from contract_helpers import _claim_one, _submit

from martian_doves.graph import observed_graph
from martian_doves.model import JOIN_STATE, Child, Failure, State, Successor, WaitFor
from martian_doves.stores.base import LineageStore, Store


def test_machine_names_are_the_roots_newest_first(any_store: Store) -> None:
    """Successors are not machines; failed roots are; ``limit`` keeps the newest."""
    assert isinstance(any_store, LineageStore)
    assert any_store.machine_names() == []
    _submit(any_store, State("a.state", "count", {"n": 2}))
    claim = _claim_one(any_store)
    any_store.commit(claim, Successor("count", {"n": 1}))
    _submit(any_store, State("b.state", "count", {"n": 2}))
    _submit(any_store, State("c.state", "count", {"n": 2}))
    claims = any_store.claim("w1", 10)
    failing = next(c for c in claims if c.name == "c.state")
    any_store.fail(failing, Failure("tick_failed", "no"))
    # Written one after the other: where two share a timestamp, the later name sorts first too.
    assert any_store.machine_names() == ["c.state", "b.state", "a.state"]
    assert any_store.machine_names(limit=2) == ["c.state", "b.state"]
    assert [e.name for e in any_store.history("a.state")] == ["a.state", "a.state-1"]


def test_child_machines_are_machines(model_store: Store) -> None:
    assert isinstance(model_store, LineageStore)
    _submit(model_store, State("batch.state", "batch", {}))
    claim = _claim_one(model_store)
    model_store.commit(claim, Successor(JOIN_STATE, {}, wait=WaitFor("done", children=2),
                                        children=(Child("part", {"i": 0}), Child("part", {"i": 1}))))
    assert sorted(model_store.machine_names()) == ["batch.state", "batch.state+0.state", "batch.state+1.state"]


def test_the_graph_of_a_store_counts_its_lineages(any_store: Store) -> None:
    _submit(any_store, State("a.state", "count", {"n": 2}), State("b.state", "count", {"n": 1}))
    for claim in any_store.claim("w1", 10):
        any_store.commit(claim, Successor("count", {"n": 1}) if claim.name == "a.state" else None)
    graph = observed_graph(any_store)
    counts = {(e.source, e.target): e.count for e in graph.edges.values()}
    assert counts == {("doves.start", "count"): 2, ("count", "count"): 1, ("count", "doves.end"): 1}
    assert graph.nodes["count"].counts == {"pending": 1}
