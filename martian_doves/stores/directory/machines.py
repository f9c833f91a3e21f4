"""Timers, waits, events and children on a folder: the machine model over the lease protocol's files.

Where things live is ``layout.py``'s; the moves, each one atomic:

- A timer's successor is written with its marker in ``scheduled/DUE/`` instead of a hint
  (mtime: when it is due); a waiting entry's marker is in ``waiting/DUE/`` (``forever``
  without a deadline). Waking either is one rename into ``pending/``: whoever wins it
  (the worker promoting due timers, a sender, the last child to end) makes the state
  runnable once. A woken entry given back (``release``) is parked again.
- Events go to ``mailboxes/M/`` under increasing numbers; a wait takes the first of its
  name by renaming it ``N@WAIT`` (so it is delivered once, and found again after a crash).
- Children are root states named by ``codec.child_names``, each file written before its
  hint (unlike a successor's): a worker woken by the hint finds the file, and admission
  leaves a child's file without a hint alone until its spawner has settled. A child
  machine that ends records ``joins/SPAWNER/I`` before its end is committed and wakes the
  join after: the records are a wake-up count (never short, sometimes ahead), the
  children's lineages are the truth the join is given.

What a crash can lose is a wake-up, never a state: a worker on its start, and every worker
at each takeover round, looks again at the joins left waiting, and at start at mailboxes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence

from martian_doves import codec
from martian_doves.clock import Clock
from martian_doves.errors import (
    ClaimLost,
    CodecError,
    ConfigError,
    InvalidDocument,
    MachineEnded,
    NoSuchMachine,
    UnsafeName,
)
from martian_doves.model import (
    JOIN_STATE,
    WAIT_STATE,
    Child,
    ChildOutcome,
    Claim,
    MachineEvent,
    Origin,
    State,
    Status,
)
from martian_doves.stores.directory import fsops
from martian_doves.stores.directory.folders import Folder
from martian_doves.stores.directory.layout import BUCKET_SECONDS, FOREVER, Layout, bucket_of
from martian_doves.stores.directory.records import TOKEN_SEP, carried

log = logging.getLogger(__name__)

#: Digits of an event's number in its mailbox (``00000001``): names sort in order of sending.
_EVENT_DIGITS = 10
#: Longest lineage walked to find a machine's last state.
_MAX_STEPS = 1_000_000
#: Most spawners whose counted children a process keeps (a few bytes each; fewer costs a look again).
_COUNTED_SPAWNERS = 1024


def _bucket_start(entry: str) -> int | None:
    return int(entry) if entry.isascii() and entry.isdigit() else None


class Machines:
    """The machine model's files of one folder store (see the module docstring).

    Args:
        files: the store's layout.
        clock: this host's clock (due times, event times).
        mark_runnable: creates a hint the way the store's mode stamps them; False if one exists.
    """

    def __init__(self, files: Layout, clock: Clock, mark_runnable: Callable[[str], bool]) -> None:
        self.files = files
        self.clock = clock
        self._mark_runnable = mark_runnable
        #: Per spawner, how many of its children, from index 0, this process has seen counted
        #: in ``joins/`` (records are only added while its join waits): see ``_join_complete``.
        self._counted: dict[str, int] = {}
        #: Per spawner, its join entry's name and state, once read (state files never change):
        #: each of its children's ends asks for them (bounded as ``_counted``).
        self._joins: dict[str, tuple[str, State]] = {}

    # -- reading states --------------------------------------------------------------------

    def read_anywhere(self, name: str) -> State | None:
        """The state file ``name`` in the root or in ``failed/``; None if there is none or it is unreadable."""
        for failed in (False, True):
            try:
                return self.files.read_state(name, failed=failed)
            except FileNotFoundError:
                continue
            except (OSError, CodecError):
                return None
        return None

    def successor_of(self, name: str) -> str | None:
        """The successor ``name``'s tick wrote (its first name that records ``name`` as parent); None if none."""
        for candidate in codec.successor_names(name):
            owner = self.files.parent_of(candidate)
            if owner is None:
                return None
            if owner == name or (owner == "" and self.files.adopter_of(candidate) == name):
                return candidate
        return None

    def machine_of(self, state: State) -> str:
        """The root of ``state``'s lineage: as its file says, or up its recorded parents."""
        if state.machine is not None:
            return state.machine
        current = state
        for _ in range(_MAX_STEPS):
            if not current.parent or not codec.is_successor_name(current.name, current.parent):
                break
            parent = self.read_anywhere(current.parent)
            if parent is None:
                break
            if parent.machine is not None:
                return parent.machine
            current = parent
        return current.name

    def last_of(self, root: str) -> tuple[str, bool]:
        """The last state of the machine ``root`` and whether the machine has ended (done with no
        successor, or failed)."""
        current = root
        for _ in range(_MAX_STEPS):
            # Settled first, successor second: a commit writes its successor before it settles.
            settled = self.files.is_settled(current)
            following = self.successor_of(current)
            if following is None:
                return current, settled
            current = following
        return current, False

    # -- parking and waking --------------------------------------------------------------------

    def park(self, name: str, state: State, not_before: float | None, *, attempts: int = 0,
             errors: Sequence[str] = (), retries: int = 0) -> bool:
        """Create the marker of a timer (``not_before``) or of a waiting entry (``state.wait``)."""
        timer, due = (False, state.wait.deadline) if state.wait is not None else (True, not_before)
        return self._park(name, timer, due, attempts=attempts, errors=errors, retries=retries)

    def park_retry(self, name: str, due: float, *, attempts: int, errors: Sequence[str], retries: int) -> bool:
        """Create a timer marker for a state given back to run again at ``due`` (a retry's delay).

        Kept aside in ``scheduled/`` like a timer, never as a hint due later: ``pending/`` then
        holds only what may run now, and ``status`` counts it by names, never stats a hint.
        """
        return self._park(name, True, due, attempts=attempts, errors=errors, retries=retries)

    def defer_hint(self, name: str, due: float) -> bool:
        """Move a hint due later (written so by an earlier version) aside as a timer, kept as it is
        (contents and mtime); False if it is gone or a timer of that name exists."""
        try:
            with self.files.inner(self.files.scheduled, bucket_of(due), create=True) as bucket:
                if not fsops.move_noreplace(self.files.hint_at(name), bucket.at(name)):
                    return False
                # The hint listed may have been claimed and given back due now since: judged by the
                # file moved (rename keeps its mtime), it goes straight back.
                moved = fsops.lstat_quiet(bucket.at(name))
                now = self.clock.time()
                if moved is not None and moved.st_mtime <= now:
                    self._wake_in(bucket, name, now)
                return True
        except (ConfigError, FileNotFoundError):
            return False

    def _park(self, name: str, timer: bool, due: float | None, *, attempts: int, errors: Sequence[str],
              retries: int) -> bool:
        files = self.files
        stamp = due if due is not None else self.clock.time()
        tmp = files.new_tmp()
        # The marker is a hint kept aside: its mtime is when it is due, it carries failed
        # attempts as a hint does, and waking it is renaming it into pending/.
        fsops.write_tmp(tmp, carried(attempts, errors, retries), durable=files.durable, mtime=stamp)
        try:
            for _ in range(5):
                try:
                    # A bucket whose time has passed is removed once empty: made again if so.
                    with files.inner(self._parked_folder(timer), bucket_of(due), create=True) as bucket:
                        moved = fsops.move_noreplace(tmp, bucket.at(name))
                        if moved:
                            files.sync(bucket)
                        return moved
                except FileNotFoundError:
                    continue
            raise FileNotFoundError(f"{self._parked_folder(timer).path}/{bucket_of(due)} keeps disappearing")
        finally:
            fsops.unlink_quiet(tmp)

    def unpark(self, name: str, state: State, not_before: float | None) -> None:
        """Remove the marker ``park`` made (a successor whose name turned out to be taken)."""
        timer, due = (False, state.wait.deadline) if state.wait is not None else (True, not_before)
        with self.files.inner(self._parked_folder(timer), bucket_of(due)) as bucket:
            fsops.unlink_quiet(bucket.at(name))

    def _parked_folder(self, timer: bool) -> Folder:
        return self.files.scheduled if timer else self.files.waiting

    def marker_of(self, name: str) -> tuple[bool, float | None] | None:
        """Whether ``name`` is parked: (a timer?, its due time or deadline); None if it is not."""
        return self.files.parked_marker(name)

    def _wake_in(self, bucket: Folder, name: str, now: float) -> bool:
        """Move the marker ``name`` of ``bucket`` to ``pending/``, due at ``now``; False if it is not there.

        Exactly one of many wakers wins (the rename); a hint that exists already stays, and
        the marker is dropped.
        """
        marker = bucket.at(name)
        if not fsops.utime(marker, (now, now)):
            return False
        try:
            if not fsops.move_noreplace(marker, self.files.hint_at(name)):
                fsops.unlink_quiet(marker)
        except FileNotFoundError:
            return False
        return True

    def wake(self, name: str, state: State) -> bool:
        """Make the parked waiting entry ``name`` runnable now; False if it is not parked."""
        assert state.wait is not None
        try:
            with self.files.inner(self.files.waiting, bucket_of(state.wait.deadline)) as bucket:
                return self._wake_in(bucket, name, self.clock.time())
        except ConfigError:
            return False

    def promote_due(self, now: float) -> float | None:
        """Wake every timer and deadline that is due; when the next one is (None: none is known).

        Lists bucket names, and only the buckets whose time has come; a bucket that is past
        and empty is removed.
        """
        next_due: float | None = None
        for folder in (self.files.scheduled, self.files.waiting):
            starts = sorted(start for start in map(_bucket_start, fsops.listdir_quiet(folder)) if start is not None)
            for start in starts:
                if start > now:
                    next_due = start if next_due is None else min(next_due, start)
                    break
                left = False
                try:
                    with self.files.inner(folder, str(start)) as bucket:
                        for name, due in list(fsops.stamped_entries(bucket)):
                            if due <= now:
                                self._wake_in(bucket, name, now)
                            else:
                                left = True
                                next_due = due if next_due is None else min(next_due, due)
                except ConfigError as e:
                    log.warning("%s", e.message, extra={"action": "planted"})
                    continue
                if not left and start + 2 * BUCKET_SECONDS < now:
                    try:
                        os.rmdir(str(start), dir_fd=folder.fd)
                    except OSError:
                        pass  # something was parked in it meanwhile
        return next_due

    def _buckets(self, folder: Folder) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """Each bucket of ``scheduled/`` or ``waiting/`` with its markers and their mtimes."""
        for entry in fsops.listdir_quiet(folder):
            try:
                with self.files.inner(folder, entry) as bucket:
                    yield entry, list(fsops.stamped_entries(bucket))
            except (ConfigError, OSError):
                continue

    def has_timers(self, *, deadlines_only: bool = False) -> bool:
        """Whether any timer or deadline is parked (work for later: the store is not finished)."""
        for folder in (self.files.waiting,) if deadlines_only else (self.files.scheduled, self.files.waiting):
            if any(entries for bucket, entries in self._buckets(folder) if bucket != FOREVER):
                return True
        return False

    def parked(self, *, timers: bool) -> dict[str, float]:
        """Name → mtime of every timer (``timers``) or waiting entry parked now."""
        found: dict[str, float] = {}
        for _, entries in self._buckets(self.files.scheduled if timers else self.files.waiting):
            found.update(entries)
        return found

    def timer_names(self) -> Iterator[str]:
        """The names of the timers parked now, bucket by bucket (a caller may stop at the first)."""
        for _, entries in self._buckets(self.files.scheduled):
            yield from (name for name, _ in entries)

    # -- events ---------------------------------------------------------------------------------

    def send(self, machine: str, event: str, data: object) -> None:
        """``Store.send``: post the event to the machine's mailbox, then wake it if it waits for it."""
        try:
            codec.check_payload({"data": data})
        except InvalidDocument as e:
            raise InvalidDocument(f"event data: {e.message}") from e
        try:
            codec.check_state_file_name(machine)
        except UnsafeName as e:
            raise NoSuchMachine(f"no machine named {machine!r} in {self.files.root}") from e
        state = self.read_anywhere(machine)
        if state is None:
            raise NoSuchMachine(f"no machine named {machine} in {self.files.root}")
        root = self.machine_of(state)
        _, ended = self.last_of(root)
        if ended:
            raise MachineEnded(f"machine {root} has ended; it will not wait for {event!r} again")
        self._post(root, MachineEvent(event, data, self.clock.time()))
        # After posting: a wait committed meanwhile looks at the mailbox after it is parked.
        last, ended = self.last_of(root)
        found = None if ended else self.read_anywhere(last)
        if found is not None and found.state == WAIT_STATE and found.wait is not None and found.wait.event == event:
            self.wake(last, found)

    def _post(self, machine: str, event: MachineEvent) -> None:
        data = json.dumps({"name": event.name, "data": event.data, "sent_at": event.sent_at},
                          ensure_ascii=False).encode()
        with self.files.inner(self.files.mailboxes, machine, create=True) as mailbox:
            while True:
                numbers = [int(entry.partition(TOKEN_SEP)[0]) for entry in fsops.listdir_quiet(mailbox)
                           if entry.partition(TOKEN_SEP)[0].isdigit()]
                entry = f"{max(numbers, default=0) + 1:0{_EVENT_DIGITS}d}"
                if self.files.write_new(mailbox.at(entry), data):
                    self.files.sync(mailbox)
                    return

    def _read_event(self, mailbox: Folder, entry: str) -> MachineEvent | None:
        found = fsops.read_json_object(mailbox.at(entry), self.files.max_state_bytes + 4096)
        if found is None or not isinstance(found.get("name"), str):
            return None
        sent_at = found.get("sent_at")
        return MachineEvent(found["name"], found.get("data"),
                            float(sent_at) if isinstance(sent_at, int | float) else 0.0)

    def _mailbox(self, machine: str) -> list[str]:
        try:
            with self.files.inner(self.files.mailboxes, machine) as mailbox:
                return sorted(fsops.listdir_quiet(mailbox))
        except ConfigError:
            return []

    def taken_event(self, machine: str, waiter: str) -> MachineEvent | None:
        """The event the waiting entry ``waiter`` of ``machine`` took; None if it took none."""
        suffix = TOKEN_SEP + waiter
        try:
            with self.files.inner(self.files.mailboxes, machine) as mailbox:
                taken = next((entry for entry in sorted(fsops.listdir_quiet(mailbox)) if entry.endswith(suffix)),
                             None)
                return None if taken is None else self._read_event(mailbox, taken)
        except ConfigError:
            return None

    def _untaken(self, mailbox: Folder, event: str | None) -> str | None:
        for entry in sorted(fsops.listdir_quiet(mailbox)):
            if TOKEN_SEP not in entry:
                found = self._read_event(mailbox, entry)
                if found is not None and found.name == event:
                    return entry
        return None

    def _has_untaken(self, machine: str, event: str | None) -> bool:
        try:
            with self.files.inner(self.files.mailboxes, machine) as mailbox:
                return self._untaken(mailbox, event) is not None
        except ConfigError:
            return False

    def take_event(self, claim: Claim) -> MachineEvent | None:
        """``Store.take_event``: the event this wait took before, or the first untaken one of its name."""
        wait = claim.state.wait
        if wait is None or wait.is_join:
            return None
        machine = self.machine_of(claim.state)
        for _ in range(1000):
            taken = self.taken_event(machine, claim.name)
            if taken is not None:
                return taken
            if not self.files.has_claim(claim.name, claim.token):
                raise ClaimLost(f"claim on {claim.name} was taken over")
            try:
                with self.files.inner(self.files.mailboxes, machine) as mailbox:
                    entry = self._untaken(mailbox, wait.event)
                    if entry is None:
                        return None
                    if not fsops.move_noreplace(mailbox.at(entry), mailbox.at(f"{entry}{TOKEN_SEP}{claim.name}")):
                        continue
                    self.files.sync(mailbox)
            except FileNotFoundError:
                continue  # taken meanwhile: look again
            except ConfigError:
                return None
        return None

    def wake_if_ready(self, name: str, state: State) -> None:
        """Wake the parked waiting entry ``name`` if what it waits for is there now."""
        wait = state.wait
        if wait is None:
            return
        if wait.is_join:
            if state.parent and self._join_complete(state.parent, wait.children) \
                    and self.children_of(state.parent, wait.children) is not None:
                self.wake(name, state)
            return
        machine = self.machine_of(state)
        if self.taken_event(machine, name) is not None or self._has_untaken(machine, wait.event):
            self.wake(name, state)

    # -- children ----------------------------------------------------------------------------------

    def _origin_in(self, name: str) -> Origin | bool | None:
        """The origin the file ``name`` records; False if there is no such file."""
        state = self.read_anywhere(name)
        if state is None:
            return False if not (self.files.has_state(name) or self.files.has_failed_state(name)) else None
        return state.origin

    def create_children(self, spawner: str, children: Sequence[Child], max_bytes: int) -> None:
        """Create the child machines of ``spawner``, each once (an earlier attempt's are found, not made again).

        Raises:
            CodecError: a child could not be written as a state file (nothing is created).
        """
        documents = [codec.encode(State(f"child {index} of {spawner}", child.state, child.payload,
                                        origin=Origin(spawner, index)), max_bytes)
                     for index, child in enumerate(children)]
        for index, data in enumerate(documents):
            origin = Origin(spawner, index)
            for name in codec.child_names(spawner, index):
                found = self._origin_in(name)
                if found is False:
                    # The file before its hint: a worker woken by the hint at once must find
                    # the file, or it drops the hint and the child waits for a root scan.
                    # Admission leaves the hintless file alone while this spawner is unsettled.
                    if self.files.write_new(self.files.state_at(name), data):
                        self._mark_runnable(name)
                        break
                    found = self._origin_in(name)  # taken between the look and the write: look at the newcomer
                if found == origin:
                    break

    def child_names_of(self, spawner: str, count: int) -> list[str] | None:
        """The names of ``spawner``'s ``count`` children, in order; None if one is missing."""
        names = []
        for index in range(count):
            origin = Origin(spawner, index)
            for name in codec.child_names(spawner, index):
                found = self._origin_in(name)
                if found is False:
                    return None
                if found == origin:
                    names.append(name)
                    break
        return names

    def children_of(self, spawner: str, count: int) -> list[ChildOutcome] | None:
        """How each child of ``spawner`` ended, in order; None while one has not."""
        names = self.child_names_of(spawner, count)
        if names is None:
            return None
        outcomes = []
        for child in names:
            last, ended = self.last_of(child)
            if not ended:
                return None
            failed = not self.files.is_done(last)
            state = self.read_anywhere(last)
            error = None
            if failed:
                reason = self.files.read_reason(last) or {}
                error = {"code": str(reason.get("code")), "message": str(reason.get("message"))}
            outcomes.append(ChildOutcome(child, state.state if state else "?",
                                         Status.FAILED if failed else Status.DONE,
                                         state.payload if state else {}, error))
        return outcomes

    def children(self, claim: Claim) -> list[ChildOutcome] | None:
        """``Store.children`` for a claimed join."""
        wait = claim.state.wait
        if wait is None or not wait.is_join or not claim.state.parent:
            return None
        return self.children_of(claim.state.parent, wait.children)

    def _join_complete(self, spawner: str, count: int) -> bool:
        """Whether all ``count`` children of ``spawner`` are counted in ``joins/SPAWNER/``."""
        try:
            with self.files.inner(self.files.joins, spawner) as ended:
                # Each child's end asks this: listing the folder each time made a fan-out of N
                # children cost N listings of up to N entries (most of a 10,000-child fan-out's
                # time). Look only past the records this process has seen, from index 0 on:
                # each record is looked at once, plus one look at the first one missing.
                seen = self._counted.pop(spawner, 0)
                while seen < count and fsops.exists(ended.at(str(seen))):
                    seen += 1
                self._counted[spawner] = seen
                if len(self._counted) > _COUNTED_SPAWNERS:
                    del self._counted[next(iter(self._counted))]
                # The records may have been removed since they were seen (the join ran): the
                # folder itself says, once, when the look says complete.
                return seen >= count and len(fsops.listdir_quiet(ended)) >= count
        except ConfigError:
            return False

    def record_end(self, origin: Origin) -> None:
        """A child machine is about to end: count it for its parent's join (before the end is committed)."""
        for _ in range(5):
            try:
                with self.files.inner(self.files.joins, origin.parent, create=True) as ended:
                    fsops.create_empty(ended.at(str(origin.index)))
                    self.files.sync(ended)
                    return
            except FileNotFoundError:
                continue  # removed by a join that ended meanwhile (a re-run): made again

    def wake_join(self, spawner: str) -> None:
        """Wake ``spawner``'s join if every child has been counted (after a child's end is committed)."""
        found = self._joins.get(spawner)
        if found is None:
            join = self.successor_of(spawner)
            state = None if join is None else self.read_anywhere(join)
            if join is None or state is None or state.state != JOIN_STATE or state.wait is None:
                return
            found = self._joins[spawner] = (join, state)
            if len(self._joins) > _COUNTED_SPAWNERS:
                del self._joins[next(iter(self._joins))]
        join, state = found
        assert state.wait is not None
        if self.files.is_settled(join):
            self._remove_join(spawner)
        elif self._join_complete(spawner, state.wait.children):
            self.wake(join, state)

    def joined(self, join: State) -> None:
        """A join was committed: its records are of no more use."""
        if join.parent:
            self._remove_join(join.parent)

    def _remove_join(self, spawner: str) -> None:
        self._counted.pop(spawner, None)
        self._joins.pop(spawner, None)
        try:
            with self.files.inner(self.files.joins, spawner) as ended:
                fsops.remove_all(ended)
            os.rmdir(spawner, dir_fd=self.files.joins.fd)
        except (ConfigError, OSError):
            pass

    # -- wake-ups a crash may have lost ----------------------------------------------------------------

    def sweep_joins(self) -> None:
        """Wake the joins whose children have all ended (their last child's worker may have died before)."""
        for spawner in fsops.listdir_quiet(self.files.joins):
            join = self.successor_of(spawner)
            state = None if join is None else self.read_anywhere(join)
            if join is None or state is None or state.wait is None:
                continue
            if self.files.is_settled(join):
                self._remove_join(spawner)
            elif self._join_complete(spawner, state.wait.children) and self.marker_of(join) is not None:
                self.wake_if_ready(join, state)

    def sweep_mailboxes(self) -> None:
        """Wake the waits whose event is in their mailbox (their sender or committer may have died before)."""
        for machine in fsops.listdir_quiet(self.files.mailboxes):
            if all(TOKEN_SEP in entry for entry in self._mailbox(machine)):
                continue
            last, ended = self.last_of(machine)
            state = None if ended else self.read_anywhere(last)
            if state is not None and state.wait is not None and not state.wait.is_join \
                    and self.marker_of(last) is not None:
                self.wake_if_ready(last, state)


__all__ = ["Machines"]
