"""grid.stop_kind = "trailing" on the real process tree and paper venue: the bots' protective stops
rest as Delta trailing stops (stop_loss_order + signed trail_amount), the venue moves them only in
the position's favour from where the bot placed them, they fire, and the ledgers still agree."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

# same directory: pytest puts it on sys.path (as test_restart_ledger_e2e does)
from test_trading_e2e import (  # type: ignore[import-not-found]
    TIGHT,
    assert_ledgers_match,
    settled_ledger,
    venue_client,
    venue_state,
)

from shared.store import Store, db_path
from shared.trading import client_order_id as coid

pytestmark = pytest.mark.slow


async def bot_stops(run_dir: Path) -> list:
    """Every protective stop of the bots the venue knows: open, triggered, cancelled."""
    async with venue_client(run_dir) as rest:
        ids = [p.id for p in await rest.get_products() if p.symbol in ("BTCUSD", "ETHUSD")]
        orders = await rest.get_open_orders(ids) + await rest.get_order_history(ids)
    return [o for o in orders if (t := coid.parse(o.client_order_id)) is not None and t.purpose == "stop"
            and o.stop_order_type is not None]


def test_trailing_stops_rest_trail_fire_and_the_ledgers_match(start_run, tmp_path: Path) -> None:
    cfg = tmp_path / "trailing.toml"
    cfg.write_text(TIGHT.replace("[grid]\n", "[grid]\nstop_kind = \"trailing\"\nstop_atr_multiple = 0.05\n"
                                             "stop_cooldown_s = 3.0\n"))
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,ETHUSD", "--pool-size", "1"])
    run.wait_for(lambda d: all(w["open_orders"] > 0 for w in d["workers"]), 60, "grids on both symbols")

    def placed_at() -> dict[str, float]:
        if not db_path(run.run_dir).exists():
            return {}
        with Store(db_path(run.run_dir), readonly=True) as store:
            return {e.client_order_id: float(e.price) for e in store.order_events(limit=100_000)
                    if e.event == "placed" and e.detail == "stop_market_order"}

    deadline = time.monotonic() + 180
    while True:
        assert time.monotonic() < deadline, "no trailing stop both moved and fired in 180 s"
        assert run.proc.poll() is None, "orchestrate exited"
        stops, start = asyncio.run(bot_stops(run.run_dir)), placed_at()
        fired = [o for o in stops if o.state == "closed"]
        moved = [o for o in stops if o.client_order_id in start and o.stop_price != start[o.client_order_id]]
        if fired and moved:
            break
        time.sleep(1.0)
    for o in stops:
        # Delta's fields (shared/delta/constants.py): a trailing stop-loss, the amount signed by side
        assert o.stop_order_type == "stop_loss_order" and o.trail_amount is not None and o.reduce_only
        assert (o.trail_amount < 0) == (o.side == "sell"), o
        if o.client_order_id in start and o.stop_price is not None:
            # the venue only ever moved it in the position's favour from where the bot put it
            first = start[o.client_order_id]
            assert o.stop_price >= first if o.side == "sell" else o.stop_price <= first, (o, first)
    for sym in ("BTCUSD", "ETHUSD"):
        assert run.cli("pause", sym).returncode == 0
    time.sleep(2.0)
    state = asyncio.run(venue_state(run.run_dir))
    assert_ledgers_match(state, settled_ledger(run.run_dir, state))
    run.terminate()
