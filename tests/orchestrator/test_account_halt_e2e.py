"""Account risk that survives a restart, and an operator's flatten, on the real process tree and
the paper venue.

1. A tiny daily loss limit is breached; the supervisor is SIGKILLed and started again (with a
   limit the operator raised meanwhile): the halt still stands, with its reason and time, no bot
   places an order, the day's start equity is the one from before the kill (the budget is not
   re-armed), and only `resume --all` lifts it, recorded with the local user.
2. `flatten --all`: the bots' orders (stops included) are cancelled and their positions closed
   with reduce-only market orders; status says "flat: confirmed on the venue" and the venue shows
   no position and no order of ours.

Before this work the halt lived in the supervisor's memory: the restarted run traded at once."""

from __future__ import annotations

import asyncio
import getpass
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

# same directory: pytest puts it on sys.path; mypy knows them as tests.orchestrator.*
from test_restart_ledger_e2e import gone, wait_until  # type: ignore[import-not-found]  # see above
from test_trading_e2e import TIGHT, ours, venue_state  # type: ignore[import-not-found]  # see above

from shared.store import Store, db_path
from shared.trading.account_risk import AccountRisk
from shared.trading.risk import utc_day

pytestmark = pytest.mark.slow

SYMBOLS = ("BTCUSD", "ETHUSD")


def saved_state(run_dir: Path) -> AccountRisk | None:
    with Store(db_path(run_dir), readonly=True) as store:
        return store.load_account_risk()


def placed_since(run_dir: Path, ts: float) -> list[str]:
    with Store(db_path(run_dir), readonly=True) as store:
        return [f"{e.symbol} {e.detail} {e.client_order_id}" for e in store.order_events(limit=100_000)
                if e.event == "placed" and e.ts >= ts]


def child_pids(doc: dict[str, Any]) -> list[int]:
    return [p["pid"] for p in doc["processes"] if p["pid"]] + [w["pid"] for w in doc["workers"] if w["pid"]]


