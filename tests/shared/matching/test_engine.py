"""Matching engine: fill rule, partial fills, taker at the touch, post-only, reduce-only, IOC,
client order ids, edit/cancel, margin, fees, positions and the exact ledger identity."""

from __future__ import annotations

import random
from decimal import Decimal as D
from typing import Any

import msgspec
import pytest

from shared.matching import FillEvent, MatchingEngine, OrderEvent, OrderRequest, VenueError
from shared.matching.engine import Side
from shared.products import synthetic_spec

from .support import BTC, Clock, make, two_product_account


def limit(side: Side, size: int, price: str, **kw: Any) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size, limit_price=D(price), **kw)


def ledger_holds(e: MatchingEngine) -> None:
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total
    assert e.position(27).size == sum(f.size if f.side == "buy" else -f.size for f in e.fills)
    assert e.realized_pnl_total == sum((f.realized_pnl for f in e.fills), D(0))
    assert e.fees_total == sum((f.commission for f in e.fills), D(0))


def test_touch_is_one_tick_around_last_trade() -> None:
    e = make(last=50_000.2)
    assert e.touch(27) == (D("50000.0"), D("50000.5"))


def test_resting_buy_needs_a_trade_strictly_below_its_limit() -> None:
    e = make()
    o = e.place_order(limit("buy", 5, "49990"))
    assert o.state == "open"
    assert e.on_market_trade("BTCUSD", 49_990.0, 100, 2) == []  # touch only: no fill
    fills = e.on_market_trade("BTCUSD", 49_989.5, 100, 3)
    assert [(f.size, f.price, f.role) for f in fills] == [(5, D("49990"), "maker")]
    assert e.order(o.id).state == "closed"  # type: ignore[union-attr]  # placed above: the engine has it
    ledger_holds(e)


def test_partial_fill_bounded_by_trade_size_and_price_time_priority() -> None:
    e = make()
    first = e.place_order(limit("buy", 4, "49990"))
    better = e.place_order(limit("buy", 3, "49995"))
    second = e.place_order(limit("buy", 4, "49990"))
    fills = e.on_market_trade("BTCUSD", 49_980.0, 5, 2)
    assert [(f.order_id, f.size) for f in fills] == [(better.id, 3), (first.id, 2)]
    assert e.order(first.id).unfilled_size == 2  # type: ignore[union-attr]  # placed above: the engine has it
    assert e.order(first.id).state == "open"  # type: ignore[union-attr]  # placed above: the engine has it
    fills = e.on_market_trade("BTCUSD", 49_980.0, 3, 3)
    assert [(f.order_id, f.size) for f in fills] == [(first.id, 2), (second.id, 1)]
    ledger_holds(e)


def test_resting_sell_fills_only_above_its_limit() -> None:
    e = make()
    o = e.place_order(limit("sell", 2, "50010"))
    assert e.on_market_trade("BTCUSD", 50_010.0, 10, 2) == []
    assert e.on_market_trade("BTCUSD", 50_009.5, 10, 3) == []
    assert [f.order_id for f in e.on_market_trade("BTCUSD", 50_010.5, 10, 4)] == [o.id]
    assert e.position(27).size == -2


def test_marketable_orders_fill_as_taker_at_the_touch() -> None:
    e = make()
    buy = e.place_order(OrderRequest(product_id=27, side="buy", size=2, order_type="market_order"))
    assert buy.state == "closed" and buy.average_fill_price == D("50000.5")
    sell = e.place_order(limit("sell", 2, "49000"))  # through the bid: price improves to the bid
    assert sell.state == "closed" and sell.average_fill_price == D("50000")
    assert [f.role for f in e.fills] == ["taker", "taker"]
    # taker fee 0.05% of 2 x 0.001 x 50000.5
    assert e.fills[0].commission == D("0.0500005")


def test_post_only_that_would_cross_is_rejected_and_changes_nothing() -> None:
    e = make()
    with pytest.raises(VenueError) as err:
        e.place_order(limit("buy", 1, "50000.5", post_only=True))
    assert err.value.code == "immediate_execution_post_only"
    assert e.open_orders() == [] and e.drain_events() == []
    assert e.place_order(limit("buy", 1, "50000", post_only=True)).state == "open"


