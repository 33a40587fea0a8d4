"""The backtest's trades are the paper venue's: the same prices (on the tick grid, nearer extreme
first), the same trade sizes, the same history rounding, computed for the whole series at once."""

from __future__ import annotations

import numpy as np
import pytest

from shared.backtest.market import replay_bars
from shared.marketdata import shipped_candles
from shared.products import PAPER_PRODUCTS
from workers.venue import _Market


@pytest.mark.parametrize("symbol", ["BTCUSD", "ETHUSD"])
def test_replayed_bars_equal_the_paper_venues_own(symbol: str) -> None:
    history, live = 300, 2_000
    venue = _Market(symbol, 1_700_000_000, history, seed=0)
    bars = replay_bars(shipped_candles(symbol).slice(0, history + live), PAPER_PRODUCTS[symbol], history)
    for col, mine in zip((venue.history.open, venue.history.high, venue.history.low, venue.history.close),
                         (bars.open, bars.high, bars.low, bars.close)):
        assert np.array_equal(col, mine[:history])
    for i in range(history, history + live):
        venue.begin_bar()
        assert venue.ticks == tuple(bars.ticks[i].tolist()), i
        assert venue.tick_size == int(bars.trade_size[i]), i
        assert (bars.open[i], bars.high[i], bars.low[i], bars.close[i]) == (
            venue.ticks[0], max(venue.ticks), min(venue.ticks), venue.ticks[3])
