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


def test_hop_meter_splits_each_tick_and_the_slow_ones() -> None:
    from shared.latency import HopMeter

    m = HopMeter()
    us = 1000  # ns
    # published 0, read 100 us later, asked at +20, the pool reads it at +70, computes 200 of its
    # 230 us, the worker reads the reply 40 us after it left: 20 + 50 + 30 + 200 + 40 = 340 us
    m.record(published_ns=1, tick_ns=100 * us, asked_ns=120 * us, pool_read_ns=170 * us, compute_ns=200 * us,
             replied_ns=400 * us, read_ns=440 * us)
    f = m.figures()
    assert f.all.ticks == 1 and f.slow.ticks == 0  # no p99 known yet: nothing is slow
    assert (f.all.gateway_us, f.all.worker_us, f.all.to_pool_us, f.all.pool_us, f.all.compute_us, f.all.back_us) \
        == pytest.approx((100.0, 20.0, 50.0, 30.0, 200.0, 40.0), abs=0.01)
    m.slow_over_us = 1000.0
    m.record(published_ns=0, tick_ns=0, asked_ns=10 * us, pool_read_ns=4000 * us, compute_ns=300 * us,
             replied_ns=4400 * us, read_ns=4500 * us)  # stuck on the way to the pool; no publish time
    m.record(published_ns=0, tick_ns=0, asked_ns=10 * us, pool_read_ns=0, compute_ns=300 * us,
             replied_ns=500 * us, read_ns=600 * us)  # fast; a pool that says no read time: all pool
    f = m.figures()
    assert f.all.ticks == 3 and f.slow.ticks == 1 and f.slow_over_us == 1000.0
    assert (f.slow.to_pool_us, f.slow.pool_us, f.slow.compute_us, f.slow.back_us, f.slow.gateway_us) \
        == pytest.approx((3990.0, 100.0, 300.0, 100.0, 0.0), abs=0.01)
    assert f.all.to_pool_us == pytest.approx(50.0 + 3990.0 + 0.0, abs=0.01)
    assert f.all.pool_us == pytest.approx(30.0 + 100.0 + 190.0, abs=0.01)


def test_rolling_percentiles_read_without_a_copy_match_the_window() -> None:
    r = RollingHistogram(window_s=60.0, parts=6)
    assert all(math.isnan(v) for v in r.percentiles(0.0, (50.0, 99.0)))
    rng = np.random.default_rng(3)
    for i, v in enumerate(rng.lognormal(6.0, 1.0, size=3000)):
        r.record(float(v), now_s=i * 0.05)  # 150 s: the first parts have expired
    for now in (150.0, 170.0, 400.0):
        assert r.percentiles(now, (50.0, 99.0, 99.9)) == r.window(now).percentiles((50.0, 99.0, 99.9))
