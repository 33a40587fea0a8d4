"""`orchestrate history --halts`: the account's halt log from the run's SQLite ledger (the
account_halts table the supervisor writes), as a table and as JSON, on the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO  # type: ignore[import-not-found]  # same directory: pytest puts it on sys.path

from shared.store import HaltEvent, Store, db_path


def history(run_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", "history", "--run-dir", str(run_dir), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=30)


def test_history_lists_the_halt_log_with_who_and_why(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        store.record_halt_event(HaltEvent(ts=1_780_000_000.0, event="halt", by="risk limits",
                                          reason="daily loss 120.00 USD over the 100.00 USD limit"))
        store.record_halt_event(HaltEvent(ts=1_780_000_600.0, event="clear", by="ann (pid 4242)",
                                          reason="daily loss 120.00 USD over the 100.00 USD limit"))
        store.record_halt_event(HaltEvent(ts=1_780_001_000.0, event="halt", by="dashboard",
                                          reason="operator: from the dashboard"))

    r = history(tmp_path, "--halts")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("2026-")]
    assert len(lines) == 3, r.stdout
    assert lines[0].split()[2:4] == ["halt", "risk"] and "over the 100.00 USD limit" in lines[0]
    assert lines[1].split()[2] == "lifted" and "ann (pid 4242)" in lines[1]
    assert "dashboard" in lines[2] and lines[2].endswith("operator: from the dashboard")
    assert "3 halt event(s)" in r.stdout

    doc = json.loads(history(tmp_path, "--halts", "--json").stdout)
    assert [(h["event"], h["by"]) for h in doc["halts"]] == [
        ("halt", "risk limits"), ("clear", "ann (pid 4242)"), ("halt", "dashboard")]
    assert doc["halts"][0]["ts"] == 1_780_000_000.0
    # without --halts, history stays as it was (fills and PnL)
    assert "halts" not in json.loads(history(tmp_path, "--json").stdout)
    assert "halt event" not in history(tmp_path).stdout


def test_history_says_when_the_account_was_never_halted(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)):
        pass
    r = history(tmp_path, "--halts")
    assert r.returncode == 0 and "0 halt event(s) (none: the account was never halted)" in r.stdout, r.stdout
