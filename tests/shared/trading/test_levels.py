from __future__ import annotations

import pytest

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.grid import GridConfig, desired_grid
from shared.trading.levels import (
    EntryAmended,
    EntryCancelled,
    EntryFilled,
    EntryPlaced,
    EntryRejected,
    InvalidTransition,
    Level,
    Reset,
    TakeProfitCancelled,
    TakeProfitFilled,
    TakeProfitPlaced,
    TakeProfitRejected,
    desired_book,
    new_level,
    rebuild_levels,
    take_profit_order,
    transition,
)
from shared.trading.orders import OpenOrder, Purpose, Side
from shared.trading.pnl import Fill

ETH = PAPER_PRODUCTS["ETHUSD"]


def run(level: Level, *events) -> Level:
    for e in events:
        level = transition(level, e)
    return level


def test_full_cycle_buy_level_books_take_profit_one_step_above() -> None:
    lv = new_level("ETHUSD", "buy", 2)
    lv = run(lv, EntryPlaced(ts=1, price=1_960.0, size=3, grid_step=20.01))
    assert lv.state == "open" and take_profit_order(lv, ETH) is None
    lv = run(lv, EntryFilled(ts=2, size=1, price=1_960.0))
    assert lv.state == "open" and lv.filled_size == 1
    lv = run(lv, EntryFilled(ts=3, size=2, price=1_960.0))
    assert lv.state == "filled" and lv.average_fill_price == 1_960.0
    tp = take_profit_order(lv, ETH)
    assert tp is not None
    assert (tp.side, tp.level, tp.purpose, tp.size, tp.reduce_only) == ("sell", 2, "take_profit", 3, False)
    assert tp.price == 1_980.05  # 1,980.01 rounded up to the tick
    lv = run(lv, TakeProfitPlaced(ts=4, price=tp.price), TakeProfitFilled(ts=5, size=2, price=tp.price))
    assert lv.state == "closing"
    rest = take_profit_order(lv, ETH)
    assert rest is not None
    assert rest.size == 1  # only what is still open
    lv = run(lv, TakeProfitFilled(ts=6, size=1, price=tp.price))
    assert lv.state == "complete" and lv.completed_cycles == 1
    lv = run(lv, Reset(ts=7))
    assert lv.state == "not_placed" and lv.completed_cycles == 1 and lv.filled_size == 0
    assert lv.updated_ts == 7


def test_sell_level_take_profit_is_below_rounded_down() -> None:
    lv = run(new_level("ETHUSD", "sell", 1), EntryPlaced(ts=1, price=2_020.0, size=1, grid_step=20.01),
             EntryFilled(ts=2, size=1, price=2_020.0))
    tp = take_profit_order(lv, ETH)
    assert tp is not None
    assert tp.side == "buy" and tp.price == 1_999.95


def test_cancel_and_reject_of_entry() -> None:
    lv = run(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=1, price=1.0, size=2, grid_step=1.0))
    assert transition(lv, EntryCancelled(ts=2)).state == "not_placed"
    rejected = transition(lv, EntryRejected(ts=2, reason="insufficient_margin"))
    assert rejected.state == "not_placed" and rejected.last_reason == "insufficient_margin"


def test_cancel_after_partial_fill_keeps_the_part_for_a_take_profit() -> None:
    lv = run(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=1, price=100.0, size=5, grid_step=1.0),
             EntryFilled(ts=2, size=2, price=100.0), EntryCancelled(ts=3))
    assert lv.state == "filled" and lv.size == 2
    tp = take_profit_order(lv, ETH)
    assert tp is not None
    assert tp.size == 2


def test_take_profit_cancel_or_reject_goes_back_to_filled() -> None:
    lv = run(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=1, price=100.0, size=1, grid_step=1.0),
             EntryFilled(ts=2, size=1, price=100.0), TakeProfitPlaced(ts=3, price=101.0))
    for event in (TakeProfitCancelled(ts=4), TakeProfitRejected(ts=4, reason="post_only")):
        back = transition(lv, event)
        assert back.state == "filled" and take_profit_order(back, ETH) is not None


@pytest.mark.parametrize("state_events,event", [
    ((), EntryFilled(ts=1, size=1, price=1.0)),
    ((), TakeProfitPlaced(ts=1, price=1.0)),
    ((), EntryCancelled(ts=1)),
    ((EntryPlaced(ts=0, price=1.0, size=1, grid_step=1.0),), EntryPlaced(ts=1, price=1.0, size=1, grid_step=1.0)),
    ((EntryPlaced(ts=0, price=1.0, size=1, grid_step=1.0),), TakeProfitFilled(ts=1, size=1, price=1.0)),
    ((EntryPlaced(ts=0, price=1.0, size=1, grid_step=1.0),), Reset(ts=1)),
    ((EntryPlaced(ts=0, price=1.0, size=1, grid_step=1.0),), EntryFilled(ts=1, size=2, price=1.0)),  # overfill
    ((EntryPlaced(ts=0, price=1.0, size=1, grid_step=1.0), EntryFilled(ts=0, size=1, price=1.0)), EntryCancelled(ts=1)),
])
def test_impossible_events_raise(state_events, event) -> None:
    lv = run(new_level("ETHUSD", "buy", 1), *state_events)
    with pytest.raises(InvalidTransition):
        transition(lv, event)


@pytest.mark.parametrize("size,step", [(0, 1.0), (1, 0.0), (1, float("nan"))])
def test_zero_size_or_step_placement_is_an_error(size: int, step: float) -> None:
    with pytest.raises(ValueError):
        transition(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=0, price=1.0, size=size, grid_step=step))


