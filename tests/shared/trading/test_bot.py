"""TradingBot: the worker's pure decision core, driven like the worker drives it."""

from __future__ import annotations

import math

import msgspec

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.bot import TradingBot
from shared.trading.grid import GridConfig
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from shared.trading.reconcile import ReconcilePlan
from shared.trading.risk import RiskConfig

ETH = PAPER_PRODUCTS["ETHUSD"]


def bot() -> TradingBot:
    return TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(levels=3, width=0.002),
                      risk=RiskConfig(risk_percentage=2.0), bot_id="t1")


def decide(b: TradingBot, *, now: float, price: float, atr: float = 2.0, direction: str = "UP",
           confidence: float = 0.75, entries: bool = True) -> ReconcilePlan:
    """One decision cycle with a 10,000 USD balance, as the worker runs it on a signal."""
    return b.plan(now=now, price=price, atr=atr, direction=direction, confidence=confidence,
                  available_balance=10_000.0, allow_new_entries=entries)


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
    plan = decide(b, now=1.0, price=2000.0)
    assert plan.empty


def test_up_signal_places_a_buy_grid_below_price_and_holds_it() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = decide(b, now=1.0, price=2000.0)
    assert len(plan.to_place) == 3
    assert all(p.order.side == "buy" and p.order.price < 2000.0 for p in plan.to_place)
    assert all(coid.decode(p.client_order_id, bot_id="t1", symbol="ETHUSD") for p in plan.to_place)
    place_all(b, plan)
    # a tiny move inside the hysteresis band changes nothing
    again = decide(b, now=2.0, price=2000.5)
    assert again.empty


def test_fill_books_a_take_profit_and_pause_cancels_entries_only() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = decide(b, now=1.0, price=2000.0)
    orders = place_all(b, plan)
    filled = orders[0]
    b.on_order(filled, "closed")
    assert b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=filled.size, price=repr(filled.price),
                          fee="0.01", contract_value="0.01", ts=2.0, client_order_id=filled.client_order_id or ""))
    assert not b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=filled.size, price=repr(filled.price),
                              fee="0.01", contract_value="0.01", ts=2.0,
                              client_order_id=filled.client_order_id or ""))  # a replay is ignored
    assert b.position is not None and b.position.contracts == filled.size
    paused = decide(b, now=3.0, price=1996.0, entries=False)
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
    plan = decide(b, now=1.0, price=2000.0, direction="DOWN", confidence=1.0)
    assert all(c.order_id != 99 for c in plan.to_cancel)
    assert 99 not in b.cancel_all_plan()


def test_restart_continues_generation_past_ids_seen() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    plan = decide(b, now=1.0, price=2000.0)
    orders = place_all(b, plan)
    fresh = bot()
    fresh.reconcile_from(orders, [], [])
    replan = decide(fresh, now=5.0, price=2100.0)
    used = {o.client_order_id for o in orders}
    assert replan.to_place or replan.to_amend
    assert not ({p.client_order_id for p in replan.to_place} & used)


# --- protective stop ---------------------------------------------------------------------------


def fill_of(o: OpenOrder, fill_id: str, ts: float, size: int | None = None) -> Fill:
    return Fill(fill_id=fill_id, symbol="ETHUSD", side=o.side, size=o.size if size is None else size,
                price=repr(o.price), fee="0.01", contract_value="0.01", ts=ts, client_order_id=o.client_order_id or "")


def long_bot() -> tuple[TradingBot, list[OpenOrder]]:
    """A bot with a buy grid resting and its first level filled."""
    b = bot()
    b.reconcile_from([], [], [])
    orders = place_all(b, decide(b, now=1.0, price=2000.0))
    b.on_order(orders[0], "closed")
    assert b.on_fill(fill_of(orders[0], "f1", 2.0))
    return b, orders


def stops_in(plan) -> list:
    return [p for p in plan.to_place if p.order.purpose == "stop"]


