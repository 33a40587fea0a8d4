"""Stop orders in the matching engine: pending state, the four trigger directions, immediate
trigger, stop-market and stop-limit execution, reduce-only clipping and auto-cancel, margin at
trigger, edit, cancel, cancel_all kinds, liquidation, snapshot/restore, ledger identity."""

from __future__ import annotations

import random
from decimal import Decimal as D
from typing import Any

import msgspec
import pytest

from shared.matching import FillEvent, MatchingEngine, OrderEvent, OrderRequest, VenueError
from shared.matching.engine import Side, StopOrderType

from .support import Clock, make, two_product_account


def stop(side: Side, size: int, stop_price: str, kind: StopOrderType = "stop_loss_order", limit: str | None = None,
         **kw: Any) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size,
                        order_type="limit_order" if limit else "market_order",
                        limit_price=D(limit) if limit else None, stop_order_type=kind,
                        stop_price=D(stop_price), **kw)


def market(side: Side, size: int) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size, order_type="market_order")


def ledger_holds(e: MatchingEngine) -> None:
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total
    assert e.position(27).size == sum(f.size if f.side == "buy" else -f.size for f in e.fills)
    assert e.realized_pnl_total == sum((f.realized_pnl for f in e.fills), D(0))
    assert e.fees_total == sum((f.commission for f in e.fills), D(0))


def order_events(e: MatchingEngine) -> list[tuple[str, str | None, str]]:
    return [(ev.action, ev.reason, ev.order.state) for ev in e.drain_events() if isinstance(ev, OrderEvent)]


def test_a_stop_is_pending_out_of_the_book_and_holds_no_margin() -> None:
    e = make()
    e.place_order(market("buy", 10))
    before = e.wallet()
    protective = e.place_order(stop("sell", 10, "49000", reduce_only=True))
    entry = e.place_order(stop("buy", 5, "51000", limit="51010"))  # not reduce-only: still no margin
    assert (protective.state, entry.state) == ("pending", "pending")
    assert (protective.stop_order_type, protective.stop_price, protective.stop_trigger_method) == \
        ("stop_loss_order", D("49000"), "mark_price")
    assert e.wallet().order_margin == before.order_margin == 0
    assert e.wallet().available_balance == before.available_balance
    assert {o.id for o in e.open_orders()} == {protective.id, entry.id}
    # Not in the book: were the buy stop-limit resting at 51010, a trade strictly below it would
    # fill it as maker; 49500 is also above the sell stop, so neither triggers.
    assert e.on_market_trade("BTCUSD", 49_500.0, 100, 2) == []
    assert e.order(protective.id).state == e.order(entry.id).state == "pending"  # type: ignore[union-attr]  # placed above: the engine has it


@pytest.mark.parametrize("side, kind, stop_price, quiet, hit", [
    ("sell", "stop_loss_order", "49900", 49_950.0, 49_900.0),    # falls to the stop
    ("buy", "stop_loss_order", "50100", 50_050.0, 50_100.0),     # rises to the stop
    ("sell", "take_profit_order", "50100", 50_050.0, 50_100.0),  # rises to the target
    ("buy", "take_profit_order", "49900", 49_950.0, 49_900.0),   # falls to the target
])
def test_each_trigger_direction_fires_at_the_stop_price_as_a_taker(
        side: Side, kind: StopOrderType, stop_price: str, quiet: float, hit: float) -> None:
    e = make()
    o = e.place_order(stop(side, 2, stop_price, kind))
    assert o.state == "pending"
    assert e.on_market_trade("BTCUSD", quiet, 10, 2) == []
    assert e.order(o.id).state == "pending"  # type: ignore[union-attr]  # placed above: the engine has it
    e.drain_events()
    fills = e.on_market_trade("BTCUSD", hit, 10, 3)
    touch_price = D(str(hit)) + (D("0.5") if side == "buy" else 0)  # buy at the ask, sell at the bid
    assert [(f.order_id, f.size, f.price, f.role) for f in fills] == [(o.id, 2, touch_price, "taker")]
    assert fills[0].commission == (2 * D("0.001") * touch_price * D("0.0005")).quantize(D("1e-8"))
    assert order_events(e) == [("update", "stop_trigger", "open"), ("delete", "fill", "closed")]
    done = e.order(o.id)
    assert done is not None and done.state == "closed" and done.stop_order_type == kind
    assert e.position(27).size == (2 if side == "buy" else -2)
    ledger_holds(e)


