"""The backtest's trades are the paper venue's: the same prices (on the tick grid, nearer extreme
first), the same trade sizes, the same history rounding, computed for the whole series at once."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from shared.backtest import FillRecord
from shared.backtest.market import replay_bars
from shared.marketdata import shipped_candles
from shared.products import PAPER_PRODUCTS
from shared.trading.pnl import Fill
from workers.venue.market import Market as _Market


@pytest.mark.parametrize("symbol", ["BTCUSD", "ETHUSD"])
def test_replayed_bars_equal_the_paper_venues_own(symbol: str) -> None:
    history, live = 300, 2_000
    venue = _Market(symbol, 1_700_000_000, history, seed=0)
    bars = replay_bars(shipped_candles(symbol).slice(0, history + live), PAPER_PRODUCTS[symbol], history)
    for col, mine in zip((venue.history.open, venue.history.high, venue.history.low, venue.history.close),
                         (bars.open, bars.high, bars.low, bars.close), strict=True):
        assert np.array_equal(col, mine[:history])
    for i in range(history, history + live):
        venue.begin_bar()
        assert venue.ticks == tuple(bars.ticks[i].tolist()), i
        assert venue.tick_size == int(bars.trade_size[i]), i
        assert (bars.open[i], bars.high[i], bars.low[i], bars.close[i]) == (
            venue.ticks[0], max(venue.ticks), min(venue.ticks), venue.ticks[3])


def test_a_fill_record_is_made_from_the_domain_fill_in_issue_12s_shape() -> None:
    f = Fill(fill_id="00000000002a", symbol="ETHUSD", side="sell", size=3, price=repr(2501.35), fee=repr(0.00375203),
             contract_value="0.01", ts=1_700_000_015.0, client_order_id="dg1-a1-ETHUSD-Se01-2", order_id="7",
             role="maker")
    rec = FillRecord.of(f, realised_pnl=-1.25)
    assert msgspec.json.decode(msgspec.json.encode(rec)) == {
        "ts": 1_700_000_015.0, "symbol": "ETHUSD", "side": "sell", "size": 3, "price": 2501.35, "fee": 0.00375203,
        "role": "maker", "client_order_id": "dg1-a1-ETHUSD-Se01-2", "realised_pnl": -1.25}
    with pytest.raises(ValueError, match="role"):
        FillRecord.of(msgspec.structs.replace(f, role=""), realised_pnl=0.0)