def test_a_daily_loss_halt_survives_a_sigkill_of_the_supervisor_until_resume_all(start_run, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny-limit.toml"
    tiny.write_text(TIGHT.replace("[risk]\n", "[risk]\ndaily_loss_limit = 0.5\nmax_drawdown_fraction = 0.5\n"))
    raised = tmp_path / "raised-limit.toml"
    raised.write_text(TIGHT.replace("[risk]\n", "[risk]\ndaily_loss_limit = 5000.0\nmax_drawdown_fraction = 0.5\n"))
    run_dir = tmp_path / "run"
    args = ["--symbols", ",".join(SYMBOLS), "--pool-size", "1"]

    run = start_run(["--config", str(tiny), *args], run_dir=run_dir)
    doc = run.wait_for(lambda d: d["halted"], 180, "the daily loss halt")
    assert "daily loss" in doc["halt_reason"] and doc["halted_by"] == "risk limits", doc["halt_reason"]
    halted_at, reason = doc["halted_at"], doc["halt_reason"]
    before = saved_state(run_dir)
    assert before is not None and before.halt is not None and before.day is not None
    assert before.halt.reason == reason and before.halt.ts == halted_at
    run.wait_for(lambda d: all(w["trading"].startswith("halted") for w in d["workers"]), 30, "every bot halted")

    # SIGKILL the supervisor alone; its children see it gone (the lifeline) and exit.
    pids = child_pids(doc)
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait(timeout=10)
    wait_until(lambda: all(gone(p) for p in pids), 20, "the killed supervisor's children to exit")
    restarted = time.time()

    run = start_run(["--config", str(raised), *args], run_dir=run_dir)
    doc = run.wait_for(lambda d: bool(d["workers"]) and all(w["state"] == "running" for w in d["workers"]),
                       90, "the bots running again")
    deadline = time.monotonic() + 10  # and they stay halted while the market moves: no order placed
    while time.monotonic() < deadline:
        doc = run.status() or doc
        assert doc["halted"] and doc["halt_reason"] == reason and doc["halted_at"] == halted_at, doc["halt_reason"]
        for w in doc["workers"]:
            assert not w["trading"] or w["trading"].startswith(("halted", "reconciling")), (w["symbol"], w["trading"])
        time.sleep(0.5)
    assert all(w["trading"] == f"halted: {reason}" for w in doc["workers"]), [w["trading"] for w in doc["workers"]]
    assert placed_since(run_dir, restarted) == []
    text = run.cli("status").stdout
    assert f"by risk limits: {reason}" in text and "HALTED since" in text, text[:600]
    after = saved_state(run_dir)
    assert after is not None and after.day is not None
    if after.day.utc_day == before.day.utc_day == utc_day(time.time()):
        # the same UTC day: its start equity is the one from before the kill, not the restart's
        assert after.day.day_start_equity == before.day.day_start_equity

    r = run.cli("resume", "--all")
    assert r.returncode == 0 and "account halt lifted" in r.stdout, r.stdout + r.stderr
    doc = run.wait_for(lambda d: not d["halted"] and all(w["trading"] in ("trading",) or
                                                         w["trading"].startswith("stopped out")
                                                         for w in d["workers"]), 60, "trading again after resume --all")
    with Store(db_path(run_dir), readonly=True) as store:
        events = store.halt_events()
    assert [e.event for e in events] == ["halt", "clear"], events
    assert events[1].by.startswith(f"{getpass.getuser()} (pid "), events[1].by
    run.wait_for(lambda d: any(w["open_orders"] > 0 for w in d["workers"]), 60, "grids again")
    run.terminate()


def test_flatten_all_closes_every_position_and_cancels_every_order_confirmed_on_the_venue(
        start_run, tmp_path: Path) -> None:
    cfg = tmp_path / "tight.toml"
    cfg.write_text(TIGHT)
    run = start_run(["--config", str(cfg), "--symbols", ",".join(SYMBOLS), "--pool-size", "1"])
    doc = run.wait_for(lambda d: any(w["position"] != 0 and w["stop_price"] is not None for w in d["workers"]),
                       120, "a position with its protective stop resting")
    held = [w["symbol"] for w in doc["workers"] if w["position"] != 0]

    asked_ts = time.time()
    r = run.cli("flatten", "--all")
    assert r.returncode == 0 and "flattening BTCUSD, ETHUSD" in r.stdout, r.stdout + r.stderr
    doc = run.wait_for(lambda d: all(w["flatten"].startswith("flat: confirmed on the venue") for w in d["workers"]),
                       60, "both symbols flat on the venue")
    assert all(w["position"] == 0 and w["open_orders"] == 0 and w["trading"] == "paused" for w in doc["workers"]), \
        [(w["symbol"], w["position"], w["open_orders"], w["trading"]) for w in doc["workers"]]
    assert not doc["halted"]
    time.sleep(2.0)  # paused bots place nothing more: the venue stays flat
    state = asyncio.run(venue_state(run.run_dir))
    for sym in SYMBOLS:
        pos = state["positions"].get(sym)
        assert pos is None or pos.size == 0, f"{sym} still holds {pos.size} on the venue"
    left = [o.client_order_id for o in state["orders"] if ours(o.client_order_id, o.product_symbol or "")]
    assert left == [], f"orders of ours still open (stops included) after the flatten: {left}"
    with Store(db_path(run.run_dir), readonly=True) as store:
        events = store.order_events(limit=100_000)
        last_fill = {sym: store.fills(sym, last=1) for sym in held}
    placed_before = {e.client_order_id for e in events if e.event == "placed" and e.ts < asked_ts}
    for sym in held:
        # Each held position was closed by a reduce-only market order of ours, unless a resting
        # order of ours (a take-profit placed before the flatten was asked) closed it first: the
        # status read that saw the position can be that much older than the flatten.
        closed_by_flatten = any(e.event == "placed" and e.symbol == sym and e.detail == "market_order"
                                for e in events)
        closed_before = bool(last_fill[sym]) and last_fill[sym][-1].client_order_id in placed_before
        assert closed_by_flatten or closed_before, (sym, last_fill[sym])
    assert any(e.event == "cancelled" and e.order_id for e in events)
    # `resume SYMBOL` clears the flatten and trades that symbol again.
    assert run.cli("resume", "BTCUSD").returncode == 0
    run.wait_for(lambda d: next(w for w in d["workers"] if w["symbol"] == "BTCUSD")["flatten"] == "", 20,
                 "the flatten cleared by resume")
    run.terminate()


def test_commands_without_a_supervisor_or_with_bad_input(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import REPO  # type: ignore[import-not-found]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args, "--run-dir", str(tmp_path / "run")],
                              cwd=REPO, capture_output=True, text=True, timeout=30, env=dict(os.environ))

    for args in (("halt", "--reason", "x"), ("clear-halt",), ("resume", "--all"), ("flatten", "BTCUSD")):
        r = cli(*args)
        assert r.returncode == 1 and "no supervisor is running" in r.stderr, (args, r.stderr)
    for args, says in ((("flatten",), "or --all"), (("flatten", "BTCUSD", "--all"), "or --all"),
                       (("resume",), "--all"), (("resume", "BTCUSD", "--all"), "--all")):
        r = cli(*args)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
