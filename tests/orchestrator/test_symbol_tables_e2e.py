"""A worker really trades with its symbol's table: on the paper venue, ETHUSD's bot (levels = 1 in
[symbols.ETHUSD.grid]) rests entries at level 1 only while BTCUSD's rests the global 3 levels,
and status names the override."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from pathlib import Path

import pytest

# same directory: pytest puts it on sys.path (as test_restart_ledger_e2e does)
from test_trading_e2e import BOT, TIGHT, venue_client  # type: ignore[import-not-found]

from shared.trading import client_order_id as coid

pytestmark = pytest.mark.slow


async def _entry_levels(run_dir: Path) -> dict[str, set[int]]:
    async with venue_client(run_dir) as rest:
        ids = [p.id for p in await rest.get_products() if p.symbol in ("BTCUSD", "ETHUSD")]
        orders = await rest.get_open_orders(ids)
    levels: dict[str, set[int]] = defaultdict(set)
    for o in orders:
        tag = coid.decode(o.client_order_id, bot_id=BOT, symbol=o.product_symbol)
        if tag is not None and tag.purpose == "entry":
            levels[o.product_symbol].add(tag.level)
    return levels


def test_each_worker_trades_its_own_symbol_table(start_run, tmp_path: Path) -> None:
    cfg = tmp_path / "tables.toml"
    cfg.write_text(TIGHT + "[symbols.ETHUSD.grid]\nlevels = 1\n")
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"])
    doc = run.wait_for(lambda d: len(d["workers"]) == 2 and all(w["open_orders"] > 0 for w in d["workers"]), 60,
                       "grids on both symbols")
    overrides = {w["symbol"]: w["overrides"] for w in doc["workers"]}
    assert overrides == {"BTCUSD": [], "ETHUSD": ["grid.levels=1"]}
    table = run.cli("status")
    assert "overrides grid.levels=1" in table.stdout, table.stdout
    # Read the venue until BTC's full grid rests (levels fill and re-grid meanwhile); every ETH
    # entry seen on the way is at level 1.
    eth_seen: set[int] = set()
    deadline = time.monotonic() + 60
    while True:
        levels = asyncio.run(_entry_levels(run.run_dir))
        eth_seen |= levels["ETHUSD"]
        if levels["BTCUSD"] == {1, 2, 3} and eth_seen or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert levels["BTCUSD"] == {1, 2, 3}
    assert eth_seen == {1}
    assert run.cli("stop", "--cancel-orders").returncode == 0
    run.proc.wait(timeout=20)
