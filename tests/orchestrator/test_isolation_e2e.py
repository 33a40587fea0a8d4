"""What a run keeps is its owner's alone, and a run dir of any length works: sockets live in a
private directory (a long run dir's short one under /tmp too), trading data is 0600/0700."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from shared.transport import socket_dir

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

FAST = ["--bar-seconds", "0.4", "--pool-size", "1", "--symbols", "BTCUSD"]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _long_run_dir(tmp_path: Path) -> Path:
    d = tmp_path / ("a-rather-long-directory-name-for-a-run-" * 2) / "run"
    assert len(str(d / "control.sock")) > 108  # too long for a unix socket path
    return d


def test_a_long_run_dir_works_and_everything_in_it_is_private(start_run, tmp_path: Path) -> None:
    run = start_run(FAST, run_dir=_long_run_dir(tmp_path))
    doc = run.wait_for(lambda d: bool(d["workers"]) and d["workers"][0]["first_signal_after_launch_s"] is not None,
                       60, "a signal")  # status answered: the control socket works at this length
    rd = run.run_dir
    sdir = socket_dir(rd)
    assert str(sdir).startswith("/tmp/dgo-") and (sdir / "control").is_socket()
    assert _mode(sdir) == 0o700 and sdir.stat().st_uid == os.getuid()
    assert _mode(rd) == 0o700 and _mode(rd / "logs") == 0o700
    private = [rd / "trading.sqlite", rd / "metrics.url", rd / "venue.json", *(rd / "logs").glob("*.log")]
    assert len(private) > 5
    assert {str(p): oct(_mode(p)) for p in private} == {str(p): "0o600" for p in private}
    assert doc["metrics_url"]
    run.terminate()
    assert run.proc.returncode == 0
    assert not sdir.exists() or not list(sdir.iterdir())


@pytest.mark.parametrize("owner,mode", [(None, 0o777), (65534, 0o700)])
def test_a_socket_dir_others_can_use_is_refused(tmp_path: Path, owner: int | None, mode: int) -> None:
    rd = _long_run_dir(tmp_path)
    sdir = socket_dir(rd)
    shutil.rmtree(sdir, ignore_errors=True)
    sdir.mkdir()
    try:
        os.chmod(sdir, mode)
        if owner is not None:
            os.chown(sdir, owner, owner)
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", *FAST, "--no-display",
                            "--run-dir", str(rd)], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert str(sdir) in r.stderr and "Traceback" not in r.stderr
        assert ("0777" in r.stderr) if owner is None else ("uid 65534" in r.stderr)
        assert _mode(sdir) == mode  # left exactly as found
    finally:
        shutil.rmtree(sdir, ignore_errors=True)
