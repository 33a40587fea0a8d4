"""Bounded latency histograms (log-spaced buckets, ~2% resolution) with a rolling window.

Fixed memory whatever the sample count, so a worker can record every tick for weeks.
"""

from __future__ import annotations

import math

import msgspec
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
        return percentiles_of_counts(self.counts, self.total, qs)


def percentiles_of_counts(counts: np.ndarray, total: int, qs: tuple[float, ...]) -> list[float]:
    if total == 0:
        return [math.nan for _ in qs]
    cum = np.cumsum(counts)
    ranks = [max(1, math.ceil(q / 100.0 * total)) for q in qs]
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

    def percentiles(self, now_s: float, qs: tuple[float, ...]) -> list[float]:
        """`window(now_s).percentiles(qs)` without the window's copy (what a heartbeat reads)."""
        self._rotate(now_s)
        return percentiles_of_counts(self._sum.counts, self._sum.total, qs)

    def window(self, now_s: float) -> LatencyHistogram:
        self._rotate(now_s)
        out = LatencyHistogram()
        out.counts[:] = self._sum.counts
        out.total = self._sum.total
        out.max_us = max(p.max_us for p in self._parts)
        return out


class HopSums(msgspec.Struct, frozen=True, kw_only=True):
    """Microseconds summed over `ticks` timed ticks, by hop of the tick's way to its signal
    (divide by `ticks` for the mean). `gateway_us` comes before the worker reads the tick, so it is
    outside tick-to-signal; the other five add up to it."""
    ticks: int = 0
    gateway_us: float = 0.0  # the gateway publishes the tick -> the worker reads it
    worker_us: float = 0.0  # the worker reads it -> its signal request leaves (waiting for one in flight)
    to_pool_us: float = 0.0  # the request leaves -> the pool member reads it
    pool_us: float = 0.0  # the pool reads it -> its reply leaves, less the batch's signal computation
    compute_us: float = 0.0  # the pool's signal computation of the batch the request was in
    back_us: float = 0.0  # the reply leaves -> the worker reads it


class TickHops(msgspec.Struct, frozen=True, kw_only=True):
    """A worker's per-hop breakdown since it started: of every timed tick, and of the slow ones
    (tick-to-signal at or over `slow_over_us`, the worker's rolling p99 when it last reported;
    0 before it has one: none counted slow). Counters only, so a reader differences two heartbeats
    to get any window's means."""
    all: HopSums = HopSums()
    slow: HopSums = HopSums()
    slow_over_us: float = 0.0


_HOPS = ("gateway_us", "worker_us", "to_pool_us", "pool_us", "compute_us", "back_us")


class HopMeter:
    """Accumulates TickHops from the clock readings a tick's signal round trip carries (every one
    perf_counter_ns, i.e. CLOCK_MONOTONIC, shared by the processes of one machine). Fixed size."""

    __slots__ = ("_all", "_slow", "slow_over_us")

    def __init__(self) -> None:
        self._all = [0.0] * (len(_HOPS) + 1)
        self._slow = [0.0] * (len(_HOPS) + 1)
        self.slow_over_us = 0.0

    def record(self, *, published_ns: int, tick_ns: int, asked_ns: int, pool_read_ns: int, compute_ns: int,
               replied_ns: int, read_ns: int) -> None:
        """One tick's hops. A reply without the pool's read time (an older pool member: 0) counts
        request-to-reply as the pool's hop, as does a clock reading that would make a hop negative."""
        if pool_read_ns <= 0 or not asked_ns <= pool_read_ns <= replied_ns:
            pool_read_ns = asked_ns
        pool = (replied_ns - pool_read_ns) / 1000.0
        compute = min(compute_ns / 1000.0, pool)
        hops = ((tick_ns - published_ns) / 1000.0 if published_ns else 0.0,
                (asked_ns - tick_ns) / 1000.0, (pool_read_ns - asked_ns) / 1000.0, pool - compute, compute,
                (read_ns - replied_ns) / 1000.0)
        total = (read_ns - tick_ns) / 1000.0
        acc = self._all
        acc[0] += 1
        for i, h in enumerate(hops, 1):
            acc[i] += h
        if total >= self.slow_over_us > 0.0:
            acc = self._slow
            acc[0] += 1
            for i, h in enumerate(hops, 1):
                acc[i] += h

    def figures(self) -> TickHops:
        return TickHops(all=_sums(self._all), slow=_sums(self._slow), slow_over_us=self.slow_over_us)


def _sums(acc: list[float]) -> HopSums:
    # unpacked by hand: a dict of rounded values passed by ** cost 5.6 us a heartbeat, this 0.4 us
    n, gateway, worker, to_pool, pool, compute, back = acc
    return HopSums(ticks=int(n), gateway_us=gateway, worker_us=worker, to_pool_us=to_pool, pool_us=pool,
                   compute_us=compute, back_us=back)
