"""The worker's tick intake: which ticks ask the pool for a signal. Real Worker, real ring."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.config import load_config
from shared.messages import Tick
from shared.ring import BarRing
from shared.transport import make_endpoints
from workers.runtime import ChildSpec
from workers.worker import Worker

T0_US = 1_800_000_000 * 1_000_000  # a bar boundary (minute-aligned)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    cfg, _ = load_config(None, {"run": {"symbols": ["ETHUSD"]}})
    name = f"dgo-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ring = BarRing.create(name, n_slots=1, capacity=64)
    try:
        spec = ChildSpec(kind="worker", name="ETHUSD", run_dir=str(tmp_path), ring_name=name, config=cfg,
                         endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, slot=0)
        yield Worker(spec)
    finally:
        ring.close()
        ring.unlink()


def tick(seq: int, price: float, at_s: float) -> Tick:
    return Tick(symbol="ETHUSD", epoch=1, seq=seq, price=price, size=1.0, exch_ts_us=T0_US + int(at_s * 1e6),
                sent_ns=0)


def test_a_tick_that_moves_only_the_volume_asks_for_no_signal(worker: Worker) -> None:
    asks = [worker.on_tick(t, recv_ns=1) for t in (
        tick(1, 2000.0, 0.0),    # opens a bar
        tick(2, 2001.0, 5.0),    # new high and close
        tick(3, 2001.0, 6.0),    # same price: only the volume moves
        tick(4, 2000.5, 7.0),    # new close inside the range
        tick(5, 2000.5, 8.0),    # same again
        tick(6, 1999.0, 9.0),    # new low
        tick(7, 1999.0, 61.0),   # same price, but it opens the next bar
    )]
    assert asks == [True, True, False, True, False, True, True]
    assert worker.ticks == 7 and worker.ticks_unchanged == 2
    # The volume still reached the ring: the first bar holds all six of its ticks' sizes.
    assert worker.bars.bar_count == 2
    w = worker.ring.reader(0).read_window(2)
    assert list(w.volume) == [6.0, 1.0] and list(w.high) == [2001.0, 1999.0] and list(w.low) == [1999.0, 1999.0]
