"""Filesystem primitives for the directory stores: they take paths, never form them.

Everything here relies only on operations that are atomic on local filesystems and
on NFSv3+: ``link`` (fails if the target exists), ``rename`` of a name we own,
``O_CREAT|O_EXCL``. Nothing ever renames *over* an existing name: that would both
clobber and, on ext4, force a data flush on the hot path.

Durability: by default a commit survives the death of any process (the kernel has
the data). With ``durable=True`` file data and the directory entries are fsynced
before a name becomes visible, so a commit also survives power loss.

Which path is which (state, hint, claim, temporary ...) is ``layout.Layout``'s business.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

from martian_doves.errors import CodecError, FileTooLarge, NotARegularFile


def fsync_dir(path: str) -> None:
    """Make the entries of folder ``path`` (new names, renames) survive power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tmp(path: str, data: bytes, *, durable: bool, mtime: float | None = None) -> None:
    """Write ``data`` to the new temporary file ``path`` (created exclusively).

    Raises:
        FileExistsError: ``path`` exists (temporary names are never reused).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
#: Whether renameat2(RENAME_NOREPLACE) is worth trying (Linux >= 3.15 on ext4, xfs,
#: btrfs, tmpfs; NFS answers EINVAL and we fall back to link + unlink).
_noreplace_supported = _renameat2 is not None


def move_noreplace(src: str, dst: str) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists, atomically.

    One ``renameat2(RENAME_NOREPLACE)`` where the filesystem has it, else ``link`` +
    ``unlink`` (atomic on NFSv3+ too). Either way nothing is ever overwritten.

    Returns:
        True if moved; False if ``dst`` already existed (``src`` is left in place).

    Raises:
        FileNotFoundError: ``src`` does not exist (for a claim: it was taken over).
    """
    global _noreplace_supported
    if _noreplace_supported and _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err == errno.ENOENT:
            raise FileNotFoundError(err, os.strerror(err), src)
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(err, os.strerror(err), src)
        _noreplace_supported = False
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    os.unlink(src)
    return True


def publish(tmp_path: str, target: str, *, durable: bool) -> bool:
    """Give ``tmp_path`` the name ``target`` unless that name exists; drop the temporary.

    Returns:
        True if ``target`` now names our data, False if the name was already taken.
    """
    published = move_noreplace(tmp_path, target)
    if not published:
        os.unlink(tmp_path)
    elif durable:
        fsync_dir(os.path.dirname(target))
    return published


def write_new(tmp_path: str, target: str, data: bytes, *, durable: bool, mtime: float | None = None) -> bool:
    """Atomically create ``target`` holding ``data``, written first under ``tmp_path``.

    Never replaces an existing file: readers see either no file or the whole file,
    never a torn one.

    Returns:
        True if ``target`` now names our data, False if the name was already taken.
    """
    write_tmp(tmp_path, data, durable=durable, mtime=mtime)
    return publish(tmp_path, target, durable=durable)


def create_empty(path: str) -> bool:
    """Create an empty marker file; False if it already exists."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        return True
    except FileExistsError:
        return False


def create_with(path: str, data: bytes) -> bool:
    """Create ``path`` exclusively and write ``data`` in place (readers may see it partial).

    For files only their creator reads back whole, such as claims; False if it exists.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return True


def read_json_object(path: str, max_bytes: int = 1 << 20) -> dict[str, Any] | None:
    """The JSON object in one of the store's own small files (hint, claim, registration,
    reason), or None if it is missing, unreadable or not an object.

    These files are ours, but a person may edit or clobber one: a bad one must cost
    what it described, never crash the worker or command that reads it.
    """
    try:
        found = json.loads(read_regular(path, max_bytes) or b"{}")
    except (OSError, ValueError, CodecError):
        return None
    return found if isinstance(found, dict) else None


def read_regular(path: str, max_bytes: int) -> bytes:
    """Read a plain file, refusing symlinks, devices, FIFOs and files over ``max_bytes``.

    Raises:
        NotARegularFile, FileTooLarge: the entry must not be read (it is quarantined).
        FileNotFoundError: the entry vanished.
    """
    try:
        # O_NONBLOCK: opening a FIFO someone dropped in must not hang the worker.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotARegularFile(f"{os.path.basename(path)}: is a symlink") from e
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{os.path.basename(path)}: not a regular file")
        if info.st_size > max_bytes:
            raise FileTooLarge(f"{os.path.basename(path)}: {info.st_size} bytes is over the {max_bytes}-byte limit")
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
            raise FileTooLarge(f"{os.path.basename(path)}: grew over the {max_bytes}-byte limit")
        return data
    finally:
        os.close(fd)


def unlink_quiet(path: str) -> bool:
    """Remove a file; False if it was already gone."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def stat_entries(folder: str) -> Iterator[tuple[str, os.stat_result]]:
    """(name, status without following links) of each entry of ``folder``; entries that vanish
    meanwhile are skipped, and a missing folder has none."""
    try:
        with os.scandir(folder) as listing:
            for entry in listing:
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield entry.name, info
    except FileNotFoundError:
        return


def stamped_entries(folder: str, *, changed: bool = False) -> Iterator[tuple[str, float]]:
    """(name, mtime) of each entry of ``folder``; entries that vanish meanwhile are skipped.

    Args:
        changed: give the ctime (last change of the entry itself: rename, utime) instead.
    """
    for name, info in stat_entries(folder):
        yield name, info.st_ctime if changed else info.st_mtime


def identified_entries(folder: str) -> Iterator[tuple[str, tuple[int, int]]]:
    """(name, (inode number, ctime in ns)) of each entry of ``folder``; entries that vanish are skipped.

    A file replaced under the same name differs in one of the two (an inode number freed
    by a removal may be reused at once, its ctime not), so the pair names one file's
    content for as long as it exists: a reader may keep what it read of it.
    """
    for name, info in stat_entries(folder):
        yield name, (info.st_ino, info.st_ctime_ns)


def remove_older_than(folder: str, cutoff: float) -> None:
    """Delete the entries of ``folder`` last modified before ``cutoff`` (epoch seconds)."""
    for name, mtime in list(stamped_entries(folder)):
        if mtime < cutoff:
            unlink_quiet(os.path.join(folder, name))


def remove_all(folder: str) -> None:
    """Delete every entry of ``folder`` (files only)."""
    for name in listdir_quiet(folder):
        unlink_quiet(os.path.join(folder, name))


def is_empty(folder: str) -> bool:
    """Whether ``folder`` has no entries (without listing all of them)."""
    with os.scandir(folder) as listing:
        return next(listing, None) is None


def listdir_quiet(path: str) -> list[str]:
    """The entries of a folder; none if it is missing."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
