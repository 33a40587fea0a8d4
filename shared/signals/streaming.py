"""Streaming indicators: constant work per bar, vectorised over rows (one row per symbol).

The state of n symbols is two float64 arrays: `state` (n, N_STATE) holding the recursions (EMAs,
Wilder averages, the MACD signal) and `closes` (n, CLOSES_LEN), the last CLOSES_LEN closes
(oldest first, NaN before any bar). `advance` returns the state after one more bar without
touching its inputs, so the same function serves both committing a closed bar and the "what-if"
evaluation of the forming bar (advance, read the outputs, throw the new state away).

SMA and Bollinger are recomputed from the last 20 closes on every call (two-pass mean and
deviation) instead of kept as running sums: the cost is the same handful of numpy calls, and a
running sum of squares would drift and cancel on large prices. Work per bar is O(20), independent
of how long the series is.

Periods are TA-Lib's defaults (the snapshot column names carry them); values equal
`shared.signals.indicators` and TA-Lib bar for bar from the first defined value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .backend import VEC, Backend

SMA_PERIOD = 20
EMA_FAST = 12
EMA_SLOW = 26
MACD_SIGNAL = 9
RSI_PERIOD = 14
BB_PERIOD = 20
BB_K = 2.0
ATR_PERIOD = 14
CLOSES_LEN = 32  # >= EMA_SLOW for the seeds, and enough for 10-bar momentum and 20 changes

OUTPUT_COLUMNS = ("sma20", "ema12", "ema26", "rsi14", "macd", "macd_signal", "macd_hist",
                  "bb_upper", "bb_middle", "bb_lower", "atr14")
(O_SMA, O_EMA12, O_EMA26, O_RSI, O_MACD, O_SIGNAL, O_HIST,
 O_BB_UP, O_BB_MID, O_BB_LOW, O_ATR) = range(len(OUTPUT_COLUMNS))



class IndicatorState(NamedTuple):
    """The recursions of one symbol (or a column per row): the layout of a `state` row."""

    n: Any  # bars committed
    prev_close: Any
    ema_fast: Any
    ema_slow: Any
    macd_fast: Any  # MACD's own fast EMA (seeded at the slow EMA's first bar, as TA-Lib)
    signal: Any  # MACD signal line (a running sum before its seed bar)
    gain: Any  # Wilder average gain (RSI)
    loss: Any
    atr: Any


class BollingerPrep(NamedTuple):
    """Mean and sum of squared deviations of the last BB_PERIOD-1 closes, kept at each commit so
    the forming bar's bands cost O(1)."""

    mean: Any
    m2: Any


# state columns, in IndicatorState order
S_N, S_PREV_CLOSE, S_EMA_FAST, S_EMA_SLOW, S_MACD_FAST, S_SIGNAL, S_GAIN, S_LOSS, S_ATR = range(9)
N_STATE = len(IndicatorState._fields)

_K_FAST = 2.0 / (EMA_FAST + 1.0)
_K_SLOW = 2.0 / (EMA_SLOW + 1.0)
_K_SIGNAL = 2.0 / (MACD_SIGNAL + 1.0)
_MACD_FIRST = EMA_SLOW + MACD_SIGNAL - 2  # bar index of the first MACD output (33)
WARM_BARS = _MACD_FIRST + 1  # from this bar index on, every recursion is in its steady form


def push_mean_var(m: Any, m2: Any, x: Any, n: int) -> tuple[Any, Any]:
    """(mean, population variance) of k-1 values with mean m and squared-deviation sum m2, plus x
    (n = k): one Welford step, so a window's statistics cost O(1) per forming-bar price."""
    delta = x - m
    mean = m + delta / n
    return mean, (m2 + delta * (x - mean)) / n


def ema_fast_step(y: Any, x: Any) -> Any:
    return (x - y) * _K_FAST + y


def ema_slow_step(y: Any, x: Any) -> Any:
    return (x - y) * _K_SLOW + y


def signal_step(y: Any, x: Any) -> Any:
    return (x - y) * _K_SIGNAL + y


def rsi_wilder_step(y: Any, x: Any) -> Any:
    return (y * (RSI_PERIOD - 1.0) + x) / RSI_PERIOD


def atr_wilder_step(y: Any, x: Any) -> Any:
    return (y * (ATR_PERIOD - 1.0) + x) / ATR_PERIOD


def bar_terms(xp: Backend, high: Any, low: Any, close: Any, prev: Any) -> tuple[Any, Any, Any]:
    """(gain term, loss term, true range) a bar feeds the Wilder averages."""
    d = close - prev
    tr = xp.maximum(xp.maximum(high - low, abs(high - prev)), abs(low - prev))
    return xp.where(d > 0.0, d, 0.0), xp.where(d < 0.0, -d, 0.0), tr


