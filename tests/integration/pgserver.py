"""A private PostgreSQL server for the one test that must stop and start the server itself.

The shared server on this machine serves every other test (and other users), so it is
never restarted. This one lives in a temporary folder, listens on a free local port and
is stopped with ``pg_ctl -m immediate``: no shutdown checkpoint, client sessions cut at
once, crash recovery from the WAL on the next start, as after a server crash.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path


def _bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH, or beside the pg_config that is."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """initdb + pg_ctl in a temporary folder; ``url`` reaches its ``postgres`` database."""

    def __init__(self) -> None:
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError("initdb and pg_ctl are not installed (Debian: postgresql)")
        self.bin_dir = bin_dir
        # PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user.
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError as e:
                raise RuntimeError("running as root and there is no postgres user to own the server") from e
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="doves-pg-"))
        if self.run_as:
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.data = self.folder / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._pg(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()

    def _pg(self, command: Sequence[str]) -> None:
        program = str(self.bin_dir / command[0])
        result = subprocess.run([*self.run_as, program, *command[1:]], capture_output=True, text=True,
                                check=False, timeout=120)
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command[0]} exited {result.returncode}: {result.stderr.strip()}\n{tail}")

    def start(self) -> None:
        settings = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c max_connections=50")
        self._pg(["pg_ctl", "-D", str(self.data), "-o", settings, "-l", str(self.folder / "server.log"),
                  "-w", "-t", "60", "start"])

    def crash(self) -> None:
        """Stop at once, as a crash would: sessions cut, recovery from the WAL on the next start."""
        self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def close(self) -> None:
        try:
            self._pg(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
