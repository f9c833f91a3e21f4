"""Worker processes' output, copied to one writer as whole lines in arrival order.

Each worker process writes its stdout and stderr (its log, and whatever its machines
print) into a pipe of its own; one thread here reads them all, so the live progress
display never sees half a line and a worker killed mid-line can only cut its own.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import socket
import threading
from typing import TYPE_CHECKING

from martian_doves.logs import Writer, relayed_line

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


class OutputPump:
    """Copies worker processes' output to one writer, whole lines only, in arrival order.

    Args:
        writer: receives each line.
        json_lines: wrap lines that are not JSON records (output that bypassed logging) into
            JSON log records; otherwise lines are passed on with control characters escaped.
    """

    def __init__(self, writer: Writer, json_lines: bool = False) -> None:
        self._writer = writer
        #: Wrap lines that are not JSON records (output that bypassed logging) into JSON log records.
        self._json_lines = json_lines
        self._lock = threading.Lock()
        #: Each worker's pipe by file descriptor: pipe, worker name, bytes of its unfinished line.
        self._streams: dict[int, tuple[Connection, str, bytearray]] = {}
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, reader: Connection, worker: str) -> None:
        """Copy the lines arriving on ``reader`` (a worker process's output) until its end."""
        with self._lock:
            self._streams[reader.fileno()] = (reader, worker, bytearray())
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="doves-output", daemon=True)
                self._thread.start()

    def _emit(self, data: bytes | bytearray, worker: str) -> None:
        try:
            line = bytes(data).decode("utf-8", errors="replace").rstrip("\r")
            self._writer(relayed_line(line, worker, self._json_lines))
        except Exception:  # a broken writer must not stop the pump (and block the workers)
            pass

    def _run(self) -> None:
        while True:
            with self._lock:
                readers = [reader for reader, _, _ in self._streams.values()]
            if not readers:
                if self._closing.is_set():
                    return
                self._closing.wait(0.1)
                continue
            # The timeout only picks up pipes added meanwhile (a worker started): their
            # output waits in the pipe until then, nothing is lost.
            for reader in multiprocessing.connection.wait(readers, timeout=1.0):
                assert not isinstance(reader, int | socket.socket)
                fd = reader.fileno()
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                with self._lock:
                    _, worker, buffer = self._streams[fd]
                    if not data:  # end of file: the worker has exited
                        del self._streams[fd]
                        reader.close()
                        if buffer:
                            self._emit(buffer, worker)
                        continue
                    buffer.extend(data)
                    *lines, rest = buffer.split(b"\n")
                    buffer[:] = rest
                for line in lines:
                    self._emit(line, worker)

    def close(self, timeout_seconds: float = 2.0) -> None:
        """Wait (bounded) for every worker's output to end, then stop the pump."""
        self._closing.set()
        if self._thread is not None:
            # A machine's own child process may hold a pipe open forever: bounded wait.
            self._thread.join(timeout_seconds)