def test_amend_moves_the_entry_and_cannot_shrink_below_the_filled_part() -> None:
    lv = run(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=1, price=100.0, size=5, grid_step=1.0),
             EntryFilled(ts=2, size=2, price=100.0))
    moved = transition(lv, EntryAmended(ts=3, price=99.5, size=6))
    assert (moved.entry_price, moved.size, moved.state) == (99.5, 6, "open")
    with pytest.raises(InvalidTransition):
        transition(lv, EntryAmended(ts=3, price=99.5, size=2))


def test_desired_book_holds_entries_of_filled_levels_and_adds_their_take_profits() -> None:
    cfg = GridConfig(levels=3)
    entries = desired_grid("UP", 1.0, 2_000.0, 5.0, ETH, 2, cfg)
    filled = run(new_level("ETHUSD", "buy", 1), EntryPlaced(ts=1, price=1_980.0, size=2, grid_step=20.0),
                 EntryFilled(ts=2, size=2, price=1_980.0))
    closing = run(new_level("ETHUSD", "buy", 2), EntryPlaced(ts=1, price=1_960.0, size=2, grid_step=20.0),
                  EntryFilled(ts=2, size=2, price=1_960.0), TakeProfitPlaced(ts=3, price=1_980.0))
    done = run(closing, TakeProfitFilled(ts=4, size=2, price=1_980.0))
    book = desired_book(entries, {("buy", 1): filled, ("buy", 2): closing}, ETH)
    assert sorted((o.side, o.purpose, o.level, o.price) for o in book) == [
        ("buy", "entry", 3, 1_940.0),
        ("sell", "take_profit", 1, 2_000.0),
        ("sell", "take_profit", 2, 1_980.0),
    ]
    # a complete level may enter again; no take-profit is left for it
    book = desired_book(entries, {("buy", 2): done}, ETH)
    assert sorted((o.purpose, o.level) for o in book) == [("entry", 1), ("entry", 2), ("entry", 3)]


def _fill(n: int, side: Side, purpose: Purpose, level: int, size: int, price: str, bot: str = "a1",
          symbol: str = "ETHUSD") -> Fill:
    return Fill(fill_id=f"f{n}", symbol=symbol, side=side, size=size, price=price, fee="0",
                contract_value="0.01", ts=float(n),
                client_order_id=coid.encode(bot_id=bot, symbol=symbol, side=side, purpose=purpose,
                                            level=level, generation=n))


def _open(order_id: int, side: Side, purpose: Purpose, level: int, price: float, size: int,
          unfilled: int | None = None) -> OpenOrder:
    return OpenOrder(order_id=order_id, symbol="ETHUSD", side=side, price=price, size=size,
                     unfilled_size=size if unfilled is None else unfilled,
                     client_order_id=coid.encode(bot_id="a1", symbol="ETHUSD", side=side, purpose=purpose,
                                                 level=level, generation=1))


def test_rebuild_levels_after_a_restart() -> None:
    fills = [
        _fill(1, "buy", "entry", 1, 2, "1980"),  # level 1 filled, take-profit resting
        _fill(2, "buy", "entry", 2, 1, "1960"),  # level 2 filled, no take-profit yet
        _fill(3, "buy", "entry", 2, 1, "1961"),
        _fill(4, "buy", "entry", 3, 2, "1940"),  # level 3 went round trip
        _fill(5, "sell", "take_profit", 3, 2, "1960"),
        _fill(6, "buy", "entry", 4, 1, "1920"),  # level 4 partly filled, rest resting
        _fill(7, "buy", "entry", 5, 9, "1900", bot="b2"),  # another bot: ignored
        Fill(fill_id="manual", symbol="ETHUSD", side="buy", size=3, price="1", fee="0",
             contract_value="0.01", ts=8.0),  # a trader's manual fill: ignored
    ]
    open_orders = [_open(11, "sell", "take_profit", 1, 2_000.0, 2), _open(14, "buy", "entry", 4, 1_920.0, 3, 2)]
    levels = rebuild_levels(fills, open_orders, bot_id="a1", symbol="ETHUSD", grid_step=20.0, ts=99.0)
    assert set(levels) == {("buy", 1), ("buy", 2), ("buy", 4)}
    assert levels[("buy", 1)].state == "closing" and levels[("buy", 1)].take_profit_price == 2_000.0
    assert levels[("buy", 1)].grid_step == 20.0  # recovered from the resting take-profit
    l2 = levels[("buy", 2)]
    assert (l2.state, l2.filled_size, l2.entry_price) == ("filled", 2, 1_960.5)
    l4 = levels[("buy", 4)]
    assert (l4.state, l4.size, l4.filled_size) == ("open", 3, 1)
    # the rebuilt levels drive the same book a running bot would want
    tp = take_profit_order(l2, ETH)
    assert tp is not None
    assert tp.price == 1_980.5
    # the rebuilt states accept the next real events
    assert transition(l4, EntryFilled(ts=100, size=2, price=1_920.0)).state == "filled"
    assert transition(l2, TakeProfitPlaced(ts=100, price=1_980.5)).state == "closing"


def test_rebuild_partial_take_profit_and_stop_reset() -> None:
    fills = [_fill(1, "buy", "entry", 1, 4, "100"), _fill(2, "sell", "take_profit", 1, 1, "101")]
    levels = rebuild_levels(fills, [], bot_id="a1", symbol="ETHUSD", grid_step=1.0, ts=0.0)
    assert levels[("buy", 1)].filled_size == 3 and levels[("buy", 1)].entry_price == 100.0
    fills.append(_fill(3, "sell", "stop", 0, 3, "95"))
    assert rebuild_levels(fills, [], bot_id="a1", symbol="ETHUSD", grid_step=1.0, ts=0.0) == {}
