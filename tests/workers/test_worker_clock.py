"""The worker decides on the market's clock (the time of the trade it reacts to), not the wall's:
the churn limiter refills and the grid anchor is stamped in market seconds, so a replay at any
speed (and the backtest, which has no wall clock) makes the same decisions from the same trades."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec
import pytest

# same directory: pytest puts it on sys.path; mypy knows it as tests.workers.test_worker_position_check
from test_worker_position_check import ETH, REPLY  # type: ignore[import-not-found]

from shared.messages import AccountSnapshot, FillEvent, IntentResult, NewOrderSpec, OrderEvent
from shared.trading import client_order_id as coid
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from workers.runtime import ChildSpec
from workers.worker import FILLS_AWAITED_MAX_S, Worker

MARKET_TS = 1_800_000_000.0  # a replayed market runs far from the wall clock


@pytest.fixture
def spec(worker_spec: Callable[..., ChildSpec]) -> ChildSpec:
    # 6 actions a minute: a 5-level grid plus its stop exhausts the bucket at once
    return worker_spec({"grid": {"max_actions_per_minute": 6, "width": 0.001}})


def placed_all(w: Worker, intents_place: list) -> None:
    assert w.intent_in_flight is not None
    views = [OpenOrder(symbol="ETHUSD", order_id=100 + i, side=p.side, price=p.price, size=p.size, unfilled_size=p.size,
                       client_order_id=p.client_order_id, order_type=p.order_type, reduce_only=p.reduce_only)
             for i, p in enumerate(intents_place)]
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=[], amended=[],
                                    placed=views, errors=[], sent_ns=0), recv_ns=w.intent_in_flight[1] + 1000)


def entry_closed_filled(spec: ChildSpec) -> tuple[Worker, NewOrderSpec]:
    """A reconciled worker whose grid is placed and whose first entry the socket says closed
    filled, its fill not read yet (the bot waits for it)."""
    w = Worker(spec)
    w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[],
                                 available_balance=10_000.0, equity=10_000.0, venue_position=0), full=True)
    w.market_ts = MARKET_TS
    first = w.make_intents(REPLY)
    assert first is not None
    placed_all(w, first.place)
    entry = first.place[0]
    w.on_order_event(OrderEvent(symbol="ETHUSD", sent_ns=0, order=OpenOrder(
        symbol="ETHUSD", order_id=100, side="buy" if entry.side == "buy" else "sell", price=entry.price,
        size=entry.size, unfilled_size=0, client_order_id=entry.client_order_id, state="closed")))
    assert w.bot is not None and w.bot.awaiting_fills
    return w, entry


def test_the_churn_limit_and_the_anchor_run_on_market_time(spec: ChildSpec) -> None:
    w = Worker(spec)
    w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[], available_balance=10_000.0,
                                 equity=10_000.0, venue_position=0), full=True)
    w.market_ts = MARKET_TS
    first = w.make_intents(REPLY)
    assert first is not None and len(first.place) == 5  # the grid's five entries (flat: no stop)
    assert w.bot is not None and w.bot.anchor is not None
    assert w.bot.anchor.built_ts == MARKET_TS  # the anchor is stamped with the trade's time, not now
    assert w.bot.bucket is not None and w.bot.bucket.updated_s == MARKET_TS
    placed_all(w, first.place)
    # The price ran far enough to re-anchor: five amends wanted, one token left. Wall time passing
    # refills nothing; only market time does.
    moved = msgspec.structs.replace(REPLY, close=2100.0)
    w.market_ts = MARKET_TS + 1.0
    second = w.make_intents(moved)
    assert second is not None and len(second.amend) + len(second.place) == 1
    placed_all(w, [])  # (the amend's answer does not matter here: the book is re-planned each time)
    w.market_ts = MARKET_TS + 2.0  # two market seconds refill 0.2 of a token: nothing goes out
    assert w.make_intents(moved) is None
    w.market_ts = MARKET_TS + 60.0  # a market minute later: the bucket is full again
    third = w.make_intents(moved)
    assert third is not None and len(third.amend) + len(third.place) == 5


def test_an_order_closed_before_its_fill_waits_for_the_fill_then_plans_again(spec: ChildSpec) -> None:
    """The orders channel says "closed" before the gateway's fill read lands: the worker plans
    nothing on that book (the level would look free and be bought twice), and once the fill is
    in it asks to plan again on the same trade, as the backtest plans after the trade's fills."""
    w, entry = entry_closed_filled(spec)
    w.market_ts = MARKET_TS + 60.0
    assert w.make_intents(REPLY) is None and w.plan_again  # held until the fill is read
    w.on_fill_event(FillEvent(symbol="ETHUSD", sent_ns=0, fill=Fill(
        fill_id="f1", symbol="ETHUSD", order_id="100", client_order_id=entry.client_order_id,
        side="buy" if entry.side == "buy" else "sell",
        size=entry.size, price=repr(entry.price), fee="0.01", contract_value=repr(ETH.contract_value), role="maker",
        ts=MARKET_TS + 60.0)))
    assert w.plan_again and w.bot is not None and not w.bot.awaiting_fills
    again = w.make_intents(REPLY)
    assert again is not None and not w.plan_again
    filled = coid.parse(entry.client_order_id)
    assert filled is not None
    tags = [coid.parse(p.client_order_id) for p in again.place]
    # the take-profit of the filled level, and no second entry at it
    assert any(t is not None and t.purpose == "take_profit" and t.level == filled.level for t in tags), tags
    assert not any(t is not None and t.purpose == "entry" and t.level == filled.level for t in tags), tags