def test_a_position_gets_one_reduce_only_stop_beyond_the_deepest_level() -> None:
    b, orders = long_bot()
    plan = decide(b, now=3.0, price=1999.0)
    [stop] = stops_in(plan)
    deepest = min(o.price for o in orders)
    assert stop.order.side == "sell" and stop.order.reduce_only and stop.order.order_type == "stop_market_order"
    assert b.position is not None
    assert stop.order.size == orders[0].size == b.position.contracts
    assert stop.order.price == ETH.floor_price(deepest - 1.5 * 2.0)
    tag = coid.decode(stop.client_order_id, bot_id="t1", symbol="ETHUSD")
    assert tag is not None and tag.purpose == "stop"


def test_flat_or_stops_off_means_no_stop() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    assert not stops_in(decide(b, now=1.0, price=2000.0))
    off = TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(levels=3, width=0.002, stops=False),
                     risk=RiskConfig(risk_percentage=2.0), bot_id="t1")
    off.reconcile_from([], [], [])
    orders = place_all(off, decide(off, now=1.0, price=2000.0))
    off.on_order(orders[0], "closed")
    off.on_fill(fill_of(orders[0], "f1", 2.0))
    assert not stops_in(decide(off, now=3.0, price=1999.0))


def rest_stop(b: TradingBot, plan, order_id: int = 500, reduce_only: bool = True) -> OpenOrder:
    [p] = stops_in(plan)
    o = OpenOrder(order_id=order_id, symbol="ETHUSD", side=p.order.side, price=p.order.price, size=p.order.size,
                  unfilled_size=p.order.size, client_order_id=p.client_order_id, order_type="stop_market_order",
                  reduce_only=reduce_only)
    b.on_order(o, "pending")
    for q in plan.to_place:
        if q.order.purpose != "stop":
            b.on_order(OpenOrder(order_id=order_id + 1 + q.order.level, symbol="ETHUSD", side=q.order.side,
                                 price=q.order.price, size=q.order.size, unfilled_size=q.order.size,
                                 client_order_id=q.client_order_id), "open")
    return o


def test_a_resting_stop_is_kept_and_an_update_without_its_flags_does_not_churn_it() -> None:
    b, _ = long_bot()
    stop = rest_stop(b, decide(b, now=3.0, price=1999.0))
    # the orders channel may not repeat order_type / reduce_only: the bot keeps what it knows
    b.on_order(OpenOrder(order_id=stop.order_id, symbol="ETHUSD", side="sell", price=stop.price, size=stop.size,
                         unfilled_size=stop.size, client_order_id=stop.client_order_id), "pending")
    assert b.open_orders[stop.order_id].reduce_only and b.open_orders[stop.order_id].order_type == "stop_market_order"
    assert b.resting_stop_price() == stop.price and math.isnan(bot().resting_stop_price())
    again = decide(b, now=4.0, price=1999.5, atr=2.1)
    assert again.empty, again
    # a second level fills: the stop grows to the position, amended in place
    second = next(o for o in b.open_orders.values() if o.client_order_id and "Be02" in o.client_order_id)
    b.on_order(second, "closed")
    b.on_fill(fill_of(second, "f2", 5.0))
    grown = decide(b, now=6.0, price=1995.0)
    [amend] = [a for a in grown.to_amend if a.order_id == stop.order_id]
    assert b.position is not None
    assert amend.size == b.position.contracts and amend.desired.order_type == "stop_market_order"


