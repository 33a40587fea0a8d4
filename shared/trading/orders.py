"""Order vocabulary shared by the grid, the level life cycle and reconciliation.

`DesiredOrder` is what the bot wants resting on the book; `OpenOrder` is what the exchange says
about an order. Both are plain immutable records so the decision functions stay pure.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Side = Literal["buy", "sell"]
Purpose = Literal["entry", "take_profit", "stop"]
OrderType = Literal["limit_order", "stop_market_order"]  # what the bots rest on the book
# Every kind the exchange reports: Delta's order_type (limit or market) and, with stop fields, its
# stop of either kind. The bots place stop-markets only, but a trader's stop-limit, a flatten's
# market order or an orders-channel update that does not say the kind (UNCONFIRMED) is one of these.
OrderKind = Literal["limit_order", "market_order", "stop_market_order", "stop_limit_order"]
# open: in the book; pending: an untriggered stop; closed: fully filled; cancelled: gone unfilled
# (in part). Delta documents no other state.
OrderState = Literal["open", "pending", "closed", "cancelled"]

SIDES: tuple[Side, ...] = ("buy", "sell")
PURPOSES: tuple[Purpose, ...] = ("entry", "take_profit", "stop")
ORDER_KINDS: tuple[OrderKind, ...] = ("limit_order", "market_order", "stop_market_order", "stop_limit_order")
ORDER_STATES: tuple[OrderState, ...] = ("open", "pending", "closed", "cancelled")


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
    """An order as the exchange reports it (REST answers and open orders, the orders channel):
    resting (open, or pending: an untriggered stop) or its last word (closed, cancelled). The one
    type an order has past the exchange edge: the gateway maps Delta's wire order into it once
    (workers/gateway_exchange.py `domain_order`), its messages carry it, and the worker, the bot
    and the order ledger take it as is, so a new field is one edit here."""

    order_id: int
    symbol: str
    side: Side
    price: float  # limit price (stop price for stop orders; 0 for a market order)
    size: int  # original size in contracts
    unfilled_size: int  # what is still resting
    client_order_id: str | None = None
    order_type: OrderKind = "limit_order"
    reduce_only: bool = False
    trailing: bool = False  # a trailing stop: the venue moves its price (stop_price) itself
    state: OrderState = "open"

    @property
    def filled_size(self) -> int:
        return self.size - self.unfilled_size

    @property
    def is_stop(self) -> bool:
        return self.order_type in ("stop_market_order", "stop_limit_order")


def same_kind(reported: OrderKind, wanted: OrderType) -> bool:
    """Whether a reported order is of the kind a desired one asks for. Any stop is the bots' stop:
    they place stop-markets only, and an orders-channel update that does not say the kind is read
    as a stop-limit when it carries a limit price (UNCONFIRMED on live Delta); replacing it for
    that would churn the protective stop."""
    return reported == wanted or (wanted == "stop_market_order" and reported == "stop_limit_order")
