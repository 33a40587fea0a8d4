"""Full-series indicators over a price window: 1-D (one symbol) or 2-D (one row per symbol).

Conventions follow TA-Lib's defaults so that anyone can diff our numbers against it:
- every output has the input's shape, NaN where the indicator is not yet defined;
- EMAs are seeded with the simple mean of their first `period` values (TA-Lib's default
  compatibility mode), and Wilder averages (RSI, ATR) with the mean of their first `period` terms;
- MACD's fast EMA is seeded at the slow EMA's first bar with the mean of the `fast` closes ending
  there, as TA-Lib's MACD does (so MACD's fast line is NOT `ema(close, 12)`), and all three MACD
  outputs start at bar `slow + signal - 2`;
- Bollinger uses the population standard deviation, computed two-pass over each window (TA-Lib's
  running E[x^2]-E[x]^2 loses digits on large prices; the bands still agree to ~1e-12);
- RSI of a window with no movement at all is 50 (TA-Lib writes 0 there, and also whenever the
  average gain+loss is below its absolute 1e-8 epsilon, which bites on prices quoted in BTC).

Prices must be finite and positive: `check_prices` raises ValueError naming the symbol and bar.
The recursions loop over time in Python but are vectorised over rows, so a 2-D call costs about
the same as a 1-D one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "check_prices", "sma", "ema", "rsi", "macd", "bollinger", "atr", "true_range",
]


def _as_rows(x: np.ndarray) -> tuple[np.ndarray, bool]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :], True
    if a.ndim == 2:
        return a, False
    raise ValueError(f"expected a 1-D or 2-D price array, got shape {a.shape}")


def _back(a: np.ndarray, was_1d: bool) -> np.ndarray:
    return a[0] if was_1d else a


def check_prices(values: np.ndarray, name: str = "close",
                 symbols: Sequence[str] | str | None = None) -> None:
    """Raise ValueError at the first NaN/inf/non-positive price, naming symbol, bar and value."""
    rows, _ = _as_rows(values)
    bad = ~(np.isfinite(rows) & (rows > 0.0))
    if not bad.any():
        return
    r, i = (int(v) for v in np.argwhere(bad)[0])
    if isinstance(symbols, str):
        sym = symbols
    elif symbols is not None:
        sym = symbols[r]
    else:
        sym = f"row {r}"
    raise ValueError(f"{sym}: bar {i}: {name} is {rows[r, i]!r} (prices must be finite and > 0)")


def _check_period(period: int, name: str = "period") -> None:
    if not isinstance(period, (int, np.integer)) or period < 1:
        raise ValueError(f"{name} must be a positive integer, got {period!r}")


def sma(close: np.ndarray, period: int = 20) -> np.ndarray:
    """Simple moving average; first value at bar period-1."""
    _check_period(period)
    x, one = _as_rows(close)
    out = np.full(x.shape, np.nan)
    if x.shape[1] >= period:
        out[:, period - 1:] = sliding_window_view(x, period, axis=1).mean(axis=2)
    return _back(out, one)


def _ema_rows(x: np.ndarray, period: int, start: int, seed: np.ndarray) -> np.ndarray:
    """EMA over columns start.. of x (rows = symbols), seeded with `seed` at column `start`."""
    k = 2.0 / (period + 1.0)
    out = np.full(x.shape, np.nan)
    if start >= x.shape[1]:
        return out
    prev = seed.copy()
    out[:, start] = prev
    for t in range(start + 1, x.shape[1]):
        prev = (x[:, t] - prev) * k + prev
        out[:, t] = prev
    return out


def ema(close: np.ndarray, period: int = 12) -> np.ndarray:
    """Exponential moving average, k = 2/(period+1), seeded with the SMA of the first `period`."""
    _check_period(period)
    x, one = _as_rows(close)
    if x.shape[1] < period:
        return _back(np.full(x.shape, np.nan), one)
    seed = x[:, :period].mean(axis=1)
    return _back(_ema_rows(x, period, period - 1, seed), one)


def _wilder_rows(terms: np.ndarray, period: int, first: int) -> np.ndarray:
    """Wilder average of terms[:, first:]; first value at column first+period-1."""
    out = np.full(terms.shape, np.nan)
    start = first + period - 1
    if start >= terms.shape[1]:
        return out
    prev = terms[:, first:start + 1].sum(axis=1) / period
    out[:, start] = prev
    for t in range(start + 1, terms.shape[1]):
        prev = (prev * (period - 1) + terms[:, t]) / period
        out[:, t] = prev
    return out


def rsi(close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder RSI; first value at bar `period`."""
    _check_period(period)
    x, one = _as_rows(close)
    d = np.zeros(x.shape)
    d[:, 1:] = np.diff(x, axis=1)
    gain = _wilder_rows(np.maximum(d, 0.0), period, 1)
    loss = _wilder_rows(np.maximum(-d, 0.0), period, 1)
    total = gain + loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total > 0.0, 100.0 * gain / total, 50.0)
    out[np.isnan(total)] = np.nan
    return _back(out, one)


