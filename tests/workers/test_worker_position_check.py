"""A worker shell against what the gateway says about the venue's position: a difference stops
its orders and re-reads fills; one that persists halts the symbol with its stop kept; agreement
lifts it. Real Worker, real shared-memory ring; the gateway's replies are built by hand."""

from __future__ import annotations

from collections.abc import Callable

from shared.messages import AccountSnapshot, SignalReply
from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.orders import OpenOrder, Purpose, Side
from shared.trading.pnl import Fill
from workers.runtime import ChildSpec
from workers.worker import Worker

ETH = PAPER_PRODUCTS["ETHUSD"]


def cid(side: Side, purpose: Purpose, level: int, generation: int = 1) -> str:
    return coid.encode(bot_id="g1", symbol="ETHUSD", side=side, purpose=purpose, level=level,
                       generation=generation)


ENTRY = OpenOrder(symbol="ETHUSD", order_id=11, side="buy", price=1990.0, size=2, unfilled_size=2,
                  client_order_id=cid("buy", "entry", 2))
STOP = OpenOrder(symbol="ETHUSD", order_id=12, side="sell", price=1900.0, size=2, unfilled_size=2, state="pending",
                 client_order_id=cid("sell", "stop", 0), order_type="stop_market_order", reduce_only=True)
OWN_FILL = Fill(fill_id="f1", symbol="ETHUSD", order_id="10", client_order_id=cid("buy", "entry", 1), side="buy",
                size=2, price="2000", fee="0.01", contract_value=repr(ETH.contract_value), role="maker",
                ts=1_800_000_000.0)


def snapshot(venue_position: int) -> AccountSnapshot:
    return AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=[ENTRY, STOP], fills=[OWN_FILL],
                           available_balance=10_000.0, equity=10_000.0, venue_position=venue_position)


REPLY = SignalReply(symbol="ETHUSD", seq=1, bar_count=500, bar_ts=1_800_000_000.0, direction="UP", confidence=0.9,
                    votes={}, close=2000.0, atr14=5.0, rsi14=50.0, valid=True, reason="", batch_size=1,
                    compute_ns=0, sent_ns=0)


def test_a_persistent_position_difference_halts_the_symbol_and_keeps_its_stop(
        worker_spec: Callable[..., ChildSpec]) -> None:
    w = Worker(worker_spec({"risk": {"flatten_on_halt": True}}))
    w.on_account(snapshot(2), full=True)  # the bot's +2 is the venue's: trade on
    assert w.state_of_trading() == "trading" and w.make_intents(REPLY) is not None
    w.intent_in_flight = None

    w.on_account(snapshot(5), full=True)  # the venue says +5
    assert w.needs_full_reconcile and not w.read_all_fills
    assert w.make_intents(REPLY) is None  # no order on a position the venue contradicts
    assert w.state_of_trading().startswith("re-reading fills")
    w.needs_full_reconcile = False
    w.on_account(snapshot(5), full=True)  # the re-read says the same: read every fill next
    assert w.needs_full_reconcile and w.read_all_fills
    w.reading_all_fills = True
    w.on_account(snapshot(5), full=True)
    assert w.state_of_trading() == "halted: position mismatch: bot +2 vs venue +5"
    halt = w.make_intents(REPLY)
    assert halt is not None and halt.cancel == [ENTRY.order_id]  # the stop stays
    assert halt.place == []  # flatten_on_halt is for the supervisor's halts, not this one
    w.intent_in_flight = None

    w.reading_all_fills = False
    w.resync_asked_at_seq = w.intent_seq  # a periodic resync asked after the last orders
    w.on_account(snapshot(2), full=False)  # the venue agrees again: trading resumes
    assert w.state_of_trading() == "trading" and not w.position_check.doubtful
