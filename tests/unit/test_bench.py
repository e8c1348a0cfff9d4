"""The benchmarks run (``python -m bench --quick``): every section measures something and prints its rows.

Benchmarks are not timed tests: nothing here looks at a figure, a ratio or a verdict against a budget. A section
whose measurement fails prints a FAILED row and makes the command exit 1; that is what this test catches.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("1", "2", "3", "4", "5", "6", "7")
COLUMNS = ["section", "measure", "figure", "baseline", "ratio", "budget", "verdict"]


@pytest.mark.slow
def test_the_quick_bench_runs_every_section_and_prints_its_rows() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.splitlines()
    assert [cell.strip() for cell in lines[0].split("|")] == COLUMNS
    rows = [[cell.strip() for cell in line.split("|")] for line in lines[2:] if line.count("|") == 6]
    for section in SECTIONS:
        mine = [row for row in rows if row[0] == section]
        assert mine, f"no row for section {section}:\n{completed.stdout}"
        for row in mine:
            assert row[2], f"section {section} printed an empty figure: {row}"
            assert row[6] != "FAILED", f"section {section} failed to measure: {row}\n{completed.stderr[-4000:]}"
    # every function runs on its sample events and answers them as a stack would (sections 2 and 6 measure that run:
    # a function answering 503 would be measured on its error path)
    assert "no sample event" not in completed.stdout, completed.stdout
    assert "NOT as expected" not in completed.stdout, completed.stdout
