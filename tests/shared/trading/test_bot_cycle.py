"""The pure pieces composed the way a bot worker uses them, against a toy in-memory book:
sizing -> grid (with hysteresis) -> levels -> symbol caps -> reconcile -> churn limit. The worker
is crashed repeatedly (its memory thrown away, levels rebuilt from fills and the book) and the
book duplicates orders (a retried placement landing twice). Checks the invariants the issue asks
for: no duplicate or orphaned order survives a cycle, foreign orders are never touched, the
position equals the fills and PnL equals an independent cash ledger."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal
from typing import Literal

import msgspec
import pytest

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.grid import GridAnchor, GridConfig, SignalDirection, desired_grid, grid_step, next_anchor
from shared.trading.levels import (
    LevelHoldings,
    desired_book,
    hold_fill,
    levels_from_book,
    rebuild_levels,
)
from shared.trading.orders import DesiredOrder, OpenOrder, Purpose, Side
from shared.trading.pnl import Fill, apply_fill, cents, flat_position, unrealised
from shared.trading.reconcile import ReconcilePlan, limit_plan, new_bucket, reconcile
from shared.trading.risk import RiskConfig, limit_desired
from shared.trading.sizing import contracts_per_level

ETH = PAPER_PRODUCTS["ETHUSD"]
BOT = "a1"


class ToyBook:
    """Just enough exchange: resting orders, whole fills at the limit price when crossed."""

    def __init__(self) -> None:
        self.orders: dict[int, OpenOrder] = {}
        self.fills: list[Fill] = []
        self.ids = itertools.count(1)
        self.actions = {"place": 0, "amend": 0, "cancel": 0}
        self.ids_used: set[str] = set()  # Delta may refuse a client order id it has seen
        self.ids_sent: list[str] = []  # in order, as the store's order events keep them
        self.cash = Decimal(0)  # independent ledger: what our trades paid and received
        self.position = 0

    def open_orders(self) -> list[OpenOrder]:
        return list(self.orders.values())

    def add(self, order: OpenOrder) -> None:
        self.orders[order.order_id] = order

    def match(self, price: float, ts: float) -> list[Fill]:
        new: list[Fill] = []
        for oid in sorted(self.orders):
            o = self.orders[oid]
            crossed = o.price >= price if o.side == "buy" else o.price <= price
            if not crossed or o.client_order_id in (None, "manual") or o.client_order_id.startswith("dg1-b2"):
                continue  # foreign orders are parked far away and never fill here
            del self.orders[oid]
            fill = Fill(fill_id=f"f{len(self.fills) + 1}", symbol="ETHUSD", side=o.side, size=o.unfilled_size,
                        price=repr(o.price), fee="0", contract_value="0.01", ts=ts,
                        client_order_id=o.client_order_id or "", order_id=str(oid))
            flow = Decimal(fill.price) * fill.size * Decimal("0.01")
            self.cash += flow if o.side == "sell" else -flow
            self.position += fill.size if o.side == "buy" else -fill.size
            self.fills.append(fill)
            new.append(fill)
        return new

    def apply(self, plan: ReconcilePlan) -> None:
        for c in plan.to_cancel:
            del self.orders[c.order_id]
            self.actions["cancel"] += 1
        for a in plan.to_amend:
            o = self.orders[a.order_id]
            self.orders[a.order_id] = msgspec.structs.replace(
                o, price=a.price, size=a.size, unfilled_size=a.size - o.filled_size)
            self.actions["amend"] += 1
        for p in plan.to_place:
            assert p.client_order_id not in self.ids_used, p.client_order_id
            self.ids_used.add(p.client_order_id)
            self.ids_sent.append(p.client_order_id)
            d = p.order
            self.add(OpenOrder(order_id=next(self.ids), symbol=d.symbol, side=d.side, price=d.price, size=d.size,
                               unfilled_size=d.size, client_order_id=p.client_order_id,
                               order_type=d.order_type, reduce_only=d.reduce_only))
            self.actions["place"] += 1


def _our_keys(orders: list[OpenOrder]) -> list[tuple[Side, Purpose, int]]:
    keys = []
    for o in orders:
        tag = coid.decode(o.client_order_id, bot_id=BOT, symbol="ETHUSD")
        if tag is not None:
            keys.append((tag.side, tag.purpose, tag.level))
    return keys


@pytest.mark.parametrize("mode", ["directional", "neutral"])
def test_bot_cycle_survives_crashes_and_duplicates(mode: Literal["directional", "neutral"]) -> None:
    rng = random.Random(5)
    cfg = GridConfig(levels=4, width=0.003, regrid_fraction=1.0, max_actions_per_minute=40, stops=False,
                     mode=mode)
    risk = RiskConfig(max_position_contracts=12, max_open_orders=10)
    book = ToyBook()
    foreign = [
        OpenOrder(order_id=900_001, symbol="ETHUSD", side="buy", price=100.0, size=7, unfilled_size=7,
                  client_order_id="manual"),
        OpenOrder(order_id=900_002, symbol="ETHUSD", side="sell", price=9_000.0, size=3, unfilled_size=3,
                  client_order_id=coid.encode(bot_id="b2", symbol="ETHUSD", side="sell", purpose="entry",
                                              level=1, generation=0)),
        OpenOrder(order_id=900_003, symbol="ETHUSD", side="buy", price=50.0, size=1, unfilled_size=1),
    ]
    for o in foreign:
        book.add(o)

    atr = 4.0
    holdings = LevelHoldings()
    position = flat_position("ETHUSD", "0.01")
    bucket = new_bucket(cfg.max_actions_per_minute, 0.0)
    anchor: GridAnchor | None = None
    generation = 0
    crashes = duplicates_injected = settled_cycles = largest_size = 0

    for t in range(1, 1501):
        now = t * 10.0
        # an oscillating market (grids earn on round trips) with noise and a slow drift
        price = ETH.round_price(2_000.0 * (1 + 0.008 * math.sin(t / 12) + 0.00002 * t) + rng.gauss(0.0, 1.0))
        step = grid_step(price, atr, cfg)
        for fill in book.match(price, now):
            holdings = hold_fill(holdings, fill, bot_id=BOT, symbol="ETHUSD", grid_step=step)
            position = apply_fill(position, fill)

        if t % 53 == 0:  # crash: memory gone, rebuild from the fills (the store) and the book
            crashes += 1
            running = levels_from_book(holdings, book.open_orders(), bot_id=BOT, symbol="ETHUSD",
                                       grid_step=step, ts=now)
            rebuilt = rebuild_levels(book.fills, book.open_orders(), bot_id=BOT, symbol="ETHUSD",
                                     grid_step=step, ts=now)
            assert rebuilt.keys() == running.keys()
            for key in rebuilt:
                a, b = rebuilt[key], running[key]
                assert (a.state, a.size, a.filled_size) == (b.state, b.size, b.filled_size), key
                assert a.entry_price == b.entry_price or abs(a.entry_price - b.entry_price) < 1e-9
            holdings = LevelHoldings()
            for fill in book.fills:
                holdings = hold_fill(holdings, fill, bot_id=BOT, symbol="ETHUSD", grid_step=step)
            anchor = None  # the grid anchor is memory too
            # and so is the generation: continue past every id we ever sent (the store's order
            # events; here the book's record of them), including orders cancelled since
            generation = coid.generation_after(reversed(book.ids_sent), bot_id=BOT, symbol="ETHUSD")
        if t % 31 == 0:  # a retried placement landed twice
            ours = [o for o in book.open_orders() if coid.decode(o.client_order_id, bot_id=BOT, symbol="ETHUSD")]
            if ours:
                twin = rng.choice(ours)
                book.add(msgspec.structs.replace(twin, order_id=next(book.ids)))
                duplicates_injected += 1

        direction: SignalDirection = "UP" if (t // 150) % 2 == 0 else "DOWN"
        confidence = 0.3 if t % 7 == 0 else 0.75  # now and then a weak signal: the grid holds
        anchor = next_anchor(anchor, direction, confidence, price, atr, cfg, now)
        generation = coid.next_generation(generation)  # every cycle: placements never reuse an id
        entries: tuple[DesiredOrder, ...] = ()
        if anchor is not None:  # none yet after a crash met a weak signal: take-profits only
            size = contracts_per_level(1_000.0, anchor.price, ETH, risk_percentage=4.0, min_balance=100.0)
            largest_size = max(largest_size, size)
            entries = desired_grid(anchor.direction, anchor.confidence, anchor.price, atr, ETH, size, cfg,
                                   step=anchor.step)
        levels = levels_from_book(holdings, book.open_orders(), bot_id=BOT, symbol="ETHUSD",
                                  grid_step=step, ts=now)
        long_held = sum(n for (side, _), n in holdings.held.items() if side == "buy")
        short_held = sum(n for (side, _), n in holdings.held.items() if side == "sell")
        desired = limit_desired(desired_book(entries, levels, ETH), position.contracts, risk,
                                long_held=long_held, short_held=short_held)
        plan = reconcile(desired, book.open_orders(), bot_id=BOT, symbol="ETHUSD", generation=generation,
                         price_tolerance=cfg.regrid_fraction * step)
        assert plan.foreign == len(foreign)
        plan, bucket = limit_plan(plan, bucket, now, reference_price=price)
        book.apply(plan)

        # invariants after every cycle
        for o in foreign:
            assert book.orders[o.order_id] == o
        if plan.deferred == 0:
            settled_cycles += 1
            keys = _our_keys(book.open_orders())
            assert len(keys) == len(set(keys)), f"duplicate survived at t={t}"
            wanted = {d.key for d in desired}
            assert set(keys) <= wanted, f"orphan survived at t={t}"
        assert position.contracts == book.position
        held = sum(n if side == "buy" else -n for (side, _), n in holdings.held.items())
        assert held == position.contracts
        assert abs(position.contracts) <= risk.max_position_contracts
        assert long_held <= risk.max_position_contracts and short_held <= risk.max_position_contracts
        # a level is entered once per round trip: it never holds more than one entry's size
        assert all(n <= largest_size for n in holdings.held.values()), holdings.held

    # the run exercised what it claims to test
    take_profit_fills = sum(1 for f in book.fills
                            if (tag := coid.parse(f.client_order_id)) is not None and tag.purpose == "take_profit")
    assert len(book.fills) > 30 and take_profit_fills > 10 and settled_cycles > 1_000
    assert book.actions["amend"] > 0 and book.actions["cancel"] >= duplicates_injected > 5 and crashes > 5
    # PnL equals the independent cash ledger to the cent
    ledger = book.cash + book.position * Decimal(repr(price)) * Decimal("0.01")
    assert cents(position.realised + unrealised(position, price)) == cents(ledger)
