"""Orders a test's venue rests: the worker's own order specs as the gateway would hand them back
(one OpenOrder each), for worker tests that answer intents or re-read the account by hand."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from shared.messages import NewOrderSpec
from shared.trading.orders import OpenOrder, OrderKind, Side


def resting(specs: Iterable[NewOrderSpec], symbol: str, *, first_id: int = 100) -> list[OpenOrder]:
    """Each spec resting untouched: a limit order open, a stop pending (untriggered)."""
    return [OpenOrder(order_id=first_id + i, symbol=symbol, side=cast(Side, p.side), price=p.price, size=p.size,
                      unfilled_size=p.size, client_order_id=p.client_order_id,
                      order_type=cast(OrderKind, p.order_type), reduce_only=p.reduce_only,
                      state="open" if p.order_type == "limit_order" else "pending")
            for i, p in enumerate(specs)]
