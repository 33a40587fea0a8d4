"""Bad input through the real command line (issue 10 §5): exit 2 naming the problem, never a
traceback, and nothing left behind (shared memory, processes). Plus: a supervisor that exits
leaves no process of its run behind at that moment (§6)."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _without_root_file_powers() -> None:
    """Run the child as root would run on a box where it cannot override file modes (for the
    unwritable run dir case): drop the two capabilities from the bounding set before exec."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


class Result(NamedTuple):
    code: int | None
    out: str
    shm_left: list[str]  # this run's shared-memory segments still there after it exited


def orchestrate(args: list[str], cwd: Path, preexec: Callable[[], None] | None = None,
                timeout: float = 20) -> Result:
    """Run the real CLI in its own session; whatever happens, its whole tree and its shared
    memory are gone afterwards (what was left is reported first)."""
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", *args], cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=preexec, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out = f"(still running after {timeout} s: the bad input was accepted)"
    shm = Path("/dev/shm")
    left = [p.name for p in shm.glob(f"dgo-{proc.pid}-*")]
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for name in left:
        (shm / name).unlink(missing_ok=True)
    return Result(proc.returncode, out, left)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# (name, setup(tmp) -> argv, exit code, words the message must contain)
CASES: list[tuple[str, Callable[[Path], list[str]], int, list[str]]] = [
    ("metrics port too high", lambda t: ["--metrics-port", "70000"], 2, ["--metrics-port 70000", "0 to 65535"]),
    ("metrics port negative", lambda t: ["--metrics-port", "-1"], 2, ["--metrics-port -1", "0 to 65535"]),
    ("pool size negative", lambda t: ["--pool-size", "-1"], 2, ["--pool-size -1", "0 to 256"]),
    ("bar seconds zero", lambda t: ["--bar-seconds", "0"], 2, ["--bar-seconds 0.0", "0.001 to 3600"]),
    ("run dir is a file", lambda t: ["--run-dir", _write(t / "afile", "x")], 2, ["afile", "is a file"]),
    ("run dir under a file", lambda t: ["--run-dir", _write(t / "afile", "x") + "/sub"], 2,
     ["afile/sub", "part of the path is a file"]),
    ("leverage 0", lambda t: ["--config", _write(t / "c.toml", "[market]\nleverage = 0\n")], 2,
     ["c.toml", "'market.leverage' = 0", "1 to 200"]),
    ("leverage -10", lambda t: ["--config", _write(t / "c.toml", "[market]\nleverage = -10\n")], 2,
     ["c.toml", "'market.leverage' = -10", "1 to 200"]),
    ("balance 1e300", lambda t: ["--config", _write(t / "c.toml", "[market]\ninitial_balance_usd = 1e300\n")], 2,
     ["c.toml", "'market.initial_balance_usd' = 1e+300", "1 to 1000000000"]),
    ("balance -100", lambda t: ["--config", _write(t / "c.toml", "[market]\ninitial_balance_usd = -100\n")], 2,
     ["c.toml", "'market.initial_balance_usd' = -100"]),
    ("heartbeat 0", lambda t: ["--config", _write(t / "c.toml", "[supervision]\nheartbeat_interval_s = 0\n")], 2,
     ["c.toml", "'supervision.heartbeat_interval_s' = 0", "0.05 to 60"]),
    ("uss 0.001", lambda t: ["--config", _write(t / "c.toml", "[budgets]\nuss_mb = 0.001\n")], 2,
     ["c.toml", "'budgets.uss_mb' = 0.001", "0 (off) or 16 to 1048576"]),
    ("rss -1", lambda t: ["--config", _write(t / "c.toml", "[budgets]\nrss_mb = -1\n")], 2,
     ["c.toml", "'budgets.rss_mb' = -1", "0 (off) or 64 to 1048576"]),
    ("shutdown -5", lambda t: ["--config", _write(t / "c.toml", "[supervision]\nshutdown_timeout_s = -5\n")], 2,
     ["c.toml", "'supervision.shutdown_timeout_s' = -5", "1 to 600"]),
    ("max open orders 0", lambda t: ["--config", _write(t / "c.toml", "[risk]\nmax_open_orders = 0\n")], 2,
     ["c.toml", "'risk.max_open_orders' = 0", "1 to 1000"]),
    ("width 1e-12", lambda t: ["--config", _write(t / "c.toml", "[grid]\nwidth = 1e-12\n")], 2,
     ["c.toml", "'grid.width' = 1e-12", "0.0001 to 0.5"]),
    ("legacy grid_levels 0", lambda t: ["--config", _write(t / "config.json", json.dumps(
        {"symbol": "BTCUSD", "grid_levels": 0}))], 2, ["config.json", "'grid_levels' = 0", "1 to 99"]),
    ("funding interval not whole minutes", lambda t: ["--config", _write(
        t / "c.toml", "[market]\nfunding_interval_s = 90\n")], 2,
     ["c.toml", "market.funding_interval_s", "whole number of minutes"]),
    ("funding series file missing", lambda t: ["--config", _write(
        t / "c.toml", '[market]\nfunding_series = {BTCUSD = "nope.csv"}\n')], 2,
     ["c.toml", "market.funding_series.BTCUSD", "nope.csv"]),
    ("funding series not OHLCV", lambda t: ["--config", _write(t / "c.toml", '[market]\nfunding_series = {BTCUSD = "'
                                            + _write(t / "f.csv", "a,b\n1,2\n") + '"}\n')], 2,
     ["market.funding_series.BTCUSD", "f.csv"]),
    ("history of a garbage ledger", lambda t: ["history", "--run-dir", str(_garbage_ledger(t))], 2,
     ["trading.sqlite", "not a trading ledger"]),
    ("history of another program's database", lambda t: ["history", "--run-dir", str(_foreign_db(t))], 2,
     ["trading.sqlite", "not a trading ledger"]),
    ("venue port too high", lambda t: ["venue", "--port", "99999", "--run-dir", str(t / "v")], 2,
     ["--port 99999", "0 to 65535"]),
    ("venue port negative", lambda t: ["venue", "--port", "-5", "--run-dir", str(t / "v")], 2,
     ["--port -5", "0 to 65535"]),
    ("venue run dir is a file", lambda t: ["venue", "--run-dir", _write(t / "afile", "x")], 2, ["is a file"]),
]


