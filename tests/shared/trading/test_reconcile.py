from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.grid import GridConfig, desired_grid
from shared.trading.orders import DesiredOrder, OpenOrder, Purpose, Side
from shared.trading.reconcile import (
    highest_generation,
    limit_plan,
    new_bucket,
    reconcile,
    refill,
)

BTC = PAPER_PRODUCTS["BTCUSD"]
BOT = "a1"
_ids = itertools.count(1000)


def want(level: int, price: float, size: int = 1, side: Side = "buy", purpose: Purpose = "entry",
         **kw) -> DesiredOrder:
    return DesiredOrder(symbol="BTCUSD", side=side, level=level, purpose=purpose, price=price, size=size, **kw)


def ours(level: int, price: float, size: int = 1, side: Side = "buy", purpose: Purpose = "entry",
         generation: int = 1, unfilled: int | None = None, bot: str = BOT, symbol: str = "BTCUSD",
         **kw) -> OpenOrder:
    return OpenOrder(
        order_id=next(_ids), symbol=symbol, side=side, price=price, size=size,
        unfilled_size=size if unfilled is None else unfilled,
        client_order_id=coid.encode(bot_id=bot, symbol=symbol, side=side, purpose=purpose,
                                    level=level, generation=generation), **kw)


def plan_for(desired, actual, generation: int = 2, tol: float = 0.0):
    return reconcile(desired, actual, bot_id=BOT, symbol="BTCUSD", generation=generation, price_tolerance=tol)


def test_empty_book_places_everything_with_our_ids() -> None:
    desired = desired_grid("UP", 1.0, 60_000, 40, BTC, 2, GridConfig())
    plan = plan_for(desired, [])
    assert [p.order for p in plan.to_place] == list(desired)
    for p in plan.to_place:
        tag = coid.decode(p.client_order_id, bot_id=BOT, symbol="BTCUSD")
        assert tag is not None and tag.generation == 2 and tag.level == p.order.level
    assert not plan.to_cancel and not plan.to_amend


def test_matching_book_is_left_alone() -> None:
    desired = [want(1, 59_400.0), want(2, 58_800.0)]
    plan = plan_for(desired, [ours(1, 59_400.0), ours(2, 58_800.0)])
    assert plan.empty and plan.kept == 2


def test_foreign_orders_are_never_touched() -> None:
    manual = OpenOrder(order_id=1, symbol="BTCUSD", side="buy", price=59_400.0, size=1, unfilled_size=1,
                       client_order_id=None)
    named = OpenOrder(order_id=2, symbol="BTCUSD", side="sell", price=70_000.0, size=5, unfilled_size=5,
                      client_order_id="my-hedge")
    other_bot = ours(1, 59_400.0, bot="b2")
    other_symbol = ours(1, 2_000.0, symbol="ETHUSD")
    # an id of ours whose side disagrees with the exchange's side is not trusted as ours either
    lying = OpenOrder(order_id=3, symbol="BTCUSD", side="sell", price=1.0, size=1, unfilled_size=1,
                      client_order_id=coid.encode(bot_id=BOT, symbol="BTCUSD", side="buy",
                                                  purpose="entry", level=9, generation=1))
    foreign = [manual, named, other_bot, other_symbol, lying]
    plan = plan_for([want(1, 59_400.0)], foreign)
    touched = {c.order_id for c in plan.to_cancel} | {a.order_id for a in plan.to_amend}
    assert touched.isdisjoint({o.order_id for o in foreign})
    assert plan.foreign == 5 and len(plan.to_place) == 1
    # nothing desired (e.g. halted) still leaves them alone
    assert plan_for([], foreign).empty


def test_duplicates_of_a_level_cancel_the_extras_and_keep_the_best() -> None:
    good = ours(1, 59_400.0, generation=2)
    dup_same_gen = ours(1, 59_400.0, generation=2)
    dup_old_gen = ours(1, 59_100.0, generation=1)
    plan = plan_for([want(1, 59_400.0)], [dup_old_gen, dup_same_gen, good])
    assert plan.kept == 1
    assert {c.order_id for c in plan.to_cancel} == {dup_same_gen.order_id, dup_old_gen.order_id}
    assert all(c.reason == "duplicate" for c in plan.to_cancel)
    assert not plan.to_place and not plan.to_amend


def test_orders_no_longer_wanted_are_cancelled() -> None:
    stale = ours(5, 57_000.0)
    plan = plan_for([want(1, 59_400.0)], [ours(1, 59_400.0), stale])
    assert [(c.order_id, c.reason) for c in plan.to_cancel] == [(stale.order_id, "not_desired")]


def test_hysteresis_keeps_orders_within_tolerance_and_amends_beyond() -> None:
    actual = [ours(1, 59_400.0)]
    assert plan_for([want(1, 59_410.0)], actual, tol=10.0).empty
    plan = plan_for([want(1, 59_410.5)], actual, tol=10.0)
    assert len(plan.to_amend) == 1 and not plan.to_cancel and not plan.to_place
    amend = plan.to_amend[0]
    assert (amend.order_id, amend.price, amend.size) == (actual[0].order_id, 59_410.5, 1)