@pytest.mark.parametrize("venue_says", ["cancelled", "open"])
def test_a_read_back_that_says_our_order_did_not_fill_ends_the_wait_for_its_fills(spec: ChildSpec,
                                                                                 venue_says: str) -> None:
    """The socket deleted our entry in an undocumented word: read as closed filled (the safe guess),
    the bot waits for fills before it plans. The gateway's read back says the venue cancelled it
    unfilled, or that it still rests: the wait ends and the bot plans at once, not at its next
    regular re-read (15 s; 900 s at 1,000 symbols)."""
    w = Worker(spec)
    w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[], available_balance=10_000.0,
                                 equity=10_000.0, venue_position=0), full=True)
    w.market_ts = MARKET_TS
    w.last_signal = REPLY
    first = w.make_intents(REPLY)
    assert first is not None
    placed_all(w, first.place)
    entry = first.place[0]

    def said(state: str, unfilled: int, read_back: bool = False) -> OrderEvent:
        return OrderEvent(symbol="ETHUSD", sent_ns=0, read_back=read_back, order=OpenOrder(
            symbol="ETHUSD", order_id=100, side="buy" if entry.side == "buy" else "sell", price=entry.price,
            size=entry.size, unfilled_size=unfilled, client_order_id=entry.client_order_id, state=state))  # type: ignore[arg-type]
    w.on_order_event(said("closed", 0))  # the tolerant reading of the socket's odd word
    w.market_ts = MARKET_TS + 60.0
    assert w.make_intents(REPLY) is None and w.plan_again  # waits for fills
    if venue_says == "open":  # the socket's or an amend's word is not a read back: it may be older
        w.on_order_event(said(venue_says, entry.size))
        assert w.bot is not None and w.bot.awaiting_fills
    w.on_order_event(said(venue_says, entry.size, read_back=True))  # the read back: nothing filled
    assert w.bot is not None and not w.bot.awaiting_fills
    if venue_says == "open":  # it rests again in the bot's book: its level is taken, not placed anew
        assert 100 in w.bot.open_orders
        return
    again = w.plan_again_now()
    assert again is not None and not w.plan_again
    filled = coid.parse(entry.client_order_id)
    assert filled is not None  # the level is free again: its entry is placed anew
    assert any((t := coid.parse(p.client_order_id)) is not None and (t.purpose, t.level) == ("entry", filled.level)
               for p in again.place), again.place


def test_a_regular_re_read_waits_for_fills_on_their_way(spec: ChildSpec) -> None:
    """Our order closed filled and its fill is not read yet: the venue's position holds it, the
    bot's not. A re-read then saw a difference, stopped the bot's orders and asked for a full
    reconciliation (19 units) for a fill already on its way, and the reconciliation moved the
    client order ids one generation on (the parity e2e's `...Be01-6` against `...Be01-5`). Now the
    regular re-read waits for the fill, and one that comes meanwhile does not judge the position
    and keeps the fill awaited (the level must not look free); both at most FILLS_AWAITED_MAX_S,
    after which a difference is doubted as before (a lost fill is still found)."""
    def reconciled() -> tuple[Worker, int]:
        w, entry = entry_closed_filled(spec)
        w.resync_asked_at_seq = w.intent_seq
        return w, entry.size if entry.side == "buy" else -entry.size

    def read_back(w: Worker, venue_position: int) -> None:
        w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[], equity=10_000.0,
                                     available_balance=10_000.0, venue_position=venue_position), full=False)

    w, filled = reconciled()
    read_back(w, filled)  # the venue's position holds the fill on its way
    assert not w.position_check.doubtful and not w.needs_full_reconcile
    assert w.bot is not None and w.bot.awaiting_fills and w.make_intents(REPLY) is None  # still waits for it
    # The fill never comes: after FILLS_AWAITED_MAX_S a re-read gives it up and doubts the difference.
    w, filled = reconciled()
    w.fills_awaited_since = 0.0  # (awaited since long ago)
    read_back(w, filled)
    assert w.position_check.doubtful and w.needs_full_reconcile
    assert w.bot is not None and not w.bot.awaiting_fills
    # The ask: the regular re-read waits while the fill is on its way, not longer than FILLS_AWAITED_MAX_S.
    w, _ = reconciled()
    assert w.fills_on_their_way(100.0) and w.fills_on_their_way(100.0 + FILLS_AWAITED_MAX_S - 0.1)
    assert not w.fills_on_their_way(100.0 + FILLS_AWAITED_MAX_S)
    assert w.bot is not None
    w.bot.awaiting_fills.clear()  # (the fill landed)
    assert not w.fills_on_their_way(200.0) and w.fills_awaited_since is None


def test_a_wait_for_fills_that_ended_does_not_age_the_next_one(spec: ChildSpec) -> None:
    """The fills a wait was for arrive: the wait's start is forgotten, so the next order closed
    filled is waited for FILLS_AWAITED_MAX_S from its own start (review of 93f7d8c/f4a9a47: the
    start was reset only by a re-read seeing nothing awaited, so a later wait inherited the old
    start and a re-read came at once, doubted the position and paid a full reconciliation)."""
    w, entry = entry_closed_filled(spec)
    side: Literal["buy", "sell"] = "buy" if entry.side == "buy" else "sell"
    assert w.fills_on_their_way(100.0) and w.fills_awaited_since == 100.0
    w.on_fill_event(FillEvent(symbol="ETHUSD", sent_ns=0, fill=Fill(
        fill_id="f1", symbol="ETHUSD", order_id="100", client_order_id=entry.client_order_id, side=side,
        size=entry.size, price=repr(entry.price), fee="0.01", contract_value=repr(ETH.contract_value), role="maker",
        ts=MARKET_TS + 60.0)))
    assert w.bot is not None and not w.bot.awaiting_fills
    assert w.fills_awaited_since is None  # the next wait starts its own clock
