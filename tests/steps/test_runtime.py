"""diffmem.steps.job_env: a workflow script's log, and the garbage collection it skips at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_script_logging_logs_and_freezes_gc_at_exit(tmp_path):
    log = tmp_path / "logs" / "job.log"
    code = textwrap.dedent(
        f"""
        import atexit, gc
        atexit.register(lambda: print("frozen", gc.get_freeze_count() > 0))  # runs last (atexit is LIFO)
        from diffmem.steps.job_env import script_logging
        script_logging({str(log)!r})
        script_logging({str(log)!r}).info("written before exit")
        print("frozen before exit", gc.get_freeze_count() > 0)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["frozen before exit False", "frozen True"]
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith("INFO diffmem: written before exit")
