"""Candles: reading OHLCV CSV, the shipped real series, the seeded synthetic model, and replay.

Pure data code (no sockets). The paper venue and the spine's replay source both draw bars from
`ReplayMarket`, so paper, backtest and tests see the same prices.
"""

from __future__ import annotations

import gzip
import io
import itertools
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping
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


FAST_BLOCK_LINES = 65_536  # lines the fast reader converts at a time (~5 MB of text)
# Epoch seconds stay below 1e11 until the year 5138; epoch milliseconds are above it since 1973.
_MAX_EPOCH_S = 100_000_000_000


def parse_ohlcv_csv(text_lines: Iterable[str], name: str, *, signed: bool = False) -> Candles:
    """Parse `ts,open,high,low,close,volume` lines. Rejects, naming file and line: a wrong header,
    a short row, a non-number, NaN/inf, a non-positive price, high/low that do not bound open and
    close, a negative volume, a timestamp that is not whole epoch seconds (milliseconds are named
    as such), and timestamps that are not strictly increasing (a duplicate names both lines, an
    unsorted row the line it should follow).

    `signed=True` reads a series whose values may be zero or negative (a FUNDING:<symbol> rate)."""
    rows: list[tuple[float, ...]] = []
    header_seen = False
    last_ts = -math.inf
    last_line = 0
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
                    f"{name}:{lineno}: not an OHLCV file: expected header {','.join(OHLCV_HEADER)}, "
                    f"got {line[:80]!r}")
        if len(parts) < 6:
            raise CandleFileError(f"{name}:{lineno}: expected 6 columns ({','.join(OHLCV_HEADER)}), "
                                  f"got {len(parts)}")
        try:
            values = tuple(float(p) for p in parts[:6])
        except ValueError:
            raise CandleFileError(f"{name}:{lineno}: not a number in {line[:80]!r}") from None
        ts, o, h, low, c, v = values
        if not all(math.isfinite(x) for x in values):
            raise CandleFileError(f"{name}:{lineno}: NaN or infinite value")
        if ts != int(ts) or ts < 0:
            raise CandleFileError(f"{name}:{lineno}: timestamp {parts[0]} is not whole epoch seconds")
        if ts >= _MAX_EPOCH_S:
            raise CandleFileError(f"{name}:{lineno}: timestamp {int(ts)} looks like milliseconds; "
                                  "expected epoch seconds (the bar's open time)")
        if not signed and min(o, h, low, c) <= 0:
            raise CandleFileError(f"{name}:{lineno}: non-positive price")
        if h < max(o, c) or low > min(o, c) or v < 0:
            raise CandleFileError(f"{name}:{lineno}: high/low do not bound open/close, or negative volume")
        if ts == last_ts:
            raise CandleFileError(f"{name}:{lineno}: duplicate timestamp {int(ts)} (also on line {last_line})")
        if ts < last_ts:
            raise CandleFileError(f"{name}:{lineno}: timestamp {int(ts)} is before {int(last_ts)} on line "
                                  f"{last_line}: rows must be sorted by time")
        last_ts, last_line = ts, lineno
        rows.append(values)
    if not rows:
        raise CandleFileError(f"{name}: no data rows")
    arr = np.asarray(rows, dtype=np.float64)
    return Candles(arr[:, 0].astype(np.int64), *(np.ascontiguousarray(arr[:, i]) for i in range(1, 6)))


def _block_rows(body: str) -> np.ndarray | None:
    """Rows of one block of data lines as an (n, 6) float array, or None if any line is not
    exactly six numbers (blank, short or long rows, a non-number, non-ASCII text)."""
    body = body.replace("\r", "").strip()
    if not body or not body.isascii():
        return None
    raw = np.frombuffer(body.encode("ascii"), dtype=np.uint8)
    commas = np.flatnonzero(raw == ord(","))
    ends = np.flatnonzero(raw == ord("\n"))
    per_line = np.diff(np.concatenate(([0], np.searchsorted(commas, ends), [commas.size])))
    if per_line.size == 0 or not np.all(per_line == 5):
        return None
    try:
        return np.array(body.replace("\n", ",").split(","), dtype=np.float64).reshape(-1, 6)
    except ValueError:
        return None


