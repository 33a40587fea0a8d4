"""An order of ours in a kind or state Delta does not document is read at the nearest safe
reading (shared/delta/order_reading.py): resting unless the venue says it left the book."""

from __future__ import annotations

import pytest

from shared.delta.order_reading import read_ours_tolerantly


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
