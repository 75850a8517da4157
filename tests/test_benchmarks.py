"""Smoke tests of benchmark scripts that reach into seqmarl internals (they must not rot)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ragged_update_benchmark_prints_its_table():
    out = subprocess.run(
        [sys.executable, "benchmarks/ragged_update.py", "--rows", "6", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 3, out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        padded, packed, chunked = (int(x) for x in cells[2].split(" / "))
        assert padded >= packed >= chunked > 0  # each layout reads no more than the last
        assert all(re.fullmatch(r"\d+\.\d+x", c) for c in cells[-2:])