def _parse_clean_lines(lines: Iterator[str], signed: bool) -> Candles | None:
    """A whole file at numpy speed (a year of 1m bars: ~1 s instead of ~3 s line by line), read
    FAST_BLOCK_LINES lines at a time so memory stays near the size of the result (the whole text
    split at once peaked at 540 MB for a year), or None when anything is off: the line parser then
    finds and names the fault. Accepts exactly what that parser accepts (and nothing it would
    refuse), so the two never disagree on a good file."""
    head = next(lines, "")
    fields = [p.strip().lower() for p in head.split(",")]
    blocks: list[np.ndarray] = []
    if tuple(fields[:6]) == OHLCV_HEADER:
        if len(fields) != 6:
            return None
    else:
        lines = itertools.chain([head], lines)
    while chunk := list(itertools.islice(lines, FAST_BLOCK_LINES)):
        block = _block_rows("".join(chunk))
        if block is None:
            return None
        blocks.append(block)
    if not blocks:
        return None
    arr = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    del blocks
    ts, o, h, low, c, v = (arr[:, i] for i in range(6))
    if not np.all(np.isfinite(arr)):
        return None
    if np.any(ts != np.floor(ts)) or ts.min() < 0 or ts.max() >= _MAX_EPOCH_S or np.any(np.diff(ts) <= 0):
        return None
    if not signed and min(o.min(), h.min(), low.min(), c.min()) <= 0:
        return None
    if np.any(h < np.maximum(o, c)) or np.any(low > np.minimum(o, c)) or v.min() < 0:
        return None
    return Candles(ts.astype(np.int64), *(np.ascontiguousarray(col) for col in (o, h, low, c, v)))


def parse_ohlcv_text(text: str, name: str, *, signed: bool = False) -> Candles:
    """A whole OHLCV CSV document: the fast path for clean files, the line parser's message otherwise."""
    return (_parse_clean_lines(iter(io.StringIO(text)), signed)
            or parse_ohlcv_csv(io.StringIO(text), name, signed=signed))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_ohlcv_csv(path: str | Path, *, signed: bool = False) -> Candles:
    """An OHLCV CSV or CSV.gz file (see parse_ohlcv_csv for what is refused): the fast block
    reader first; a file it does not accept is read again line by line for the message."""
    path = Path(path)
    try:
        with _open_text(path) as fh:
            fast = _parse_clean_lines(iter(fh), signed)
        if fast is not None:
            return fast
        with _open_text(path) as fh:
            return parse_ohlcv_csv(fh, str(path), signed=signed)
    except IsADirectoryError:
        raise CandleFileError(f"{path}: is a directory, not a CSV file") from None
    except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as exc:  # BadGzipFile is an OSError
        raise CandleFileError(f"{path}: not a text CSV ({exc})") from None
    except OSError as exc:
        raise CandleFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def bar_interval(ts: np.ndarray) -> int:
    """The series' bar length in seconds: the most common step between bars (60 for 1m data, even
    when whole days are missing)."""
    if ts.shape[0] < 2:
        return BAR_SECONDS
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    return int(steps[np.argmax(counts)])


class Gap(NamedTuple):
    from_ts: int  # open time of the first missing bar
    seconds: int  # how long no bar exists


def find_gaps(ts: np.ndarray, step: int | None = None) -> list[Gap]:
    """Stretches with no bar: wherever two bars are more than one bar length apart. A backtest
    trades through them as a quiet market; it never invents the missing bars."""
    step = bar_interval(ts) if step is None else step
    d = np.diff(ts)
    at = np.flatnonzero(d > step)
    return [Gap(int(ts[i]) + step, int(d[i]) - step) for i in at.tolist()]


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
    def for_symbol(cls, symbol: str, start_ts: int, history_bars: int, seed: int = 0,
                   files: Mapping[str, str] | None = None) -> ReplayMarket:
        """`files`: symbol -> candle file to replay instead (`[market.data]`, checked at config load)."""
        if files and symbol in files:
            candles = read_ohlcv_csv(files[symbol])
        elif symbol in SHIPPED_SERIES:
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
