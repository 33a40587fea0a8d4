"""What many backtests of the same data share: the replayed bars and the signal series.

An optimizer's trials backtest one range of one data set with configs that differ only in the
searched keys. The venue's replay of the bars depends only on the candles, the range, the warm-up
and the product; the signal series only on those bars, the `[signal]` table and the market seed.
So a study whose space searches no `signal.*` key rebuilds the same arrays in every trial (~12% of
a trial's CPU); `BacktestReuse` keeps them in the process, least recently used first out, within a
byte budget (an entry larger than the budget is computed per run as before, never kept).

Kept arrays are made read-only: a run that wrote into one would corrupt the next run's input, and
numpy raises instead. A run with a reuse gives the same result as one without
(tests/shared/backtest/test_reuse.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import numpy as np

from ..marketdata import Candles
from ..products import ProductSpec
from ..signals.engine import SignalConfig
from ..signals.series import SignalSeries
from .market import ReplayedBars

DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024  # per process: a year of 1m bars of one symbol is ~110 MB
SERIES_BYTES_PER_BAR = 128  # SignalSeries' arrays for one bar of 4 trades (checked before computing)


def _nbytes(arrays: Any) -> int:
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def _read_only(arrays: Any) -> None:
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False


class BacktestReuse:
    """Replayed bars and signal series kept between runs of one process (e.g. a Dask worker's
    trials). Keys hold the candles object itself, so its id cannot be reused by other data while
    the entry lives; bounded by `budget_bytes` (the candles' own bytes counted too). Safe for a
    worker with several threads: lookups and stores hold a lock, computing does not."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self.entries: OrderedDict[tuple[Any, ...], tuple[Any, int]] = OrderedDict()
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def bars(self, candles: Candles, lo: int, stop: int, warm: int, spec: ProductSpec,
             make: Callable[[], ReplayedBars]) -> ReplayedBars:
        """The bars [lo, stop) of `candles` replayed with `warm` warm-up bars."""
        key = ("bars", id(candles), lo, stop, warm, spec)
        found = self._get(key)
        if found is not None:
            return found[0]  # type: ignore[no-any-return]
        bars = make()
        size = _nbytes(bars) + _nbytes(candles)
        if size <= self.budget_bytes:
            _read_only(bars)
            self._put(key, (bars, candles), size)
        return bars

    def series(self, bars: ReplayedBars, signal: SignalConfig, seed: int,
               make: Callable[[], Iterator[SignalSeries]]) -> Iterator[SignalSeries]:
        """The signal series of bars this reuse gave out (`bars`), chunk by chunk as `make` gives
        them; other bars' series are computed per run, as without a reuse. The entry holds the
        bars object, so its id is not reused by other bars while the entry lives."""
        with self.lock:
            held = any(k[0] == "bars" and v[0] is bars for k, (v, _) in self.entries.items())
        if not held or len(bars.ts) * SERIES_BYTES_PER_BAR > self.budget_bytes:
            return make()
        key = ("series", id(bars), msgspec.msgpack.encode(signal), seed)
        found = self._get(key)
        if found is not None:
            return iter(found[0])
        chunks = list(make())
        size = sum(_nbytes(c) for c in chunks) + _nbytes(bars)
        if size <= self.budget_bytes:
            for c in chunks:
                _read_only(c)
            self._put(key, (chunks, bars), size)
        return iter(chunks)

    def _get(self, key: tuple[Any, ...]) -> Any:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.entries.move_to_end(key)
            self.hits += 1
            return entry[0]

    def _put(self, key: tuple[Any, ...], value: Any, size: int) -> None:
        with self.lock:
            if key in self.entries:  # another thread computed it meanwhile
                return
            while self.entries and self.used + size > self.budget_bytes:
                _, (_, freed) = self.entries.popitem(last=False)
                self.used -= freed
            self.entries[key] = (value, size)
            self.used += size
