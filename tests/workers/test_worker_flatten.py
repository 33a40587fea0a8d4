"""An operator's flatten in a real Worker shell (real shared-memory ring; the gateway's replies built
by hand): every order of ours goes, the protective stop too, the position is closed with a
reduce-only market order, and only a read of the venue showing it flat says "flat". A worker
started while the account is halted (or the symbol paused) trades nothing before it hears more;
a lifted halt lets it trade again."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

# same directory: pytest puts it on sys.path; mypy knows it as tests.workers.test_worker_position_check
from test_worker_position_check import ENTRY, ETH, OWN_FILL, REPLY, STOP  # type: ignore[import-not-found]

from shared.messages import AccountSnapshot, IntentResult
from shared.trading.orders import OpenOrder
from shared.trading.pnl import Fill
from workers.runtime import ChildSpec
from workers.worker import Worker


@pytest.fixture
def spec(worker_spec: Callable[..., ChildSpec]) -> ChildSpec:
    return worker_spec()


def venue(position: int, orders: list[OpenOrder], fills: list[Fill] | None = None) -> AccountSnapshot:
    return AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=orders,
                           fills=[OWN_FILL] if fills is None else fills, available_balance=10_000.0,
                           equity=10_000.0, venue_position=position)


def answer(w: Worker, *, cancelled: list[int], placed: list[OpenOrder]) -> None:
    assert w.intent_in_flight is not None
    w.on_intent_result(IntentResult(symbol="ETHUSD", seq=w.intent_in_flight[0], cancelled=cancelled, amended=[],
                                    placed=placed, errors=[], sent_ns=0), recv_ns=w.intent_in_flight[1] + 1000)


def test_flatten_cancels_the_stop_too_closes_reduce_only_and_waits_for_the_venue(spec: ChildSpec) -> None:
    w = Worker(spec)
    w.on_account(venue(2, [ENTRY, STOP]), full=True)  # +2 held, an entry and the stop resting
    assert w.start_flatten() and w.paused
    assert w.trading_figures()["flatten"] == "cancelling 2 order(s)"
    intents = w.make_intents(REPLY)
    assert intents is not None
    assert sorted(intents.cancel) == [ENTRY.order_id, STOP.order_id]  # the stop goes: the position is closing
    (close,) = intents.place
    assert (close.side, close.size, close.order_type, close.reduce_only) == ("sell", 2, "market_order", True)
    filled = msgspec.structs.replace(ENTRY, order_id=13, client_order_id=close.client_order_id, side="sell",
                                     size=2, unfilled_size=0, state="closed", order_type="market_order",
                                     reduce_only=True)
    answer(w, cancelled=[ENTRY.order_id, STOP.order_id], placed=[filled])
    assert not w.start_flatten()  # the supervisor asking again changes nothing
    assert w.make_intents(REPLY) is None  # sent once; nothing more until the venue says otherwise
    # The close's fill reaches the bot: it believes it is flat, but only the venue confirms.
    assert w.bot is not None
    w.bot.on_fill(Fill(fill_id="f2", symbol="ETHUSD", side="sell", size=2, price="1999", fee="0.02",
                       contract_value=repr(ETH.contract_value), ts=1_800_000_100.0,
                       client_order_id=close.client_order_id, order_id="13"))
    assert w.trading_figures()["flatten"] == "confirming on the venue" and w.flatten_needs_venue_read()
    w.resync_asked_at_seq = w.intent_seq
    w.on_account(venue(0, []), full=False)
    assert w.trading_figures()["flatten"].startswith("flat: confirmed on the venue at ")
    assert not w.flatten_needs_venue_read() and w.make_intents(REPLY) is None
    assert w.state_of_trading() == "paused"  # it stays paused until `resume`


def test_a_close_the_venue_clipped_is_sent_again(spec: ChildSpec) -> None:
    w = Worker(spec)
    w.on_account(venue(2, [STOP]), full=True)
    w.start_flatten()
    intents = w.make_intents(REPLY)
    assert intents is not None and intents.place
    answer(w, cancelled=[STOP.order_id], placed=[])
    w.resync_asked_at_seq = w.intent_seq
    w.on_account(venue(2, []), full=False)  # the venue still holds our 2 and nothing rests: again
    assert w.trading_figures()["flatten"] == "closing 2 contract(s) with a reduce-only market order"
    again = w.make_intents(REPLY)
    assert again is not None and [p.size for p in again.place] == [2] and again.place[0].reduce_only


def test_a_worker_started_halted_or_paused_places_no_entry_and_a_lift_frees_it(spec: ChildSpec) -> None:
    halted = Worker(msgspec.structs.replace(spec, halted="operator: news"))
    halted.on_account(venue(0, [ENTRY], fills=[]), full=True)
    assert halted.state_of_trading() == "halted: operator: news"
    intents = halted.make_intents(REPLY)
    assert intents is not None and intents.cancel == [ENTRY.order_id] and intents.place == []

    paused = Worker(msgspec.structs.replace(spec, paused=True))
    paused.on_account(venue(0, [], fills=[]), full=True)
    assert paused.state_of_trading() == "paused"
    assert paused.make_intents(REPLY) is None  # flat, nothing resting, no entries while paused

    free = Worker(spec)  # the same start without the halt or the pause: it would open the grid
    free.on_account(venue(0, [], fills=[]), full=True)
    grid = free.make_intents(REPLY)
    assert grid is not None and grid.place

    halted.intent_in_flight = None
    halted.halted = ""  # what `clear_halt` from the supervisor does (control loop)
    lifted = halted.make_intents(REPLY)
    assert lifted is not None and lifted.place
