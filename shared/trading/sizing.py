"""Sizing: the original bot's ATR risk rules, and whole-contract sizing of grid orders.

The original computed the ATR rules and never used them; here they feed the signal engine's risk
component and the protective stops. Grid orders are sized in whole contracts (the original sent
coin units, which Delta does not accept).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import msgspec

from shared.products import ProductSpec

from . import client_order_id as coid
from .orders import OpenOrder

Direction = Literal["long", "short"]

# The original's constants, kept as defaults.
DEFAULT_RISK_FRACTION = 0.01
ATR_SIZE_SCALE = 0.7
STOP_ATR_MULTIPLE = 1.5
TAKE_PROFIT_ATR_MULTIPLE = 3.5
MAX_RISK_FRACTION = 0.02


def _require_positive(name: str, value: float) -> float:
    # `not value > 0` is also true for NaN, which must never size an order.
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _require_non_negative(name: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _require_direction(direction: str) -> None:
    if direction not in ("long", "short"):
        raise ValueError(f"direction must be 'long' or 'short', got {direction!r}")


def atr_position_size(
    balance: float, atr: float, risk_fraction: float = DEFAULT_RISK_FRACTION
) -> float:
    """Position size in underlying units: balance x risk_fraction / ATR x 0.7 (the original rule)."""
    _require_non_negative("balance", balance)
    _require_positive("atr", atr)
    _require_non_negative("risk_fraction", risk_fraction)
    return balance * risk_fraction / atr * ATR_SIZE_SCALE


def stop_price(entry: float, atr: float, direction: Direction,
               multiple: float = STOP_ATR_MULTIPLE) -> float:
    """Entry -/+ 1.5 ATR: below a long, above a short."""
    _require_positive("entry", entry)
    _require_positive("atr", atr)
    _require_direction(direction)
    return entry - multiple * atr if direction == "long" else entry + multiple * atr


def take_profit_price(entry: float, atr: float, direction: Direction,
                      multiple: float = TAKE_PROFIT_ATR_MULTIPLE) -> float:
    """Entry +/- 3.5 ATR: above a long, below a short."""
    _require_positive("entry", entry)
    _require_positive("atr", atr)
    _require_direction(direction)
    return entry + multiple * atr if direction == "long" else entry - multiple * atr


class RiskPlan(msgspec.Struct, frozen=True, kw_only=True):
    direction: Direction
    entry: float
    size: float  # underlying units
    stop: float
    take_profit: float
    risk_amount: float  # loss at the stop, in quote currency
    reward_amount: float  # gain at the take-profit
    reward_risk_ratio: float
    valid: bool  # risk_amount <= max_risk_fraction x balance


def risk_plan(
    balance: float,
    entry: float,
    atr: float,
    direction: Direction,
    risk_fraction: float = DEFAULT_RISK_FRACTION,
    max_risk_fraction: float = MAX_RISK_FRACTION,
) -> RiskPlan:
    """The original risk manager's whole decision for one trade idea."""
    size = atr_position_size(balance, atr, risk_fraction)
    stop = stop_price(entry, atr, direction)
    target = take_profit_price(entry, atr, direction)
    risk_amount = size * abs(entry - stop)
    reward_amount = size * abs(target - entry)
    return RiskPlan(
        direction=direction,
        entry=entry,
        size=size,
        stop=stop,
        take_profit=target,
        risk_amount=risk_amount,
        reward_amount=reward_amount,
        reward_risk_ratio=TAKE_PROFIT_ATR_MULTIPLE / STOP_ATR_MULTIPLE,
        # A zero balance makes a zero-size plan, which risks nothing but is no trade either.
        valid=balance > 0 and risk_amount <= max_risk_fraction * balance,
    )


def contracts_per_level(
    available_balance: float,
    price: float,
    product: ProductSpec,
    *,
    risk_percentage: float,
    min_balance: float,
    at_least_min_size: bool = True,
) -> int:
    """Whole contracts for each grid order, 0 meaning "place no new orders".

    Budget per order = available balance x risk_percentage / 100 of notional (the original's rule,
    floored to whole contracts rather than rounded so the budget is never exceeded). Like the
    original, a budget smaller than one minimum order still trades the minimum size when
    `at_least_min_size`, but only if the balance can margin it at the product's initial margin.
    Capped by the product's position size limit.
    """
    if not (isinstance(available_balance, (int, float)) and math.isfinite(available_balance)):
        raise ValueError(f"available_balance must be a finite number, got {available_balance!r}")
    _require_positive("price", price)
    _require_non_negative("risk_percentage", risk_percentage)
    _require_non_negative("min_balance", min_balance)
    return _contracts(available_balance, price, product, risk_percentage, min_balance, at_least_min_size)


