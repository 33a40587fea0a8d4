"""Candles: reading OHLCV CSV, the shipped real series, the seeded synthetic model, and replay.

Pure data code (no sockets). The paper venue and the spine's replay source both draw bars from
`ReplayMarket`, so paper, backtest and tests see the same prices.
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .products import is_synthetic

BAR_SECONDS = 60
SHIPPED_SERIES = {
    # symbol -> file under shared/data (Apache-2.0, QuantConnect/Lean; see shared/data/NOTICE.md)
    "BTCUSD": "BTCUSD-coinbase-1m.csv.gz",
    "ETHUSD": "ETHUSD-coinbase-1m.csv.gz",
}
OHLCV_HEADER = ("ts", "open", "high", "low", "close", "volume")


class CandleFileError(ValueError):
    """Bad OHLCV input; the message names the file and the line."""


class Candles(NamedTuple):
    ts: np.ndarray  # int64 bar open time, epoch seconds
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def slice(self, start: int, stop: int) -> Candles:
        return Candles(*(col[start:stop] for col in self))


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def parse_ohlcv_csv(text_lines: Iterator[str], name: str) -> Candles:
    """Parse `ts,open,high,low,close,volume` lines. Rejects, naming file and line: a wrong header,
    a short row, a non-number, NaN/inf, a non-positive price, high/low that do not bound open and
    close, a negative volume, and timestamps that are not strictly increasing."""
    rows: list[tuple[float, ...]] = []
    header_seen = False
    last_ts = -math.inf
    for lineno, raw in enumerate(text_lines, start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if not header_seen:
            header_seen = True
            if tuple(p.lower() for p in parts[:6]) == OHLCV_HEADER:
                continue
            if not _is_number(parts[0]):
                raise CandleFileError(
                    f"{name}:{lineno}: expected header {','.join(OHLCV_HEADER)}, got {line[:80]!r}")
        if len(parts) < 6:
            raise CandleFileError(f"{name}:{lineno}: expected 6 columns, got {len(parts)}")
        try:
            values = tuple(float(p) for p in parts[:6])
        except ValueError:
            raise CandleFileError(f"{name}:{lineno}: not a number in {line[:80]!r}") from None
        ts, o, h, low, c, v = values
        if not all(math.isfinite(x) for x in values):
            raise CandleFileError(f"{name}:{lineno}: NaN or infinite value")
        if min(o, h, low, c) <= 0:
            raise CandleFileError(f"{name}:{lineno}: non-positive price")
        if h < max(o, c) or low > min(o, c) or v < 0:
            raise CandleFileError(f"{name}:{lineno}: high/low do not bound open/close, or negative volume")
        if ts <= last_ts:
            raise CandleFileError(f"{name}:{lineno}: timestamp {int(ts)} not after the previous row")
        last_ts = ts
        rows.append(values)
    if not rows:
        raise CandleFileError(f"{name}: no data rows")
    arr = np.asarray(rows, dtype=np.float64)
    return Candles(arr[:, 0].astype(np.int64), *(np.ascontiguousarray(arr[:, i]) for i in range(1, 6)))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_ohlcv_csv(path: str | Path) -> Candles:
    path = Path(path)
    try:
        with _open_text(path) as fh:
            return parse_ohlcv_csv(fh, str(path))
    except OSError as exc:
        raise CandleFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise CandleFileError(f"{path}: not a text CSV ({exc})") from None


def shipped_candles(symbol: str) -> Candles:
    """The real 1m series shipped inside the package (never `../shared`)."""
    fname = SHIPPED_SERIES[symbol]
    with resources.as_file(resources.files("shared") / "data" / fname) as p:
        return read_ohlcv_csv(p)


def synthetic_candles(symbol: str, n_bars: int, seed: int = 0) -> Candles:
    """Seeded random-walk 1m candles for load tests: log-returns with per-bar volatility drawn from a
    slow regime process, so indicators see trends and quiet spells, not white noise. The same
    (symbol, seed, n_bars) always gives the same bars."""
    sym_seed = zlib.crc32(symbol.encode())
    rng = np.random.default_rng([seed, sym_seed])
    base = 10.0 ** rng.uniform(1.0, 4.0)
    regime = np.exp(np.cumsum(rng.normal(0.0, 0.05, n_bars)) * 0.2)
    sigma = 0.0012 * np.clip(regime / regime.mean(), 0.3, 3.0)
    drift = rng.normal(0.0, 0.00005)
    steps = rng.normal(drift, 1.0, size=(n_bars, 4)) * sigma[:, None] / 2.0
    path = base * np.exp(np.cumsum(steps.reshape(-1)))
    quads = path.reshape(n_bars, 4)
    o = np.empty(n_bars)
    o[0] = base
    o[1:] = quads[:-1, 3]
    c = quads[:, 3]
    h = np.maximum.reduce([o, c, quads[:, 1], quads[:, 2]])
    low = np.minimum.reduce([o, c, quads[:, 1], quads[:, 2]])
    vol = rng.gamma(2.0, 50.0, n_bars)
    ts = (1_700_000_000 // BAR_SECONDS * BAR_SECONDS + BAR_SECONDS * np.arange(n_bars)).astype(np.int64)
    return Candles(ts, o, h, low, c, vol)


def candle_ticks(o: float, h: float, low: float, c: float) -> tuple[float, float, float, float]:
    """The four prices a bar is replayed as: open, the nearer extreme, the farther extreme, close.
    (The nearer extreme first is the usual assumption when only OHLC is known.)"""
    if abs(h - o) <= abs(o - low):
        return (o, h, low, c)
    return (o, low, h, c)


class ReplayMarket:
    """An endless bar stream for one symbol, re-stamped onto a continuous 1m clock.

    Real series have gaps (whole days missing) and end; replay ignores their timestamps and lays
    the bars end to end from `start_ts`. At the end of the data it wraps to the beginning, rescaled
    so the first bar opens where the last one closed (no artificial jump for the strategies).
    """

    def __init__(self, symbol: str, candles: Candles, start_ts: int, history_bars: int) -> None:
        if len(candles) < history_bars + 10:
            raise ValueError(f"{symbol}: only {len(candles)} bars, need more than {history_bars}")
        self.symbol = symbol
        self._c = candles
        self._start_ts = start_ts - start_ts % BAR_SECONDS
        self.history_bars = history_bars
        self._next = history_bars  # index of the next live bar in the data
        self._scale = 1.0
        self.bar_index = 0  # live bars emitted so far

    @classmethod
    def for_symbol(cls, symbol: str, start_ts: int, history_bars: int, seed: int = 0) -> ReplayMarket:
        if symbol in SHIPPED_SERIES:
            candles = shipped_candles(symbol)
        elif is_synthetic(symbol):
            candles = synthetic_candles(symbol, max(20_000, history_bars * 4), seed)
        else:
            raise KeyError(symbol)
        return cls(symbol, candles, start_ts, history_bars)

    def seek(self, bar_index: int) -> None:
        """Position the stream so the next live bar is number `bar_index` (0 = the first). A
        restarted replay source seeks to where the wall clock says the market is, so consumers
        never see time run backwards."""
        live_first_pass = len(self._c) - self.history_bars
        if bar_index < live_first_pass:
            self._next, wraps = self.history_bars + bar_index, 0
        else:
            wraps, offset = divmod(bar_index - live_first_pass, len(self._c))
            wraps += 1
            self._next = offset
        ratio = float(self._c.close[-1]) / float(self._c.open[0])
        self._scale = ratio ** wraps
        self.bar_index = bar_index

    def history(self) -> Candles:
        """The bars before the first live bar, stamped just before `start_ts`."""
        h = self._c.slice(0, self.history_bars)
        ts = self._start_ts - BAR_SECONDS * np.arange(self.history_bars, 0, -1, dtype=np.int64)
        return Candles(ts, h.open.copy(), h.high.copy(), h.low.copy(), h.close.copy(), h.volume.copy())

    def next_bar(self) -> tuple[int, float, float, float, float, float]:
        """(ts, open, high, low, close, volume) of the next live bar."""
        if self._next >= len(self._c):
            last_close = float(self._c.close[-1]) * self._scale
            self._next = 0
            self._scale = last_close / float(self._c.open[0])
        i = self._next
        self._next += 1
        s = self._scale
        c = self._c
        ts = self._start_ts + BAR_SECONDS * self.bar_index
        self.bar_index += 1
        return (ts, float(c.open[i]) * s, float(c.high[i]) * s, float(c.low[i]) * s,
                float(c.close[i]) * s, float(c.volume[i]))