def test_a_stop_whose_condition_already_holds_triggers_at_placement() -> None:
    e = make()  # last 50000: touch 50000 / 50000.5
    o = e.place_order(stop("sell", 1, "50100"))  # a sell stop-loss above the market: already through
    assert o.state == "closed" and o.average_fill_price == D("50000")
    events = e.drain_events()
    assert [(ev.action, ev.reason, ev.order.state) for ev in events if isinstance(ev, OrderEvent)] == \
        [("create", None, "pending"), ("update", "stop_trigger", "open"), ("delete", "fill", "closed")]
    assert [ev.fill.role for ev in events if isinstance(ev, FillEvent)] == ["taker"]
    tp = e.place_order(stop("buy", 1, "50000", "take_profit_order"))  # price 50000 <= 50000: at the stop
    assert tp.state == "closed" and e.position(27).size == 0
    ledger_holds(e)


def test_a_triggered_stop_limit_rests_as_maker_when_not_marketable() -> None:
    e = make()
    o = e.place_order(stop("buy", 3, "50100", limit="50050"))
    assert e.order_margin() == 0
    e.on_market_trade("BTCUSD", 50_080.0, 10, 2)
    earlier = e.place_order(OrderRequest(product_id=27, side="buy", size=1, limit_price=D("50050")))
    e.drain_events()
    assert e.on_market_trade("BTCUSD", 50_100.0, 10, 2) == []  # triggered; 50050 is below the bid
    live = e.order(o.id)
    assert live is not None and (live.state, live.unfilled_size) == ("open", 3)
    assert order_events(e) == [("update", "stop_trigger", "open")]
    assert e.order_margin() == (4 * D("0.001") * D("50050") / 10).quantize(D("1e-8"))  # booked now
    # time priority starts at the trigger: the order resting since before it is filled first
    fills = e.on_market_trade("BTCUSD", 50_040.0, 10, 3)  # strictly below the limit
    assert [(f.order_id, f.size, f.price, f.role) for f in fills] == \
        [(earlier.id, 1, D("50050"), "maker"), (o.id, 3, D("50050"), "maker")]
    assert e.order(o.id).state == "closed" and e.order_margin() == 0  # type: ignore[union-attr]  # placed above: the engine has it
    ledger_holds(e)


def test_a_triggered_stop_limit_that_is_marketable_fills_as_taker_at_the_touch() -> None:
    e = make()
    o = e.place_order(stop("sell", 2, "49900", limit="49800"))
    fills = e.on_market_trade("BTCUSD", 49_900.0, 10, 2)  # bid 49900 is through the 49800 limit
    assert [(f.order_id, f.price, f.role) for f in fills] == [(o.id, D("49900"), "taker")]
    assert e.order(o.id).state == "closed"  # type: ignore[union-attr]  # placed above: the engine has it


def test_reduce_only_stop_is_clipped_to_the_position_and_the_rest_cancelled() -> None:
    e = make()
    e.place_order(market("buy", 3))
    o = e.place_order(stop("sell", 10, "49900", reduce_only=True))
    fills = e.on_market_trade("BTCUSD", 49_850.0, 100, 2)
    assert [(f.size, f.role) for f in fills] == [(3, "taker")]
    assert e.position(27).size == 0
    done = e.order(o.id)
    assert done is not None and (done.state, done.cancellation_reason, done.unfilled_size) == \
        ("cancelled", "reduce_only", 7)
    ledger_holds(e)


def test_reduce_only_stop_with_nothing_to_reduce_is_rejected() -> None:
    e = make()
    with pytest.raises(VenueError) as err:
        e.place_order(stop("sell", 1, "49000", reduce_only=True))
    assert err.value.code == "bad_schema"
    assert err.value.context["schema_errors"][0]["param"] == "reduce_only"
    assert e.open_orders() == []


def test_pending_reduce_only_stops_are_cancelled_when_the_position_goes_flat() -> None:
    e = make()
    e.place_order(market("buy", 2))
    sl = e.place_order(stop("sell", 2, "49000", reduce_only=True))
    tp = e.place_order(stop("sell", 2, "51000", "take_profit_order", reduce_only=True))
    plain = e.place_order(stop("buy", 1, "52000"))  # not reduce-only: survives
    e.place_order(market("sell", 2))
    for o in (sl, tp):
        assert (e.order(o.id).state, e.order(o.id).cancellation_reason) == ("cancelled", "reduce_only")  # type: ignore[union-attr]  # placed above: the engine has it
    assert [o.id for o in e.open_orders()] == [plain.id]
    assert e.on_market_trade("BTCUSD", 48_000.0, 100, 2) == []  # nothing left to trigger