def test_ioc_remainder_is_cancelled() -> None:
    e = make()
    o = e.place_order(limit("buy", 3, "49000", time_in_force="ioc"))
    assert o.state == "cancelled" and o.unfilled_size == 3
    o = e.place_order(limit("buy", 3, "50001", time_in_force="ioc"))
    assert o.state == "closed"


def test_reduce_only_rejects_increase_and_clips_to_position() -> None:
    e = make()
    with pytest.raises(VenueError) as err:
        e.place_order(limit("sell", 1, "50010", reduce_only=True))
    assert err.value.code == "bad_schema"
    e.place_order(OrderRequest(product_id=27, side="buy", size=2, order_type="market_order"))
    o = e.place_order(limit("sell", 5, "50010", reduce_only=True))
    fills = e.on_market_trade("BTCUSD", 50_020.0, 100, 2)
    assert [f.size for f in fills] == [2]
    assert e.position(27).size == 0
    assert e.order(o.id).state == "cancelled"  # type: ignore[union-attr]  # placed above: the engine has it
    assert e.order(o.id).cancellation_reason == "reduce_only"  # type: ignore[union-attr]  # placed above: the engine has it
    ledger_holds(e)


def test_client_order_id_length_and_uniqueness_among_open_orders() -> None:
    e = make()
    with pytest.raises(VenueError):
        e.place_order(limit("buy", 1, "49000", client_order_id="x" * 33))
    a = e.place_order(limit("buy", 1, "49000", client_order_id="x" * 32))
    with pytest.raises(VenueError) as err:
        e.place_order(limit("buy", 1, "48000", client_order_id="x" * 32))
    assert err.value.code == "bad_schema"
    e.cancel_order(client_order_id="x" * 32)
    b = e.place_order(limit("buy", 1, "48000", client_order_id="x" * 32))  # reusable once closed
    assert e.order_by_client_id("x" * 32) == b and a.id != b.id


def test_edit_size_is_total_and_price_change_loses_priority() -> None:
    e = make()
    a = e.place_order(limit("buy", 4, "49990"))
    b = e.place_order(limit("buy", 4, "49990"))
    e.on_market_trade("BTCUSD", 49_980.0, 1, 2)  # a: 1 filled, 3 left
    with pytest.raises(VenueError):
        e.edit_order(a.id, size=1)  # not more than already filled
    a2 = e.edit_order(a.id, size=2)  # total 2 => 1 left, keeps priority
    assert (a2.size, a2.unfilled_size, a2.state) == (2, 1, "open")
    e.on_market_trade("BTCUSD", 50_000.0, 1, 3)  # market back above: edits below stay passive
    e.edit_order(a.id, limit_price=D("49990.5"))
    e.edit_order(a.id, limit_price=D("49990"))  # back to the same price, now behind b
    fills = e.on_market_trade("BTCUSD", 49_980.0, 4, 3)
    assert [f.order_id for f in fills] == [b.id]
    with pytest.raises(VenueError) as err:
        e.edit_order(999, size=5)
    assert err.value.code == "open_order_not_found"


def test_cancel_and_cancel_all_and_not_found() -> None:
    e = make()
    o = e.place_order(limit("buy", 1, "49000"))
    e.place_order(limit("sell", 1, "51000"))
    assert e.cancel_order(order_id=o.id).cancellation_reason == "cancelled_by_user"
    with pytest.raises(VenueError) as err:
        e.cancel_order(order_id=o.id)
    assert err.value.code == "open_order_not_found"
    assert len(e.cancel_all(27)) == 1 and e.open_orders() == []
    assert e.wallet().order_margin == 0


def test_insufficient_margin_names_the_shortfall() -> None:
    e = make(balance=100.0, leverage=10.0)
    # 25 contracts x 0.001 x 40000 = 1000 notional, margin 100 at 10x: exactly affordable
    e.place_order(limit("buy", 25, "40000"))
    with pytest.raises(VenueError) as err:
        e.place_order(limit("buy", 1, "40000"))
    assert err.value.code == "insufficient_margin"
    assert D(err.value.context["required_additional_balance"]) == D("4")
    with pytest.raises(VenueError):
        e.set_leverage(27, 5)  # would need 200 of margin
    assert e.leverage(27) == 10
    e.set_leverage(27, 20)
    assert e.wallet().order_margin == D("50")


