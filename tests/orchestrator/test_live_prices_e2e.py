"""Issue 14 §4(b): `market.source = "live-prices"` paper-trades on a Delta venue's public feed. Here
a SECOND paper venue (`orchestrate venue`, its own process and account) stands in for Delta's
public host through ORCHESTRATE_LIVE_PRICES_URL; the real exchange is never contacted. The run's
embedded venue takes the stand-in's specs, bars, trades and book; the bots' orders rest there
around the stand-in's prices and fill when the stand-in's trades cross them. The stand-in's own
account never sees an order: the feed only reads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standalone_venue import start_venue  # type: ignore[import-not-found]  # same dir

from shared.price_source import STAND_IN_ENV
from tests.orchestrator.test_trading_e2e import BUSY_GRID, venue_client

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# The stand-in's seeded synthetic market: the shipped BTC series opens on October 2016's quiet
# tape ($2 in 100 minutes), where a 0.15% grid waits minutes for a fill.
SYMBOL = "SYN_0001"
CONFIG = """
[run]
mode = "paper"
venue = "india"
symbols = ["SYN_0001"]
[market]
source = "live-prices"
history_bars = 300
""" + BUSY_GRID


def test_live_prices_run_trades_on_a_stand_in_public_feed(start_run, tmp_path: Path) -> None:
    source_dir = tmp_path / "stand-in"
    source_dir.mkdir()
    source = start_venue(source_dir, "SYN_0001", what="the stand-in")
    try:
        source_url = json.loads((source_dir / "venue.json").read_text())["rest_url"]
        cfg = tmp_path / "live-prices.toml"
        # a symbol the source does not list stops the run before anything starts, naming it
        cfg.write_text(CONFIG.replace(f'["{SYMBOL}"]', '["SYN_0002"]'))
        r = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--config", str(cfg), "--run-dir",
                            str(tmp_path / "refused"), "--no-display"], cwd=REPO, capture_output=True, text=True,
                           timeout=60, env={**os.environ, STAND_IN_ENV: source_url})
        assert r.returncode == 2 and "SYN_0002" in r.stderr and "SYN_0001" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        cfg.write_text(CONFIG)
        run = start_run(["--config", str(cfg), "--pool-size", "1"], env={STAND_IN_ENV: source_url})
        doc = run.wait_for(lambda d: any(w["open_orders"] > 0 for w in d["workers"]), 90, "a grid on live prices")

        async def compare() -> tuple:
            async with venue_client(source_dir) as src, venue_client(run.run_dir) as ours:
                src_ticker = await src.get_ticker(SYMBOL)
                src_product = await src.get_product(SYMBOL)
                our_product = await ours.get_product(SYMBOL)
                orders = await ours.get_open_orders([our_product.id])
                src_orders = await src.get_open_orders()
                src_history = await src.get_order_history()
            return src_ticker, src_product, our_product, orders, src_orders, src_history

        src_ticker, src_product, our_product, orders, src_orders, src_history = asyncio.run(compare())
        assert (our_product.id, our_product.contract_value, our_product.tick_size) == (
            src_product.id, src_product.contract_value, src_product.tick_size)
        assert src_ticker.close is not None and orders
        limits = [o.limit_price for o in orders if o.limit_price]
        # the grid sits around the stand-in's price (3 levels 0.15% apart, re-gridded as it moves)
        assert limits and all(abs(p / src_ticker.close - 1) < 0.03 for p in limits), (src_ticker.close, limits)
        assert not src_orders and not src_history, "the feed must only read the source"

        doc = run.wait_for(lambda d: any(w["fees"] > 0 for w in d["workers"]), 120, "fills on live prices")
        venue = next(p for p in doc["processes"] if p["name"] == "venue")
        assert "live prices from paper" in venue["note"], venue["note"]

        async def fills() -> tuple:
            async with venue_client(run.run_dir) as ours, venue_client(source_dir) as src:
                f = await ours.get_fills([our_product.id])
                lo_hi = await src.get_candles(SYMBOL, "1m", int(time.time()) - 86_400, int(time.time()) + 86_400 * 30)
            return f, lo_hi

        our_fills, src_bars = asyncio.run(fills())
        assert our_fills
        # every fill is at a price the stand-in's market reached (its bars' range, to a tick)
        lo = min(b.low for b in src_bars if b.low is not None) - 0.01
        hi = max(b.high for b in src_bars if b.high is not None) + 0.01
        assert all(lo <= f.price <= hi for f in our_fills), (lo, hi, [f.price for f in our_fills][:5])
        run.terminate()
    finally:
        source.terminate()
        source.wait(timeout=15)
