"""TradingBot.plan_unchanged: a bot that skips its plan whenever that says nothing would change
makes exactly the plans of a bot that plans at every signal.

Two bots are driven in lockstep over a generated market (random walk with jumps, drifting ATR,
signals that flip, weaken and vanish, balance changes, pauses, fills, stop fills and their
cool-down, partial fills, a periodic re-read of the book) against one toy exchange. Bot `every` plans at every
signal; bot `skipper` asks plan_unchanged first and plans only when it says False. At every
signal their plans must be the same (a skip is only allowed where `every` planned nothing) and
afterwards everything a later plan reads must be equal too (desired book, anchor, generation,
grid step, stop edge, position, holdings, the churn bucket as the next plan reads it)."""

from __future__ import annotations

import itertools
import math
import random

import msgspec
import pytest

from shared.products import PAPER_PRODUCTS
from shared.trading.bot import TradingBot
from shared.trading.grid import GridConfig
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from shared.trading.reconcile import ReconcilePlan, refill
from shared.trading.risk import RiskConfig

ETH = PAPER_PRODUCTS["ETHUSD"]
BOT = "s1"


class ToyExchange:
    """Resting orders; limits fill whole when the trade crosses them, stops fire at the trade,
    a trailing stop follows the price by its trail. Every change comes back as order events."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.orders: dict[int, OpenOrder] = {}
        self.trail: dict[int, float] = {}
        self.ids = itertools.count(1)
        self.fill_ids = itertools.count(1)
        self.position = 0

    def apply(self, plan: ReconcilePlan) -> list[tuple[OpenOrder, str]]:
        events: list[tuple[OpenOrder, str]] = []
        for c in plan.to_cancel:
            gone = self.orders.pop(c.order_id, None)
            self.trail.pop(c.order_id, None)
            if gone is not None:
                events.append((gone, "cancelled"))
        for a in plan.to_amend:
            o = self.orders.get(a.order_id)
            if o is None:
                continue
            o = msgspec.structs.replace(o, price=a.price, size=a.size, unfilled_size=a.size - o.filled_size)
            self.orders[o.order_id] = o
            if a.desired.trail > 0:
                self.trail[o.order_id] = a.desired.trail
            events.append((o, "open"))
        for p in plan.to_place:
            d = p.order
            o = OpenOrder(order_id=next(self.ids), symbol="ETHUSD", side=d.side, price=d.price, size=d.size,
                          unfilled_size=d.size, client_order_id=p.client_order_id, order_type=d.order_type,
                          reduce_only=d.reduce_only, trailing=d.trail > 0)
            self.orders[o.order_id] = o
            if d.trail > 0:
                self.trail[o.order_id] = d.trail
            events.append((o, "pending" if d.order_type == "stop_market_order" else "open"))
        return events

    def trade(self, price: float, ts: float) -> tuple[list[Fill], list[tuple[OpenOrder, str]]]:
        fills: list[Fill] = []
        events: list[tuple[OpenOrder, str]] = []
        for oid in sorted(self.orders):
            o = self.orders[oid]
            if o.order_type == "stop_market_order":
                hit = price <= o.price if o.side == "sell" else price >= o.price
                if not hit and o.trailing:
                    moved = max(o.price, price - self.trail[oid]) if o.side == "sell" else \
                        min(o.price, price + self.trail[oid])
                    if moved != o.price:
                        o = self.orders[oid] = msgspec.structs.replace(o, price=moved)
                        events.append((o, "pending"))
                    continue
                size = min(o.unfilled_size, abs(self.position)) if (self.position > 0) == (o.side == "sell") else 0
            else:
                hit = price <= o.price if o.side == "buy" else price >= o.price
                size = o.unfilled_size
                if hit and size > 1 and self.rng.random() < 0.3:  # a partial fill: the rest rests on
                    part = self.rng.randint(1, size - 1)
                    o = self.orders[oid] = msgspec.structs.replace(o, unfilled_size=size - part)
                    fills.append(self._fill(o, part, o.price, ts))
                    events.append((o, "open"))
                    continue
            if not hit:
                continue
            del self.orders[oid]
            self.trail.pop(oid, None)
            if size == 0:  # a reduce-only stop with nothing to reduce
                events.append((o, "cancelled"))
                continue
            fills.append(self._fill(o, size, price if o.order_type == "stop_market_order" else o.price, ts))
            events.append((msgspec.structs.replace(o, unfilled_size=0), "closed"))
        return fills, events

    def _fill(self, o: OpenOrder, size: int, at: float, ts: float) -> Fill:
        self.position += size if o.side == "buy" else -size
        return Fill(fill_id=f"f{next(self.fill_ids)}", symbol="ETHUSD", side=o.side, size=size, price=repr(at),
                    fee="0", contract_value="0.01", ts=ts, client_order_id=o.client_order_id or "",
                    order_id=str(o.order_id))


def new_bot(grid: GridConfig, risk: RiskConfig) -> TradingBot:
    return TradingBot(symbol="ETHUSD", product=ETH, grid=grid, risk=risk, bot_id=BOT)


def same_state(every: TradingBot, skipper: TradingBot, ts: float) -> None:
    assert skipper.desired == every.desired
    assert skipper.anchor == every.anchor
    assert skipper.generation == every.generation
    assert skipper.last_step == every.last_step
    assert skipper.stop_edge == every.stop_edge
    assert skipper.position == every.position
    assert skipper.holdings == every.holdings
    assert skipper.open_orders == every.open_orders
    assert skipper.awaiting_fills == every.awaiting_fills
    if every.bucket is not None:  # (the skipper's may be refilled later: it reads the same then)
        assert skipper.bucket is not None and refill(skipper.bucket, ts) == refill(every.bucket, ts)


GRIDS = {
    "fixed": GridConfig(levels=3, width=0.004, regrid_fraction=0.5, stop_cooldown_s=600.0),
    "atr": GridConfig(levels=4, spacing_mode="atr", atr_multiple=1.5, spacing_floor=0.001, spacing_cap=0.02),
    "neutral": GridConfig(levels=3, width=0.003, mode="neutral"),
    "trailing": GridConfig(levels=3, width=0.004, stop_kind="trailing", stop_cooldown_s=300.0),
    "no stops": GridConfig(levels=5, width=0.002, stops=False),
    "tight churn": GridConfig(levels=5, width=0.002, max_actions_per_minute=3, regrid_fraction=0.2),
}


@pytest.mark.parametrize("grid_name", list(GRIDS))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bot_that_skips_unchanged_plans_makes_the_same_plans(grid_name: str, seed: int) -> None:
    rng = random.Random(seed)
    grid = GRIDS[grid_name]
    risk = RiskConfig(risk_percentage=2.0, max_open_orders=12)
    every, skipper = new_bot(grid, risk), new_bot(grid, risk)
    for b in (every, skipper):
        b.reconcile_from([], [], [])
    ex = ToyExchange(rng)
    price, atr, balance = 2000.0, 3.0, 10_000.0
    direction, confidence, allow = "UP", 0.8, True
    skipped = planned = nonempty = 0
    for t in range(3000):
        ts = 1_800_000_000.0 + 15.0 * t
        # the market: small ticks mostly, sometimes a jump; ATR drifts in quarter steps
        price = round(max(100.0, price + rng.choice((-1, 1)) * (rng.random() * 2.0 if rng.random() < 0.95
                                                                  else rng.random() * 25.0)), 1)
        if rng.random() < 0.05:
            atr = max(0.5, round(atr + rng.choice((-0.25, 0.25)), 2))
        if rng.random() < 0.03:
            direction = rng.choice(("UP", "DOWN", "NONE"))
        if rng.random() < 0.1:
            confidence = round(rng.random(), 2)  # weak ones hold the grid, strong ones may re-anchor
        if rng.random() < 0.01:
            balance = round(balance * rng.uniform(0.9, 1.1), 2)
        if rng.random() < 0.005:
            allow = not allow  # a pause and its resume
        fills, events = ex.trade(price, ts)
        rng.shuffle(events)  # the orders channel may beat the fills read, or not
        first_fills = rng.random() < 0.5
        for b in (every, skipper):
            if first_fills:
                for f in fills:
                    b.on_fill(f)
            for o, state in events:
                b.on_order(o, state)
            if not first_fills:
                for f in fills:
                    b.on_fill(f)
        if t % 97 == 0:  # the periodic re-read of the book
            for b in (every, skipper):
                b.resync_orders(list(ex.orders.values()))
        args = dict(now=ts, price=price, atr=atr, direction=direction, confidence=confidence,
                    available_balance=balance, allow_new_entries=allow, market_ts=ts)
        plan = every.plan(**args)  # type: ignore[arg-type]
        if skipper.plan_unchanged(**args):  # type: ignore[arg-type]
            skipped += 1
            assert plan.empty, f"step {t}: skipped a plan that would act: {plan}"
        else:
            planned += 1
            mine = skipper.plan(**args)  # type: ignore[arg-type]
            assert (mine.to_place, mine.to_amend, mine.to_cancel) == (plan.to_place, plan.to_amend, plan.to_cancel)
        nonempty += not plan.empty
        same_state(every, skipper, ts)
        placed = ex.apply(plan)
        for b in (every, skipper):
            b.on_cancelled([c.order_id for c in plan.to_cancel])
            for o, state in placed:
                b.on_order(o, state)
    # Not vacuous: most signals are skipped, and the run traded (fills, re-grids, stops).
    assert skipped > planned / 4, (skipped, planned)
    assert nonempty > 30, nonempty
    assert ex.fill_ids.__next__() > 10


def test_nothing_is_skipped_before_a_plan_or_after_the_book_moves() -> None:
    b = new_bot(GRIDS["fixed"], RiskConfig(risk_percentage=2.0))
    args = dict(now=1.0, price=2000.0, atr=3.0, direction="UP", confidence=0.8, available_balance=10_000.0,
                allow_new_entries=True)
    assert not b.plan_unchanged(**args)  # type: ignore[arg-type]  # never planned
    b.reconcile_from([], [], [])
    plan = b.plan(**args)  # type: ignore[arg-type]
    assert plan.to_place and not b.plan_unchanged(**args)  # type: ignore[arg-type]  # it wanted orders
    for i, p in enumerate(plan.to_place):
        b.on_order(OpenOrder(order_id=i + 1, symbol="ETHUSD", side=p.order.side, price=p.order.price,
                             size=p.order.size, unfilled_size=p.order.size, client_order_id=p.client_order_id,
                             order_type=p.order.order_type, reduce_only=p.order.reduce_only), "open")
    assert b.plan(**args).empty  # type: ignore[arg-type]
    # The churn bucket spent 3 of 60 tokens 1 s ago: a plan still refills it, so it runs.
    assert not b.plan_unchanged(**{**args, "price": 2000.5, "now": 2.0})  # type: ignore[arg-type]
    args["now"] = 10.0
    assert b.plan(**args).empty  # type: ignore[arg-type]  # full again
    assert b.plan_unchanged(**{**args, "price": 2000.5, "now": 11.0})  # type: ignore[arg-type]
    assert not b.plan_unchanged(**{**args, "price": 2100.0})  # type: ignore[arg-type]  # past the band
    assert not b.plan_unchanged(**{**args, "direction": "DOWN"})  # type: ignore[arg-type]  # a flip
    assert b.plan_unchanged(**{**args, "direction": "DOWN", "confidence": 0.2})  # type: ignore[arg-type]  # weak
    assert not b.plan_unchanged(**{**args, "allow_new_entries": False})  # type: ignore[arg-type]  # paused
    assert not b.plan_unchanged(**{**args, "price": math.nan})  # type: ignore[arg-type]
    b.on_cancelled([1])  # our book moved
    assert not b.plan_unchanged(**args)  # type: ignore[arg-type]