def test_a_stop_fill_closes_every_level_and_cools_down_new_entries() -> None:
    b, _ = long_bot()
    stop = rest_stop(b, decide(b, now=3.0, price=1999.0))
    b.on_order(stop, "closed")
    # the venue's clock (fill and trade times) runs 60x ours, as a paper replay does
    assert b.on_fill(Fill(fill_id="s1", symbol="ETHUSD", side="sell", size=stop.size, price="1990",
                          fee="0.05", contract_value="0.01", ts=6_000.0, client_order_id=stop.client_order_id or ""))
    assert b.position is not None
    assert b.position.contracts == 0 and not b.holdings.held
    assert b.cooldown_left(6_000.0) == 900.0 and b.cooldown_left(6_600.0) == 300.0
    during = b.plan(now=20.0, price=1990.0, atr=2.0, direction="UP", confidence=0.9, available_balance=10_000.0,
                    allow_new_entries=True, market_ts=6_600.0)
    assert not during.to_place and not during.to_amend  # the resting entries are cancelled, none placed
    assert all(c.reason == "not_desired" for c in during.to_cancel) and during.to_cancel
    for c in during.to_cancel:
        b.on_order(b.open_orders[c.order_id], "cancelled")
    # 15 market minutes later (15 wall seconds here) the bot trades again
    after = b.plan(now=35.0, price=1990.0, atr=2.0, direction="UP", confidence=0.9, available_balance=10_000.0,
                   allow_new_entries=True, market_ts=6_901.0)
    assert len(after.to_place) == 3 and all(p.order.purpose == "entry" for p in after.to_place)


def test_a_restart_after_a_stop_fill_keeps_the_cooldown() -> None:
    b, orders = long_bot()
    stop = rest_stop(b, decide(b, now=3.0, price=1999.0))
    fills = [fill_of(orders[0], "f1", 2.0),
             Fill(fill_id="s1", symbol="ETHUSD", side="sell", size=stop.size, price="1990", fee="0.05",
                  contract_value="0.01", ts=9.0, client_order_id=stop.client_order_id or "")]
    fresh = bot()
    fresh.reconcile_from([], fills, [])
    assert fresh.position is not None
    assert fresh.position.contracts == 0 and fresh.cooldown_left(50.0) == 859.0  # from the stop's own time
    plain = bot()
    plain.reconcile_from([], fills[:1], [])
    assert plain.cooldown_left(50.0) == 0.0


def test_a_halt_keeps_the_stop_but_an_operator_cancel_takes_it() -> None:
    b, _ = long_bot()
    stop = rest_stop(b, decide(b, now=3.0, price=1999.0))
    everything = b.cancel_all_plan()
    kept = b.cancel_all_plan(keep_stops=True)
    assert stop.order_id in everything and stop.order_id not in kept
    assert set(everything) - set(kept) == {stop.order_id}


def test_the_stop_stays_beyond_the_grid_after_a_flip_and_a_restart() -> None:
    b, orders = long_bot()
    first = decide(b, now=3.0, price=1999.0)
    [stop] = stops_in(first)
    deepest = min(o.price for o in orders)
    # The signal flips: the buy entries go, a sell grid comes; the long's stop does not move in
    # to hug the one filled level (that would make it a 1.5 ATR stop from the entry).
    rest_stop(b, first)
    tp = next(b.open_orders[k] for k in b.open_orders if "St01" in (b.open_orders[k].client_order_id or ""))
    flipped = decide(b, now=4.0, price=1999.0, direction="DOWN", confidence=0.9)
    assert not [a for a in flipped.to_amend if a.desired.purpose == "stop"]
    assert not stops_in(flipped)
    # A restart rebuilds the same stop from the fill and the resting take-profit.
    fresh = bot()
    fresh.reconcile_from([tp], [fill_of(orders[0], "f1", 2.0)], [])
    again = decide(fresh, now=6.0, price=1999.0, direction="DOWN", confidence=0.9)
    [restarted] = stops_in(again)
    assert abs(restarted.order.price - stop.order.price) <= 2 * ETH.tick_size
    assert restarted.order.price < deepest - 2.0  # beyond the grid, not next to the 1st level