def test_realised_pnl_on_reduce_and_flip_and_unrealised_at_mark() -> None:
    e = make()
    e.place_order(OrderRequest(product_id=27, side="buy", size=10, order_type="market_order"))  # @50000.5
    e.on_market_trade("BTCUSD", 50_100.0, 1, 2)
    assert e.unrealized_pnl(27) == D("0.995")  # 10 x 0.001 x 99.5
    e.place_order(OrderRequest(product_id=27, side="sell", size=4, order_type="market_order"))  # @50100
    assert e.fills[-1].realized_pnl == D("0.398")
    e.place_order(OrderRequest(product_id=27, side="sell", size=10, order_type="market_order"))  # flip
    pos = e.position(27)
    assert pos.size == -4 and pos.entry_price == D("50100")
    assert e.fills[-1].realized_pnl == D("0.597")
    ledger_holds(e)


def test_ledger_identity_holds_exactly_over_a_random_session() -> None:
    rng = random.Random(7)
    e = MatchingEngine(initial_balance_usd=1_000_000, default_leverage=5, clock=Clock())
    syn = synthetic_spec("SYN_0001")
    e.add_product(BTC)
    e.add_product(syn)
    price = {"BTCUSD": 50_000.0, "SYN_0001": 123.45}
    for sym in price:
        e.on_market_trade(sym, price[sym], 1, 0)
    for step in range(1500):
        sym = rng.choice(list(price))
        spec = BTC if sym == "BTCUSD" else syn
        price[sym] *= 1 + rng.gauss(0, 0.002)
        e.on_market_trade(sym, price[sym], rng.randint(1, 20), step)
        if rng.random() < 0.3:
            bid, ask = e.touch(spec.product_id)
            side = rng.choice(["buy", "sell"])
            off = spec.tick_size * rng.randint(-3, 10)
            px = D(str(spec.round_price(float(bid if side == "buy" else ask) + (-off if side == "buy" else off))))
            try:
                e.place_order(OrderRequest(product_id=spec.product_id, side=side, size=rng.randint(1, 30),  # type: ignore[arg-type]  # placed above: the engine has it
                                           limit_price=px, reduce_only=rng.random() < 0.1))
            except VenueError:
                pass
        if rng.random() < 0.05 and e.open_orders():
            e.cancel_order(order_id=rng.choice(e.open_orders()).id)
    assert len(e.fills) > 100
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total
    for spec in (BTC, syn):
        fills = [f for f in e.fills if f.product_id == spec.product_id]
        assert e.position(spec.product_id).size == sum(f.size if f.side == "buy" else -f.size for f in fills)
    # money to the cent: every fee and pnl is a whole number of 1e-8 USD
    assert all(f.commission == f.commission.quantize(D("1e-8")) for f in e.fills)


def test_events_follow_the_order_state_machine() -> None:
    e = make()
    o = e.place_order(limit("buy", 2, "49990"))
    e.on_market_trade("BTCUSD", 49_980.0, 1, 2)
    e.on_market_trade("BTCUSD", 49_980.0, 1, 3)
    events = e.drain_events()
    actions = [(ev.action, ev.reason, ev.order.state) for ev in events if isinstance(ev, OrderEvent)]
    assert actions == [("create", None, "open"), ("update", "fill", "open"), ("delete", "fill", "closed")]
    assert [ev.fill.size for ev in events if isinstance(ev, FillEvent)] == [1, 1]
    assert e.drain_events() == []
    assert e.order(o.id).state == "closed"  # type: ignore[union-attr]  # placed above: the engine has it


def test_bad_input_is_refused_with_clear_codes() -> None:
    e = make()
    with pytest.raises(VenueError) as err:
        e.place_order(limit("buy", 1, "49990.3"))
    assert err.value.code == "bad_schema" and "tick_size" in str(err.value)
    with pytest.raises(VenueError):
        e.place_order(limit("buy", 0, "49990"))
    with pytest.raises(VenueError) as err:
        e.place_order(OrderRequest(product_id=99, side="buy", size=1, limit_price=D("1")))
    assert err.value.code == "invalid_contract"


