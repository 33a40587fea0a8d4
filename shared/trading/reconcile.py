"""Reconciliation: from what we want and what the exchange has, the fewest safe order actions.

Rules, in order:
- Orders whose client order id is not ours (this bot, this symbol) are never touched: a trader's
  manual orders and other bots' orders are only counted.
- Our orders are keyed by (side, purpose, level). Several of ours on one key (a retry after a
  crash, a re-placement racing a cancel) -> keep the best one, cancel the extras.
- Our orders on keys nobody wants any more -> cancel.
- A kept order within `price_tolerance` of the desired price and of the desired size -> leave it
  (hysteresis: tiny moves do not churn). Otherwise amend it in place when the exchange can
  (same order type, reduce-only flag and trailing), else cancel and place anew. A trailing stop's
  price is the exchange's to move: it is matched and amended on its size only.
- Desired keys without an order -> place, with a fresh client order id of this generation.

`limit_plan` then applies the per-symbol churn limiter (a token bucket with an explicit clock):
cancels always go through (they only reduce exposure); amends, then places nearest the price
first, wait for tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from shared.trading import client_order_id as coid
from shared.trading.orders import DesiredOrder, OpenOrder, Purpose, Side, same_kind


class PlaceOrder(msgspec.Struct, frozen=True, kw_only=True):
    order: DesiredOrder
    client_order_id: str


class AmendOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    client_order_id: str
    price: float
    size: int  # TOTAL size after the edit (Delta's edit semantics): filled so far + desired
    desired: DesiredOrder


class CancelOrder(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    client_order_id: str
    reason: str  # "duplicate" | "not_desired" | "replace"


class ReconcilePlan(msgspec.Struct, frozen=True, kw_only=True):
    to_place: tuple[PlaceOrder, ...] = ()
    to_amend: tuple[AmendOrder, ...] = ()
    to_cancel: tuple[CancelOrder, ...] = ()
    kept: int = 0  # our orders already right
    foreign: int = 0  # orders we do not own, left alone
    deferred: int = 0  # actions held back by the churn limiter

    @property
    def empty(self) -> bool:
        return not (self.to_place or self.to_amend or self.to_cancel)


def _matches(order: OpenOrder, want: DesiredOrder, price_tolerance: float) -> bool:
    if (want.trail > 0) != order.trailing:
        return False  # a fixed stop is no trailing one, whatever its price (stop_kind changed)
    if order.trailing:
        return order.unfilled_size == want.size
    return (
        abs(order.price - want.price) <= price_tolerance + 1e-12
        and order.unfilled_size == want.size
    )


def reconcile(
    desired: Sequence[DesiredOrder],
    actual: Sequence[OpenOrder],
    *,
    bot_id: str,
    symbol: str,
    generation: int,
    price_tolerance: float = 0.0,
) -> ReconcilePlan:
    """The plan that turns `actual` (open orders on the exchange) into `desired` for one symbol."""
    if not (math.isfinite(price_tolerance) and price_tolerance >= 0):
        raise ValueError(f"price_tolerance must be >= 0, got {price_tolerance!r}")
    wanted: dict[tuple[Side, Purpose, int], DesiredOrder] = {}
    for d in desired:
        key = d.key
        if d.symbol != symbol:
            raise ValueError(f"desired order for {d.symbol} given to reconcile {symbol}")
        if d.size <= 0:
            raise ValueError(f"desired order {key} has size {d.size}")
        if key in wanted:
            raise ValueError(f"two desired orders for {key} on {symbol}")
        wanted[key] = d

    generation %= coid.GENERATION_MODULUS
    ours: dict[tuple[Side, Purpose, int], list[tuple[OpenOrder, coid.OrderTag]]] = {}
    foreign = 0
    tags = coid.owned_tags(bot_id, symbol)
    for order in actual:
        tag = tags[order.client_order_id]
        # A hashed symbol tag could in theory collide, so the exchange's symbol must agree too.
        if tag is None or order.symbol != symbol or tag.side != order.side:
            foreign += 1
            continue
        ours.setdefault((tag.side, tag.purpose, tag.level), []).append((order, tag))

    to_place: list[PlaceOrder] = []
    to_amend: list[AmendOrder] = []
    to_cancel: list[CancelOrder] = []
    kept = 0

    for key, orders in ours.items():
        want = wanted.get(key)
        if want is None:
            to_cancel.extend(
                CancelOrder(order_id=o.order_id, client_order_id=o.client_order_id or "", reason="not_desired")
                for o, _ in orders
            )
            continue
        # Keep the order closest to what we want; prefer the current generation, then the
        # oldest id (it has time priority in the book).
        if len(orders) > 1:  # the usual single order per key needs no ranking
            target = want  # bound for the sort key (the loop variable is Optional to a type checker)
            orders = sorted(orders, key=lambda ot: (
                not _matches(ot[0], target, price_tolerance), ot[1].generation != generation,
                abs(ot[0].price - target.price), ot[0].order_id,
            ))
            to_cancel.extend(
                CancelOrder(order_id=o.order_id, client_order_id=o.client_order_id or "", reason="duplicate")
                for o, _ in orders[1:]
            )
        best, _ = orders[0]
        if _matches(best, want, price_tolerance):
            kept += 1
        elif same_kind(best.order_type, want.order_type) and (best.reduce_only, best.trailing) == (
                want.reduce_only, want.trail > 0):
            to_amend.append(AmendOrder(
                order_id=best.order_id, client_order_id=best.client_order_id or "",
                price=best.price if best.trailing else want.price, size=best.filled_size + want.size, desired=want,
            ))
        else:
            to_cancel.append(CancelOrder(
                order_id=best.order_id, client_order_id=best.client_order_id or "", reason="replace",
            ))
            to_place.append(_place(want, bot_id, generation))

    for key, want in wanted.items():
        if key not in ours:
            to_place.append(_place(want, bot_id, generation))

    return ReconcilePlan(
        to_place=tuple(to_place), to_amend=tuple(to_amend), to_cancel=tuple(to_cancel),
        kept=kept, foreign=foreign,
    )


def _place(want: DesiredOrder, bot_id: str, generation: int) -> PlaceOrder:
    return PlaceOrder(order=want, client_order_id=coid.encode(
        bot_id=bot_id, symbol=want.symbol, side=want.side, purpose=want.purpose,
        level=want.level, generation=generation,
    ))


def highest_generation(actual: Sequence[OpenOrder], *, bot_id: str, symbol: str) -> int | None:
    """The largest generation among our open orders, so a restarted worker can continue past it
    (with wrap-around this is a best effort; ids only need to differ from live ones)."""
    gens = [
        tag.generation for o in actual
        if (tag := coid.decode(o.client_order_id, bot_id=bot_id, symbol=symbol)) is not None
    ]
    return max(gens) if gens else None


# --- churn limiter -------------------------------------------------------------------------------


class ChurnBucket(msgspec.Struct, frozen=True, kw_only=True):
    """Token bucket of order actions for one symbol: `capacity` tokens, refilled continuously at
    `capacity` per minute."""

    capacity: int
    tokens: float
    updated_s: float  # the clock reading (seconds) the tokens were computed at


def new_bucket(actions_per_minute: int, now_s: float) -> ChurnBucket:
    if actions_per_minute < 1:
        raise ValueError(f"actions_per_minute must be >= 1, got {actions_per_minute}")
    return ChurnBucket(capacity=actions_per_minute, tokens=float(actions_per_minute), updated_s=now_s)


def refill(bucket: ChurnBucket, now_s: float) -> ChurnBucket:
    return ChurnBucket(capacity=bucket.capacity, tokens=tokens_at(bucket, now_s),
                       updated_s=max(now_s, bucket.updated_s))


def tokens_at(bucket: ChurnBucket, now_s: float) -> float:
    """The tokens `refill` would give at now_s (without making the bucket)."""
    # A clock that steps back (tests, NTP) must not mint or burn tokens.
    elapsed = max(0.0, now_s - bucket.updated_s)
    return min(float(bucket.capacity), bucket.tokens + elapsed * bucket.capacity / 60.0)


def limit_plan(
    plan: ReconcilePlan, bucket: ChurnBucket, now_s: float, reference_price: float | None = None
) -> tuple[ReconcilePlan, ChurnBucket]:
    """The part of `plan` the bucket allows now, and the bucket after it. Deferred actions are
    not lost: the next reconcile computes them again from desired vs actual."""
    b = refill(bucket, now_s)
    tokens = b.tokens
    # Cancels pass regardless and consume what is there (down to zero, never below).
    tokens = max(0.0, tokens - len(plan.to_cancel))
    amends: list[AmendOrder] = []
    places: list[PlaceOrder] = []
    deferred = 0
    for amend in plan.to_amend:
        if tokens >= 1.0:
            amends.append(amend)
            tokens -= 1.0
        else:
            deferred += 1
    ordered = list(plan.to_place)
    if reference_price is not None:
        ordered.sort(key=lambda p: abs(p.order.price - reference_price))
    for place in ordered:
        if tokens >= 1.0:
            places.append(place)
            tokens -= 1.0
        else:
            deferred += 1
    limited = msgspec.structs.replace(
        plan, to_amend=tuple(amends), to_place=tuple(places), deferred=plan.deferred + deferred,
    )
    return limited, ChurnBucket(capacity=b.capacity, tokens=tokens, updated_s=b.updated_s)
