"""A worker process starts without running its parent's main module again (the ``doves`` script
would bring the whole CLI into every worker); the parent's main module is left as it was."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import multiprocessing
    import os
    import sys

    with open(sys.argv[1], "a") as marks:
        marks.write(f"{__name__}\\n")

    if __name__ == "__main__":
        from martian_doves.supervisor.core import _main_module_hidden

        before = (__spec__, __file__)
        with _main_module_hidden():
            child = multiprocessing.get_context("spawn").Process(target=os.getpid)
            child.start()
        child.join()
        assert child.exitcode == 0, child.exitcode
        assert (__spec__, __file__) == before
""")


def test_a_worker_process_does_not_import_the_parents_main_module(tmp_path: Path) -> None:
    script, marks = tmp_path / "parent.py", tmp_path / "marks"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(marks)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert marks.read_text().splitlines() == ["__main__"]  # a child that imported it would add "__mp_main__"