def steady_step(xp: Backend, s: IndicatorState, high: Any, low: Any, close: Any) -> IndicatorState:
    """The recursions after one more bar once every one is in its steady form (s.n >= WARM_BARS):
    the one implementation used to commit a bar (rows or one symbol) and to evaluate the forming
    bar tentatively. (The backtest's series runs the same *_step functions over a whole series.)"""
    g, lo, tr = bar_terms(xp, high, low, close, s.prev_close)
    es2 = ema_slow_step(s.ema_slow, close)
    mf2 = ema_fast_step(s.macd_fast, close)
    return IndicatorState(s.n + 1.0, close, ema_fast_step(s.ema_fast, close), es2, mf2,
                          signal_step(s.signal, mf2 - es2), rsi_wilder_step(s.gain, g),
                          rsi_wilder_step(s.loss, lo), atr_wilder_step(s.atr, tr))


def rsi_of(xp: Backend, gain: Any, loss: Any) -> Any:
    """RSI from Wilder's average gain and loss; 50 when nothing moved."""
    tot = gain + loss
    pos = tot > 0.0
    return xp.where(pos, 100.0 * gain / xp.where(pos, tot, 1.0), 50.0)


def bollinger_forming(xp: Backend, prep: BollingerPrep, close: Any) -> tuple[Any, Any, Any]:
    """(upper, middle, lower) with the forming close as the window's last value."""
    mid, var = push_mean_var(prep.mean, prep.m2, close, BB_PERIOD)
    sd = xp.sqrt(var)
    return mid + BB_K * sd, mid, mid - BB_K * sd


