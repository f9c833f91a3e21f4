"""The ``doves`` options as derived from the configuration's fields, and turned back into it.

Runs click in this process (``CliRunner``) on the real commands' parameters and on a
probe command made of the same option builders; nothing here opens a store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from martian_doves.cli import cli
from martian_doves.cli.options import (
    fields_options,
    options_from,
    store_argument,
    store_config,
    store_options,
)
from martian_doves.config import ALL_OPTIONS, StoreConfig, WorkerOptions
from martian_doves.config.processes import TICK_TIMEOUT_SECONDS
from martian_doves.settings import settings_of

#: Every command's DOVES_* variables (without the prefix): names users and compose files rely on.
VARIABLES = {
    "bench": "BENCH_BATCH BENCH_CEILING BENCH_CHILDREN BENCH_CONCURRENCY BENCH_COUNT BENCH_IDLE_GAP_SECONDS "
             "BENCH_IDLE_SECONDS BENCH_JSON BENCH_KEEP BENCH_OUT BENCH_PENDING BENCH_PHASE_TIMINGS BENCH_POINTS "
             "BENCH_PROBES BENCH_QUIET BENCH_RUNS BENCH_RUN_ARGS BENCH_SCALE BENCH_SCENARIO BENCH_SCHEDULED "
             "BENCH_STEPS BENCH_TICK_SECONDS BENCH_TIMEOUT_SECONDS BENCH_TIMERS BENCH_TIMER_AFTER_SECONDS "
             "BENCH_TIMER_GAP_SECONDS BENCH_TRANSITIONS BENCH_WINDOW_SECONDS BENCH_WORKERS MODE",
    "dashboard": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DASHBOARD_ALLOW_HOST DASHBOARD_HOST "
                 "DASHBOARD_PORT DASHBOARD_READ_ONLY DASHBOARD_REFRESH_SECONDS DASHBOARD_TOKEN DURABLE LEASE_SECONDS "
                 "LOG_FORMAT LOG_LEVEL MAX_JOIN_BYTES MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS "
                 "SCHEMA STORE SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "demo": "DEMO_DIR DEMO_FAST LOG_FORMAT LOG_LEVEL PROGRESS PROGRESS_SECONDS WORKERS",
    "export": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE LEASE_SECONDS MAX_JOIN_BYTES "
              "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "graph": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE GRAPH_FORMAT GRAPH_LIMIT GRAPH_OUTPUT "
             "GRAPH_STATE GRAPH_TITLE LEASE_SECONDS MACHINES MAX_JOIN_BYTES MAX_SKEW_SECONDS MAX_STATE_BYTES MODE "
             "POOL_SIZE SCAN_SECONDS SCHEMA STORE SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "history": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE JSON LEASE_SECONDS MAX_JOIN_BYTES "
               "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SYNCHRONOUS_COMMIT "
               "UPDATE_SECONDS",
    "migrate": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE LEASE_SECONDS MAX_JOIN_BYTES "
               "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA STORE SYNCHRONOUS_COMMIT "
               "UPDATE_SECONDS",
    "reset": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE LEASE_SECONDS MAX_JOIN_BYTES "
             "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA STORE SUCCESSORS "
             "SYNCHRONOUS_COMMIT UPDATE_SECONDS YES",
    "retry": "ASSIGNMENT_SECONDS BUFFER_SECONDS CODE COMMITMENT_SECONDS DURABLE LEASE_SECONDS LIMIT MAX_JOIN_BYTES "
             "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SINCE STATE SYNCHRONOUS_COMMIT "
             "TEXT UPDATE_SECONDS YES",
    "forget": "ASSIGNMENT_SECONDS BUFFER_SECONDS CODE COMMITMENT_SECONDS DURABLE LEASE_SECONDS LIMIT MAX_JOIN_BYTES "
              "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SINCE STATE STATUS "
              "SYNCHRONOUS_COMMIT TEXT UPDATE_SECONDS YES",
    "list": "ASSIGNMENT_SECONDS BUFFER_SECONDS CODE COMMITMENT_SECONDS DURABLE JSON LEASE_SECONDS LIMIT "
            "MAX_JOIN_BYTES MAX_SKEW_SECONDS MAX_STATE_BYTES MODE OFFSET POOL_SIZE SCAN_SECONDS SCHEMA SINCE STATE "
            "STATUS STORE SYNCHRONOUS_COMMIT TEXT UPDATE_SECONDS",
    "show": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE JSON LEASE_SECONDS MAX_JOIN_BYTES "
            "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "run": "ASSIGNMENT_SECONDS BUFFER_SECONDS CHAIN CLOCK_OFFSET_SECONDS COMMITMENT_SECONDS CONCURRENCY DURABLE "
           "FAIL_UNKNOWN_STATES HEARTBEAT_SECONDS LEASE_SECONDS LOG_FORMAT LOG_LEVEL MACHINES MAX_ATTEMPTS "
           "MAX_JOIN_BYTES MAX_REQUESTED_RETRIES MAX_SKEW_SECONDS MAX_STATE_BYTES METRICS_HOST METRICS_PORT MODE "
           "NAME PHASE_TIMINGS POLL_SECONDS POOL_SIZE PREFETCH PROGRESS PROGRESS_SECONDS RETRY_BASE_SECONDS "
           "RETRY_JITTER RETRY_MAX_SECONDS SCAN_SECONDS SCHEMA SHUTDOWN_GRACE_SECONDS STORE SYNCHRONOUS_COMMIT "
           "TICK_TIMEOUT UPDATE_SECONDS WATCH WORKERS",
    "send": "ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DATA DURABLE LEASE_SECONDS MAX_JOIN_BYTES "
            "MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "status": "ASSIGNMENT_SECONDS BUFFER_SECONDS BY_STATE COMMITMENT_SECONDS DURABLE JSON LEASE_SECONDS "
              "MAX_JOIN_BYTES MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA "
              "STATUS_REFRESH_SECONDS STATUS_WATCH STORE SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "submit": "ALLOW_UNKNOWN_STATES ASSIGNMENT_SECONDS BUFFER_SECONDS COMMITMENT_SECONDS DURABLE LEASE_SECONDS "
              "MACHINES MAX_JOIN_BYTES MAX_SKEW_SECONDS MAX_STATE_BYTES MODE POOL_SIZE SCAN_SECONDS SCHEMA "
              "SYNCHRONOUS_COMMIT UPDATE_SECONDS",
    "validate": "ALLOW_UNKNOWN_STATES MACHINES MAX_JOIN_BYTES MAX_STATE_BYTES",
}


def test_every_command_keeps_its_environment_variables() -> None:
    found = {name: " ".join(sorted(p.envvar.removeprefix("DOVES_") for p in command.params
                                   if isinstance(p.envvar, str)))
             for name, command in cli.commands.items()}
    assert found == VARIABLES


def test_no_command_declares_a_flag_twice() -> None:
    for name, command in cli.commands.items():
        flags = [flag for param in command.params for flag in param.opts + param.secondary_opts]
        assert len(flags) == len(set(flags)), name


def test_option_defaults_are_the_fields_defaults() -> None:
    """Every default is written once: in the field. An option derived from a field starts from
    the field's default (``--watch`` from the negation of ``exit_when_finished``)."""
    checked = 0
    for name in ("run", "status", "dashboard"):
        params = {p.name: p for p in cli.commands[name].params}
        for cls in ALL_OPTIONS:
            for item, described, _ in settings_of(cls):
                if not described.cli or item.name not in params:
                    continue
                expected = item.default if item.default is not dataclasses.MISSING else None
                assert params[item.name].default == (not expected if described.negate else expected), item.name
                assert params[item.name].help == described.help
                checked += 1
    assert checked > 40