def test_incremental_margins_match_a_full_recount() -> None:
    rng = random.Random(11)
    e = make(balance=1_000_000.0)
    for step in range(600):
        e.on_market_trade("BTCUSD", 50_000 + rng.randint(-40, 40) * 0.5, rng.randint(1, 8), step)
        bid, ask = e.touch(27)
        if rng.random() < 0.5:
            side = rng.choice(["buy", "sell"])
            px = (bid - rng.randint(0, 20) * D("0.5")) if side == "buy" else (ask + rng.randint(0, 20) * D("0.5"))
            e.place_order(OrderRequest(product_id=27, side=side, size=rng.randint(1, 9), limit_price=px))  # type: ignore[arg-type]  # placed above: the engine has it
        elif e.open_orders() and rng.random() < 0.5:
            o = rng.choice(e.open_orders())
            if rng.random() < 0.5:
                e.cancel_order(order_id=o.id)
            else:
                e.edit_order(o.id, size=o.filled_size + rng.randint(1, 9))
        if step % 97 == 0:
            e.set_leverage(27, rng.choice([5, 10, 20]))
    recount = sum((o.unfilled_size * o.limit_price for o in e.open_orders()), D(0))  # type: ignore[operator]  # limit/stop/entry prices are set on these
    lev = e.leverage(27)
    assert e.order_margin() == (recount * D("0.001") / lev).quantize(D("1e-8"))
    pos = e.position(27)
    expected_pm = D(0) if pos.size == 0 else (abs(pos.size) * D("0.001") * pos.entry_price / lev).quantize(D("1e-8"))  # type: ignore[operator]  # limit/stop/entry prices are set on these
    assert e.position_margin(27) == expected_pm
    assert e.wallet().available_balance == e.balance - e.order_margin() - e.position_margin(27)
    assert len(e.fills) > 50
    ledger_holds(e)


def test_history_is_bounded_but_totals_are_not() -> None:
    e = MatchingEngine(initial_balance_usd=100_000, default_leverage=10, clock=Clock(), history_limit=5)
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    for i in range(12):
        e.place_order(OrderRequest(product_id=27, side="buy" if i % 2 == 0 else "sell", size=1,
                                   order_type="market_order", client_order_id=f"m{i}"))
    assert len(e.order_history()) == 5 and len(e.fills) == 5
    assert e.order_by_client_id("m0") is None and e.order_by_client_id("m11") is not None
    assert e.fees_total > sum((f.commission for f in e.fills), D(0))  # totals cover trimmed fills
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total


def test_position_size_limit_is_enforced() -> None:
    small = msgspec.structs.replace(BTC, position_size_limit=10)
    e = MatchingEngine(initial_balance_usd=1_000_000, default_leverage=10, clock=Clock())
    e.add_product(small)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    e.place_order(OrderRequest(product_id=27, side="buy", size=8, order_type="market_order"))
    with pytest.raises(VenueError) as err:
        e.place_order(OrderRequest(product_id=27, side="buy", size=3, order_type="market_order"))
    assert err.value.code == "risk_limits_breached" and err.value.context["position_size_limit"] == 10
    assert e.place_order(OrderRequest(product_id=27, side="sell", size=18, order_type="market_order")).state == "closed"
    assert e.position(27).size == -10


def test_snapshot_restore_carries_the_account_exactly() -> None:
    e = make()
    e.place_order(OrderRequest(product_id=27, side="buy", size=5, order_type="market_order"))
    resting = e.place_order(limit("buy", 4, "49990", client_order_id="keep"))
    e.place_order(limit("sell", 2, "50100", reduce_only=True))
    e.cancel_order(order_id=e.place_order(limit("buy", 1, "40000", client_order_id="gone")).id)
    e.set_leverage(27, 20)
    r = MatchingEngine.restore(e.snapshot(), clock=Clock())
    assert (r.balance, r.realized_pnl_total, r.fees_total) == (e.balance, e.realized_pnl_total, e.fees_total)
    assert r.wallet() == e.wallet() and r.position(27) == e.position(27)
    assert r.open_orders() == e.open_orders() and list(r.fills) == list(e.fills)
    assert r.order_by_client_id("gone").state == "cancelled"  # type: ignore[union-attr]  # placed above: the engine has it
    assert r.touch(27) == e.touch(27) and r.leverage(27) == 20
    # and it keeps trading with the same book and fresh ids
    fills = r.on_market_trade("BTCUSD", 49_980.0, 10, 5)
    assert [f.order_id for f in fills] == [resting.id]
    assert r.place_order(limit("buy", 1, "40000")).id > max(o.id for o in e.order_history() + e.open_orders())
    ledger_holds(r)
    with pytest.raises(ValueError):
        MatchingEngine.restore(b'{"version": 99}', clock=Clock())