def macd(close: np.ndarray, fast: int = 12, slow: int = 26,
         signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd line, signal line, histogram), TA-Lib MACD alignment (see module doc)."""
    for p, n in ((fast, "fast"), (slow, "slow"), (signal, "signal")):
        _check_period(p, n)
    if fast >= slow:
        raise ValueError(f"macd: fast period {fast} must be below slow period {slow}")
    x, one = _as_rows(close)
    n_bars = x.shape[1]
    nan = np.full(x.shape, np.nan)
    first = slow + signal - 2
    if n_bars <= first:
        return _back(nan, one), _back(nan.copy(), one), _back(nan.copy(), one)
    slow_line = _ema_rows(x, slow, slow - 1, x[:, :slow].mean(axis=1))
    fast_line = _ema_rows(x, fast, slow - 1, x[:, slow - fast:slow].mean(axis=1))
    line = fast_line - slow_line
    sig = _ema_rows(line, signal, first, line[:, slow - 1:first + 1].mean(axis=1))
    line[:, :first] = np.nan
    return _back(line, one), _back(sig, one), _back(line - sig, one)


def bollinger(close: np.ndarray, period: int = 20,
              k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper, middle, lower) with middle = SMA and population standard deviation."""
    _check_period(period)
    x, one = _as_rows(close)
    mid = np.full(x.shape, np.nan)
    sd = np.full(x.shape, np.nan)
    if x.shape[1] >= period:
        win = sliding_window_view(x, period, axis=1)
        m = win.mean(axis=2)
        mid[:, period - 1:] = m
        sd[:, period - 1:] = np.sqrt(((win - m[:, :, None]) ** 2).mean(axis=2))
    return _back(mid + k * sd, one), _back(mid, one), _back(mid - k * sd, one)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high-low, |high-prev close|, |low-prev close|); NaN at bar 0 (no previous close)."""
    h, one = _as_rows(high)
    lo, _ = _as_rows(low)
    c, _ = _as_rows(close)
    if not (h.shape == lo.shape == c.shape):
        raise ValueError(f"high/low/close shapes differ: {h.shape} {lo.shape} {c.shape}")
    tr = np.full(h.shape, np.nan)
    pc = c[:, :-1]
    tr[:, 1:] = np.maximum(h[:, 1:] - lo[:, 1:],
                           np.maximum(np.abs(h[:, 1:] - pc), np.abs(lo[:, 1:] - pc)))
    return _back(tr, one)


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> np.ndarray:
    """Wilder ATR of the true range; first value at bar `period`."""
    _check_period(period)
    tr = true_range(high, low, close)
    rows, one = _as_rows(tr)
    return _back(_wilder_rows(rows, period, 1), one)
