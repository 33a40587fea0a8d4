"""A bare `pytest` from the repository root collects what `make test` (`python -m pytest`) does.
`python -P` is the bare console script's sys.path (no current directory in front): without the
root on pytest's own path, `tests/` (put on sys.path for its conftest) makes `shared` resolve to
the test tree's tests/shared/ and `tests.` imports fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# files that import `shared.<package>` whose name a test package shadows, and `tests.` helpers
FILES = ["tests/orchestrator/test_backtest_cmd.py", "tests/shared/backtest/test_market.py",
         "tests/shared/test_funding.py", "tests/shared/trading/test_sizing.py"]


def collected(*python_flags: str) -> list[str]:
    out = subprocess.run([sys.executable, *python_flags, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider", *FILES], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_a_bare_pytest_collects_what_make_test_does() -> None:
    bare, as_make_test = collected("-P"), collected()
    assert len(bare) > 50 and bare == as_make_test
