"""The worker's tick intake: which ticks ask the pool for a signal. Real Worker, real ring."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.messages import Tick
from workers.runtime import ChildSpec
from workers.worker import Worker

T0_US = 1_800_000_000 * 1_000_000  # a bar boundary (minute-aligned)


@pytest.fixture
def worker(worker_spec: Callable[..., ChildSpec]) -> Worker:
    return Worker(worker_spec())


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


def test_ticks_folded_behind_a_request_or_a_lost_reply_are_asked_for_and_timed_from_the_oldest(
        worker: Worker) -> None:
    from shared.messages import SignalReply

    def reply(seq: int, sent_ns: int) -> SignalReply:
        return SignalReply(symbol="ETHUSD", seq=seq, bar_count=1, bar_ts=0.0, direction="UP", confidence=0.9,
                           votes={}, close=2000.0, atr14=2.0, rsi14=50.0, valid=True, reason="", batch_size=1,
                           compute_ns=100_000, sent_ns=sent_ns, read_ns=sent_ns - 150_000)

    def published(seq: int, price: float, at_s: float, sent_ns: int) -> Tick:
        return Tick(symbol="ETHUSD", epoch=1, seq=seq, price=price, size=1.0,
                    exch_ts_us=T0_US + int(at_s * 1e6), sent_ns=sent_ns)

    assert worker.on_tick(published(1, 2000.0, 0.0, 1), recv_ns=10)
    first = worker.make_request()
    assert first is not None
    worker.on_signal(reply(first.seq, first.sent_ns + 1000), recv_ns=first.sent_ns + 2000)  # start-up: untimed
    assert worker.hops.figures().all.ticks == 0
    # A tick asks; two more arrive while its request is in flight: folded, timed from the oldest.
    assert worker.on_tick(published(2, 2001.0, 1.0, 1_000_000), recv_ns=1_400_000)
    req = worker.make_request()
    assert req is not None and req.tick_recv_ns == 1_400_000
    assert worker.on_tick(published(3, 2002.0, 2.0, 2_000_000), recv_ns=2_300_000)
    assert worker.on_tick(published(4, 2003.0, 3.0, 3_000_000), recv_ns=3_300_000)
    assert worker.make_request() is None  # one in flight at a time
    worker.on_signal(reply(req.seq, req.sent_ns + 500_000), recv_ns=req.sent_ns + 600_000)
    folded = worker.make_request()
    assert folded is not None and folded.tick_recv_ns == 2_300_000  # ticks 3 and 4, from tick 3's receipt
    # Its reply is lost: after the timeout the same ticks are asked for again, from the same time.
    worker.in_flight = (folded.seq, folded.tick_recv_ns, 0.0)
    worker.check_timeout()
    again = worker.make_request()
    assert again is not None and again.tick_recv_ns == 2_300_000 and again.seq == folded.seq + 1
    worker.on_signal(reply(folded.seq, again.sent_ns + 500_000), recv_ns=again.sent_ns + 600_000)  # stale: ignored
    worker.on_signal(reply(again.seq, again.sent_ns + 500_000), recv_ns=again.sent_ns + 600_000)
    h = worker.hops.figures().all
    assert h.ticks == 2 and worker.latency.lifetime.total == 2  # both asks timed, the stale reply not
    assert h.gateway_us == pytest.approx((1_400_000 - 1_000_000 + 2_300_000 - 2_000_000) / 1000.0)
    assert worker.ticks == 4 and worker.ticks_dropped == 0


def test_a_request_the_link_could_not_send_is_asked_again_from_the_same_tick(worker: Worker) -> None:
    published = Tick(symbol="ETHUSD", epoch=1, seq=1, price=2000.0, size=1.0, exch_ts_us=T0_US, sent_ns=5)
    assert worker.on_tick(published, recv_ns=10)
    req = worker.make_request()
    assert req is not None and worker.make_request() is None  # in flight
    worker.request_not_sent()  # the pool member was not listening (PacketLink.send_nowait: False)
    again = worker.make_request()  # at once, not after SIGNAL_TIMEOUT_S
    assert again is not None and again.seq == req.seq + 1 and again.tick_recv_ns == 10
    assert worker.in_flight_hops[0] == 5  # still timed from the tick's publish


def test_the_backlog_queued_behind_the_history_is_late_but_no_clock_going_back(worker: Worker) -> None:
    """At 1,000 symbols a worker waits tens of seconds for its history while its ticks queue; those
    are older than the history, and were read as the venue's clock going back (20 in a row: reload
    the history), so most workers asked for their history twice (738 of 1,000 in one run) and spent
    the account's budget the last ones waited on. Only late ticks after a tick applied count."""
    import numpy as np

    from shared.messages import HistoryReply
    from workers.worker import LATE_TICKS_RELOAD

    bars = 30
    ts = np.array([T0_US / 1e6 + 60.0 * (k - bars + 1) for k in range(bars)])  # the last bar opens at T0
    col = np.full(bars, 2000.0).tobytes()
    worker.load_history(HistoryReply(symbol="ETHUSD", n=bars, ts=ts.tobytes(), open=col, high=col, low=col,
                                     close=col, volume=np.ones(bars).tobytes()))
    backlog = [tick(k + 1, 2000.0, -120.0 + k) for k in range(LATE_TICKS_RELOAD + 5)]  # two bars before
    assert not any(worker.on_tick(t, recv_ns=1) for t in backlog)
    assert worker.ticks_late == len(backlog) and worker.late_streak == 0
    seq = len(backlog)
    assert worker.on_tick(tick(seq + 1, 2001.0, 1.0), recv_ns=1)  # caught up: the current bar
    # From here, late ticks in a row are the clock going back (a restarted venue): counted.
    for k in range(LATE_TICKS_RELOAD):
        assert not worker.on_tick(tick(seq + 2 + k, 2000.0, -100.0), recv_ns=1)
    assert worker.late_streak == LATE_TICKS_RELOAD
    # A history reload starts over: its backlog does not count either.
    worker.load_history(HistoryReply(symbol="ETHUSD", n=bars, ts=ts.tobytes(), open=col, high=col, low=col,
                                     close=col, volume=np.ones(bars).tobytes()))
    worker.late_streak = 0
    assert not worker.on_tick(tick(seq + 100, 2000.0, -90.0), recv_ns=1)
    assert worker.late_streak == 0
    # ...but not for ever: a clock that went back between the history read and the first tick
    # makes every tick late, none applies, and past the backlog's grace they count (a reload).
    from workers.worker import BACKLOG_GRACE_S
    worker.history_loaded_at -= BACKLOG_GRACE_S + 0.5
    for k in range(LATE_TICKS_RELOAD):
        assert not worker.on_tick(tick(seq + 101 + k, 2000.0, -80.0), recv_ns=1)
    assert worker.late_streak == LATE_TICKS_RELOAD
