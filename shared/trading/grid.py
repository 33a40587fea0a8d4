"""The grid: which entry orders the bot wants for a signal, a price and an ATR.

`GridConfig` is the `[grid]` table of the TOML config. Defaults are the original bot's rules
(5 levels 1% apart, directional, confidence >= 0.5); the fixes are tick rounding that never
crosses the price, ATR-scaled spacing as an option, and re-grid hysteresis instead of cancelling
and re-placing the whole grid on every signal.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.products import ProductSpec
from shared.trading.orders import DesiredOrder, Side
from shared.trading.sizing import STOP_ATR_MULTIPLE

SignalDirection = Literal["UP", "DOWN", "NONE"]


class GridConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # Ranges live in the types (msgspec checks them when the config is decoded); __post_init__
    # keeps the rules between keys.
    levels: Annotated[int, Meta(ge=1, le=99)] = 5
    # fixed mode: step as a fraction of price; under 1 bp a level sits inside the spread
    width: Annotated[float, Meta(ge=0.0001, le=0.5)] = 0.01
    spacing_mode: Literal["fixed", "atr"] = "fixed"
    atr_multiple: Annotated[float, Meta(ge=0.01, le=100)] = 1.0  # atr mode: step = atr_multiple x ATR ...
    spacing_floor: Annotated[float, Meta(ge=0.0001, le=0.5)] = 0.001  # ... but at least this fraction of price
    spacing_cap: Annotated[float, Meta(ge=0.0001, le=0.5)] = 0.05  # ... and at most this fraction of price
    mode: Literal["directional", "neutral"] = "directional"
    min_confidence: Annotated[float, Meta(ge=0, le=1)] = 0.5
    regrid_fraction: Annotated[float, Meta(ge=0, le=1)] = 0.5  # re-grid when price moved more than this x step
    # per symbol: places + amends (cancels are never held back)
    max_actions_per_minute: Annotated[int, Meta(ge=1, le=6000)] = 60
    # One reduce-only stop-market order for the bot's whole position, stop_atr_multiple x ATR
    # beyond the grid's outermost level on the position's side (`protective_stop`).
    stops: bool = True
    stop_atr_multiple: Annotated[float, Meta(ge=0.01, le=100)] = STOP_ATR_MULTIPLE
    stop_trigger_method: Literal["mark_price", "last_traded_price"] = "mark_price"
    # fixed: the stop stays where protective_stop put it (amended as the grid moves); trailing:
    # Delta's trailing stop (trail_amount), placed where the fixed one would be and then moved by
    # the exchange behind the position's favourable move, never back
    stop_kind: Literal["fixed", "trailing"] = "fixed"
    # market time with no new entries after our stop fired (no re-entry into the move); up to a week
    stop_cooldown_s: Annotated[float, Meta(ge=0, le=604_800)] = 900.0

    def __post_init__(self) -> None:
        if self.spacing_floor > self.spacing_cap:
            raise ValueError(
                f"grid.spacing_floor ({self.spacing_floor}) must be <= grid.spacing_cap ({self.spacing_cap})"
            )
        widest = self.width if self.spacing_mode == "fixed" else self.spacing_cap
        if self.levels * widest >= 1.0:
            raise ValueError(
                f"grid.levels x step fraction must be < 1 so buy levels stay above zero, got "
                f"{self.levels} x {widest}"
            )


def _check_market(price: float, atr: float) -> None:
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be a finite number > 0, got {price!r}")
    if not (math.isfinite(atr) and atr > 0):
        raise ValueError(f"atr must be a finite number > 0, got {atr!r}")


def grid_step(price: float, atr: float, config: GridConfig) -> float:
    """Distance between neighbouring levels, in price units."""
    _check_market(price, atr)
    if config.spacing_mode == "fixed":
        return price * config.width
    return min(max(atr * config.atr_multiple, price * config.spacing_floor), price * config.spacing_cap)


def level_prices(side: Side, price: float, step: float, levels: int, product: ProductSpec) -> tuple[float, ...]:
    """Tick-rounded prices of levels 1..levels: buys below the price rounded down, sells above
    rounded up, strictly moving away from the price so no level crosses it or shares a price."""
    prices: list[float] = []
    tick = product.tick_size
    last = price
    for i in range(1, levels + 1):
        if side == "buy":
            p = product.floor_price(price - i * step)
            if p >= last - tick * 1e-6:  # step below one tick: force one tick further away
                p = product.floor_price(last - tick)
            if p <= 0:
                raise ValueError(f"buy level {i} at {p} is not a positive price (price {price}, step {step})")
        else:
            p = product.ceil_price(price + i * step)
            if p <= last + tick * 1e-6:
                p = product.ceil_price(last + tick)
        prices.append(p)
        last = p
    return tuple(prices)


def grid_sides(direction: SignalDirection, confidence: float, config: GridConfig) -> tuple[Side, ...]:
    """Which sides get a grid: none below the confidence threshold, else UP -> buys below,
    DOWN -> sells above (the original), or both in neutral mode."""
    if not math.isfinite(confidence) or confidence < config.min_confidence:
        return ()
    if config.mode == "neutral":
        return ("buy", "sell")
    if direction == "UP":
        return ("buy",)
    if direction == "DOWN":
        return ("sell",)
    return ()


def desired_grid(
    direction: SignalDirection,
    confidence: float,
    price: float,
    atr: float,
    product: ProductSpec,
    contracts_per_level: int,
    config: GridConfig,
    step: float | None = None,
) -> tuple[DesiredOrder, ...]:
    """Entry orders for the grid (take-profits come from the level life cycle, the stop from
    `protective_stop`). Empty when the signal is too weak or sizing says no new orders.
    `step` overrides the computed spacing (pass the anchor's, so the grid stays put between
    re-grids even as ATR drifts)."""
    _check_market(price, atr)
    if contracts_per_level < 0:
        raise ValueError(f"contracts_per_level must be >= 0, got {contracts_per_level}")
    sides = grid_sides(direction, confidence, config)
    if contracts_per_level == 0 or not sides:
        return ()
    if step is None:
        step = grid_step(price, atr, config)
    elif not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    orders: list[DesiredOrder] = []
    for side in sides:
        for level, p in enumerate(level_prices(side, price, step, config.levels, product), start=1):
            orders.append(DesiredOrder(
                symbol=product.symbol, side=side, level=level, purpose="entry",
                price=p, size=contracts_per_level,
            ))
    return tuple(orders)


def stop_trigger(position_contracts: int, grid_edge_price: float, atr: float, product: ProductSpec,
                 config: GridConfig) -> float:
    """The protective stop's trigger price alone (`protective_stop`'s, for a non-flat position):
    a backtest asks it at every trade a fixed stop rests through, to know when a plan would move it."""
    _check_market(grid_edge_price, atr)
    distance = config.stop_atr_multiple * atr
    if position_contracts > 0:
        trigger = product.floor_price(grid_edge_price - distance)
        if trigger <= 0:
            raise ValueError(f"stop below zero: edge {grid_edge_price}, distance {distance}")
        return trigger
    return product.ceil_price(grid_edge_price + distance)


def protective_stop(
    position_contracts: int,
    grid_edge_price: float,
    atr: float,
    product: ProductSpec,
    config: GridConfig,
    price: float | None = None,
) -> DesiredOrder | None:
    """Reduce-only stop for the whole position, stop_atr_multiple x ATR beyond the grid's
    outermost level (a 1.5 ATR stop from each level would sit inside a 1% grid on 1-minute data
    and fire on noise). None when stops are off or the position is flat.

    With stop_kind "trailing" it is a trailing stop that starts at the same trigger: it trails
    the market (`price`, the last trade) by the distance from `price` to that trigger (at least
    one tick, rounded up to the tick), and the exchange moves it from there."""
    if not config.stops or position_contracts == 0:
        return None
    trigger = stop_trigger(position_contracts, grid_edge_price, atr, product, config)
    side: Side = "sell" if position_contracts > 0 else "buy"
    trail = 0.0
    if config.stop_kind == "trailing":
        if price is None or not (math.isfinite(price) and price > 0):
            raise ValueError(f"a trailing stop needs the market price to trail from, got {price!r}")
        # signed: a market already through the trigger trails by one tick (it fires on the next
        # adverse tick, as the fixed stop would fire at once), never from the far side
        beyond = price - trigger if side == "sell" else trigger - price
        trail = product.ceil_price(max(beyond, product.tick_size))
    return DesiredOrder(
        symbol=product.symbol, side=side, level=0, purpose="stop", price=trigger,
        size=abs(position_contracts), order_type="stop_market_order", reduce_only=True, trail=trail,
    )


class GridAnchor(msgspec.Struct, frozen=True, kw_only=True):
    """The signal and price the current grid was built around."""

    direction: SignalDirection
    price: float
    step: float
    built_ts: float  # epoch seconds
    confidence: float = 1.0


def needs_regrid(
    anchor: GridAnchor | None, direction: SignalDirection, price: float, config: GridConfig
) -> bool:
    """Re-grid only when the signal changed or the price left the hysteresis band, so tiny moves
    leave the book alone (the original re-placed the whole grid on every signal)."""
    if anchor is None:
        return True
    # In neutral mode the direction picks no side, so only the price moves the grid.
    if config.mode == "directional" and anchor.direction != direction:
        return True
    return abs(price - anchor.price) > config.regrid_fraction * anchor.step


def next_anchor(
    anchor: GridAnchor | None,
    direction: SignalDirection,
    confidence: float,
    price: float,
    atr: float,
    config: GridConfig,
    now_ts: float,
) -> GridAnchor | None:
    """The grid follows a strong signal and holds through a weak one: like the original, a
    signal below the confidence threshold changes nothing (it neither builds nor cancels a
    grid), so a confidence hovering around the threshold does not churn the book. A strong
    signal re-anchors only past the hysteresis band (`needs_regrid`). Build the entries with
    `desired_grid(a.direction, a.confidence, a.price, atr, ..., step=a.step)`."""
    _check_market(price, atr)
    if not grid_sides(direction, confidence, config):
        return anchor
    if not needs_regrid(anchor, direction, price, config):
        return anchor
    return GridAnchor(
        direction=direction, price=price, step=grid_step(price, atr, config), built_ts=now_ts,
        confidence=confidence,
    )