def new_state(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty state for n rows: (state, closes)."""
    state = np.full((n, N_STATE), np.nan)
    state[:, S_N] = 0.0
    state[:, S_SIGNAL] = 0.0  # accumulators before their seed bar
    state[:, S_GAIN] = 0.0
    state[:, S_LOSS] = 0.0
    state[:, S_ATR] = 0.0
    return state, np.full((n, CLOSES_LEN), np.nan)


def advance(state: np.ndarray, closes: np.ndarray, high: np.ndarray, low: np.ndarray,
            close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """State after one more bar (high, low, close of shape (n,)). Inputs are not modified.
    Prices are assumed validated (finite, > 0) by the caller."""
    new = np.empty_like(state)
    new_closes = np.empty_like(closes)
    new_closes[:, :-1] = closes[:, 1:]
    new_closes[:, -1] = close
    i = state[:, S_N]
    if i.min() >= WARM_BARS:  # steady state: the common case
        for col, v in enumerate(steady_step(VEC, IndicatorState(*state.T), high, low, close)):
            new[:, col] = v
        return new, new_closes
    prev = state[:, S_PREV_CLOSE]
    d = close - prev
    tr = np.maximum(high - low, np.maximum(np.abs(high - prev), np.abs(low - prev)))
    ef, es, mf = state[:, S_EMA_FAST], state[:, S_EMA_SLOW], state[:, S_MACD_FAST]
    sig, gain, loss, atr = state[:, S_SIGNAL], state[:, S_GAIN], state[:, S_LOSS], state[:, S_ATR]
    first = i == 0
    g = np.where(first, 0.0, np.maximum(d, 0.0))
    lo = np.where(first, 0.0, np.maximum(-d, 0.0))
    tr = np.where(first, 0.0, tr)
    new[:, S_EMA_FAST] = np.where(i == EMA_FAST - 1, new_closes[:, -EMA_FAST:].mean(axis=1),
                                  (close - ef) * _K_FAST + ef)
    es2 = np.where(i == EMA_SLOW - 1, new_closes[:, -EMA_SLOW:].mean(axis=1),
                   (close - es) * _K_SLOW + es)
    mf2 = np.where(i == EMA_SLOW - 1, new_closes[:, -EMA_FAST:].mean(axis=1),
                   (close - mf) * _K_FAST + mf)
    line = mf2 - es2
    new[:, S_SIGNAL] = np.where(
        i < EMA_SLOW - 1, 0.0,
        np.where(i < _MACD_FIRST, sig + line,
                 np.where(i == _MACD_FIRST, (sig + line) / MACD_SIGNAL,
                          (line - sig) * _K_SIGNAL + sig)))
    new[:, S_GAIN] = _wilder_step(i, gain, g, RSI_PERIOD)
    new[:, S_LOSS] = _wilder_step(i, loss, lo, RSI_PERIOD)
    new[:, S_ATR] = _wilder_step(i, atr, tr, ATR_PERIOD)
    new[:, S_EMA_SLOW] = es2
    new[:, S_MACD_FAST] = mf2
    new[:, S_N] = i + 1.0
    new[:, S_PREV_CLOSE] = close
    return new, new_closes


def _wilder_step(i: np.ndarray, avg: np.ndarray, term: np.ndarray, period: int) -> np.ndarray:
    # sum the first `period` terms (bars 1..period), divide once at bar `period`, then smooth
    out: np.ndarray = np.where(i < period, avg + term,
                               np.where(i == period, (avg + term) / period,
                                        (avg * (period - 1) + term) / period))
    return out


def outputs(state: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Indicator values (n, len(OUTPUT_COLUMNS)) after the last bar in `state`; NaN if undefined."""
    n = state.shape[0]
    out = np.empty((n, len(OUTPUT_COLUMNS)))
    i = state[:, S_N] - 1.0  # index of the last bar included
    win = closes[:, -SMA_PERIOD:]
    mid = win.mean(axis=1)
    dev = win - mid[:, None]
    sd = np.sqrt((dev * dev).mean(axis=1))
    out[:, O_SMA] = mid
    out[:, O_BB_MID] = mid
    out[:, O_BB_UP] = mid + BB_K * sd
    out[:, O_BB_LOW] = mid - BB_K * sd
    out[:, O_EMA12] = state[:, S_EMA_FAST]
    out[:, O_EMA26] = state[:, S_EMA_SLOW]
    gain, loss = state[:, S_GAIN], state[:, S_LOSS]
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = np.where(total > 0.0, 100.0 * gain / total, 50.0)
    line = state[:, S_MACD_FAST] - state[:, S_EMA_SLOW]
    sig = state[:, S_SIGNAL]
    if i.min() >= _MACD_FIRST:
        out[:, O_RSI] = rsi
        out[:, O_MACD] = line
        out[:, O_SIGNAL] = sig
        out[:, O_HIST] = line - sig
        out[:, O_ATR] = state[:, S_ATR]
    else:
        macd_ok = i >= _MACD_FIRST
        out[:, O_RSI] = np.where(i >= RSI_PERIOD, rsi, np.nan)
        out[:, O_MACD] = np.where(macd_ok, line, np.nan)
        out[:, O_SIGNAL] = np.where(macd_ok, sig, np.nan)
        out[:, O_HIST] = np.where(macd_ok, line - sig, np.nan)
        out[:, O_ATR] = np.where(i >= ATR_PERIOD, state[:, S_ATR], np.nan)
    return out


def _bad_price_error(symbols: Sequence[str], bar: np.ndarray, name: str,
                     values: np.ndarray) -> ValueError | None:
    bad = ~(np.isfinite(values) & (values > 0.0))
    if not bad.any():
        return None
    r = int(np.argmax(bad))
    return ValueError(f"{symbols[r]}: bar {int(bar[r])}: {name} is {float(values[r])!r} "
                      "(prices must be finite and > 0)")


class StreamingIndicators:
    """Streaming indicators for a fixed set of symbols (one row each).

    `update` commits one closed bar per symbol; `peek` returns the values the forming bar would
    give without committing it. Bad prices raise ValueError naming the symbol and the bar index
    (counted from the first bar this object saw) and leave the state untouched.
    """

    def __init__(self, symbols: Sequence[str] | int = 1) -> None:
        if isinstance(symbols, int):
            symbols = [f"row {r}" for r in range(symbols)]
        self.symbols = list(symbols)
        self.state, self.closes = new_state(len(self.symbols))

    def _inputs(self, high: object, low: object, close: object) -> tuple[np.ndarray, ...]:
        n = len(self.symbols)
        arrs = tuple(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
                     for v in (high, low, close))
        for name, a in zip(("high", "low", "close"), arrs, strict=True):
            err = _bad_price_error(self.symbols, self.state[:, S_N], name, a)
            if err is not None:
                raise err
        return arrs

    def update(self, high: object, low: object, close: object) -> np.ndarray:
        """Commit one closed bar per row; returns the indicator values (n, 11) after it."""
        h, lo, c = self._inputs(high, low, close)
        self.state, self.closes = advance(self.state, self.closes, h, lo, c)
        return outputs(self.state, self.closes)

    def peek(self, high: object, low: object, close: object) -> np.ndarray:
        """Values (n, 11) if the forming bar closed now at these prices; state unchanged."""
        h, lo, c = self._inputs(high, low, close)
        return outputs(*advance(self.state, self.closes, h, lo, c))

    @property
    def bars(self) -> int:
        return int(self.state[0, S_N]) if len(self.symbols) else 0