def test_one_stop_flattening_the_position_cancels_the_next_reduce_only_stop_in_the_same_trade() -> None:
    e = make()
    e.place_order(market("buy", 2))
    first = e.place_order(stop("sell", 2, "49900", reduce_only=True))
    second = e.place_order(stop("sell", 2, "49950", reduce_only=True))
    fills = e.on_market_trade("BTCUSD", 49_800.0, 100, 2)  # both reached; the older triggers first
    assert [(f.order_id, f.size) for f in fills] == [(first.id, 2)]
    assert e.order(second.id).cancellation_reason == "reduce_only"  # type: ignore[union-attr]  # placed above: the engine has it
    assert e.position(27).size == 0 and e.open_orders() == []
    ledger_holds(e)


def test_margin_is_checked_at_trigger_and_a_short_stop_is_cancelled() -> None:
    e = make(balance=100.0)  # 10x: 100 USD carries 20 contracts at 50000
    o = e.place_order(stop("buy", 100, "50100"))  # 500 USD of margin when it triggers
    assert o.state == "pending"
    assert e.on_market_trade("BTCUSD", 50_200.0, 10, 2) == []
    done = e.order(o.id)
    assert done is not None and (done.state, done.cancellation_reason) == ("cancelled", "insufficient_margin")
    assert e.position(27).size == 0 and e.balance == D(100)


def test_edit_stop_price_size_and_limit_of_a_pending_stop() -> None:
    e = make()
    e.place_order(market("buy", 5))
    o = e.place_order(stop("sell", 5, "49000", limit="48900", reduce_only=True))
    e.drain_events()
    edited = e.edit_order(o.id, stop_price=D("49500"), size=4, limit_price=D("49400"))
    assert (edited.state, edited.stop_price, edited.size, edited.unfilled_size, edited.limit_price) == \
        ("pending", D("49500"), 4, 4, D("49400"))
    assert order_events(e) == [("update", "stop_update", "pending")]
    assert e.on_market_trade("BTCUSD", 49_600.0, 10, 2) == []  # above the new stop
    fills = e.on_market_trade("BTCUSD", 49_500.0, 10, 3)
    assert [(f.size, f.price) for f in fills] == [(4, D("49500"))]  # bid 49500 is through 49400
    assert e.position(27).size == 1
    ledger_holds(e)


def test_edit_moving_the_stop_through_the_market_triggers_at_once() -> None:
    e = make()
    e.place_order(market("buy", 2))
    o = e.place_order(stop("sell", 2, "49000", reduce_only=True))
    done = e.edit_order(o.id, stop_price=D("50000"))  # last 50000 <= 50000: already reached
    assert done.state == "closed" and e.position(27).size == 0
    ledger_holds(e)


def test_bad_stop_edits_are_refused() -> None:
    e = make()
    o = e.place_order(stop("sell", 2, "49000"))
    for kw, param in (({"limit_price": D("48000")}, "limit_price"),  # a stop-market has no limit
                      ({"stop_price": D("49000.3")}, "stop_price"),   # off the tick
                      ({"size": 0}, "size"), ({"post_only": True}, "post_only")):
        with pytest.raises(VenueError) as err:
            e.edit_order(o.id, **kw)
        assert err.value.context["schema_errors"][0]["param"] == param
    resting = e.place_order(OrderRequest(product_id=27, side="buy", size=1, limit_price=D("49000")))
    with pytest.raises(VenueError) as err:
        e.edit_order(resting.id, stop_price=D("48000"))
    assert err.value.context["schema_errors"][0]["param"] == "stop_price"
    assert e.order(o.id).stop_price == D("49000")  # type: ignore[union-attr]  # placed above: the engine has it


def test_bad_stop_requests_name_the_field() -> None:
    e = make()
    cases = [
        (OrderRequest(product_id=27, side="sell", size=1, order_type="market_order", stop_price=D("49000")),
         "stop_order_type"),
        (OrderRequest(product_id=27, side="sell", size=1, order_type="market_order",
                      stop_order_type="stop_loss_order"), "stop_price"),
        (stop("sell", 1, "49000.2"), "stop_price"),
        (stop("sell", 1, "49000", limit="48900", post_only=True), "post_only"),
    ]
    for req, param in cases:
        with pytest.raises(VenueError) as err:
            e.place_order(req)
        assert (err.value.code, err.value.context["schema_errors"][0]["param"]) == ("bad_schema", param)
    assert e.open_orders() == []


