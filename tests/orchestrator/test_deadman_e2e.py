"""The dead-man switch on the real process tree (issue 15): the paper venue runs as its own
process (`orchestrate venue`, market.paper_venue = "external"), the trading tree beside it with a
short TTL. A quick gateway restart (SIGKILL; the supervisor starts it again) does not trip the
switch; SIGKILLing the whole tree does: after the TTL the venue shows no open order of the bots
(cancelled with reason `deadman_switch`), while before it they were still there. Pending
protective stops are kept (Delta's documented "cancels all open orders", read as state `open`;
see shared/matching/deadman.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from standalone_venue import start_venue  # type: ignore[import-not-found]  # same dir
from test_restart_ledger_e2e import gone, pid_of, wait_until  # type: ignore[import-not-found]  # same dir
from test_trading_e2e import TIGHT, ours, venue_client  # type: ignore[import-not-found]  # same dir

from shared.delta.models import Order

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TTL_S = 15.0  # the shortest the config allows with these supervision keys: 1 + 2 + 0.5 + 10 = 13.5
CONFIG = (TIGHT + 'paper_venue = "external"\n'
          "[supervision]\nheartbeat_timeout_s = 2.0\nbackoff_initial_s = 0.2\nbackoff_max_s = 0.5\nmax_restarts = 100\n"
          f"[deadman]\nttl_s = {TTL_S}\nrenew_interval_s = 1.0\n")


def last_ack_s(run_dir: Path) -> float:
    """Wall time (s) of the venue's last renewal of the bots' heartbeat, from its persisted record
    (workers/venue/deadman.py rewrites it on every ack)."""
    [state] = run_dir.glob("*.heartbeats.json")
    [hb] = [h for h in json.loads(state.read_text()) if h["heartbeat_id"] == "dgo-g1"]
    return float(hb["last_ack_us"]) / 1e6


async def venue_orders(run_dir: Path) -> tuple[list[Order], list[Order], dict[int, Order]]:
    """(the bots' live orders, the bots' orders the dead-man switch cancelled, the bots' finished
    orders by id) on the venue."""
    async with venue_client(run_dir) as rest:
        live = await rest.get_open_orders()
        history = await rest.get_order_history()
    mine = [o for o in live if ours(o.client_order_id, o.product_symbol or "")]
    done = {o.id: o for o in history if ours(o.client_order_id, o.product_symbol or "")}
    switched = [o for o in done.values() if o.cancellation_reason == "deadman_switch"]
    return mine, switched, done


def armed(doc: dict[str, Any]) -> bool:
    gw = next((p for p in doc["processes"] if p["name"] == "gateway"), None)
    return gw is not None and gw["state"] == "running" and "dead-man switch armed" in gw["note"]


def test_sigkilled_tree_leaves_no_open_order_after_the_ttl_and_a_gateway_restart_does_not_trip_it(
        start_run, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    venue = start_venue(run_dir, "BTCUSD,ETHUSD")
    try:
        cfg = tmp_path / "deadman.toml"
        cfg.write_text(CONFIG)
        run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"], run_dir=run_dir)
        run.wait_for(lambda d: armed(d) and all(w["open_orders"] > 0 for w in d["workers"]), 90,
                     "grids on both symbols and the switch armed")

        # 1. A quick gateway restart: the new gateway renews the same heartbeat well inside the TTL.
        doc = run.status()
        assert doc is not None
        old = pid_of(doc, "gateway")
        killed_at = time.monotonic()
        gateway_killed_wall = time.time()
        os.kill(old, signal.SIGKILL)
        doc = run.wait_for(lambda d: pid_of(d, "gateway") not in (0, old) and armed(d), 45, "the gateway back, armed")
        back_s = time.monotonic() - killed_at
        print(f"gateway back and renewing {back_s:.1f}s after its SIGKILL")
        assert back_s < TTL_S, f"the gateway took {back_s:.1f}s to come back: longer than the TTL"
        # That the switch never fires at the TTL counted from this kill is watched in 3, while the
        # whole tree's switch runs out (no idle wait for it here).

        # 2. SIGKILL every process of the tree (supervisor, gateway, pool, workers); the venue lives on.
        doc = run.status()
        assert doc is not None
        tree = [p["pid"] for p in doc["processes"] if p["pid"]] + [w["pid"] for w in doc["workers"] if w["pid"]]
        assert venue.pid not in tree and psutil.Process(venue.pid).is_running()
        run.kill_all()
        wait_until(lambda: all(gone(p) for p in tree), 10, "the tree gone")
        # The switch lapses TTL after the LAST renewal the venue took, which a loaded machine may
        # have delayed well before the kill: read it from the venue's own record (wall clock).
        expires_at = last_ack_s(run_dir) + TTL_S
        # The new gateway renewed after the old one died: the tree's switch runs out past the TTL
        # counted from the gateway's kill (with a margin), so watching it also watches that one.
        assert expires_at >= gateway_killed_wall + TTL_S + 1.0, (expires_at, gateway_killed_wall)
        mine, switched, _ = asyncio.run(venue_orders(run_dir))
        resting = [o for o in mine if o.state == "open"]
        assert resting and switched == [], "the bots' orders should still rest right after the kill"

        # 3. After the TTL the venue cancels them: no open order of the bots is left. Before it,
        # the switch cancels nothing (the gateway restart in 1 did not trip it).
        while True:
            mine, switched, done = asyncio.run(venue_orders(run_dir))
            if time.time() < expires_at - 0.5:
                assert switched == [], [o.client_order_id for o in switched]
            if not any(o.state == "open" for o in mine):
                break
            assert time.time() < expires_at + 10.0, f"{len(mine)} orders of the bots still open after the TTL"
            time.sleep(0.5)
        seen_at = time.time()
        print(f"no open order of the bots {seen_at - expires_at:+.1f}s after the switch's expiry (TTL {TTL_S:.0f}s)")
        # The switch, not anything else: nothing was cancelled before the TTL after the last
        # renewal had run out, and those orders carry its reason.
        assert seen_at >= expires_at, f"orders gone {expires_at - seen_at:.1f}s before the switch expired"
        # The market kept trading: an order resting at the kill may have filled before the lapse;
        # every other one was cancelled by the switch.
        ends = {o.id: (done[o.id].state, done[o.id].cancellation_reason) if o.id in done else ("open", None)
                for o in resting}
        assert all(end in (("closed", None), ("cancelled", "deadman_switch")) for end in ends.values()), ends
        assert switched, "the switch cancelled nothing"
        assert all(o.state == "pending" and o.stop_order_type for o in mine), \
            "only pending protective stops may remain"
        log = (run_dir / "logs").glob("*.log")
        assert any("dead-man switch dgo-g1 armed" in p.read_text() for p in log)
    finally:
        venue.send_signal(signal.SIGTERM)
        try:
            venue.wait(timeout=20)
        except subprocess.TimeoutExpired:
            venue.kill()
    assert json.loads((run_dir / "venue.json").read_text())["rest_url"].startswith("http://127.0.0.1:")


def test_a_clean_stop_switches_the_heartbeat_off_so_resting_orders_stay(start_run, tmp_path: Path) -> None:
    """README: a plain stop leaves orders resting on purpose; the switch is turned off (ttl 0)
    before the embedded venue stops, so it cannot cancel them later. The stop here is a terminal's
    Ctrl-C: SIGINT to every process of the run's foreground group at once (its own session here);
    the gateway and the embedded venue leave it to the supervisor, whose stop switches the
    heartbeat off while the venue still serves (`orchestrate stop`: test_deadman_stop_e2e.py)."""
    cfg = tmp_path / "embedded.toml"
    cfg.write_text(TIGHT + "[deadman]\nttl_s = 300\n")
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"], new_session=True)
    doc = run.wait_for(lambda d: armed(d) and all(w["open_orders"] > 0 for w in d["workers"]), 90,
                       "grids, switch armed")
    # the switch's state as figures too (status --json, and from there the Prometheus metrics)
    doc = run.wait_for(lambda d: d["deadman"] == "armed", 10, "the switch's state in status")
    assert 240 < doc["deadman_expires_in_s"] <= 300, doc["deadman_expires_in_s"]
    saved = run.run_dir / "paper-account.json.heartbeats.json"
    (before,) = json.loads(saved.read_text())
    assert (before["heartbeat_id"], before["ttl_ms"]) == ("dgo-g1", 300_000)
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.proc.wait(timeout=30) == 0
    (after,) = json.loads(saved.read_text())
    assert after["ttl_ms"] == 0, after
    assert "dead-man switch dgo-g1 disabled" in (run.run_dir / "logs" / "gateway.log").read_text()


def test_an_external_venue_that_is_not_there_is_exit_2_saying_how_to_start_it(tmp_path: Path) -> None:
    cfg = tmp_path / "external.toml"
    cfg.write_text('[market]\npaper_venue = "external"\n')
    r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "--run-dir",
                        str(tmp_path / "run"), "--no-display"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "orchestrate venue --run-dir" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "trading.sqlite").exists()
