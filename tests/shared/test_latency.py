import math

import numpy as np
import pytest

from shared.latency import LatencyHistogram, RollingHistogram


def test_percentiles_within_bucket_resolution() -> None:
    rng = np.random.default_rng(1)
    samples = rng.lognormal(mean=5.0, sigma=0.8, size=20_000)
    h = LatencyHistogram()
    for s in samples:
        h.record(float(s))
    for q in (50, 90, 99, 99.9):
        assert h.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.03)
    assert h.total == 20_000
    assert h.max_us == pytest.approx(samples.max())


def test_empty_is_nan_and_extremes_clamp() -> None:
    h = LatencyHistogram()
    assert math.isnan(h.percentile(50))
    h.record(0.0)
    h.record(1e12)
    assert h.percentile(1) == 1.0
    assert h.percentile(100) > 9e7


def test_rolling_window_forgets_old_samples() -> None:
    r = RollingHistogram(window_s=60, parts=6)
    for i in range(100):
        r.record(10_000.0, now_s=1.0 + i * 0.01)
    assert r.window(2.0).percentile(50) == pytest.approx(10_000, rel=0.03)
    for i in range(100):
        r.record(100.0, now_s=100.0 + i * 0.01)
    w = r.window(101.0)
    assert w.total == 100
    assert w.percentile(99) == pytest.approx(100, rel=0.03)
    assert r.lifetime.total == 200


def test_percentiles_read_together_equal_each_read_alone() -> None:
    h = LatencyHistogram()
    for v in (5.0, 80.0, 120.0, 950.0, 3000.0, 3000.0, 12_000.0):
        h.record(v)
    qs = (0.0, 50.0, 99.0, 99.9, 100.0)
    assert h.percentiles(qs) == [h.percentile(q) for q in qs]
    assert all(math.isnan(x) for x in LatencyHistogram().percentiles((50.0, 99.0)))


def test_clear_window_forgets_the_window_but_not_the_lifetime() -> None:
    r = RollingHistogram(window_s=60.0, parts=6)
    for i in range(10):
        r.record(50_000.0, now_s=1.0 + i)  # a start-up's queueing
    r.clear_window()
    r.record(800.0, now_s=20.0)
    w = r.window(20.0)
    assert w.total == 1 and w.percentile(99) < 1000.0
    assert r.lifetime.total == 11


def test_the_window_kept_as_samples_come_equals_merging_its_parts() -> None:
    # The running sum must forget exactly what each rotation expires, also after long gaps.
    rng = np.random.default_rng(7)
    r = RollingHistogram(window_s=60.0, parts=6)
    now = 1000.0
    for step in range(3000):
        now += float(rng.choice([0.05, 0.5, 3.0, 25.0, 130.0], p=[0.6, 0.25, 0.1, 0.04, 0.01]))
        r.record(float(rng.lognormal(6.0, 1.0)), now)
        if step % 97 == 0:
            got = r.window(now)
            merged = LatencyHistogram()
            for part in r._parts:
                merged.merge(part)
            assert got.total == merged.total and np.array_equal(got.counts, merged.counts)
            assert got.max_us == merged.max_us
    later = r.window(now + 61.0)  # every part expired
    assert later.total == 0 and not later.counts.any()