def test_cancel_a_pending_stop() -> None:
    e = make()
    o = e.place_order(stop("sell", 1, "49900", client_order_id="sl-1"))
    gone = e.cancel_order(client_order_id="sl-1")
    assert (gone.id, gone.state, gone.cancellation_reason) == (o.id, "cancelled", "cancelled_by_user")
    assert e.on_market_trade("BTCUSD", 49_000.0, 100, 2) == []
    assert not e._p(27).stops  # nothing left behind: quiet symbols skip the scan on that
    with pytest.raises(VenueError) as err:
        e.cancel_order(order_id=o.id)
    assert err.value.code == "open_order_not_found"


def test_cancel_all_cancels_only_the_kinds_asked_for() -> None:
    e = make()
    e.place_order(market("buy", 4))
    plain = e.place_order(OrderRequest(product_id=27, side="buy", size=1, limit_price=D("49000")))
    ro = e.place_order(OrderRequest(product_id=27, side="sell", size=1, limit_price=D("51000"), reduce_only=True))
    sl = e.place_order(stop("sell", 4, "48000", reduce_only=True))
    # a reduce-only stop is a stop order, not a reduce-only one: each flag takes exactly one kind
    assert [o.id for o in e.cancel_all(27, limit_orders=False, stop_orders=False, reduce_only_orders=True)] == [ro.id]
    assert [o.id for o in e.cancel_all(27, limit_orders=False, stop_orders=True, reduce_only_orders=False)] == [sl.id]
    again = e.place_order(stop("sell", 4, "48000", reduce_only=True))
    cancelled = e.cancel_all(27, limit_orders=True, stop_orders=False, reduce_only_orders=False)
    assert [o.id for o in cancelled] == [plain.id]
    assert [o.id for o in e.open_orders()] == [again.id]
    assert e.cancel_all(None, limit_orders=False, stop_orders=False, reduce_only_orders=False) == []
    assert [o.id for o in e.cancel_all(27)] == [again.id]  # default: every kind
    assert e.open_orders() == [] and e.order_margin() == 0


def test_liquidation_cancels_pending_stops_of_the_product() -> None:
    e = make()
    e.place_order(market("buy", 10))  # @50000.5, liquidates at about 47368.9
    far_sl = e.place_order(stop("sell", 10, "40000", reduce_only=True))
    tp = e.place_order(stop("sell", 10, "60000", "take_profit_order", reduce_only=True))
    fills = e.on_market_trade("BTCUSD", 47_368.5, 1, 2)
    assert [f.fill_type for f in fills] == ["liquidation"]
    for o in (far_sl, tp):
        assert e.order(o.id).cancellation_reason == "liquidation"  # type: ignore[union-attr]  # placed above: the engine has it
    assert e.open_orders() == []
    ledger_holds(e)


def test_a_stop_reached_by_the_same_trade_fires_before_the_liquidation_check() -> None:
    e = make()
    e.place_order(market("buy", 10))
    sl = e.place_order(stop("sell", 10, "48000", reduce_only=True))
    fills = e.on_market_trade("BTCUSD", 47_368.5, 1, 2)  # a gap through the stop and liquidation
    assert [(f.order_id, f.fill_type) for f in fills] == [(sl.id, "normal")]
    assert e.position(27).size == 0
    ledger_holds(e)


def test_snapshot_round_trip_keeps_pending_stops_live() -> None:
    e = make()
    e.place_order(market("buy", 3))
    sl = e.place_order(stop("sell", 3, "49500", reduce_only=True, client_order_id="sl",
                            stop_trigger_method="last_traded_price"))
    r = MatchingEngine.restore(e.snapshot(), clock=Clock())
    assert r.open_orders() == e.open_orders() and r.wallet() == e.wallet()
    assert r.order_by_client_id("sl").stop_trigger_method == "last_traded_price"  # type: ignore[union-attr]  # placed above: the engine has it
    fills = r.on_market_trade("BTCUSD", 49_500.0, 10, 2)  # the restored stop still triggers
    assert [(f.order_id, f.size) for f in fills] == [(sl.id, 3)]
    assert r.position(27).size == 0
    ledger_holds(r)


