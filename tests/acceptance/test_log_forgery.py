"""A payload value cannot forge a log line or reach the terminal raw (issue 12, item 10).

A real ``doves run`` of a machine that logs, prints (stdout and stderr) and logs a
traceback of a value holding ``\\n2026-01-01 00:00:00 ERROR x-supervisor: forged`` and
``\\x1b[31m``: every line of the run's output that starts like a record is one the run
made (the worker's or the supervisor's own prefix), and no raw control character is left.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from acceptance_helpers import Doves, write_state

pytestmark = pytest.mark.slow

FORGED_LINE = "2026-01-01 00:00:00 ERROR x-supervisor: forged"
VALUE = f"x\n{FORGED_LINE}\n\x1b[31mred\x9b31m"

MACHINE = '''
import logging
import sys

from martian_doves import machine

log = logging.getLogger("forger")


@machine("forger")
def forger(payload):
    value = payload["value"]
    log.info("logged %s", value)
    print("printed", value)
    print("printed on stderr", value, file=sys.stderr)
    try:
        raise ValueError(value)
    except ValueError:
        log.exception("caught %s", value)
    return None
'''

#: A record of the run: time, level, a name the run gives (this host's workers and supervisor).
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(?P<who>[^ :]+)")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but \t and \n, which end lines here


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_payload_cannot_forge_a_log_line(doves: Doves, store_dir: Path, tmp_path: Path, log_format: str) -> None:
    machines = tmp_path / "forger.py"
    machines.write_text(MACHINE)
    write_state(store_dir, "forge.state", "forger", {"value": VALUE})
    result = doves("run", str(store_dir), "--workers", "1", "--no-progress", "--name", "fleet",
                   "--machines", str(machines), "--log-format", log_format)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not CONTROL.search(output) and "\t" not in output
    lines = output.splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]  # every line a record
        messages = [r["message"] for r in records]
        assert f"logged {VALUE}" in messages and f"caught {VALUE}" in messages
        assert "printed x" in messages and FORGED_LINE in messages  # the printed lines, each a record
        assert {r["worker"].rsplit("-", 1)[0] for r in records} == {"fleet"}
        return
    assert any(line.endswith(f": logged x\\n{FORGED_LINE}\\n\\x1b[31mred\\x9b31m") for line in lines)
    for line in lines:
        record = RECORD.match(line)
        if record is not None:
            assert record["who"].startswith("fleet-"), line
        else:  # a traceback's lines, marked as such
            assert line.startswith("    "), line
    # What was printed is in the output, each printed line a record of the worker.
    printed = [line for line in lines if line.endswith(f": {FORGED_LINE}")]
    assert len(printed) == 2 and all(RECORD.match(line) for line in printed)