def test_amend_size_is_total_after_edit_for_partly_filled_orders() -> None:
    partly = ours(1, 59_400.0, size=5, unfilled=3)
    plan = plan_for([want(1, 59_400.0, size=4)], [partly])
    assert plan.to_amend[0].size == 2 + 4  # filled 2 + desired resting 4


def test_type_change_is_cancel_and_replace() -> None:
    old = ours(0, 56_000.0, side="sell", purpose="stop", reduce_only=False)
    new = want(0, 56_500.0, side="sell", purpose="stop", order_type="stop_market_order", reduce_only=True)
    plan = plan_for([new], [old])
    assert [c.reason for c in plan.to_cancel] == ["replace"]
    assert [p.order for p in plan.to_place] == [new]


def test_bad_desired_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="two desired"):
        plan_for([want(1, 1.0), want(1, 2.0)], [])
    with pytest.raises(ValueError, match="size"):
        plan_for([want(1, 1.0, size=0)], [])
    with pytest.raises(ValueError, match="ETHUSD"):
        plan_for([DesiredOrder(symbol="ETHUSD", side="buy", level=1, purpose="entry", price=1.0, size=1)], [])


def test_highest_generation_ignores_foreign() -> None:
    actual = [ours(1, 1.0, generation=7), ours(2, 1.0, generation=3), ours(1, 1.0, generation=99, bot="zz")]
    assert highest_generation(actual, bot_id=BOT, symbol="BTCUSD") == 7
    assert highest_generation([], bot_id=BOT, symbol="BTCUSD") is None


def test_churn_limiter_defers_places_but_never_cancels() -> None:
    bucket = new_bucket(3, now_s=0.0)
    desired = [want(i, 60_000.0 - 100 * i) for i in range(1, 6)]
    stale = [ours(50 + i, 1.0) for i in range(2)]
    plan = plan_for(desired, stale)
    limited, bucket = limit_plan(plan, bucket, now_s=0.0, reference_price=60_000.0)
    assert len(limited.to_cancel) == 2  # cancels pass, and use 2 of the 3 tokens
    assert [p.order.level for p in limited.to_place] == [1]  # nearest the price first
    assert limited.deferred == 4
    # 20 s later: 3/min -> one more token
    again, bucket = limit_plan(plan_for(desired[1:], []), bucket, now_s=20.0, reference_price=60_000.0)
    assert [p.order.level for p in again.to_place] == [2] and again.deferred == 3


def test_bucket_refill_is_capped_and_ignores_clock_steps_back() -> None:
    b = new_bucket(60, now_s=100.0)
    assert refill(b, 10_000.0).tokens == 60
    drained, _ = limit_plan(plan_for([want(i, 1.0 * i) for i in range(1, 61)], []), b, now_s=100.0)
    assert len(drained.to_place) == 60
    _, empty = limit_plan(plan_for([want(i, 1.0 * i) for i in range(1, 61)], []), b, now_s=100.0)
    assert empty.tokens == 0
    assert refill(empty, 50.0).tokens == 0  # clock went back: nothing minted
    assert refill(empty, 101.0).tokens == pytest.approx(1.0)
    with pytest.raises(ValueError):
        new_bucket(0, 0.0)


def test_a_trailing_stop_is_matched_and_amended_on_its_size_never_its_price() -> None:
    """The venue moves a trailing stop's price; the bot's desired trigger (where a fixed one would
    be) must not drag it back."""
    stop: dict[str, Any] = dict(side="sell", purpose="stop", order_type="stop_market_order", reduce_only=True)
    resting = ours(0, 50_300.0, size=2, trailing=True, **stop)  # the venue trailed it up from 49,800
    p = plan_for([want(0, 49_800.0, size=2, trail=200.0, **stop)], [resting])
    assert p.empty and p.kept == 1
    p = plan_for([want(0, 49_800.0, size=3, trail=200.0, **stop)], [resting])
    assert [(a.order_id, a.size, a.price) for a in p.to_amend] == [(resting.order_id, 3, 50_300.0)]
    assert not p.to_place and not p.to_cancel
    # a fixed stop where a trailing one is wanted (or the reverse: stop_kind changed) is replaced
    fixed = ours(0, 49_800.0, size=2, **stop)
    p = plan_for([want(0, 49_800.0, size=2, trail=200.0, **stop)], [fixed])
    assert [c.order_id for c in p.to_cancel] == [fixed.order_id] and len(p.to_place) == 1
    assert p.to_place[0].order.trail == 200.0
    p = plan_for([want(0, 49_800.0, size=2, **stop)], [resting])
    assert [c.order_id for c in p.to_cancel] == [resting.order_id] and len(p.to_place) == 1