# -- from what the user gave back to the configuration --------------------------------------


captured: list[tuple[StoreConfig, WorkerOptions]] = []


@click.command()
@store_argument
@store_options(visible=True)
@fields_options(WorkerOptions)
def probe(store: str | None, **params: Any) -> None:
    captured.append((store_config(store, params), options_from(WorkerOptions, params, name="probe")))


def _probe(*args: str, env: dict[str, str] | None = None) -> tuple[StoreConfig, WorkerOptions]:
    captured.clear()
    result = CliRunner().invoke(probe, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return captured[-1]


def test_nothing_given_is_the_defaults(tmp_path: Path) -> None:
    config, worker = _probe(str(tmp_path))
    assert config == StoreConfig.of(str(tmp_path)) and config.explicit == frozenset()
    assert worker == WorkerOptions(name="probe")


def test_an_option_given_at_its_default_value_counts_as_given() -> None:
    """So that `--lease-seconds 30` wins over a URL's ?lease_seconds=5 (PostgreSQL keeps the URL's
    options only for what the command line and the environment left out)."""
    config, _ = _probe("postgresql://h/db?lease_seconds=5", "--lease-seconds", "30", env={"DOVES_POOL_SIZE": "8"})
    assert config.explicit == {"lease_seconds", "pool_size"}


def test_options_of_another_store_family_do_not_apply(tmp_path: Path) -> None:
    """One environment may serve folder and database commands alike: DOVES_DURABLE set for folder
    workers does not stop `doves status postgresql://...`."""
    env = {"DOVES_DURABLE": "1", "DOVES_BUFFER_SECONDS": "2"}
    database, _ = _probe("postgresql://h/db", env=env)
    assert database.explicit == frozenset() and database.is_postgres
    folder, _ = _probe(str(tmp_path), env=env)
    assert folder.explicit == {"durable"} and folder.options.durable  # type: ignore[attr-defined]
    semaphore, _ = _probe(str(tmp_path), "--mode", "semaphore", env=env)
    assert semaphore.options.buffer_seconds == 2  # type: ignore[attr-defined]


def test_worker_flags_become_worker_options() -> None:
    _, worker = _probe("./store", "--watch", "--no-chain", "--tick-timeout", "5", "-c", "3",
                       env={"DOVES_HEARTBEAT_SECONDS": "0.5"})
    assert worker == WorkerOptions(name="probe", exit_when_finished=False, chain=False, tick_timeout_seconds=5,
                                   concurrency=3, heartbeat_seconds=0.5)


def test_ticks_have_a_time_limit_unless_turned_off() -> None:
    """A tick that never ends must not hold a worker for ever: ``run`` limits ticks by default, and
    only ``--tick-timeout 0`` turns the limit off."""
    _, default = _probe("./store")
    assert default.tick_timeout_seconds == TICK_TIMEOUT_SECONDS > 0
    _, off = _probe("./store", "--tick-timeout", "0")
    assert off.tick_timeout_seconds == 0


@pytest.mark.parametrize(("args", "message"), [
    (("--lease-seconds", "0"), "0.0 is not in the range x>0"),
    (("--concurrency", "0"), "0 is not in the range x>=1"),
    (("--lease-seconds", "nan"), "--lease-seconds must be a finite number of seconds"),
])
def test_values_out_of_range_are_refused_with_the_flag(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(probe, ["./store", *args])
    assert result.exit_code != 0
    assert message in (result.output + str(result.exception))
