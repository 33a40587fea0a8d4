"""Whole-series signal evaluation for the backtest: what the live pool would have answered at every
tick of one symbol's history, without one engine call per tick.

The live path: the bot worker turns each trade tick into the forming bar (open = first tick,
high/low = running max/min of the ticks so far, close = this tick; `shared.bars.apply_tick`), and
the pool calls `SignalEngine.evaluate_batch` on the window of closed bars + that forming bar. At
the first tick of a bar the engine commits the bar that just closed, then evaluates the forming
bar tentatively. `evaluate_series` returns, for every (bar, tick), exactly that answer: the same
direction, confidence and ATR bit for bit, the same component votes, the same validity (invalid
before `min_bars` closed bars, on a bad forming bar, at the tick a bad bar closes, and while warming
up again after it). The window size does not matter: a rebuild only happens at the start and after
a bad bar, and then warms up from the bars after it either way.

`evaluate_series_reference` is the slow definition (one `SignalEngine.evaluate` per tick); the
tests hold `evaluate_series` equal to it.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import numpy as np

from ..marketdata import Candles
from . import strategies as st
from .engine import BarWindow, RLTable, SignalConfig, SignalEngine

LIVE_WINDOW_BARS = 1024  # what the pool reads from shared memory per request
_DIRECTION_CODE = {name: code for code, name in enumerate(st.VOTE_NAMES)}


class SignalSeries(NamedTuple):
    """One symbol's signals at every tick; arrays (n_bars, ticks_per_bar) unless noted."""

    bar_ts: np.ndarray  # (n_bars,) float64, open time of each bar (epoch seconds)
    tick_price: np.ndarray  # float64, the forming bar's close at that tick
    direction: np.ndarray  # int8 codes of strategies.VOTE_NAMES: NONE (0), UP (1), DOWN (2)
    confidence: np.ndarray  # float64, 0.0 when NONE
    atr14: np.ndarray  # float64, the engine's indicators.atr14 (NaN when it reports NaN)
    valid: np.ndarray  # bool
    votes: np.ndarray  # (n_bars, ticks_per_bar, 4) int8 codes in strategies.COMPONENTS order


def candle_tick_prices(candles: Candles) -> np.ndarray:
    """(n_bars, 4) tick prices, row by row `shared.marketdata.candle_ticks` (open, the nearer
    extreme, the farther extreme, close), vectorised."""
    o, h, lo, c = candles.open, candles.high, candles.low, candles.close
    high_first = np.abs(h - o) <= np.abs(o - lo)
    return np.stack([o, np.where(high_first, h, lo), np.where(high_first, lo, h), c], axis=1)


def forming_bars(candles: Candles, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open, high, low) of the forming bar at every tick, as `shared.bars.apply_tick` builds it:
    the open is the first tick, high/low the running max/min of the ticks so far."""
    return (np.broadcast_to(ticks[:, :1], ticks.shape), np.maximum.accumulate(ticks, axis=1),
            np.minimum.accumulate(ticks, axis=1))


def _check_inputs(candles: Candles, ticks: np.ndarray | None, ticks_per_bar: int) -> np.ndarray:
    n = len(candles)
    if ticks is None:
        if ticks_per_bar != 4:
            raise ValueError(f"ticks_per_bar={ticks_per_bar} needs explicit tick prices "
                             "(candle_ticks gives 4 per bar)")
        ticks = candle_tick_prices(candles)
    ticks = np.asarray(ticks, dtype=np.float64)
    if ticks.ndim != 2 or ticks.shape[0] != n or ticks.shape[1] != ticks_per_bar or ticks_per_bar < 1:
        raise ValueError(f"ticks must be ({n}, {ticks_per_bar}), got {ticks.shape}")
    return ticks


def evaluate_series_reference(config: SignalConfig, symbol: str, candles: Candles, *,
                              ticks: np.ndarray | None = None, ticks_per_bar: int = 4,
                              rl_table: bytes | RLTable | None = None, seed: int = 0,
                              window_bars: int = LIVE_WINDOW_BARS) -> SignalSeries:
    """The definition: one `SignalEngine.evaluate` per tick on the window the live worker would
    send (up to `window_bars` bars, the forming one last). Slow; for tests and as the oracle."""
    ticks = _check_inputs(candles, ticks, ticks_per_bar)
    n, t_per = ticks.shape
    engine = SignalEngine(config, seed=seed)
    if rl_table is not None:
        engine.import_rl_table(symbol, rl_table if isinstance(rl_table, bytes)
                               else msgspec.msgpack.encode(rl_table))
    fo, fh, fl = forming_bars(candles, ticks)
    ts = candles.ts.astype(np.float64)
    direction = np.zeros((n, t_per), dtype=np.int8)
    confidence = np.zeros((n, t_per))
    atr = np.full((n, t_per), np.nan)
    valid = np.zeros((n, t_per), dtype=bool)
    votes = np.zeros((n, t_per, len(st.COMPONENTS)), dtype=np.int8)
    for b in range(n):
        s = slice(max(0, b + 1 - window_bars), b + 1)
        o, h, lo, c, v = (np.array(a[s], dtype=np.float64)
                          for a in (candles.open, candles.high, candles.low, candles.close, candles.volume))
        for k in range(t_per):
            o[-1], h[-1], lo[-1], c[-1] = fo[b, k], fh[b, k], fl[b, k], ticks[b, k]
            r = engine.evaluate(BarWindow(symbol, b + 1, ts[s], o, h, lo, c, v))
            direction[b, k] = _DIRECTION_CODE[r.direction]
            confidence[b, k] = r.confidence
            atr[b, k] = r.indicators.atr14
            valid[b, k] = r.valid
            votes[b, k] = [_DIRECTION_CODE[r.votes[name]] for name in st.COMPONENTS]
    return SignalSeries(ts, ticks, direction, confidence, atr, valid, votes)


def evaluate_series(config: SignalConfig, symbol: str, candles: Candles, *,
                    ticks: np.ndarray | None = None, ticks_per_bar: int = 4,
                    rl_table: bytes | RLTable | None = None, seed: int = 0) -> SignalSeries:
    """What `SignalEngine(config, seed).evaluate` would answer at every tick of `candles`, called
    from the first bar on as the live worker calls it (closed bars + the forming bar).

    `ticks` (n_bars, ticks_per_bar): the trade prices within each bar, in order; default
    `candle_tick_prices(candles)` (the paper venue's 4 ticks). The bar committed when it closes is
    the candle's own open/high/low/close. `rl_table`: an `export_rl_table` blob (or its decoded RLTable) to start from
    (otherwise a fresh table), as the pool's import would. `seed`: the engine's seed (the pool uses
    the market seed); it drives the RL agent's exploration.
    """
    # TODO(signals): the fast path (commit loop + vectorised tentative evaluation over ticks)
    return evaluate_series_reference(config, symbol, candles, ticks=ticks, ticks_per_bar=ticks_per_bar,
                                     rl_table=rl_table, seed=seed)
