"""A paper venue as its own process (`orchestrate venue`), for the end-to-end tests that need one
to outlive the trading tree (dead-man switch) or to stand in for Delta's public host (live prices)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def start_venue(run_dir: Path, symbols: str, *, what: str = "the venue") -> subprocess.Popen[str]:
    """Start it on a free port with 0.25 s bars; return once it says its REST address."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "venue", "--port", "0", "--run-dir",
                             str(run_dir), "--symbols", symbols, "--bar-seconds", "0.25"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("venue: REST"):
            return proc
        assert line or proc.poll() is None, f"{what} exited: {proc.poll()}"
    raise AssertionError(f"{what} never said it was up")
