"""The paper venue's candle-to-tick path, for a whole series at once (numpy, no per-bar Python).

The venue (workers/venue/market.py `Market`) replays each 1m bar as four trades 15 s apart: open, the
nearer extreme, the farther extreme, close (`shared.marketdata.candle_ticks`), each price rounded
to the product's tick by `ProductSpec.round_price`, each trade carrying a quarter of the bar's
volume in contracts (at least 1). Its start-up history is put on the tick grid by `np.round`
(half-even). The functions here compute exactly those numbers for every bar in one pass;
tests/shared/backtest/test_market.py holds them equal to the venue's own per-bar functions.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..marketdata import BAR_SECONDS, Candles
from ..products import ProductSpec

TICKS_PER_BAR = 4
TICK_SECONDS = BAR_SECONDS // TICKS_PER_BAR


class ReplayedBars(NamedTuple):
    """A symbol's bars as the venue replays them (prices on the tick grid)."""

    ts: np.ndarray  # float64 bar open time, epoch s
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    ticks: np.ndarray  # (n, 4) trade prices of each bar, in replay order
    trade_size: np.ndarray  # (n,) int64 contracts per replayed trade
    volume: np.ndarray  # (n,) the bar's volume (underlying units), as given


def round_price(col: np.ndarray, spec: ProductSpec) -> np.ndarray:
    """`ProductSpec.round_price` over an array: int(p / tick + 0.5) x tick, rounded to 10 places.
    (For prices below ~9e5 np.round(x, 10) and round(x, 10) both give the double nearest the same
    10-place decimal.)"""
    tick = spec.tick_size
    return np.round(np.floor(col / tick + 0.5) * tick, 10)


def history_on_grid(col: np.ndarray, spec: ProductSpec) -> np.ndarray:
    """The venue's start-up history rounding (half-even)."""
    tick = spec.tick_size
    return np.round(np.round(col / tick) * tick, 10)


def replay_bars(c: Candles, spec: ProductSpec, first_live: int) -> ReplayedBars:
    """Bars [0, first_live) as the venue's history, bars from `first_live` as its live replay."""
    n = len(c)
    cols = []
    for col in (c.open, c.high, c.low, c.close):
        col = np.asarray(col, dtype=np.float64)
        out = np.empty(n)
        out[:first_live] = history_on_grid(col[:first_live], spec)
        out[first_live:] = round_price(col[first_live:], spec)
        cols.append(out)
    o, h, low, close = cols
    nearer_high = np.abs(h - o) <= np.abs(o - low)
    ticks = np.empty((n, TICKS_PER_BAR))
    ticks[:, 0] = o
    ticks[:, 1] = np.where(nearer_high, h, low)
    ticks[:, 2] = np.where(nearer_high, low, h)
    ticks[:, 3] = close
    size = np.maximum(1, (np.asarray(c.volume, dtype=np.float64) / spec.contract_value / 4).astype(np.int64))
    return ReplayedBars(np.asarray(c.ts, dtype=np.float64), o, h, low, close, ticks, size,
                        np.asarray(c.volume, dtype=np.float64))