def _garbage_ledger(t: Path) -> Path:
    (t / "g").mkdir()
    (t / "g" / "trading.sqlite").write_bytes(bytes(range(256)) * 20)
    return t / "g"


def _foreign_db(t: Path) -> Path:
    import sqlite3
    (t / "f").mkdir()
    with sqlite3.connect(t / "f" / "trading.sqlite") as db:
        db.execute("CREATE TABLE something (a)")
    return t / "f"


def _argv(args: list[str], tmp_path: Path) -> list[str]:
    if args and args[0] in ("history", "venue"):
        return args
    # `run`: a fresh run dir unless the case names one, one symbol, no table
    run_dir = [] if "--run-dir" in args else ["--run-dir", str(tmp_path / "run")]
    return ["run", "--symbols", "BTCUSD", "--no-display", *run_dir, *args]


@pytest.mark.parametrize("name,setup,code,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_it_without_a_traceback(tmp_path: Path, name: str, setup: Callable[[Path], list[str]],
                                                         code: int, words: list[str]) -> None:
    rc, out, shm_left = orchestrate(_argv(setup(tmp_path), tmp_path), cwd=tmp_path)
    assert rc == code, f"{name}: exit {rc}\n{out}"
    assert "Traceback" not in out, out
    for w in words:
        assert w in out, f"{name}: {w!r} not in {out!r}"
    assert shm_left == [], "shared memory left behind"


def test_a_venue_port_in_use_exits_2_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        rc, out, shm_left = orchestrate(["venue", "--port", str(port), "--run-dir", str(tmp_path / "v")], cwd=tmp_path)
    assert rc == 2 and "Traceback" not in out, out  # the old code: exit 1, "venue failed: OSError ..."
    assert f"--port {port}: 127.0.0.1:{port} is already in use" in out and "--port 0" in out, out
    assert not (tmp_path / "v" / "venue.json").exists() and shm_left == []


@pytest.mark.parametrize("where", ["dir", "under"])
def test_an_unwritable_run_dir_is_refused_before_anything_starts(tmp_path: Path, where: str) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        run_dir = ro if where == "dir" else ro / "x"
        rc, out, shm_left = orchestrate(_argv(["--run-dir", str(run_dir)], tmp_path), cwd=tmp_path,
                                        preexec=_without_root_file_powers)
    finally:
        ro.chmod(0o700)
    assert rc == 2, out
    assert "Traceback" not in out and str(run_dir) in out, out
    assert ("not writable" if where == "dir" else "cannot create run dir") in out, out
    assert shm_left == [] and not list(ro.iterdir())


def test_a_start_up_failure_leaves_no_shared_memory_and_no_traceback(tmp_path: Path) -> None:
    # The ledger cannot be opened (its path is a directory): the supervisor fails after it made
    # the bars' shared memory; the old code left the segment and printed a traceback.
    run_dir = tmp_path / "run"
    (run_dir / "trading.sqlite").mkdir(parents=True)
    rc, out, shm_left = orchestrate(_argv(["--run-dir", str(run_dir)], tmp_path), cwd=tmp_path)
    assert rc == 1, out
    assert "Traceback" not in out and "unable to open database file" in out, out
    assert "supervisor.log" in out  # where the details are
    assert shm_left == [], "shared memory left behind"
    assert "Traceback" in (run_dir / "logs" / "supervisor.log").read_text()  # kept for the developer


def test_no_process_of_the_run_is_left_when_the_supervisor_exits(tmp_path: Path) -> None:
    """Issue 10 §6: after SIGTERM the forkserver and the resource tracker stayed (as zombies) for
    up to ~3 s after the supervisor had exited."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", "--symbols", "BTCUSD",
                             "--no-display", "--pool-size", "1", "--bar-seconds", "0.4", "--run-dir", str(run_dir)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "status", "--json",
                                "--run-dir", str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and all(w["state"] == "running" for w in json.loads(r.stdout)["workers"]):
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        else:
            raise AssertionError("the bot never reached running")
        descendants = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in descendants)
        assert "forkserver" in names and "resource_tracker" in names, names  # both are counted
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        # right at the supervisor's exit: no process of the run exists, not even as a zombie
        left = [(p.pid, p.status()) for p in descendants if _exists(p)]
        assert left == [], f"left at exit: {left}"
    finally:
        for p in descendants:  # in case one left the session
            if _exists(p):
                p.kill()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        seg = run_dir / "segments.json"
        if seg.exists():
            for name in json.loads(seg.read_text()):
                Path("/dev/shm", str(name)).unlink(missing_ok=True)


def _exists(p: psutil.Process) -> bool:
    try:
        return p.is_running()  # also True for a zombie; False once reaped (or the pid was reused)
    except psutil.Error:
        return False