def test_a_restart_continues_past_ids_the_store_saw_sent_even_if_the_venue_forgot_them() -> None:
    cancelled = coid.encode(bot_id="t1", symbol="ETHUSD", side="buy", purpose="entry", level=1, generation=500)
    b = bot()
    b.reconcile_from([], [], [cancelled])  # the venue shows nothing: the order was cancelled
    plan = decide(b, now=1.0, price=2000.0)
    tags = [coid.decode(p.client_order_id, bot_id="t1", symbol="ETHUSD") for p in plan.to_place]
    assert all(t is not None for t in tags)
    gens = {t.generation for t in tags if t is not None}
    assert gens == {502}  # past 500 (reconcile continues at 501, the plan takes the next)
    # a reconnect re-reads the venue, which knows even less: the generation never goes back
    b.reconcile_from([], [], [])
    again = decide(b, now=2.0, price=2100.0)
    again_tags = [coid.decode(p.client_order_id, bot_id="t1", symbol="ETHUSD") for p in again.to_place]
    assert all(t is not None and t.generation > 502 for t in again_tags)


def _long_with_stop(b: TradingBot) -> None:
    """A filled buy level with its take-profit and the protective stop resting."""
    b.reconcile_from([], [], [])
    plan = decide(b, now=1.0, price=2000.0)
    placed = place_all(b, plan)
    entry = placed[0]
    b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=entry.size, price=repr(entry.price), fee="0.01",
                   contract_value="0.01", ts=2.0, client_order_id=entry.client_order_id or ""))
    b.on_order(msgspec.structs.replace(entry, unfilled_size=0), "closed")
    after = decide(b, now=3.0, price=entry.price)
    for i, p in enumerate(after.to_place):
        b.on_order(OpenOrder(order_id=100 + i, symbol="ETHUSD", side=p.order.side, price=p.order.price,
                             size=p.order.size, unfilled_size=p.order.size, client_order_id=p.client_order_id,
                             order_type=p.order.order_type, reduce_only=p.order.reduce_only), "open")
    assert any(o.order_type == "stop_market_order" for o in b.open_orders.values())


def test_halt_plan_keeps_the_stop_unless_it_flattens_and_flattens_once() -> None:
    b = bot()
    _long_with_stop(b)
    stop_ids = {o.order_id for o in b.open_orders.values() if o.order_type == "stop_market_order"}
    keep = b.halt_plan(halted=True, flatten_on_halt=False, cancel_requested=False, flatten_sent=False, price=1990.0)
    assert keep.flatten is None and set(keep.cancel) == set(b.open_orders) - stop_ids
    gen = b.generation
    flat = b.halt_plan(halted=True, flatten_on_halt=True, cancel_requested=False, flatten_sent=False, price=1990.0)
    assert set(flat.cancel) == set(b.open_orders)  # the stop goes too: the flatten closes the position
    assert b.position is not None
    assert flat.flatten is not None and flat.flatten.side == "sell" and flat.flatten.size == b.position.contracts
    tag = coid.decode(flat.flatten.client_order_id, bot_id="t1", symbol="ETHUSD")
    assert tag is not None and tag.purpose == "stop" and tag.generation == coid.next_generation(gen)
    again = b.halt_plan(halted=True, flatten_on_halt=True, cancel_requested=False, flatten_sent=True, price=1990.0)
    assert again.flatten is None  # one flatten on its way is enough
    operator = b.halt_plan(halted=False, flatten_on_halt=False, cancel_requested=True, flatten_sent=False, price=1990.0)
    assert set(operator.cancel) == set(b.open_orders) and operator.flatten is None


def test_a_plan_that_places_nothing_keeps_the_generation() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    place_all(b, decide(b, now=1.0, price=2000.0))
    gen = b.generation
    for t in range(2, 20):
        assert decide(b, now=float(t), price=2000.5).empty
    assert b.generation == gen


def test_a_signal_without_direction_holds_the_grid_like_a_weak_one() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    place_all(b, decide(b, now=1.0, price=2000.0))
    assert decide(b, now=2.0, price=2000.5, direction="NONE", confidence=0.0).empty
    assert decide(b, now=3.0, price=2000.5, direction="DOWN", confidence=0.25).empty  # weak: hold too


