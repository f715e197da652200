"""`python -m bench` runs and prints its table (the figures themselves are not asserted:
speed is measured in bench/, not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_python_m_bench_prints_one_table_with_baselines():
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "startup", "--only", "memory"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == "| benchmark | figure | value | baseline (same run) | ratio | aim |"
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[1:]}
    assert set(rows) == {"start-up", "memory"}
    assert "labctl --help" in rows["start-up"] and "python -c pass" in rows["start-up"]
    assert " MB" in rows["memory"] and "x |" in rows["memory"]
