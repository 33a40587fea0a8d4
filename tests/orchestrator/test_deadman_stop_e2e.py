"""Who may switch the dead-man heartbeat off (workers/gateway_deadman.py): the operator's stop
only, as the supervisor says it, never a signal the gateway merely got. Real process trees on a
real paper venue; the switch's state is read from the venue's own persisted record
(`<account>.heartbeats.json`: ttl_ms 0 = off).

The supervisor is frozen (SIGSTOP) while the gateway dies, so the record is read before the
supervisor restarts a gateway that arms the switch again: the old code switched it off in that
gap (ttl_ms 0), leaving the bots' orders unprotected until the restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from standalone_venue import start_venue  # type: ignore[import-not-found]  # same dir
from test_deadman_e2e import armed  # type: ignore[import-not-found]  # same dir
from test_restart_ledger_e2e import gone, pid_of, wait_until  # type: ignore[import-not-found]  # same dir
from test_trading_e2e import TIGHT  # type: ignore[import-not-found]  # same dir

pytestmark = pytest.mark.slow

TTL_MS = 300_000
DEADMAN = "[deadman]\nttl_s = 300\nrenew_interval_s = 1.0\n"
SUPERVISION = "[supervision]\nbackoff_initial_s = 0.2\nbackoff_max_s = 0.5\nmax_restarts = 100\n"


def switch_ttl_ms(run_dir: Path) -> int:
    """The bots' heartbeat's TTL as the venue last recorded it (rewritten on every ack)."""
    (hb,) = [h for h in json.loads((run_dir / "paper-account.json.heartbeats.json").read_text())
             if h["heartbeat_id"] == "dgo-g1"]
    return int(hb["ttl_ms"])


def disabled_lines(run_dir: Path) -> int:
    return (run_dir / "logs" / "gateway.log").read_text().count("dead-man switch dgo-g1 disabled")


@contextmanager
def supervisor_frozen(pid: int) -> Iterator[None]:
    sup = psutil.Process(pid)
    sup.suspend()
    try:
        yield
    finally:
        sup.resume()


def test_only_the_operators_stop_switches_the_heartbeat_off(start_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    venue = start_venue(run_dir, "BTCUSD")  # outlives the tree, so the record is always readable
    try:
        cfg = tmp_path / "deadman.toml"
        cfg.write_text(TIGHT + 'paper_venue = "external"\n' + SUPERVISION + DEADMAN)
        run = start_run(["--config", str(cfg), "--symbols", "BTCUSD", "--pool-size", "1"], run_dir=run_dir)
        doc = run.wait_for(armed, 90, "the switch armed")
        assert switch_ttl_ms(run_dir) == TTL_MS

        # 1. The gateway's parent, the forkserver, dies (the OOM killer's pick) while the supervisor
        # lives: the kernel SIGTERMs the gateway (parent-death signal), which stops, switch armed.
        gateway = pid_of(doc, "gateway")
        forkserver = psutil.Process(gateway).parent()
        assert forkserver is not None and forkserver.pid != run.proc.pid
        assert "forkserver" in " ".join(forkserver.cmdline()), forkserver.cmdline()
        with supervisor_frozen(run.proc.pid):
            forkserver.kill()
            wait_until(lambda: gone(gateway), 20, "the gateway's exit after its parent died")
            assert switch_ttl_ms(run_dir) == TTL_MS, "the parent's death switched the dead-man heartbeat off"
        assert disabled_lines(run_dir) == 0
        doc = run.wait_for(lambda d: pid_of(d, "gateway") not in (0, gateway) and armed(d), 60,
                           "a new gateway, armed")

        # 2. A stray SIGTERM to the gateway alone (not the supervisor's stop): the same.
        gateway = pid_of(doc, "gateway")
        with supervisor_frozen(run.proc.pid):
            os.kill(gateway, signal.SIGTERM)
            wait_until(lambda: gone(gateway), 20, "the gateway's exit on SIGTERM")
            assert switch_ttl_ms(run_dir) == TTL_MS, "a bare SIGTERM switched the dead-man heartbeat off"
        assert disabled_lines(run_dir) == 0
        run.wait_for(lambda d: pid_of(d, "gateway") not in (0, gateway) and armed(d), 60, "a new gateway, armed")

        # 3. The operator's stop turns it off: orders rest on purpose, and nothing cancels them later.
        assert run.cli("stop").returncode == 0
        assert run.proc.wait(timeout=30) == 0
        assert switch_ttl_ms(run_dir) == 0
        assert disabled_lines(run_dir) == 1
    finally:
        venue.send_signal(signal.SIGTERM)
        try:
            venue.wait(timeout=20)
        except subprocess.TimeoutExpired:
            venue.kill()

