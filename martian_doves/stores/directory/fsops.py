"""Filesystem primitives for the directory stores: they take folders and entries, never form paths.

Everything here relies only on operations that are atomic on local filesystems and
on NFSv3+: ``link`` (fails if the target exists), ``rename`` of a name we own,
``O_CREAT|O_EXCL``. Nothing ever renames *over* an existing name: that would both
clobber and, on ext4, force a data flush on the hot path.

Whoever may write into a store may plant links, FIFOs, devices or folders in it
(see the README's threat model). So a store's folders are held open (``Folder``,
verified once by ``folders.open_folder``) and every entry is reached relative to one of them
(``Entry``: ``dir_fd``, no-follow flags, ``O_NONBLOCK`` where a FIFO could wait): no
name in the store, however it was replaced, leads outside it.

Durability: by default a commit survives the death of any process (the kernel has
the data). With ``durable=True`` file data and the directory entries are fsynced
before a name becomes visible, so a commit also survives power loss.

Which entry is which (state, hint, claim, temporary ...) is ``layout.Layout``'s business.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import stat
from collections.abc import Generator, Iterator
from typing import Any

from martian_doves.errors import CodecError, FileTooLarge, NotARegularFile
from martian_doves.stores.directory.folders import CLOEXEC, Entry, Folder


def fsync_dir(folder: Folder) -> None:
    """Make the entries of ``folder`` (new names, renames) survive power loss."""
    if folder.exists:
        os.fsync(folder.fd)


def _create(entry: Entry) -> int:
    """Create ``entry`` exclusively (never through a link) and return its descriptor."""
    return os.open(entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC, 0o644,
                   dir_fd=entry.fd)


def creation_time(entry: Entry) -> float:
    """The time the filesystem stamps on a file it creates now (its own clock): ``entry`` is
    created exclusively, read and removed."""
    fd = _create(entry)
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        unlink_quiet(entry)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_tmp(entry: Entry, data: bytes, *, durable: bool, mtime: float | None = None) -> None:
    """Write ``data`` to the new temporary file ``entry`` (created exclusively).

    Raises:
        FileExistsError: ``entry`` exists (temporary names are never reused).
    """
    fd = _create(entry)
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):  # what failed is raised, not a failing clean-up
            unlink_quiet(entry)  # half written (a full disk): never left behind
        raise


_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_RENAME_NOREPLACE = 1
#: Whether renameat2(RENAME_NOREPLACE) is worth trying (Linux >= 3.15 on ext4, xfs,
#: btrfs, tmpfs; NFS answers EINVAL and we fall back to link + unlink).
_noreplace_supported = _renameat2 is not None


def move_noreplace(src: Entry, dst: Entry) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, atomically.

    One ``renameat2(RENAME_NOREPLACE)`` where the filesystem has it, else ``link`` +
    ``unlink`` (atomic on NFSv3+ too). Either way nothing is ever overwritten, and a
    link is moved as the link it is.

    Returns:
        True if moved; False if ``dst`` already existed (``src`` is left in place).

    Raises:
        FileNotFoundError: ``src`` does not exist (for a claim: it was taken over).
    """
    global _noreplace_supported
    if _noreplace_supported and _renameat2 is not None:
        if _renameat2(src.fd, os.fsencode(src.name), dst.fd, os.fsencode(dst.name), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err == errno.ENOENT:
            raise FileNotFoundError(err, os.strerror(err), src.path)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), src.path)
        _noreplace_supported = False
    if not link(src, dst):
        return False
    os.unlink(src.name, dir_fd=src.fd)
    return True


def link(src: Entry, dst: Entry) -> bool:
    """Hard-link ``src`` (the entry itself, never what a link points to) as ``dst``; False if ``dst`` exists.

    Raises:
        FileNotFoundError: ``src`` does not exist.
    """
    try:
        os.link(src.name, dst.name, src_dir_fd=src.fd, dst_dir_fd=dst.fd, follow_symlinks=False)
    except FileExistsError:
        return False
    return True


def rename(src: Entry, dst: Entry) -> None:
    """Rename ``src`` to ``dst`` (a name only we form, such as a claim with a fresh token).

    Raises:
        FileNotFoundError: ``src`` does not exist.
    """
    os.rename(src.name, dst.name, src_dir_fd=src.fd, dst_dir_fd=dst.fd)