def test_a_trailing_stop_is_placed_trailing_and_the_venues_moves_are_not_undone() -> None:
    """grid.stop_kind = "trailing": the stop starts where the fixed one would, trailing the price
    by the distance to it; the venue then moves it up (the orders channel's stop_update, which may
    not repeat the trailing fields) and the bot leaves it there, amending only its size."""
    b = TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(levels=3, width=0.002, stop_kind="trailing"),
                   risk=RiskConfig(risk_percentage=2.0), bot_id="t1")
    b.reconcile_from([], [], [])
    orders = place_all(b, decide(b, now=1.0, price=2000.0))
    b.on_order(orders[0], "closed")
    assert b.on_fill(fill_of(orders[0], "f1", 2.0))
    plan = decide(b, now=3.0, price=1999.0)
    [p] = stops_in(plan)
    fixed = ETH.floor_price(min(o.price for o in orders) - 1.5 * 2.0)
    assert (p.order.price, p.order.trail) == (fixed, ETH.ceil_price(1999.0 - fixed))
    stop = rest_stop(b, plan)
    b.on_order(msgspec.structs.replace(stop, trailing=True), "pending")  # as the venue answered it
    moved = msgspec.structs.replace(stop, price=fixed + 12.0)  # a stop_update without trailing fields
    b.on_order(moved, "pending")
    assert b.open_orders[stop.order_id].trailing and b.resting_stop_price() == fixed + 12.0
    # 12 beyond the wanted trigger: a fixed stop would be amended back down (tolerance: 2)
    assert decide(b, now=4.0, price=2000.5).empty
    second = next(o for o in b.open_orders.values() if o.client_order_id and "Be02" in o.client_order_id)
    b.on_order(second, "closed")
    b.on_fill(fill_of(second, "f2", 5.0))
    grown = decide(b, now=6.0, price=1995.0)
    [amend] = [a for a in grown.to_amend if a.order_id == stop.order_id]
    assert b.position is not None
    assert (amend.size, amend.price, amend.desired.trail > 0) == (b.position.contracts, fixed + 12.0, True)


def test_an_order_closed_before_its_fill_is_read_is_not_entered_again() -> None:
    """The orders channel can say "closed" before the fill is read (the gateway reads fills over
    REST): until the fill lands the bot plans nothing, so the level is not bought twice; once it
    lands the level is held and its take-profit is what the plan wants."""
    b = bot()
    b.reconcile_from([], [], [])
    entry = place_all(b, decide(b, now=1.0, price=2000.0))[0]
    assert entry.client_order_id is not None
    b.on_order(msgspec.structs.replace(entry, unfilled_size=0), "closed")
    assert b.awaiting_fills == {entry.client_order_id: entry.size}
    assert decide(b, now=2.0, price=entry.price).empty  # not a fresh entry at the level that just filled
    b.on_fill(Fill(fill_id="f1", symbol="ETHUSD", side="buy", size=entry.size, price=repr(entry.price), fee="0.01",
                   contract_value="0.01", ts=2.0, client_order_id=entry.client_order_id))
    assert not b.awaiting_fills
    after = decide(b, now=3.0, price=entry.price)
    purposes = {(p.order.side, coid.parse(p.client_order_id).purpose) for p in after.to_place}  # type: ignore[union-attr]
    assert ("sell", "take_profit") in purposes and ("buy", "entry") not in purposes
    # A fill that never comes does not stop the bot for good: the next re-read of the book plans again.
    b.on_order(msgspec.structs.replace(place_all(b, after, first_id=50)[0], unfilled_size=0), "closed")
    assert b.awaiting_fills
    b.resync_orders(list(b.open_orders.values()))
    assert not b.awaiting_fills


def test_a_cancelled_or_foreign_order_awaits_no_fill() -> None:
    b = bot()
    b.reconcile_from([], [], [])
    entry = place_all(b, decide(b, now=1.0, price=2000.0))[0]
    b.on_order(entry, "cancelled")
    manual = OpenOrder(order_id=99, symbol="ETHUSD", side="buy", price=1900.0, size=1, unfilled_size=1,
                       client_order_id="by-hand")
    b.on_order(manual, "open")
    b.on_order(msgspec.structs.replace(manual, unfilled_size=0), "closed")
    assert not b.awaiting_fills
