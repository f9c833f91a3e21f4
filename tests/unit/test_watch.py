"""inotify wake-ups: a new hint wakes a waiting worker; names are kept only where someone reads them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from martian_doves.stores.directory.watch import Watcher

#: Far longer than any wake-up takes, even on a loaded machine; a test never waits it out.
WAIT_SECONDS = 120.0


def _watcher(tmp_path: Path) -> tuple[Watcher, Path, Path]:
    arrivals, written = tmp_path / "pending", tmp_path / "root"
    arrivals.mkdir()
    written.mkdir()
    watcher = Watcher(arrivals=[str(arrivals)], written=[str(written)])
    if not watcher.active:
        pytest.skip("no inotify here")
    return watcher, arrivals, written


def _woken_by(watcher: Watcher, make: Callable[[], object]) -> bool:
    """Whether a ``wait`` that started before ``make`` ran returned long before its timeout."""
    returned = threading.Event()
    waiting = threading.Thread(target=lambda: (watcher.wait(WAIT_SECONDS), returned.set()), daemon=True)
    waiting.start()
    time.sleep(0.2)  # let it block on the descriptor (an event before that would wake it as well)
    make()
    return returned.wait(WAIT_SECONDS / 2)


def test_a_new_hint_wakes_a_waiting_worker_and_leaves_no_names_behind(tmp_path: Path) -> None:
    watcher, arrivals, _ = _watcher(tmp_path)
    try:
        assert _woken_by(watcher, lambda: os.close(os.open(arrivals / "a.state", os.O_CREAT | os.O_WRONLY)))
        for i in range(50):  # hints come and go all day: nothing of them may pile up in memory
            (arrivals / f"h{i}.state").touch()
        watcher.take_events(str(arrivals))
        assert watcher.names(str(arrivals)) == {}
    finally:
        watcher.close()


def test_files_written_in_the_root_wake_and_are_named_once(tmp_path: Path) -> None:
    watcher, _, written = _watcher(tmp_path)
    try:
        assert _woken_by(watcher, lambda: (written / "copied.state").write_text("{}"))
        assert watcher.take_events(str(written))
        assert watcher.names(str(written)) == {"copied.state": False}
        assert watcher.names(str(written)) == {}
        assert not watcher.take_events(str(written))
    finally:
        watcher.close()


def test_a_file_moved_in_wakes_and_is_named_as_moved(tmp_path: Path) -> None:
    watcher, _, written = _watcher(tmp_path)
    try:
        outside = tmp_path / "outside.state"
        outside.write_text("{}")
        assert _woken_by(watcher, lambda: os.rename(outside, written / "moved.state"))
        assert watcher.take_events(str(written))
        assert watcher.names(str(written)) == {"moved.state": True}
    finally:
        watcher.close()


def test_the_stores_own_renames_into_the_root_are_not_named(tmp_path: Path) -> None:
    root, own = tmp_path / "root", tmp_path / "root" / ".tmp"
    own.mkdir(parents=True)
    watcher = Watcher(written=[str(root)], own=[str(own)])
    if not watcher.active:
        pytest.skip("no inotify here")
    try:
        for i in range(200):  # successors come all day: nothing of them may pile up
            (own / f"s{i}").write_text("{}")
            os.rename(own / f"s{i}", root / f"s{i}.state")
        assert not watcher.take_events(str(root))
        assert watcher.names(str(root)) == {}
        (tmp_path / "x.state").write_text("{}")
        os.rename(tmp_path / "x.state", root / "x.state")
        assert watcher.take_events(str(root))
        assert watcher.names(str(root)) == {"x.state": True}
    finally:
        watcher.close()


def test_a_refused_inotify_instance_means_polling_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the user's limit of inotify instances (``fs.inotify.max_user_instances``) the kernel refuses a new
    one: the store polls instead, whether the watches are added on first use or in the background."""
    inotify_simple = pytest.importorskip("inotify_simple")

    def refused(*_: object, **__: object) -> None:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(inotify_simple, "INotify", refused)
    for background in (False, True):
        watcher = Watcher(arrivals=[str(tmp_path)])
        if background:
            watcher.start_in_background()
        assert not watcher.active
        watcher.wait(0.01)  # a plain sleep now
        assert not watcher.take_events(str(tmp_path))
        watcher.close()