def test_a_snapshot_written_before_stop_orders_still_restores() -> None:
    e = make()
    e.place_order(market("buy", 2))
    resting = e.place_order(OrderRequest(product_id=27, side="sell", size=1, limit_price=D("50100")))
    state = msgspec.json.decode(e.snapshot())
    stop_keys = ("stop_order_type", "stop_price", "stop_trigger_method")
    for o in state["open_orders"] + state["closed_orders"]:
        assert all(k in o for k in stop_keys)
        for k in stop_keys:
            del o[k]
    r = MatchingEngine.restore(msgspec.json.encode(state), clock=Clock())
    assert r.open_orders() == e.open_orders()  # the defaults are what a plain order carries
    assert r.order(resting.id).stop_order_type is None  # type: ignore[union-attr]  # placed above: the engine has it
    assert [f.order_id for f in r.on_market_trade("BTCUSD", 50_200.0, 10, 2)] == [resting.id]


@pytest.mark.parametrize("seed", [5, 23])
def test_invariants_hold_through_a_random_session_with_stops(seed: int) -> None:
    rng = random.Random(seed)
    e, specs, px = two_product_account(20_000)
    triggered = 0
    for step in range(1500):
        s = rng.choice(specs)
        pid, tick = s.product_id, D(str(s.tick_size))
        px[s.symbol] *= 1 + rng.gauss(0, 0.003)
        e.on_market_trade(s.symbol, px[s.symbol], rng.randint(1, 30), step)
        triggered += sum(1 for ev in e.drain_events()
                         if isinstance(ev, OrderEvent) and ev.reason == "stop_trigger")
        bid, ask = e.touch(pid)
        r = rng.random()
        side = rng.choice(["buy", "sell"])
        try:
            if r < 0.3:
                price = bid - tick * rng.randint(-3, 20) if side == "buy" else ask + tick * rng.randint(-3, 20)
                e.place_order(OrderRequest(product_id=pid, side=side, size=rng.randint(1, 20),  # type: ignore[arg-type]  # placed above: the engine has it
                                           limit_price=price, reduce_only=rng.random() < 0.2))
            elif r < 0.55:
                kind = rng.choice(["stop_loss_order", "take_profit_order"])
                sp = bid + tick * rng.randint(-40, 40)
                limit = sp + tick * rng.randint(-10, 10) if rng.random() < 0.5 else None
                e.place_order(OrderRequest(product_id=pid, side=side, size=rng.randint(1, 20),  # type: ignore[arg-type]  # placed above: the engine has it
                                           order_type="limit_order" if limit else "market_order",
                                           limit_price=limit, stop_order_type=kind, stop_price=max(sp, tick),  # type: ignore[arg-type]  # side/kind: rng.choice of valid literals
                                           reduce_only=rng.random() < 0.5))
            elif r < 0.62:
                e.place_order(OrderRequest(product_id=pid, side=side, size=rng.randint(1, 20),  # type: ignore[arg-type]  # placed above: the engine has it
                                           order_type="market_order", reduce_only=rng.random() < 0.3))
            elif r < 0.7 and e.open_orders():
                o = rng.choice(e.open_orders())
                if o.state == "pending":
                    e.edit_order(o.id, stop_price=max(o.stop_price + tick * rng.randint(-10, 10), tick))  # type: ignore[operator]  # limit/stop/entry prices are set on these
                else:
                    e.edit_order(o.id, size=o.filled_size + rng.randint(1, 20))
            elif r < 0.75 and e.open_orders():
                e.cancel_order(order_id=rng.choice(e.open_orders()).id)
        except VenueError:
            pass
        triggered += sum(1 for ev in e.drain_events()
                         if isinstance(ev, OrderEvent) and ev.reason == "stop_trigger")
    assert triggered > 50
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total
    for s in specs:
        fills = [f for f in e.fills if f.product_id == s.product_id]
        assert e.position(s.product_id).size == sum(f.size if f.side == "buy" else -f.size for f in fills)
    live = e.open_orders()
    assert {o.state for o in live} <= {"open", "pending"}
    assert all(o.stop_order_type is not None and o.filled_size == 0 for o in live if o.state == "pending")
    # order margin is exactly the resting, non-reduce-only orders: pending stops hold none
    held = sum((o.unfilled_size * o.limit_price * D(repr(e.product(o.product_id).contract_value))  # type: ignore[operator]  # limit/stop/entry prices are set on these
                / e.leverage(o.product_id) for o in live if o.state == "open" and not o.reduce_only), D(0))
    assert abs(e.order_margin() - held) < D("0.0001")
    assert any(o.state == "pending" for o in live) or any(o.stop_order_type for o in e.order_history())
