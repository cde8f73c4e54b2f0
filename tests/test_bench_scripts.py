"""The in-process bench scripts still run against the code they measure.

They print figures, not verdicts (STYLE: "Speed is a feature"), so nothing here
looks at a figure: each script runs once with the shortest loops and must exit
0 with its table. A refactoring that changes an API a script uses fails here,
not weeks later in front of someone measuring. (``bench/http_bench.py`` needs
wrk and minutes; it is not run by the tests.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("verify_bench.py", "verify RS256 (RSA 2048), cache off"),
        ("signing_bench.py", "POST /api/auth/assertion/NAME"),
    ],
)
def test_an_in_process_bench_script_runs(script: str, expected: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--repeat", "1", "--min-time", "0.01"],
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout, done.stdout[-3000:]
