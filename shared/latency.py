"""Bounded latency histograms (log-spaced buckets, ~2% resolution) with a rolling window.

Fixed memory whatever the sample count, so a worker can record every tick for weeks.
"""

from __future__ import annotations

import math

import numpy as np

_RATIO = 1.02
_LOG_RATIO = math.log(_RATIO)
_MAX_US = 100_000_000.0  # 100 s: anything slower is clamped into the top bucket
N_BUCKETS = int(math.log(_MAX_US) / _LOG_RATIO) + 2
# Representative value of each bucket: geometric middle of its bounds.
_BUCKET_VALUE = np.array([_RATIO ** (i + 0.5) for i in range(N_BUCKETS)])
_BUCKET_VALUE[0] = 1.0


def bucket_of(value_us: float) -> int:
    if value_us <= 1.0:
        return 0
    return min(int(math.log(value_us) / _LOG_RATIO) + 1, N_BUCKETS - 1)


class LatencyHistogram:
    __slots__ = ("counts", "total", "max_us")

    def __init__(self) -> None:
        self.counts = np.zeros(N_BUCKETS, dtype=np.int64)
        self.total = 0
        self.max_us = 0.0

    def record(self, value_us: float) -> None:
        self.counts[bucket_of(value_us)] += 1
        self.total += 1
        if value_us > self.max_us:
            self.max_us = value_us

    def merge(self, other: LatencyHistogram) -> None:
        self.counts += other.counts
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)

    def reset(self) -> None:
        self.counts[:] = 0
        self.total = 0
        self.max_us = 0.0

    def percentile(self, q: float) -> float:
        """q in [0, 100]; NaN when empty. Accurate to the bucket width (~2%)."""
        return percentile_of_counts(self.counts, self.total, q)

    def percentiles(self, qs: tuple[float, ...]) -> list[float]:
        """Several percentiles from one cumulative sum (a heartbeat reads three of them)."""
        if self.total == 0:
            return [math.nan for _ in qs]
        cum = np.cumsum(self.counts)
        ranks = [max(1, math.ceil(q / 100.0 * self.total)) for q in qs]
        idx = np.searchsorted(cum, ranks)
        return [float(_BUCKET_VALUE[min(int(i), N_BUCKETS - 1)]) for i in idx]


def percentile_of_counts(counts: np.ndarray, total: int, q: float) -> float:
    if total == 0:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * total))
    idx = int(np.searchsorted(np.cumsum(counts), rank))
    return float(_BUCKET_VALUE[min(idx, N_BUCKETS - 1)])


class RollingHistogram:
    """Percentiles over roughly the last `window_s` seconds: `parts` sub-histograms rotated on a
    clock the caller supplies (no timers inside, so it is deterministic in tests). The window's
    sum is kept as samples come and parts expire, so reading it costs one copy, not a merge of
    every part (a worker reads two windows a heartbeat)."""

    def __init__(self, window_s: float = 60.0, parts: int = 6) -> None:
        self._parts = [LatencyHistogram() for _ in range(parts)]
        self._part_s = window_s / parts
        self._current = 0
        self._rotated_at = 0.0
        self._sum = LatencyHistogram()  # of the parts; max_us is recomputed on read
        self.lifetime = LatencyHistogram()

    def record(self, value_us: float, now_s: float) -> None:
        self._rotate(now_s)
        b = bucket_of(value_us)
        part = self._parts[self._current]
        part.counts[b] += 1
        part.total += 1
        if value_us > part.max_us:
            part.max_us = value_us
        self._sum.counts[b] += 1
        self._sum.total += 1
        self.lifetime.record(value_us)

    def _rotate(self, now_s: float) -> None:
        if self._rotated_at == 0.0:
            self._rotated_at = now_s
            return
        steps = int((now_s - self._rotated_at) / self._part_s)
        if steps <= 0:
            return
        for _ in range(min(steps, len(self._parts))):
            self._current = (self._current + 1) % len(self._parts)
            expired = self._parts[self._current]
            if expired.total:
                self._sum.counts -= expired.counts
                self._sum.total -= expired.total
                expired.reset()
        self._rotated_at += steps * self._part_s

    def clear_window(self) -> None:
        """Forget the rolling window (the lifetime totals stay): a phase whose latencies say
        nothing about the steady state, such as a start-up, ends here."""
        for p in self._parts:
            p.reset()
        self._sum.reset()

    def window(self, now_s: float) -> LatencyHistogram:
        self._rotate(now_s)
        out = LatencyHistogram()
        out.counts[:] = self._sum.counts
        out.total = self._sum.total
        out.max_us = max(p.max_us for p in self._parts)
        return out