def test_liquidation_closes_the_position_at_maintenance_margin() -> None:
    e = make()  # 10x: initial margin 10%, maintenance 5%
    e.place_order(OrderRequest(product_id=27, side="buy", size=10, order_type="market_order"))  # @50000.5
    stop = e.place_order(limit("sell", 10, "52000"))
    # margin 50.0005 + 0.01 x (m - 50000.5) <= 0.0005 x m  <=>  m <= 47368.9...
    assert e.on_market_trade("BTCUSD", 47_400.0, 1, 2) == []
    fills = e.on_market_trade("BTCUSD", 47_368.5, 1, 3)
    assert [(f.fill_type, f.side, f.size, f.price, f.role) for f in fills] == \
        [("liquidation", "sell", 10, D("47368.5"), "taker")]
    assert fills[0].realized_pnl == D("-26.32")
    assert e.position(27).size == 0 and e.position_margin(27) == 0
    assert e.order(stop.id).cancellation_reason == "liquidation"  # type: ignore[union-attr]  # placed above: the engine has it
    ledger_holds(e)


@pytest.mark.parametrize("seed", [3, 18])
def test_invariants_hold_through_a_random_session_with_edits_liquidations_and_leverage(seed: int) -> None:
    rng = random.Random(seed)
    e, specs, px = two_product_account(5_000)
    for step in range(1500):
        s = rng.choice(specs)
        pid, tick = s.product_id, D(str(s.tick_size))
        px[s.symbol] *= 1 + rng.gauss(0, 0.004)
        e.on_market_trade(s.symbol, px[s.symbol], rng.randint(1, 30), step)
        bid, ask = e.touch(pid)
        r = rng.random()
        try:
            if r < 0.4:
                side = rng.choice(["buy", "sell"])
                price = bid - tick * rng.randint(-5, 30) if side == "buy" else ask + tick * rng.randint(-5, 30)
                e.place_order(OrderRequest(product_id=pid, side=side, size=rng.randint(1, 50), limit_price=price,  # type: ignore[arg-type]  # placed above: the engine has it
                                           reduce_only=rng.random() < 0.2, post_only=rng.random() < 0.3,
                                           time_in_force=rng.choice(["gtc", "ioc"]),
                                           client_order_id=rng.choice([None, f"c{rng.randint(0, 20)}"])))
            elif r < 0.5:
                e.place_order(OrderRequest(product_id=pid, side=rng.choice(["buy", "sell"]), size=rng.randint(1, 50),
                                           order_type="market_order", reduce_only=rng.random() < 0.3))
            elif r < 0.6 and e.open_orders():
                o = rng.choice(e.open_orders())
                e.edit_order(o.id, size=o.filled_size + rng.randint(1, 40),
                             limit_price=o.limit_price + tick * rng.randint(-5, 5))  # type: ignore[operator]  # limit/stop/entry prices are set on these
            elif r < 0.65 and e.open_orders():
                e.cancel_order(order_id=rng.choice(e.open_orders()).id)
            elif r < 0.67:
                e.set_leverage(pid, rng.choice([1, 2, 5, 10, 25, 100]))
        except VenueError:
            pass
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total
    for s in specs:
        fills = [f for f in e.fills if f.product_id == s.product_id]
        assert e.position(s.product_id).size == sum(f.size if f.side == "buy" else -f.size for f in fills)
    held = sum((o.unfilled_size * o.limit_price * dec_cv(e, o.product_id) / e.leverage(o.product_id)  # type: ignore[operator]  # limit/stop/entry prices are set on these
                for o in e.open_orders() if not o.reduce_only), D(0))
    assert abs(e.order_margin() - held) < D("0.0001")
    assert all(o.state == "open" and 0 < o.unfilled_size <= o.size for o in e.open_orders())
    assert any(f.fill_type == "liquidation" for f in e.fills)


def dec_cv(e: MatchingEngine, product_id: int) -> D:
    return D(repr(e.product(product_id).contract_value))
