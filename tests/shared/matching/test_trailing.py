"""Trailing stops in the matching engine (Delta's `trail_amount`): each direction follows the
favourable move, never moves back, triggers at the trailed price; the sign convention is
enforced; edits; snapshot/restore keeps the extreme."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from shared.matching import MatchingEngine, OrderEvent, OrderRequest, VenueError
from shared.matching.engine import Side

from .support import Clock, make


def trailing(side: Side, size: int, amount: str, **kw: object) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size, order_type="market_order",
                        stop_order_type="stop_loss_order", trail_amount=D(amount), reduce_only=True,
                        **kw)  # type: ignore[arg-type]


def market(side: Side, size: int) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size, order_type="market_order")


def param(exc: VenueError) -> str:
    return exc.context["schema_errors"][0]["param"]


def stop_of(e: MatchingEngine, oid: int) -> tuple[str, D | None, D | None]:
    o = e.order(oid)
    assert o is not None
    return o.state, o.stop_price, o.trail_extreme


def test_a_long_positions_sell_stop_follows_the_rise_never_falls_back_and_fires_at_the_trailed_price() -> None:
    e = make(last=50_000.0)
    e.place_order(market("buy", 4))
    o = e.place_order(trailing("sell", 4, "-100"))
    assert (o.state, o.stop_price, o.trail_extreme, o.trail_amount) == ("pending", D("49900"), D("50000"), D("-100"))
    e.drain_events()
    # the rise: the extreme and the stop follow it, one stop_update a new high
    for px, stop, extreme in ((50_050.0, "49950", "50050"), (50_300.0, "50200", "50300"),
                              (50_250.0, "50200", "50300"), (50_300.0, "50200", "50300")):
        assert e.on_market_trade("BTCUSD", px, 10, 2) == []
        assert stop_of(e, o.id) == ("pending", D(stop), D(extreme))
    assert [(ev.action, ev.reason) for ev in e.drain_events() if isinstance(ev, OrderEvent)] == \
        [("update", "stop_update"), ("update", "stop_update")]
    # the fall back: the stop stays at 50200 (it never moves back) until a trade reaches it
    assert e.on_market_trade("BTCUSD", 50_200.5, 10, 3) == []
    assert stop_of(e, o.id) == ("pending", D("50200"), D("50300"))
    fills = e.on_market_trade("BTCUSD", 50_200.0, 10, 4)
    assert [(f.side, f.size, f.price, f.role) for f in fills] == [("sell", 4, D("50200"), "taker")]
    assert e.order(o.id).state == "closed"  # type: ignore[union-attr]  # placed above
    assert e.position(27).size == 0
    # bought at 50000.5, sold at 50200: the trailed stop kept part of the rise
    assert fills[0].realized_pnl > 0


def test_a_short_positions_buy_stop_follows_the_fall_never_rises_back_and_fires_at_the_trailed_price() -> None:
    e = make(last=50_000.0)
    e.place_order(market("sell", 3))  # short 3 at the bid, 50000
    o = e.place_order(trailing("buy", 3, "150"))
    assert (o.stop_price, o.trail_extreme) == (D("50150"), D("50000"))
    for px in (49_900.0, 49_600.0, 49_700.0, 49_740.0):
        assert e.on_market_trade("BTCUSD", px, 10, 2) == []
    assert stop_of(e, o.id) == ("pending", D("49750"), D("49600"))  # 49600 + 150: the bounce did not move it
    fills = e.on_market_trade("BTCUSD", 49_750.0, 10, 3)
    assert [(f.side, f.size, f.price) for f in fills] == [("buy", 3, D("49750.5"))]  # at the ask
    assert e.position(27).size == 0 and fills[0].realized_pnl > 0


def test_an_adverse_move_from_placement_fires_it_at_its_initial_distance() -> None:
    e = make(last=50_000.0)
    e.place_order(market("buy", 1))
    o = e.place_order(trailing("sell", 1, "-200"))
    assert e.on_market_trade("BTCUSD", 49_850.0, 10, 2) == []
    assert stop_of(e, o.id) == ("pending", D("49800"), D("50000"))
    assert [f.price for f in e.on_market_trade("BTCUSD", 49_790.0, 10, 3)] == [D("49790")]


@pytest.mark.parametrize("req, field", [
    (trailing("sell", 1, "100"), "trail_amount"),    # a sell stop trails below: negative
    (trailing("buy", 1, "-100"), "trail_amount"),    # a buy stop trails above: positive
    (trailing("sell", 1, "-100.3"), "trail_amount"),  # not a tick multiple (0.5)
    (trailing("sell", 1, "0"), "trail_amount"),
    (trailing("sell", 1, "-60000"), "trail_amount"),  # below zero from 50000
    (OrderRequest(product_id=27, side="sell", size=1, order_type="market_order", reduce_only=True,
                  stop_order_type="stop_loss_order", stop_price=D("49000"), trail_amount=D("-100")), "stop_price"),
    (OrderRequest(product_id=27, side="sell", size=1, order_type="market_order", reduce_only=True,
                  stop_order_type="take_profit_order", trail_amount=D("-100")), "stop_order_type"),
])
def test_bad_trailing_stops_are_refused_naming_the_field(req: OrderRequest, field: str) -> None:
    e = make()
    e.place_order(market("buy", 1))
    with pytest.raises(VenueError) as exc:
        e.place_order(req)
    assert exc.value.code == "bad_schema" and param(exc.value) == field, exc.value.context


def test_edit_changes_size_and_trail_from_the_kept_extreme_never_the_stop_price() -> None:
    e = make(last=50_000.0)
    e.place_order(market("buy", 5))
    o = e.place_order(trailing("sell", 2, "-100"))
    e.on_market_trade("BTCUSD", 50_400.0, 10, 2)
    edited = e.edit_order(o.id, size=5, trail_amount=D("-300"))
    assert (edited.size, edited.trail_amount, edited.trail_extreme, edited.stop_price) == \
        (5, D("-300"), D("50400"), D("50100"))
    with pytest.raises(VenueError) as exc:
        e.edit_order(o.id, stop_price=D("50000"))
    assert param(exc.value) == "stop_price"
    fixed = e.place_order(OrderRequest(product_id=27, side="sell", size=1, order_type="market_order",
                                       reduce_only=True, stop_order_type="stop_loss_order", stop_price=D("40000")))
    with pytest.raises(VenueError) as exc:
        e.edit_order(fixed.id, trail_amount=D("-100"))
    assert param(exc.value) == "trail_amount"


def test_snapshot_and_journal_keep_the_extreme() -> None:
    e = make(last=50_000.0)
    e.place_order(market("buy", 2))
    o = e.place_order(trailing("sell", 2, "-100"))
    snap = e.snapshot()
    e.drain_events()
    e.on_market_trade("BTCUSD", 50_500.0, 10, 2)  # moves the stop after the snapshot: journal only
    journal = e.drain_events()
    again = MatchingEngine.restore(snap, clock=Clock(), journal=journal)
    assert stop_of(again, o.id) == ("pending", D("50400"), D("50500"))
    assert [f.price for f in again.on_market_trade("BTCUSD", 50_400.0, 10, 3)] == [D("50400")]
