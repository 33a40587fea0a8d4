"""TradingBot: the worker's pure decision core, driven like the worker drives it."""

from __future__ import annotations

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.bot import TradingBot
from shared.trading.grid import GridConfig
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from shared.trading.risk import RiskConfig

ETH = PAPER_PRODUCTS["ETHUSD"]


def bot() -> TradingBot:
    return TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(levels=3, width=0.002),
                      risk=RiskConfig(risk_percentage=2.0), bot_id="t1")


def place_all(b: TradingBot, plan, first_id: int = 1) -> list[OpenOrder]:
    placed = []
    for i, p in enumerate(plan.to_place):
        o = OpenOrder(order_id=first_id + i, symbol="ETHUSD", side=p.order.side, price=p.order.price,
                      size=p.order.size, unfilled_size=p.order.size, client_order_id=p.client_order_id)
        b.on_order(o, "open")
        placed.append(o)
    return placed


def test_no_orders_before_reconciliation() -> None:
    b = bot()
    plan = b.plan(now=1.0, price=2000.0, atr=2.0, direction="UP", confidence=0.75,
                  available_balance=10_000.0, allow_new_entries=True)
    assert plan.empty


def test_up_signal_places_a_buy_grid_below_price_and_holds_it() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = b.plan(now=1.0, price=2000.0, atr=2.0, direction="UP", confidence=0.75,
                  available_balance=10_000.0, allow_new_entries=True)
    assert len(plan.to_place) == 3
    assert all(p.order.side == "buy" and p.order.price < 2000.0 for p in plan.to_place)
    assert all(coid.decode(p.client_order_id, bot_id="t1", symbol="ETHUSD") for p in plan.to_place)
    place_all(b, plan)
    # a tiny move inside the hysteresis band changes nothing
    again = b.plan(now=2.0, price=2000.5, atr=2.0, direction="UP", confidence=0.75,
                   available_balance=10_000.0, allow_new_entries=True)
    assert again.empty


def test_fill_books_a_take_profit_and_pause_cancels_entries_only() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = b.plan(now=1.0, price=2000.0, atr=2.0, direction="UP", confidence=0.75,
                  available_balance=10_000.0, allow_new_entries=True)
    orders = place_all(b, plan)
    filled = orders[0]
    b.on_order(filled, "closed")
    assert b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=filled.size, price=repr(filled.price),
                          fee="0.01", contract_value="0.01", ts=2.0, client_order_id=filled.client_order_id or ""))
    assert not b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=filled.size, price=repr(filled.price),
                              fee="0.01", contract_value="0.01", ts=2.0,
                              client_order_id=filled.client_order_id or ""))  # a replay is ignored
    assert b.position is not None and b.position.contracts == filled.size
    paused = b.plan(now=3.0, price=1996.0, atr=2.0, direction="UP", confidence=0.75,
                    available_balance=10_000.0, allow_new_entries=False)
    tps = [p for p in paused.to_place if p.order.purpose == "take_profit"]
    assert len(tps) == 1 and tps[0].order.side == "sell" and tps[0].order.price > filled.price
    assert {c.order_id for c in paused.to_cancel} == {o.order_id for o in orders[1:]}


def test_foreign_orders_and_fills_are_never_touched() -> None:
    b = bot()
    manual = OpenOrder(order_id=99, symbol="ETHUSD", side="buy", price=1500.0, size=5, unfilled_size=5,
                       client_order_id="my-manual-order")
    b.reconcile_from([manual], [Fill(fill_id="m1", symbol="ETHUSD", side="buy", size=5, price="1500",
                                     fee="0", contract_value="0.01", ts=0.5, client_order_id="")], [])
    assert b.position is not None and b.position.contracts == 0
    plan = b.plan(now=1.0, price=2000.0, atr=2.0, direction="DOWN", confidence=1.0,
                  available_balance=10_000.0, allow_new_entries=True)
    assert all(c.order_id != 99 for c in plan.to_cancel)
    assert 99 not in b.cancel_all_plan()


def test_restart_continues_generation_past_ids_seen() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = b.plan(now=1.0, price=2000.0, atr=2.0, direction="UP", confidence=0.75,
                  available_balance=10_000.0, allow_new_entries=True)
    orders = place_all(b, plan)
    fresh = bot()
    fresh.reconcile_from(orders, [], [])
    replan = fresh.plan(now=5.0, price=2100.0, atr=2.0, direction="UP", confidence=0.75,
                        available_balance=10_000.0, allow_new_entries=True)
    used = {o.client_order_id for o in orders}
    assert replan.to_place or replan.to_amend
    assert not ({p.client_order_id for p in replan.to_place} & used)