def _contracts(available_balance: float, price: float, product: ProductSpec, risk_percentage: float,
               min_balance: float, at_least_min_size: bool) -> int:
    """`contracts_per_level`'s rule, its inputs checked."""
    # A negative available balance (margin deficit) is simply "below min_balance".
    if available_balance < min_balance or available_balance <= 0:
        return 0
    contract_notional = product.contract_value * price
    budget = available_balance * risk_percentage / 100.0
    # The epsilon keeps an exact fit (budget == k contracts) from flooring to k-1 on float noise.
    contracts = int(math.floor(budget / contract_notional + 1e-9))
    if contracts < product.min_size:
        if not at_least_min_size:
            return 0
        contracts = product.min_size
    affordable = int(math.floor(available_balance / (contract_notional * product.initial_margin) + 1e-9))
    contracts = min(contracts, affordable, product.position_size_limit)
    return contracts if contracts >= product.min_size else 0


SIZE_EDGE_MARGIN = 1e-7  # relative: how far inside its estimated edges a size's balance range is tried


def balance_range_for_size(available_balance: float, price: float, product: ProductSpec, *, risk_percentage: float,
                           min_balance: float, low: bool = True, high: bool = True) -> tuple[int, float, float]:
    """`contracts_per_level` at this balance (at least the minimum size), and a range of balances
    around it that all give the same size: a caller re-sizing at every balance change (the
    backtest, for every symbol at every order action on the shared account) then only needs a
    comparison. The range's ends are estimated from the rule and then checked with the rule
    itself; as the size never falls when the balance rises, two balances
    with one size have it at every balance between them. An end that does not check out stays at
    the balance given (the range is never wrong, at worst narrow), as does an end not asked for
    (`low`, `high` False: only the other end is wanted)."""
    n = contracts_per_level(available_balance, price, product, risk_percentage=risk_percentage,
                            min_balance=min_balance)
    lo = hi = float(available_balance)
    notional = product.contract_value * price
    per_budget = 100.0 * notional / risk_percentage if risk_percentage > 0 else math.inf
    per_margin = notional * product.initial_margin

    def edge(k: int) -> float:
        """About the lowest balance giving at least k (>= min_size) contracts."""
        return max(k * per_budget if k > product.min_size else -math.inf, k * per_margin, min_balance, 0.0)

    up: float | None
    if n == 0:
        lo = -math.inf  # sizes are never negative: below a balance giving 0, every one gives 0
        up = edge(product.min_size)
    else:
        down = edge(n)
        try_lo = down + abs(down) * SIZE_EDGE_MARGIN
        if low and math.isfinite(try_lo) and try_lo < lo and _contracts(
                try_lo, price, product, risk_percentage, min_balance, True) == n:
            lo = try_lo
        up = None if n >= product.position_size_limit else edge(n + 1)
    if up is None:
        hi = math.inf  # the cap: no balance gives more
    else:
        try_hi = up - abs(up) * SIZE_EDGE_MARGIN
        if high and math.isfinite(try_hi) and try_hi > hi and _contracts(
                try_hi, price, product, risk_percentage, min_balance, True) == n:
            hi = try_hi
    return n, lo, hi


def grid_sizing_balance(available_balance: float, resting: Iterable[OpenOrder], product: ProductSpec, *,
                        bot_id: str, symbol: str) -> float:
    """The balance a bot's grid is sized from: the account's available balance plus the initial
    margin the exchange holds for the bot's own resting entry orders, `resting` being the book
    as it stood when that balance was read.

    Without the add-back the size depends on whether our own grid happens to rest: the first
    plan sizes from the whole balance, every later one from the balance less the grid's own
    margin, so at a contract boundary the grid is amended one contract smaller right after it
    was placed, and a regrid sizes the new grid without the margin the old one frees. Only
    entries count: take-profits and stops stay through a regrid, and reduce-only orders hold no
    margin. The exchange holds order margin at notional / leverage, the product's initial margin."""
    return available_balance + entry_margin_held(resting, product, bot_id=bot_id, symbol=symbol)


def entry_margin_held(resting: Iterable[OpenOrder], product: ProductSpec, *, bot_id: str, symbol: str) -> float:
    """The initial margin the exchange holds for the bot's own resting entry orders (the part
    `grid_sizing_balance` adds back); it moves only with the bot's book."""
    held = 0.0
    tags = coid.owned_tags(bot_id, symbol)
    for o in resting:
        if o.reduce_only or o.order_type != "limit_order" or o.unfilled_size <= 0:
            continue
        tag = tags[o.client_order_id]
        if tag is not None and tag.purpose == "entry":
            held += o.unfilled_size * product.contract_value * o.price * product.initial_margin
    return held
