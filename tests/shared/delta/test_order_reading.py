"""An order of ours in a kind or state Delta does not document is read at the nearest safe
reading (shared/delta/order_reading.py): resting unless the venue says it left the book."""

from __future__ import annotations

import pytest

from shared.delta.order_reading import REREAD_FIRST_S, REREAD_TRIES, OrderRereads, read_ours_tolerantly


@pytest.mark.parametrize(("kind", "state", "purpose", "limit", "deleted", "expected"), [
    # documented values are kept as they are
    ("limit_order", "open", "entry", True, False, ("limit_order", "open")),
    ("stop_market_order", "cancelled", "stop", False, True, ("stop_market_order", "cancelled")),
    # an undocumented state of an order the venue still reports: it rests
    ("limit_order", "live", "entry", True, False, ("limit_order", "open")),
    ("stop_market_order", "untriggered", "stop", False, False, ("stop_market_order", "pending")),
    ("limit_order", "partially_filled", "take_profit", True, False, ("limit_order", "open")),
    # the orders channel deleted it: it left the book
    ("limit_order", "expired", "entry", True, True, ("limit_order", "closed")),
    # an undocumented kind: what our id says we placed
    ("iceberg_order", "open", "entry", True, False, ("limit_order", "open")),
    ("twap_order", "open", "entry", False, False, ("market_order", "open")),
    ("trigger_order", "weird", "stop", False, False, ("stop_market_order", "pending")),
    ("trigger_order", "weird", "stop", True, False, ("stop_limit_order", "pending")),
])
def test_our_order_is_read_at_the_nearest_safe_reading(kind: str, state: str, purpose: str, limit: bool,
                                                       deleted: bool, expected: tuple[str, str]) -> None:
    assert read_ours_tolerantly(kind, state, purpose=purpose, has_limit_price=limit,  # type: ignore[arg-type]
                                deleted=deleted) == expected


def test_orders_in_doubt_are_read_back_soon_once_each_and_within_a_bounded_rate() -> None:
    r = OrderRereads(waiting_max=3, per_s=1.0, burst=2)
    assert r.doubt(1, "BTCUSD", now=0.0) and r.doubt(2, "ETHUSD", now=0.1)
    assert not r.doubt(1, "BTCUSD", now=0.2)  # waits already: one read back serves both words
    assert r.take(now=REREAD_FIRST_S - 0.01) == []  # not due yet
    assert r.take(now=REREAD_FIRST_S + 0.05) == [(1, "BTCUSD")]  # soonest first; 2 is due at 0.6
    assert r.take(now=REREAD_FIRST_S + 0.2) == [(2, "ETHUSD")]
    # the bucket: two reads spent, refilled one a second
    for oid in (3, 4, 5):
        assert r.doubt(oid, "BTCUSD", now=1.0)
    assert not r.doubt(6, "BTCUSD", now=1.0) and r.left == 1  # three wait: the regular re-read settles it
    assert r.take(now=1.0 + REREAD_FIRST_S) == []  # (0.8 s since the last take: not a whole read refilled)
    assert len(r.take(now=1.9)) == 1 and len(r.take(now=4.0)) == 2 and r.waiting == 0
    # one order is read back at most REREAD_TRIES times (a failed read asks again, each later)
    r = OrderRereads()
    due = 0.0
    for k in range(REREAD_TRIES):
        assert r.doubt(9, "BTCUSD", now=due)
        assert r.take(now=due + REREAD_FIRST_S * 2 ** k - 0.01) == []
        due += REREAD_FIRST_S * 2 ** k
        assert r.take(now=due) == [(9, "BTCUSD")]
    assert not r.doubt(9, "BTCUSD", now=due) and r.left == 1