def publish(tmp: Entry, target: Entry, *, durable: bool) -> bool:
    """Give ``tmp`` the name ``target`` unless that name exists; drop the temporary.

    Returns:
        True if ``target`` now names our data, False if the name was already taken.
    """
    published = move_noreplace(tmp, target)
    if not published:
        unlink_quiet(tmp)
    elif durable:
        fsync_dir(target.folder)
    return published


def write_new(tmp: Entry, target: Entry, data: bytes, *, durable: bool, mtime: float | None = None) -> bool:
    """Atomically create ``target`` holding ``data``, written first under ``tmp``.

    Never replaces an existing file: readers see either no file or the whole file,
    never a torn one.

    Returns:
        True if ``target`` now names our data, False if the name was already taken.
    """
    write_tmp(tmp, data, durable=durable, mtime=mtime)
    return publish(tmp, target, durable=durable)


def create_empty(entry: Entry) -> bool:
    """Create an empty marker file; False if it already exists."""
    try:
        os.close(_create(entry))
        return True
    except FileExistsError:
        return False


def create_with(entry: Entry, data: bytes) -> bool:
    """Create ``entry`` exclusively and write ``data`` in place (readers may see it partial).

    For files only their creator reads back whole, such as claims; False if it exists.
    """
    try:
        fd = _create(entry)
    except FileExistsError:
        return False
    try:
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            unlink_quiet(entry)  # created but not written (a full disk): it must not stand as a claim
        raise
    return True


def rewrite(entry: Entry, data: bytes) -> bool:
    """Replace the contents of the plain file ``entry`` in place; False if it is gone.

    Raises:
        NotARegularFile: ``entry`` is a link, FIFO, device or folder (it is left alone).
    """
    try:
        # Without O_TRUNC: a device must not be truncated, nor a FIFO waited on, before the check.
        fd = os.open(entry.name, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, dir_fd=entry.fd)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.ENODEV):
            raise  # the store's own fault (a read-only volume ...), not the entry's
        raise NotARegularFile(f"{entry.name}: not a regular file ({e.strerror})") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(f"{entry.name}: not a regular file")
        # Written over the old contents, then cut to length, never truncated first: when the
        # disk is full the write fails and the old contents (a hint's attempts) are kept.
        written = os.pwrite(fd, data, 0)
        if written < len(data):
            os.pwrite(fd, data[written:], written)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)
    return True


