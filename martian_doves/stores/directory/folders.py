"""A store's folders held open, and the entries in them: what every file primitive works through.

Whoever may write into a store may replace any of its folders by a link, a mount or a
folder of their own (see the README's threat model). So each store folder is opened
once, checked to be the store's own real folder (``open_folder``), and kept open as a
``Folder``; an ``Entry`` is one name in such a folder, reached through its descriptor
(``fsops``), so no later swap of the folder redirects anything.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import NamedTuple

from martian_doves.errors import ConfigError

#: Flags of every descriptor opened here: never inherited by a machine's subprocesses.
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Folder:
    """A folder of a store, held open: entries are reached through ``fd``, never through ``path``.

    Args:
        path: where it was found (for messages only).
        fd: its descriptor; -1 for a folder that does not exist (a store opened read-only
            before its first run): it lists empty and holds nothing.
    """

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def at(self, name: str) -> Entry:
        """The entry ``name`` in this folder."""
        return Entry(self, name)

    @property
    def exists(self) -> bool:
        return self.fd >= 0

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"Folder({self.path!r})"


class Entry(NamedTuple):
    """One name in a store folder."""

    folder: Folder
    name: str

    @property
    def path(self) -> str:
        """Where it is (for messages only)."""
        return os.path.join(self.folder.path, self.name)

    @property
    def fd(self) -> int:
        """The folder's descriptor.

        Raises:
            FileNotFoundError: the folder does not exist (so neither does the entry).
        """
        if self.folder.fd < 0:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.path)
        return self.folder.fd


def open_root(path: str) -> Folder:
    """Hold the store's root folder open (following links: the root is the user's choice).

    Raises:
        FileNotFoundError: there is no such folder.
        NotADirectoryError: it is not a folder.
    """
    return Folder(path, os.open(path, os.O_RDONLY | os.O_DIRECTORY | CLOEXEC))


def open_folder(root: Folder, name: str, *, create: bool) -> Folder:
    """Hold the store folder ``name`` of ``root`` open, verified to be the store's own.

    A real folder (never a link), on the root's device, owned by the root's owner, by
    root or by this process's user. The descriptor is kept: entries are reached through
    it, so replacing the folder later never redirects anything.

    Args:
        create: create it if missing (mode 0755); otherwise a missing folder is one that
            holds nothing (``Folder`` with no descriptor).

    Raises:
        ConfigError: it is a link, not a folder, or not the store's (one line, naming it).
        OSError: it cannot be created or opened.
    """
    path = os.path.join(root.path, name)
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=root.fd)
        except FileExistsError:
            pass
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | CLOEXEC, dir_fd=root.fd)
    except FileNotFoundError:
        if create:
            raise
        return Folder(path, -1)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            what = "a symlink" if stat.S_ISLNK(os.stat(name, dir_fd=root.fd, follow_symlinks=False).st_mode) \
                else "not a folder"
            raise ConfigError(f"refusing store folder {path}: it is {what} (a store's folders must be "
                              "its own real folders)") from e
        raise
    try:
        _verify(path, os.fstat(fd), os.fstat(root.fd))
    except ConfigError:
        os.close(fd)
        raise
    return Folder(path, fd)


def _verify(path: str, found: os.stat_result, root: os.stat_result) -> None:
    if found.st_dev != root.st_dev:
        raise ConfigError(f"refusing store folder {path}: it is on another filesystem than the store "
                          "(a mount or bind mount in the store)")
    owners = {root.st_uid, 0, os.geteuid()}
    if found.st_uid not in owners:
        raise ConfigError(f"refusing store folder {path}: it is owned by uid {found.st_uid}, not by the store's "
                          f"owner (uid {root.st_uid}), root or this user")
