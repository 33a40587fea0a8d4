"""What a bot's book looks like to an operator: the grid it wants now and the orders it has resting,
for the worker's heartbeat (the dashboard draws them on the price chart). Pure functions."""

from __future__ import annotations

from collections.abc import Iterable

from shared.trading import client_order_id as coid
from shared.trading.orders import DesiredOrder, OpenOrder

# A heartbeat carries at most this many of each: the grid has at most 99 levels a side, and an
# account's odd orders must not grow a message without bound.
MAX_BOOK_ROWS = 200

# (side, purpose, price, unfilled contracts): a plain tuple keeps the heartbeat small.
RestingRow = tuple[str, str, float, int]


def grid_levels(desired: Iterable[DesiredOrder]) -> tuple[float, ...]:
    """Prices of the entry levels the last plan wanted, low to high (take-profits and the stop
    are drawn from the resting orders and stop_price)."""
    return tuple(sorted(o.price for o in desired if o.purpose == "entry"))[:MAX_BOOK_ROWS]


def resting_rows(open_orders: Iterable[OpenOrder], *, bot_id: str, symbol: str) -> tuple[RestingRow, ...]:
    """The bot's own resting orders (foreign ones on the same product are left out), by price."""
    rows = []
    for o in open_orders:
        tag = coid.decode(o.client_order_id, bot_id=bot_id, symbol=symbol)
        if tag is not None:
            rows.append((o.side, tag.purpose, float(o.price), int(o.unfilled_size)))
    rows.sort(key=lambda r: r[2])
    return tuple(rows[:MAX_BOOK_ROWS])