def read_json_object(entry: Entry, max_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """The JSON object in one of the store's own small files (hint, claim, registration,
    reason), or None if it is missing, unreadable or not an object.

    These files are ours, but a person may edit or clobber one: a bad one must cost
    what it described, never crash the worker or command that reads it.
    """
    try:
        found = json.loads(read_regular(entry, max_bytes) or b"{}")
    except (OSError, ValueError, CodecError):
        return None
    return found if isinstance(found, dict) else None


def read_regular(entry: Entry, max_bytes: int) -> bytes:
    """Read a plain file of a store folder, refusing symlinks, devices, FIFOs and files over ``max_bytes``.

    Raises:
        NotARegularFile, FileTooLarge: the entry must not be read (it is quarantined).
        FileNotFoundError: the entry vanished.
    """
    return _read_at(entry.name, max_bytes, entry.name, entry.fd)


def read_file(path: str, max_bytes: int) -> bytes:
    """``read_regular`` for a file given by path (a file named on the command line)."""
    return _read_at(path, max_bytes, os.path.basename(path), None)


def _read_at(name: str, max_bytes: int, label: str, dir_fd: int | None) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO someone dropped in must not hang the worker.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotARegularFile(f"{label}: is a symlink") from e
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{label}: not a regular file")
        if info.st_size > max_bytes:
            raise FileTooLarge(f"{label}: {info.st_size} bytes is over the {max_bytes}-byte limit")
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise FileTooLarge(f"{label}: grew over the {max_bytes}-byte limit")
        return data
    finally:
        os.close(fd)


def lstat(entry: Entry) -> os.stat_result:
    """The entry's own status (a link's, never its target's).

    Raises:
        FileNotFoundError: there is no such entry.
    """
    return os.stat(entry.name, dir_fd=entry.fd, follow_symlinks=False)


def lstat_quiet(entry: Entry) -> os.stat_result | None:
    """``lstat``, or None if there is no such entry."""
    try:
        return lstat(entry)
    except FileNotFoundError:
        return None


def exists(entry: Entry) -> bool:
    """Whether the name exists (whatever it is: a link counts, and is not followed)."""
    return lstat_quiet(entry) is not None


def utime(entry: Entry, times: tuple[float, float] | None = None) -> bool:
    """Stamp the entry itself (now, or ``times``: atime, mtime); a link's own times, never its
    target's. False if it is gone."""
    try:
        os.utime(entry.name, times, dir_fd=entry.fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def unlink_quiet(entry: Entry) -> bool:
    """Remove a file (or link, FIFO ...: never a folder); False if it was already gone or is a folder."""
    try:
        os.unlink(entry.name, dir_fd=entry.fd)
        return True
    except (FileNotFoundError, IsADirectoryError):
        return False
    except PermissionError:
        # Linux answers EPERM (not EISDIR) to unlink of a folder; anything else is real.
        if stat.S_ISDIR(getattr(lstat_quiet(entry), "st_mode", 0)):
            return False
        raise


def remove_planted(entry: Entry) -> bool:
    """Remove an entry the store did not write: a file, link, FIFO or device, or an empty folder
    (a folder with entries is left: nothing is ever looked into). False if it is still there."""
    if unlink_quiet(entry):
        return True
    try:
        os.rmdir(entry.name, dir_fd=entry.fd)
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _listing_fd(folder: Folder) -> int | None:
    """A fresh descriptor of ``folder`` for one listing (None if it does not exist).

    Each listing gets its own: a directory's read position belongs to its open file,
    and a worker's threads list the same folders at once.
    """
    if not folder.exists:
        return None
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | CLOEXEC, dir_fd=folder.fd)


def _scan(folder: Folder) -> Generator[os.DirEntry[str], None, None]:
    """The entries of ``folder``, listed lazily through a descriptor of its own; none if it is missing."""
    fd = _listing_fd(folder)
    if fd is None:
        return
    try:
        with os.scandir(fd) as listing:
            yield from listing
    finally:
        os.close(fd)


def stat_entries(folder: Folder) -> Iterator[tuple[str, os.stat_result]]:
    """(name, status without following links) of each entry of ``folder``; entries that vanish
    meanwhile are skipped, and a missing folder has none."""
    for entry in _scan(folder):
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield entry.name, info


def entry_names(folder: Folder) -> Iterator[str]:
    """The name of each entry of ``folder``, listed lazily (nothing looked at); none if it is missing."""
    return (entry.name for entry in _scan(folder))


def count_entries(folder: Folder) -> int:
    """How many entries ``folder`` has (none if it is missing), counted without holding their names."""
    return sum(1 for _ in _scan(folder))


def stamped_entries(folder: Folder, *, changed: bool = False) -> Iterator[tuple[str, float]]:
    """(name, mtime) of each entry of ``folder``; entries that vanish meanwhile are skipped.

    Args:
        changed: give the ctime (last change of the entry itself: rename, utime) instead.
    """
    for name, info in stat_entries(folder):
        yield name, info.st_ctime if changed else info.st_mtime


def stamped_files(folder: Folder) -> Iterator[tuple[str, float]]:
    """(name, mtime) of each plain file of ``folder``: what a folder planted there holds is no claim."""
    for name, info in stat_entries(folder):
        if stat.S_ISREG(info.st_mode):
            yield name, info.st_mtime


def identified_entries(folder: Folder) -> Iterator[tuple[str, tuple[int, int]]]:
    """(name, (inode number, ctime in ns)) of each entry of ``folder``; entries that vanish are skipped.

    A file replaced under the same name differs in one of the two (an inode number freed
    by a removal may be reused at once, its ctime not), so the pair names one file's
    content for as long as it exists: a reader may keep what it read of it.
    """
    for name, info in stat_entries(folder):
        yield name, (info.st_ino, info.st_ctime_ns)


def remove_older_than(folder: Folder, cutoff: float) -> None:
    """Delete the entries of ``folder`` last modified before ``cutoff`` (epoch seconds)."""
    for name, mtime in list(stamped_entries(folder)):
        if mtime < cutoff:
            unlink_quiet(folder.at(name))


def remove_all(folder: Folder) -> None:
    """Delete every entry of ``folder`` (files only)."""
    for name in listdir_quiet(folder):
        unlink_quiet(folder.at(name))


def has_file(folder: Folder) -> bool:
    """Whether ``folder`` holds a plain file (usually known from its first entry)."""
    with contextlib.closing(_scan(folder)) as listing:
        return any(entry.is_file(follow_symlinks=False) for entry in listing)


def listdir_quiet(folder: Folder) -> list[str]:
    """The entries of a folder; none if it is missing."""
    fd = _listing_fd(folder)
    if fd is None:
        return []
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)
