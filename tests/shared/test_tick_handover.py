"""A worker's ticks moving from the PUB to its direct link (shared.transport.TickHandover): link
ticks wait for the PUB's last ones, never longer than the hold, and come out in order."""

from __future__ import annotations

from shared.messages import Tick
from shared.transport import TickHandover


def tick(seq: int, epoch: int = 7) -> Tick:
    return Tick(symbol="ETHUSD", epoch=epoch, seq=seq, price=100.0, size=1.0, exch_ts_us=seq, sent_ns=seq)


def seqs(out: list[tuple[Tick, int]]) -> list[int]:
    return [t.seq for t, _ in out]


def test_link_ticks_wait_for_the_ticks_still_on_their_way_over_the_pub() -> None:
    h = TickHandover(hold_s=1.0)
    h.start(tick(5), recv_ns=50, read=(7, 3), now=0.0)  # the PUB carried 1..5; the worker has read 3
    assert h.holding
    assert h.on_link(tick(6), 60, read=(7, 3), now=0.01) == []
    assert h.on_link(tick(7), 70, read=(7, 3), now=0.02) == []
    assert h.release((7, 4), now=0.03) == []  # the SUB brings 4
    out = h.release((7, 5), now=0.04)  # ...and 5: the link's ticks follow, received when they came
    assert seqs(out) == [6, 7] and [ns for _, ns in out] == [60, 70]
    assert not h.holding and h.released_late == 0
    assert seqs(h.on_link(tick(8), 80, read=(7, 7), now=0.05)) == [8]  # straight through from now on


def test_no_hold_when_the_sub_has_brought_everything_or_the_pub_carried_nothing() -> None:
    h = TickHandover()
    h.start(tick(5), 0, read=(7, 5), now=0.0)
    assert not h.holding and seqs(h.on_link(tick(6), 0, read=(7, 5), now=0.0)) == [6]
    h.start(None, 0, read=(0, 0), now=0.0)  # the worker linked before the gateway's first tick
    assert not h.holding and h.handovers == 2


def test_a_pub_tick_that_never_comes_holds_the_link_no_longer_than_the_hold() -> None:
    h = TickHandover(hold_s=1.0)
    h.start(tick(5), 50, read=(7, 3), now=0.0)  # 4 and 5 were dropped at the PUB's high-water mark
    assert h.on_link(tick(6), 60, read=(7, 3), now=0.5) == []
    assert h.release((7, 3), now=0.9) == []
    out = h.release((7, 3), now=1.0)
    # the handed-over 5 first (it fills what it can of the gap), then the link's
    assert seqs(out) == [5, 6] and h.released_late == 1 and not h.holding


def test_the_hold_is_bounded_in_ticks_too() -> None:
    h = TickHandover(hold_s=60.0, max_held=4)
    h.start(tick(5), 0, read=(7, 3), now=0.0)
    assert all(h.on_link(tick(s), 0, read=(7, 3), now=0.0) == [] for s in (6, 7, 8))
    assert seqs(h.on_link(tick(9), 0, read=(7, 3), now=0.0)) == [5, 6, 7, 8, 9]


def test_a_restarted_gateway_new_epoch_waits_for_its_own_ticks_on_the_sub() -> None:
    h = TickHandover()
    h.start(tick(2, epoch=8), 0, read=(7, 900), now=0.0)  # the old epoch's seq says nothing of the new
    assert h.holding and h.on_link(tick(3, epoch=8), 0, read=(7, 900), now=0.1) == []
    assert seqs(h.release((8, 2), now=0.2)) == [3]
