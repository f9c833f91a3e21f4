"""``doves bench`` with tiny numbers: the report's shape and counts (never its timings)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from acceptance_helpers import Doves

from martian_doves.phases import PHASES

pytestmark = pytest.mark.slow

#: 12 machines of 3 steps, one worker, two probes, the phases timed.
TINY = ("-M", "12", "-K", "3", "-w", "1", "--probes", "2", "--idle-gap-seconds", "0.05", "--idle-seconds", "0.2",
        "--phase-timings", "--json")
#: Transitions the fleet commits: the workload, one batch of 10 warm-up states (the one worker runs it) and
#: the probes.
COMMITTED = 12 * 3 + 10 + 2


def _bench(doves: Doves, *args: str) -> dict[str, Any]:
    result = doves("bench", *args, *TINY)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _check_shape(report: dict[str, Any]) -> None:
    assert report["workload"] == {"machines": 12, "steps": 3, "transitions": 36, "tick_seconds": 0.0}
    assert report["fleet"] == {"workers": 1, "concurrency": 1}
    [run] = report["runs"]
    assert run["transitions"] == 36
    assert run["seconds"] >= run["submit_seconds"] > 0
    assert report["transitions_per_second"] == run["transitions_per_second"] > 0
    assert report["idle_latency"]["probes"] == 2 and len(report["idle_latency"]["samples_ms"]) == 2
    assert report["idle_cpu"]["percent_of_one_core"] >= 0
    assert len(report["peak_rss_mb"]) == 1 and report["peak_rss_mb"][0] > 0
    assert list(report["phases"]) == list(PHASES)
    assert report["phases"]["commit"]["calls"] == COMMITTED
    assert report["phases"]["tick"]["calls"] == COMMITTED


def test_bench_on_a_folder_store_reports_every_figure_and_leaves_nothing_behind(doves: Doves,
                                                                              tmp_path: Path) -> None:
    where = tmp_path / "benches"
    where.mkdir()
    report = _bench(doves, str(where), "--mode", "lease", "--ceiling")
    _check_shape(report)
    assert (report["store"], report["mode"]) == ("folder", "lease")
    ceiling = report["file_ceiling"]
    assert len(ceiling["runs"]) == 1 and ceiling["transitions_per_second"] > 0 and ceiling["share"] > 0
    assert report["phases"]["read"]["calls"] > 0 and report["phases"]["write"]["calls"] > 0
    assert list(where.iterdir()) == [], "the temporary store is removed"


def test_bench_on_postgresql_counts_every_transition_in_its_own_schema(doves: Doves, pg_server_url: str) -> None:
    report = _bench(doves, pg_server_url, "--keep")
    [kept] = report["kept"]
    try:
        _check_shape(report)
        assert report["store"] == "postgresql" and report["file_ceiling"] is None
        assert "schema=doves_bench_" in kept
        result = doves("status", kept, "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        assert (status["done"], status["pending"], status["failed"]) == (COMMITTED, 0, 0)
    finally:
        import psycopg

        schema = kept.rpartition("schema=")[2]
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_bench_scale_writes_the_memory_and_backlog_curves_of_a_folder_store(doves: Doves, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    memory = doves("bench", "--scale", "memory", "-w", "1", "-K", "2", "--transitions", "40", "--batch", "8",
                   "--points", "4", "--out", str(out), "--json")
    assert memory.returncode == 0, memory.stderr
    curve = json.loads((out / "folder-lease-memory.json").read_text())
    assert curve == json.loads(memory.stdout)
    assert curve["transitions"] == 40 and curve["points"][-1]["transitions"] == 40
    assert [p["transitions"] for p in curve["points"]] == sorted(p["transitions"] for p in curve["points"])
    assert all(len(p["rss_mb"]) == 1 and p["rss_mb"][0] > 0 for p in curve["points"])
    assert curve["points"][0]["transitions_per_second"] is None
    assert all(p["transitions_per_second"] >= 0 for p in curve["points"][1:])

    pending = doves("bench", "--scale", "pending", "-w", "1", "-K", "2", "--pending", "5,30", "--window-seconds",
                    "0.5", "--out", str(out), "--json")
    assert pending.returncode == 0, pending.stderr
    curve = json.loads((out / "folder-lease-pending.json").read_text())
    assert [p["pending"] for p in curve["points"]] == [5, 30]
    assert all(p["first_commit_seconds"] > 0 and p["transitions_per_second"] >= 0 for p in curve["points"])


def test_bench_refuses_backlog_sizes_that_are_not_numbers_in_one_line(doves: Doves) -> None:
    result = doves("bench", "--scale", "pending", "--pending", "10,many")
    assert result.returncode == 2
    assert result.stderr.strip() == "doves: error: --pending takes positive numbers separated by commas, not '10,many'"


def test_bench_refuses_a_file_ceiling_for_a_database_in_one_line(doves: Doves) -> None:
    result = doves("bench", "postgresql://nobody@127.0.0.1:1/none", "--ceiling")
    assert result.returncode == 2
    assert result.stderr.strip() == ("doves: error: --ceiling measures a folder's filesystem: it does not apply to "
                                     "a postgresql:// store")


#: Four timers 20 ms apart, then 30 armed a day ahead while the idle CPU is measured.
TIMERS = ("--scenario", "timers", "-w", "1", "--timers", "4", "--timer-after-seconds", "0.1", "--timer-gap-seconds",
          "0.02", "--scheduled", "30", "--idle-seconds", "0.2", "--json")


def _scenario(doves: Doves, *args: str) -> dict[str, Any]:
    result = doves("bench", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def _check_timers(report: dict[str, Any]) -> None:
    assert report["scenario"] == "timers" and report["fleet"] == {"workers": 1, "concurrency": 1}
    assert report["timers"] == {"count": 4, "after_seconds": 0.1, "gap_seconds": 0.02}
    late = report["lateness_ms"]
    assert len(late["samples"]) == 4
    assert min(late["samples"]) == late["min"] >= 0, "no timer fires before it is due"
    assert late["min"] <= late["p50"] <= late["p99"] <= late["max"] == max(late["samples"])
    idle = report["idle_cpu"]
    assert idle["scheduled"] == 30 and idle["arm_seconds"] > 0
    assert idle["empty_percent_of_one_core"] >= 0 and idle["scheduled_percent_of_one_core"] >= 0


def test_bench_timers_scenario_on_a_folder_store_times_every_firing(doves: Doves, tmp_path: Path) -> None:
    report = _scenario(doves, str(tmp_path), *TIMERS)
    _check_timers(report)
    assert (report["store"], report["mode"]) == ("folder", "lease")
    assert list(tmp_path.iterdir()) == [], "the temporary store is removed"


def test_bench_timers_scenario_on_postgresql_times_every_firing(doves: Doves, pg_server_url: str) -> None:
    report = _scenario(doves, pg_server_url, *TIMERS)
    _check_timers(report)
    assert (report["store"], report["mode"]) == ("postgresql", "postgres")
    idle = report["idle_cpu"]
    assert 0 <= idle["empty_server_percent_of_one_core"] <= idle["empty_percent_of_one_core"]


def test_bench_counts_the_postgresql_backends_serving_the_fleet(pg_server_url: str) -> None:
    """Their CPU is the fleet's cost too: the server processes of its sessions, none of the driver's."""
    from martian_doves.benchmark.fleet import Fleet
    from martian_doves.benchmark.target import fresh_store
    from martian_doves.stores import open_store

    with fresh_store(pg_server_url) as target:
        store = open_store(target, "lease")
        fleet = Fleet(target, "lease", 1, 1)
        try:
            fleet.wait_started(store)
            backends = fleet.server_pids(store)
            assert backends and not set(backends) & set(fleet.pids())
            assert {Path(f"/proc/{pid}/comm").read_text().strip() for pid in backends} == {"postgres"}
        finally:
            fleet.stop()
            store.close()


@pytest.mark.parametrize("where", ["folder", "postgresql"])
def test_bench_fanout_scenario_joins_every_child(doves: Doves, tmp_path: Path, request: pytest.FixtureRequest,
                                                 where: str) -> None:
    target = str(tmp_path) if where == "folder" else request.getfixturevalue("pg_server_url")
    report = _scenario(doves, target, "--scenario", "fanout", "-w", "1", "--children", "25", "--json")
    assert (report["scenario"], report["store"], report["children"]) == ("fanout", where, 25)
    assert report["seconds_to_join"] > 0 and report["children_per_second"] > 0


def test_bench_fanout_whose_join_outgrows_the_join_limit_stops_in_one_line(doves: Doves) -> None:
    result = doves("bench", "--scenario", "fanout", "-w", "1", "--children", "40", "--run-args",
                   "--max-state-bytes 1000 --max-join-bytes 2000")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("doves: error: 1 state(s) failed, e.g. fanout.state-1: bad_return: successor of "
                           "fanout.state-1: its children's results add up to ")
    assert "over the 2000-byte limit of a join (--max-join-bytes)" in last


def test_bench_refuses_a_scenario_and_a_curve_at_once_in_one_line(doves: Doves) -> None:
    result = doves("bench", "--scenario", "timers", "--scale", "memory")
    assert result.returncode == 2
    assert result.stderr.strip() == "doves: error: give --scenario or --scale, not both"
