"""The typed configuration: fields declared once, store configurations, and the heartbeat rule.

Each options class declares its fields with ``settings.setting`` (default, help, bounds,
flag); these tests check what the rest of the package relies on: flags and variables are
unique, bounds are enforced for objects built in Python, a store configuration refuses
options that are not of its family, and the heartbeat fits the store's lease wherever a
``Worker`` is built.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from martian_doves.clock import FakeClock
from martian_doves.config import (
    ALL_OPTIONS,
    HEARTBEAT_SECONDS,
    DirectoryOptions,
    Phases,
    PostgresOptions,
    SemaphoreOptions,
    StoreConfig,
    StoreOptions,
    SupervisorOptions,
    WorkerOptions,
)
from martian_doves.errors import ConfigError
from martian_doves.registry import Registry
from martian_doves.retry import RetryPolicy
from martian_doves.settings import flag_of, settings_of
from martian_doves.stores import is_directory_store, open_store
from martian_doves.stores.base import AdminStore, ExportableStore, MigratableStore, Store
from martian_doves.stores.directory import LeaseStore, SemaphoreStore
from martian_doves.stores.memory import MemoryStore
from martian_doves.worker import Worker

# -- fields declared once -----------------------------------------------------------------------


def _flags() -> dict[str, list[tuple[type, str]]]:
    """Every command-line flag of every options class: flag → [(class, field)] (inherited fields once)."""
    found: dict[str, list[tuple[type, str]]] = {}
    for cls in ALL_OPTIONS:
        for item, described, _ in settings_of(cls):
            owner = next(base for base in reversed(cls.__mro__) if item.name in getattr(base, "__annotations__", {}))
            if described.cli and (owner, item.name) not in found.get(flag_of(item.name, described), []):
                found.setdefault(flag_of(item.name, described), []).append((owner, item.name))
    return found


def test_every_flag_belongs_to_one_field() -> None:
    """Two fields behind one flag would make one of them unreachable from the command line."""
    shared = {flag: owners for flag, owners in _flags().items() if len(owners) > 1}
    assert shared == {}


def test_every_setting_has_help_and_usable_bounds() -> None:
    for cls in ALL_OPTIONS:
        for item, described, _ in settings_of(cls):
            assert described.help.strip(), f"{cls.__name__}.{item.name} has no help text"
            if described.minimum is not None and described.maximum is not None:
                assert described.minimum < described.maximum
            if item.default not in (None, dataclasses.MISSING) and not isinstance(item.default, bool | str):
                assert described.minimum is None or item.default >= described.minimum, item.name


def test_the_defaults_validate() -> None:
    for cls in (DirectoryOptions, SemaphoreOptions, PostgresOptions, WorkerOptions, RetryPolicy, SupervisorOptions):
        cls().validate()


@pytest.mark.parametrize(("options", "message"), [
    (DirectoryOptions(lease_seconds=0), "--lease-seconds must be greater than 0"),
    (DirectoryOptions(max_state_bytes=10), "--max-state-bytes must be at least 64"),
    (DirectoryOptions(scan_seconds=float("nan")), "--scan-seconds must be a finite number of seconds"),
    (PostgresOptions(claim_batch=0), "^claim_batch must be at least 1"),
    (PostgresOptions(schema="A b"), "use lowercase letters"),
    (SemaphoreOptions(assignment_seconds=0), "--assignment-seconds must be greater than 0"),
    (SemaphoreOptions(buffer_seconds=0.01), "--buffer-seconds must be at least 0.05"),
    (WorkerOptions(heartbeat_seconds=float("inf")), "--heartbeat-seconds must be a finite number"),
    (WorkerOptions(concurrency=0), "--concurrency must be at least 1"),
    (RetryPolicy(jitter=2), "--retry-jitter must be between 0 and 1"),
    (SupervisorOptions(workers=2000), "--workers must be between 1 and 1024"),
    (SupervisorOptions(metrics_port=70000), "--metrics-port must be between 0 and 65535"),
])
def test_values_out_of_range_are_one_line_errors_naming_the_flag(options: Any, message: str) -> None:
    """The bounds ``--help`` shows are the ones objects built in Python are held to."""
    with pytest.raises(ConfigError, match=message) as caught:
        options.validate()
    assert "\n" not in caught.value.message


def test_phases_are_held_to_the_semaphore_options_bounds() -> None:
    assert Phases(3, 3, 3, 1).validate().cycle_seconds == 12
    with pytest.raises(ConfigError, match="--update-seconds"):
        Phases(3, 3, -1, 1).validate()
    assert SemaphoreOptions().phases == Phases(3.0, 3.0, 3.0, 1.0)


def test_the_postgresql_url_options_are_the_fields_marked_for_it() -> None:
    url_options = PostgresOptions.url_options()
    assert {"schema", "lease_seconds", "claim_batch", "pool_size", "synchronous_commit"} <= set(url_options)
    assert "create_schema" not in url_options and "max_state_bytes" not in url_options


def test_the_memory_store_uses_the_one_default_lease() -> None:
    assert MemoryStore().lease_seconds == StoreOptions().lease_seconds


# -- store configurations ----------------------------------------------------------------------------


def test_a_store_configuration_holds_the_options_of_its_family(tmp_path: Path) -> None:
    lease = StoreConfig.of(str(tmp_path), lease_seconds=5)
    assert (lease.mode, type(lease.options), lease.explicit) == ("lease", DirectoryOptions, {"lease_seconds"})
    semaphore = StoreConfig.of(str(tmp_path), "semaphore", buffer_seconds=2, max_skew_seconds=None)
    assert (semaphore.mode, semaphore.options, semaphore.explicit) == (
        "semaphore", SemaphoreOptions(buffer_seconds=2), {"buffer_seconds"})  # None: not given
    database = StoreConfig.of("postgresql://h/db", "semaphore", schema="s1")  # a mode means nothing there
    assert (database.mode, database.options, database.is_postgres) == ("postgres", PostgresOptions(schema="s1"), True)


@pytest.mark.parametrize(("target", "mode", "options", "message"), [
    ("postgresql://h/db", "lease", {"durable": True}, "durable: not an option of a PostgreSQL store"),
    ("./store", "lease", {"buffer_seconds": 2}, "buffer_seconds: not an option of a folder store "),
    ("./store", "lease", {"lease_second": 2}, r"lease_second: not an option of a folder store \(its options: "),
    ("./store", "semaphore", {"schema": "x"}, "schema: not an option of a folder store in semaphore mode"),
    ("./store", "fast", {}, "unknown mode 'fast'"),
    ("", "lease", {}, "no store given"),
    ("redis://h", "lease", {}, "unsupported store URL"),
])
def test_a_store_configuration_refuses_what_does_not_apply(target: str, mode: str, options: dict[str, Any],
                                                           message: str) -> None:
    """Options a store does not know used to be dropped in silence, typos included."""
    with pytest.raises(ConfigError, match=message):
        StoreConfig.of(target, mode, **options)
    with pytest.raises(ConfigError, match=message):
        open_store(target, mode, **options)


def test_a_hand_built_store_configuration_is_checked_when_opened(tmp_path: Path) -> None:
    mismatched = StoreConfig(str(tmp_path), "semaphore", DirectoryOptions())
    with pytest.raises(ConfigError, match="takes SemaphoreOptions, not DirectoryOptions"):
        open_store(mismatched)
    with pytest.raises(ConfigError, match="inside the StoreConfig"):
        open_store(StoreConfig.of(str(tmp_path)), lease_seconds=3)


def test_open_store_takes_a_configuration_or_a_target(tmp_path: Path) -> None:
    semaphore = open_store(StoreConfig.of(str(tmp_path / "a"), "semaphore", buffer_seconds=0.5, lease_seconds=7))
    lease = open_store(str(tmp_path / "b"), lease_seconds=9)
    try:
        assert isinstance(semaphore, SemaphoreStore) and semaphore.lease_seconds == 7
        assert semaphore.phases.buffer_seconds == 0.5
        assert isinstance(lease, LeaseStore) and lease.lease_seconds == 9
    finally:
        semaphore.close()
        lease.close()


def test_with_options_changes_options_without_counting_them_as_given() -> None:
    config = StoreConfig.of("postgresql://h/db", lease_seconds=5).with_options(create_schema=False)
    assert (config.options.create_schema, config.explicit) == (False, {"lease_seconds"})  # type: ignore[attr-defined]


# -- capabilities -------------------------------------------------------------------------------------


def test_capabilities_are_protocols_of_the_store_side(tmp_path: Path) -> None:
    """The CLI asks a store what it can do with ``isinstance``; folders neither migrate nor export."""
    for store in (MemoryStore(), open_store(str(tmp_path / "lease")), open_store(str(tmp_path / "sem"), "semaphore")):
        try:
            assert isinstance(store, Store) and isinstance(store, AdminStore)
            assert not isinstance(store, MigratableStore) and not isinstance(store, ExportableStore)
        finally:
            store.close()


def test_a_folder_is_recognised_as_a_store_by_the_store_layout(tmp_path: Path) -> None:
    open_store(str(tmp_path / "store")).close()
    (tmp_path / "plain").mkdir()
    assert is_directory_store(str(tmp_path / "store"))
    assert not is_directory_store(str(tmp_path / "plain"))
    assert not is_directory_store(str(tmp_path / "missing"))


# -- the heartbeat and the lease ------------------------------------------------------------------------


def test_an_unset_heartbeat_fits_the_lease() -> None:
    assert WorkerOptions().fitted_to(30).heartbeat_seconds == HEARTBEAT_SECONDS
    assert WorkerOptions().fitted_to(1).heartbeat_seconds == 0.25
    assert WorkerOptions(heartbeat_seconds=0.5).fitted_to(1).heartbeat_seconds == 0.5


def test_a_heartbeat_slower_than_half_the_lease_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--heartbeat-seconds 0.6 must be at most half of the store's lease \(1 s"):
        WorkerOptions(heartbeat_seconds=0.6).fitted_to(1)


def test_a_worker_built_in_python_gets_the_heartbeat_rule_too() -> None:
    """Not only ``doves run``: a Worker on a short lease renews it in time, or refuses to start
    with a heartbeat that would let a healthy claim expire and its tick run twice."""
    store = MemoryStore(FakeClock(), lease_seconds=2)
    assert Worker(store, Registry(), WorkerOptions(name="w")).options.heartbeat_seconds == 0.5
    with pytest.raises(ConfigError, match="at most half of the store's lease"):
        Worker(store, Registry(), WorkerOptions(name="w", heartbeat_seconds=HEARTBEAT_SECONDS))
