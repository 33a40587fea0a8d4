"""Bar ring: mirrored layout, seqlock consistency under a concurrent writer process."""

from __future__ import annotations

import multiprocessing as mp
import os
import uuid

import numpy as np
import pytest

from shared.ring import BarRing, RingError


@pytest.fixture
def ring():
    r = BarRing.create(f"dgo-test-{uuid.uuid4().hex[:8]}", n_slots=3, capacity=64)
    yield r
    r.close()
    r.unlink()


def test_window_is_newest_bars_in_order_across_wrap(ring: BarRing) -> None:
    w = ring.writer(1)
    for i in range(150):
        w.append(i, i + 0.1, i + 0.5, i - 0.5, i + 0.2, 1.0)
    win = ring.reader(1).read_window(40)
    assert win.bar_count == 150
    assert list(win.ts) == list(range(110, 150))
    assert win.close[-1] == pytest.approx(149.2)
    # other slots untouched
    assert ring.reader(0).read_window(10).bar_count == 0


def test_update_last_changes_only_the_forming_bar(ring: BarRing) -> None:
    w = ring.writer(0)
    w.append(1, 10, 11, 9, 10.5, 1)
    w.append(2, 10.5, 10.5, 10.5, 10.5, 0)
    w.update_last(12, 10, 11.5, 3)
    win = ring.reader(0).read_window(2)
    assert list(win.high) == [11, 12]
    assert list(win.close) == [10.5, 11.5]
    assert list(win.volume) == [1, 3]


def test_load_history_keeps_newest_capacity_bars(ring: BarRing) -> None:
    n = 100
    ts = np.arange(n, dtype=np.float64)
    ring.writer(2).load(ts, ts, ts + 1, ts - 1, ts, ts)
    win = ring.reader(2).read_window(64)
    assert win.bar_count == 64
    assert win.ts[0] == 36 and win.ts[-1] == 99


def test_attach_sees_writes_and_rejects_missing(ring: BarRing) -> None:
    ring.writer(0).append(5, 1, 2, 0.5, 1.5, 7)
    other = BarRing.attach(ring.path.name)
    assert other.reader(0).read_window(1).volume[0] == 7
    other.close()
    with pytest.raises(RingError, match="does not exist"):
        BarRing.attach("dgo-test-no-such-segment")


def _hammer(name: str, n: int) -> None:
    ring = BarRing.attach(name)
    w = ring.writer(0)
    # Invariants a torn read would break: ts == open, and high == low == close == volume.
    for k in range(n):
        if k % 3 == 0:
            w.append(k, k, k, k, k, k)
        else:
            w.update_last(k, k, k, k)
    ring.close()
    os._exit(0)


def test_reader_never_sees_a_torn_bar_while_another_process_writes(ring: BarRing) -> None:
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_hammer, args=(ring.path.name, 60_000))
    proc.start()
    reader = ring.reader(0)
    out = np.empty((6, 32))
    reads = 0
    while proc.is_alive() or reads < 100:
        win = reader.read_window(32, out)
        if win.bar_count:
            assert np.array_equal(win.ts, win.open), "torn bar: ts/open disagree"
            hlcv = np.vstack([win.high, win.low, win.close, win.volume])
            assert np.all(hlcv == hlcv[0]), "torn bar: high/low/close/volume disagree"
        reads += 1
    proc.join()
    assert proc.exitcode == 0
    assert reads >= 100
