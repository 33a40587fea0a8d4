"""The worker makes no trading plan for a signal that moved nothing the plan reacts to (the bot's
TradingBot.plan_unchanged; its exactness is tests/shared/trading/test_bot_skip.py), and plans
again as soon as something did: the price past the re-grid band, a fill, a pause."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

# same directory: pytest puts it on sys.path; mypy knows it as tests.workers.test_worker_position_check
from test_worker_position_check import ETH, REPLY  # type: ignore[import-not-found]

from shared.messages import AccountSnapshot, FillEvent, IntentResult
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from tests.workers.order_support import resting
from workers.runtime import ChildSpec
from workers.worker import Worker

MARKET_TS = 1_800_000_000.0


@pytest.fixture
def worker(worker_spec: Callable[..., ChildSpec]) -> Worker:
    return Worker(worker_spec({"grid": {"width": 0.002}}))


class PlanCounter:
    def __init__(self, w: Worker) -> None:
        assert w.bot is not None
        self.calls = 0
        real = w.bot.plan

        def counted(**kw: object) -> object:
            self.calls += 1
            return real(**kw)  # type: ignore[arg-type]
        w.bot.plan = counted  # type: ignore[method-assign,assignment]


def answer(w: Worker, views: list[OpenOrder]) -> None:
    assert w.intent_in_flight is not None
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=[], amended=[],
                                    placed=views, errors=[], sent_ns=0), recv_ns=w.intent_in_flight[1] + 1000)


def grid_resting(w: Worker) -> list[OpenOrder]:
    """A reconciled worker with an empty book places its 5-level grid, and the venue rests it all."""
    w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[], available_balance=10_000.0,
                                 equity=10_000.0, venue_position=0), full=True)
    w.market_ts = MARKET_TS
    grid = w.make_intents(REPLY)
    assert grid is not None and len(grid.place) == 5
    views = resting(grid.place, "ETHUSD")
    answer(w, views)
    return views


def test_a_signal_that_moves_nothing_makes_no_plan_and_one_that_does_plans(worker: Worker) -> None:
    w = worker
    views = grid_resting(w)
    counter = PlanCounter(w)
    w.market_ts = MARKET_TS + 120.0  # the churn bucket is full again
    assert w.make_intents(REPLY) is None and counter.calls == 1  # planned: the last plan wanted orders
    for k in range(1, 6):  # small moves inside the band, a weaker signal: nothing to do, no plan made
        w.market_ts += 15.0
        reply = msgspec.structs.replace(REPLY, close=2000.0 + k * 0.5, confidence=0.9 - k * 0.1)
        assert w.make_intents(reply) is None
    assert counter.calls == 1 and w.plans_skipped == 5
    assert w.figures(0.0).plans_skipped == 5
    # The price leaves the band: planned, and the grid follows it.
    w.market_ts += 15.0
    moved = w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))
    assert counter.calls == 2 and moved is not None and moved.amend
    answer(w, [])
    # A fill of ours is news: planned (its take-profit goes out).
    w.market_ts += 120.0
    w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))  # the book as the bot now sees it
    calls = counter.calls
    v = views[0]
    w.on_fill_event(FillEvent(symbol="ETHUSD", fill=Fill(
        fill_id="f1", symbol="ETHUSD", side="buy", size=v.size, price=repr(v.price), fee="0", ts=w.market_ts,
        contract_value=repr(ETH.contract_value), client_order_id=v.client_order_id or "", order_id="100"), sent_ns=0))
    w.intent_in_flight = None
    w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))
    assert counter.calls == calls + 1
    # A pause is news too.
    w.intent_in_flight = None
    w.paused = True
    w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))
    assert counter.calls == calls + 2


def test_quotes_refused_unsent_are_held_for_the_time_told_and_not_read_back(worker: Worker) -> None:
    """The gateway refused the grid unsent (the symbol's share of the rate budget is spent): the
    venue's state is known, so no re-read; the bot plans no quotes until the hold ends, then
    plans the same grid again. An error the venue gave is read back as before."""
    w = worker
    w.on_account(AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[], fills=[], available_balance=10_000.0,
                                 equity=10_000.0, venue_position=0), full=True)
    w.market_ts = MARKET_TS
    grid = w.make_intents(REPLY)
    assert grid is not None and len(grid.place) == 5 and w.intent_in_flight is not None
    refused = [f"{p.client_order_id}: rate_budget_share: not sent" for p in grid.place]
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=[], amended=[], placed=[],
                                    errors=refused, sent_ns=0, unsent=5, retry_after_s=30.0),
                       recv_ns=w.intent_in_flight[1] + 1000)
    assert not w.needs_resync and w.order_errors == 5
    w.market_ts += 120.0
    assert w.make_intents(REPLY) is None  # held
    w.quotes_held_until = 0.0  # the hold is over
    again = w.make_intents(REPLY)
    assert again is not None and [(p.side, p.price) for p in again.place] == [(p.side, p.price) for p in grid.place]
    assert w.intent_in_flight is not None
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=[], amended=[], placed=[],
                                    errors=["x: insufficient_margin: no"], sent_ns=0),
                       recv_ns=w.intent_in_flight[1] + 1000)
    assert w.needs_resync


def test_a_fill_during_a_quote_hold_lets_the_protective_stop_out_at_once(worker: Worker) -> None:
    """Quotes held for the rate budget must not hold the protection of a position: an entry that
    fills during the hold is planned at once, and the plan carries its stop (reduce-only; the
    gateway sends it outside the symbol's share and refuses the plan's quotes unsent)."""
    w = worker
    views = grid_resting(w)
    # The next re-grid is refused unsent: held for 60 s.
    w.market_ts += 120.0
    moved = w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))
    assert moved is not None and w.intent_in_flight is not None
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=[], amended=[], placed=[],
                                    errors=["x: rate_budget_share: not sent"], sent_ns=0, unsent=1,
                                    retry_after_s=60.0), recv_ns=w.intent_in_flight[1] + 1000)
    w.market_ts += 15.0
    assert w.make_intents(msgspec.structs.replace(REPLY, close=2100.0)) is None  # held: nothing moved
    # A resting entry fills during the hold.
    entry = next(v for v in views if v.side == "buy")
    w.on_fill_event(FillEvent(symbol="ETHUSD", fill=Fill(
        fill_id="f1", symbol="ETHUSD", side="buy", size=entry.size, price=repr(entry.price), fee="0", ts=w.market_ts,
        contract_value=repr(ETH.contract_value), client_order_id=entry.client_order_id or "", order_id="100"),
        sent_ns=0))
    w.market_ts += 1.0
    protect = w.make_intents(msgspec.structs.replace(REPLY, close=2100.0))
    assert protect is not None, "the hold kept a filled position without its stop"
    assert any(p.reduce_only for p in protect.place), protect.place
