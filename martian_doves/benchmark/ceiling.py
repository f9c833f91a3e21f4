"""The file-operation ceiling of a folder: what a folder store could reach on that filesystem.

The loop of the peers' ``file_ceiling.py``, on the same workload: P processes each
move their share of M machines x K countdown steps through claim (rename), read and
parse, tick, write the successor (a new file, then a rename) and done (rename), with
no coordination, no listing and no fsync. A real store adds coordination; its rate
divided by this one, measured on the same filesystem in the same session, says how
close to the limit it runs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
import time


def _work(base: str, machines: range, steps: int) -> None:
    for i in machines:
        name = f"m{i}.state"
        for step in range(steps):
            current = name if step == 0 else f"{name}-{step}"
            claimed = f"{base}/claimed/{current}"
            os.rename(f"{base}/pending/{current}", claimed)
            with open(claimed, "rb") as f:
                document = json.loads(f.read())
            document["payload"]["count"] -= 1
            if document["payload"]["count"] > 0:
                successor = f"{name}-{step + 1}"
                tmp = f"{base}/tmp/{successor}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, json.dumps(document).encode())
                os.close(fd)
                os.rename(tmp, f"{base}/pending/{successor}")
            os.rename(claimed, f"{base}/done/{current}")


def file_ceiling(where: str | None, machines: int, steps: int, processes: int) -> float:
    """Transitions per second of the bare loop in a new folder inside ``where`` (removed after).

    Raises:
        RuntimeError: a process of the loop failed.
    """
    base = tempfile.mkdtemp(prefix="doves-bench-ceiling-", dir=where)
    try:
        for folder in ("pending", "claimed", "tmp", "done"):
            os.makedirs(f"{base}/{folder}")
        body = json.dumps({"state": "countdown", "payload": {"count": steps}})
        for i in range(machines):
            with open(f"{base}/pending/m{i}.state", "w", encoding="utf-8") as f:
                f.write(body)
        # Forked, as in the peers' script: the loop's start-up is part of its time.
        context = multiprocessing.get_context("fork")
        started = time.perf_counter()
        workers = [context.Process(target=_work, args=(base, range(k, machines, processes), steps))
                   for k in range(processes)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        if any(worker.exitcode != 0 for worker in workers):
            raise RuntimeError("a process of the file ceiling's loop failed")
        return machines * steps / elapsed
    finally:
        shutil.rmtree(base, ignore_errors=True)
