"""Order vocabulary shared by the grid, the level life cycle and reconciliation.

`DesiredOrder` is what the bot wants resting on the book; `OpenOrder` is what the exchange says is
resting. Both are plain immutable records so the decision functions stay pure.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
Purpose = Literal["entry", "take_profit", "stop"]
OrderType = Literal["limit_order", "stop_market_order"]

SIDES: tuple[Side, ...] = ("buy", "sell")
PURPOSES: tuple[Purpose, ...] = ("entry", "take_profit", "stop")


def opposite(side: Side) -> Side:
    return "sell" if side == "buy" else "buy"


class DesiredOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order the bot wants on the book, identified by (side, purpose, level)."""

    symbol: str
    side: Side
    level: int  # 1..levels for grid orders; 0 for the position-wide stop
    purpose: Purpose
    price: float  # limit price, or the trigger price of a stop
    size: int  # whole contracts, > 0
    order_type: OrderType = "limit_order"
    reduce_only: bool = False
    # A trailing stop (grid.stop_kind = "trailing"): the distance, in price units, it trails the
    # market by; `price` is then only where it starts. 0: a fixed stop at `price`.
    trail: float = 0.0

    @property
    def key(self) -> tuple[Side, Purpose, int]:
        return (self.side, self.purpose, self.level)


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A resting order as reported by the exchange (REST open orders or the orders channel)."""

    order_id: int
    symbol: str
    side: Side
    price: float  # limit price (stop price for stop orders)
    size: int  # original size in contracts
    unfilled_size: int  # what is still resting
    client_order_id: str | None = None
    order_type: OrderType = "limit_order"
    reduce_only: bool = False
    trailing: bool = False  # a trailing stop: the venue moves its price (stop_price) itself

    @property
    def filled_size(self) -> int:
        return self.size - self.unfilled_size
