"""Life cycle of one grid level, as a pure state machine.

    not_placed --placed--> open --filled (all)--> filled --tp placed--> closing --tp filled--> complete
        ^                   |  \\--cancelled/rejected, nothing filled--> not_placed             |
        |                   \\--cancelled with a partial fill--> filled (take-profit the part) |
        \\---------------------------------------- reset -------------------------------------/

A filled level books its take-profit on the opposite side one grid step away (the step of the grid
it was placed in, fixed at placement, so the take-profit does not chase later re-grids); if that order is
cancelled or rejected the level goes back to `filled` so the take-profit is placed again (the
position is still there). Any other event in a state is an `InvalidTransition`, never ignored:
an unexpected event means our view of the exchange is wrong and the worker must reconcile.

A worker need not keep level states in memory at all: `hold_fill` folds our fills into
`LevelHoldings` (O(1) per fill) and `levels_from_book` derives every level's state from those
holdings plus our resting orders. Derived states are the same states this machine walks through,
cannot drift from the exchange, and survive a crash (`rebuild_levels` replays the stored fills).
`desired_book` then turns levels and the grid into the orders to reconcile.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from shared.products import ProductSpec
from shared.trading import client_order_id as coid
from shared.trading.orders import DesiredOrder, OpenOrder, Side, opposite
from shared.trading.pnl import Fill

LevelState = Literal["not_placed", "open", "filled", "closing", "complete"]


class InvalidTransition(ValueError):
    pass


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="event"):
    ts: float  # epoch seconds of the exchange event (or of our decision for Reset)


class EntryPlaced(_Event, frozen=True, tag="entry_placed"):
    price: float
    size: int
    grid_step: float  # step of the grid the entry belongs to: its take-profit distance


class EntryAmended(_Event, frozen=True, tag="entry_amended"):
    price: float
    size: int  # total size after the edit (Delta's semantics), >= what already filled


class EntryFilled(_Event, frozen=True, tag="entry_filled"):
    size: int  # this fill's contracts (partial fills arrive as several events)
    price: float


class EntryCancelled(_Event, frozen=True, tag="entry_cancelled"):
    pass


class EntryRejected(_Event, frozen=True, tag="entry_rejected"):
    reason: str = ""


class TakeProfitPlaced(_Event, frozen=True, tag="tp_placed"):
    price: float


class TakeProfitFilled(_Event, frozen=True, tag="tp_filled"):
    size: int
    price: float


class TakeProfitCancelled(_Event, frozen=True, tag="tp_cancelled"):
    pass


class TakeProfitRejected(_Event, frozen=True, tag="tp_rejected"):
    reason: str = ""


class Reset(_Event, frozen=True, tag="reset"):
    pass


LevelEvent = (
    EntryPlaced | EntryAmended | EntryFilled | EntryCancelled | EntryRejected
    | TakeProfitPlaced | TakeProfitFilled | TakeProfitCancelled | TakeProfitRejected | Reset
)


class Level(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    side: Side  # side of the entry order
    level: int
    state: LevelState = "not_placed"
    entry_price: float = 0.0  # limit price of the entry order
    grid_step: float = 0.0  # take-profit distance, from the grid the entry was placed in
    size: int = 0  # entry order size
    filled_size: int = 0  # entry contracts filled (the take-profit's size)
    fill_cost: float = 0.0  # sum of price x contracts of entry fills
    take_profit_price: float = 0.0
    take_profit_filled: int = 0
    completed_cycles: int = 0
    last_reason: str = ""
    updated_ts: float = 0.0

    @property
    def average_fill_price(self) -> float:
        return self.fill_cost / self.filled_size if self.filled_size else 0.0


def new_level(symbol: str, side: Side, level: int) -> Level:
    return Level(symbol=symbol, side=side, level=level)


def _bad(level: Level, event: LevelEvent) -> InvalidTransition:
    return InvalidTransition(
        f"{level.symbol} {level.side} level {level.level}: {type(event).__name__} in state {level.state}"
    )


def transition(level: Level, event: LevelEvent) -> Level:
    """The level after `event`; raises InvalidTransition for an event its state cannot take."""
    s = level.state
    if isinstance(event, Reset):
        if s not in ("complete", "not_placed"):
            raise _bad(level, event)
        return msgspec.structs.replace(
            new_level(level.symbol, level.side, level.level),
            completed_cycles=level.completed_cycles, updated_ts=event.ts,
        )
    if isinstance(event, EntryPlaced):
        if s != "not_placed":
            raise _bad(level, event)
        if event.size <= 0:
            raise ValueError(f"entry size must be > 0, got {event.size}")
        if not (math.isfinite(event.grid_step) and event.grid_step > 0):
            raise ValueError(f"grid step must be > 0, got {event.grid_step!r}")
        return msgspec.structs.replace(
            level, state="open", entry_price=event.price, size=event.size, grid_step=event.grid_step,
            filled_size=0,
            fill_cost=0.0, last_reason="", updated_ts=event.ts,
        )
    if isinstance(event, EntryAmended):
        if s != "open":
            raise _bad(level, event)
        if event.size <= level.filled_size:
            raise InvalidTransition(
                f"{level.symbol} level {level.level}: amend to {event.size} with {level.filled_size} filled"
            )
        return msgspec.structs.replace(level, entry_price=event.price, size=event.size, updated_ts=event.ts)
    if isinstance(event, EntryRejected):
        if s != "open" or level.filled_size:
            raise _bad(level, event)
        return msgspec.structs.replace(
            level, state="not_placed", size=0, last_reason=event.reason or "rejected", updated_ts=event.ts,
        )
    if isinstance(event, EntryFilled):
        if s != "open":
            raise _bad(level, event)
        filled = level.filled_size + event.size
        if event.size <= 0 or filled > level.size:
            raise InvalidTransition(
                f"{level.symbol} level {level.level}: fill of {event.size} on {level.filled_size}/{level.size}"
            )
        return msgspec.structs.replace(
            level, state="filled" if filled == level.size else "open", filled_size=filled,
            fill_cost=level.fill_cost + event.price * event.size, updated_ts=event.ts,
        )
    if isinstance(event, EntryCancelled):
        if s != "open":
            raise _bad(level, event)
        if level.filled_size:  # a partial fill is a position: it still needs its take-profit
            return msgspec.structs.replace(
                level, state="filled", size=level.filled_size, last_reason="cancelled after partial fill",
                updated_ts=event.ts,
            )
        return msgspec.structs.replace(
            level, state="not_placed", size=0, last_reason="cancelled", updated_ts=event.ts,
        )
    if isinstance(event, TakeProfitPlaced):
        if s != "filled":
            raise _bad(level, event)
        return msgspec.structs.replace(
            level, state="closing", take_profit_price=event.price, updated_ts=event.ts,
        )
    if isinstance(event, (TakeProfitCancelled, TakeProfitRejected)):
        if s != "closing":
            raise _bad(level, event)
        reason = event.reason if isinstance(event, TakeProfitRejected) else "take-profit cancelled"
        return msgspec.structs.replace(
            level, state="filled", take_profit_price=0.0, last_reason=reason or "take-profit rejected",
            updated_ts=event.ts,
        )
    if isinstance(event, TakeProfitFilled):
        if s != "closing":
            raise _bad(level, event)
        done = level.take_profit_filled + event.size
        if event.size <= 0 or done > level.filled_size:
            raise InvalidTransition(
                f"{level.symbol} level {level.level}: take-profit fill of {event.size} on "
                f"{level.take_profit_filled}/{level.filled_size}"
            )
        if done < level.filled_size:
            return msgspec.structs.replace(level, take_profit_filled=done, updated_ts=event.ts)
        return msgspec.structs.replace(
            level, state="complete", take_profit_filled=done,
            completed_cycles=level.completed_cycles + 1, updated_ts=event.ts,
        )
    raise TypeError(f"not a level event: {event!r}")


def take_profit_order(level: Level, product: ProductSpec) -> DesiredOrder | None:
    """The take-profit a filled level wants: opposite side, one grid step beyond the entry price,
    for the contracts still open. None in states that do not need one.

    Not reduce-only: Delta nets a symbol into one position, so with levels on both sides (neutral
    mode, or a direction flip) a buy level's take-profit can rest while the net position is
    short, and a reduce-only order would be rejected and leave the level stuck. It is still safe:
    it only unwinds contracts its own level holds (see `risk.limit_desired`)."""
    if level.state not in ("filled", "closing"):
        return None
    step = level.grid_step
    remaining = level.filled_size - level.take_profit_filled
    if remaining <= 0:
        return None
    side = opposite(level.side)
    if side == "sell":
        price = product.ceil_price(level.entry_price + step)
    else:
        price = product.floor_price(level.entry_price - step)
        if price <= 0:
            raise ValueError(f"take-profit below zero for level {level.level}")
    return DesiredOrder(
        symbol=level.symbol, side=side, level=level.level, purpose="take_profit",
        price=price, size=remaining,
    )


_ENTRY_ALLOWED: frozenset[LevelState] = frozenset({"not_placed", "open", "complete"})


def desired_book(
    grid_entries: Sequence[DesiredOrder],
    levels: Mapping[tuple[Side, int], Level],
    product: ProductSpec,
) -> tuple[DesiredOrder, ...]:
    """Entries from the grid for levels free to take one, plus the take-profit of every filled
    level. A level whose entry filled gets no new entry until its take-profit completes, so a
    level never holds twice its size. `levels` is keyed by (entry side, level number); levels
    missing from it count as not placed. A complete level may re-enter (the worker sends Reset
    when it places the new entry)."""
    orders: list[DesiredOrder] = []
    for entry in grid_entries:
        lv = levels.get((entry.side, entry.level))
        if lv is None or lv.state in _ENTRY_ALLOWED:
            orders.append(entry)
    for key in sorted(levels):
        tp = take_profit_order(levels[key], product)
        if tp is not None:
            orders.append(tp)
    return tuple(orders)


class LevelHoldings(msgspec.Struct, frozen=True, kw_only=True):
    """Contracts each level holds, folded from our own fills: the exchange-derived truth that
    `levels_from_book` turns into level states. O(1) per fill, so a worker can keep it current
    and derive its levels after every fill or order update, and rebuild it from the store after
    a crash. Keys are (entry side, level); absent keys hold nothing."""

    held: dict[tuple[Side, int], int] = msgspec.field(default_factory=dict)
    cost: dict[tuple[Side, int], float] = msgspec.field(default_factory=dict)  # sum price x contracts
    steps: dict[tuple[Side, int], float] = msgspec.field(default_factory=dict)  # take-profit distance


def hold_fill(
    holdings: LevelHoldings, fill: Fill, *, bot_id: str, symbol: str, grid_step: float
) -> LevelHoldings:
    """Holdings after one fill. Entry fills add contracts (remembering the grid step of the
    moment as the take-profit distance), take-profit fills remove them, a stop fill empties every
    level (it closed the whole position). Foreign fills change nothing."""
    tag = coid.decode(fill.client_order_id, bot_id=bot_id, symbol=symbol)
    if tag is None or fill.symbol != symbol or tag.side != fill.side:
        return holdings
    if tag.purpose == "stop":
        return LevelHoldings()
    held, cost, steps = dict(holdings.held), dict(holdings.cost), dict(holdings.steps)
    if tag.purpose == "entry":
        key = (tag.side, tag.level)
        if key not in held:
            if not (math.isfinite(grid_step) and grid_step > 0):
                raise ValueError(f"grid step must be > 0, got {grid_step!r}")
            steps[key] = grid_step
        held[key] = held.get(key, 0) + fill.size
        cost[key] = cost.get(key, 0.0) + float(fill.price) * fill.size
    else:  # a take-profit fill closes contracts of the entry on the other side
        key = (opposite(tag.side), tag.level)
        before = held.get(key, 0)
        left = before - fill.size
        if left <= 0:
            held.pop(key, None)
            cost.pop(key, None)
            steps.pop(key, None)
        else:
            cost[key] = cost[key] * left / before  # the average entry of what is left
            held[key] = left
    return LevelHoldings(held=held, cost=cost, steps=steps)


def levels_from_book(
    holdings: LevelHoldings,
    open_orders: Sequence[OpenOrder],
    *,
    bot_id: str,
    symbol: str,
    grid_step: float,
    ts: float,
) -> dict[tuple[Side, int], Level]:
    """Level states from what the levels hold and our orders resting on the book.

    Entry resting -> open (with what already filled); nothing resting but contracts held ->
    closing if our take-profit rests, else filled. Levels with nothing are left out (not placed).
    A resting take-profit gives back the level's step; `grid_step` is the fallback for a level
    whose step is unknown (rebuilt from fills alone). Foreign orders are ignored.
    """
    if not (math.isfinite(grid_step) and grid_step > 0):
        raise ValueError(f"grid step must be > 0, got {grid_step!r}")
    entry_orders: dict[tuple[Side, int], OpenOrder] = {}
    tp_orders: dict[tuple[Side, int], OpenOrder] = {}
    tags = coid.owned_tags(bot_id, symbol)
    for o in open_orders:
        tag = tags[o.client_order_id]
        if tag is None or o.symbol != symbol or tag.side != o.side:
            continue
        if tag.purpose == "entry":
            entry_orders[(tag.side, tag.level)] = o
        elif tag.purpose == "take_profit":
            tp_orders[(opposite(tag.side), tag.level)] = o

    levels: dict[tuple[Side, int], Level] = {}
    for key in sorted(set(holdings.held) | set(entry_orders)):
        side, number = key
        filled = holdings.held.get(key, 0)
        fill_cost = holdings.cost.get(key, 0.0)
        step = holdings.steps.get(key, grid_step)
        entry = entry_orders.get(key)
        tp = tp_orders.get(key)
        if entry is not None and tp is None:
            # Entry still resting (maybe partly filled): open, the rest may fill.
            levels[key] = Level(
                symbol=symbol, side=side, level=number, state="open", entry_price=entry.price,
                grid_step=step, size=filled + entry.unfilled_size, filled_size=filled,
                fill_cost=fill_cost, updated_ts=ts,
            )
        elif filled > 0:
            entry_price = fill_cost / filled
            if tp is not None and abs(tp.price - entry_price) > 0:
                step = abs(tp.price - entry_price)
            levels[key] = Level(
                symbol=symbol, side=side, level=number, state="closing" if tp is not None else "filled",
                entry_price=entry_price, grid_step=step, size=filled, filled_size=filled,
                fill_cost=fill_cost, take_profit_price=tp.price if tp is not None else 0.0,
                updated_ts=ts,
            )
    return levels


def rebuild_levels(
    fills: Sequence[Fill],
    open_orders: Sequence[OpenOrder],
    *,
    bot_id: str,
    symbol: str,
    grid_step: float,
    ts: float,
) -> dict[tuple[Side, int], Level]:
    """Level states recovered after a restart from our own fills (in execution order) and open
    orders. `fills` must reach back at least to the last time all this bot's levels were flat
    (the store keeps every fill; passing all of them is always right)."""
    holdings = LevelHoldings()
    for f in fills:
        holdings = hold_fill(holdings, f, bot_id=bot_id, symbol=symbol, grid_step=grid_step)
    return levels_from_book(holdings, open_orders, bot_id=bot_id, symbol=symbol, grid_step=grid_step, ts=ts)
