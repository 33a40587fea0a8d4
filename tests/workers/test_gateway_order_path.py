"""The gateway's request lanes: how many workers' requests of each kind run at once. The venue
answers in arrival order, so an order intent must not find every bot's history and
reconciliation reads in flight ahead of it (the start-up minute of a fleet)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec

from shared.matching import OrderRequest
from shared.messages import AccountRequest, AmendSpec, HistoryRequest, IntentResult, NewOrderSpec, OrderIntents
from tests.workers.gateway_support import gateway_on, running, started_venue
from workers.gateway_exchange import (
    MAX_INFLIGHT_READS,
    MAX_INFLIGHT_REQUESTS,
    joined,
    lane_of,
    protective_first,
    request_lanes,
    serve_in_lanes,
)


async def test_reads_run_a_few_at_a_time_and_an_order_intent_never_waits_behind_them() -> None:
    lanes = request_lanes()
    in_flight = {"market": 0, "account": 0}
    most = {"market": 0, "account": 0}
    release = asyncio.Event()

    async def serve(msg: Any) -> None:
        lane = lane_of(msg)
        async with lanes[lane]:
            in_flight[lane] += 1
            most[lane] = max(most[lane], in_flight[lane])
            await release.wait()  # a read the venue has not answered yet
            in_flight[lane] -= 1

    reads = [asyncio.create_task(serve(HistoryRequest(symbol=f"SYN_{i:04d}", bars=500, sent_ns=0)))
             for i in range(100)]
    reads += [asyncio.create_task(serve(AccountRequest(symbol=f"SYN_{i:04d}", include_fills=True, sent_ns=0)))
              for i in range(100)]
    await asyncio.sleep(0.01)
    assert in_flight == {"market": MAX_INFLIGHT_READS, "account": MAX_INFLIGHT_READS}

    intent = OrderIntents(symbol="SYN_0001", seq=1, product_id=1, cancel=[1], amend=[], sent_ns=0,
                          place=[NewOrderSpec(client_order_id="c1", side="buy", price=1.0, size=1)])
    assert lane_of(intent) == "orders"
    await asyncio.wait_for(lanes["orders"].acquire(), timeout=0.1)  # at once, with 200 reads waiting
    lanes["orders"].release()

    release.set()
    await asyncio.gather(*reads)
    assert most == {"market": MAX_INFLIGHT_READS, "account": MAX_INFLIGHT_READS}  # every read served, 4 at a time
    assert in_flight == {"market": 0, "account": 0}


async def test_a_stop_or_a_flatten_never_waits_for_a_slot_behind_grid_churn() -> None:
    """Intents that only cancel, move a stop or close reduce-only have a lane of their own: with
    every slot of the quotes' lane held (intents waiting for rate budget), a protective one starts."""
    def intent(**kw: Any) -> OrderIntents:
        return OrderIntents(symbol="SYN_0001", seq=1, product_id=1, **{"cancel": [], "amend": [], "place": [],
                                                                      "sent_ns": 0, **kw})
    stop = NewOrderSpec(client_order_id="s", side="sell", price=90.0, size=3, order_type="stop_market_order",
                        reduce_only=True)
    flatten = NewOrderSpec(client_order_id="f", side="sell", price=0.0, size=3, order_type="market_order",
                           reduce_only=True)
    quote = NewOrderSpec(client_order_id="q", side="buy", price=99.0, size=1)
    assert lane_of(intent(place=[stop])) == lane_of(intent(place=[flatten])) == "protect"
    assert lane_of(intent(cancel=[1, 2])) == "protect"
    move_stop = AmendSpec(order_id=1, price=91.0, size=3, order_type="stop_market_order")
    assert lane_of(intent(amend=[move_stop])) == "protect"
    assert lane_of(intent(place=[stop, quote])) == "orders"
    assert lane_of(intent(amend=[AmendSpec(order_id=1, price=98.0, size=1)])) == "orders"  # a take-profit's move
    lanes = request_lanes()
    for _ in range(MAX_INFLIGHT_REQUESTS):
        await lanes["orders"].acquire()
    assert lanes["orders"].locked()
    await asyncio.wait_for(lanes["protect"].acquire(), timeout=0.1)


async def test_a_stop_beside_quotes_goes_first_in_the_protect_lane_and_answers_as_one(tmp_path: Path) -> None:
    """A mixed intent (a re-grid's quote beside the position's new stop): with every slot of the
    quotes' lane held, its stop rests on the venue at once, and the quote after a slot frees; the
    bot gets one answer (its seq, both orders by their own ids). Whole in the quotes' lane, the
    stop waited for the slot (and then behind the intent's own quote amends)."""
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue, symbols=("BTCUSD",), paper=True)
    lanes = request_lanes()
    try:
        async with running(gw):
            price = (await gw.rest.get_ticker("BTCUSD")).close
            assert price is not None
            venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=3, order_type="market_order"))
            stop = NewOrderSpec(client_order_id="g1-stop", side="sell", price=round(price * 0.9 * 2) / 2, size=3,
                                order_type="stop_market_order", reduce_only=True)
            quote = NewOrderSpec(client_order_id="g1-quote", side="buy", price=round(price * 0.95 * 2) / 2, size=1)
            mixed = OrderIntents(symbol="BTCUSD", seq=7, product_id=27, cancel=[], amend=[], place=[quote, stop],
                                 sent_ns=time.perf_counter_ns())
            for _ in range(MAX_INFLIGHT_REQUESTS):  # grid churn holds every slot of the quotes' lane
                await lanes["orders"].acquire()
            served = asyncio.create_task(serve_in_lanes(gw, mixed, lanes))
            deadline = time.monotonic() + 3.0
            while venue.engine.order_by_client_id("g1-stop") is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            stop_rests = venue.engine.order_by_client_id("g1-stop") is not None
            quote_waits = venue.engine.order_by_client_id("g1-quote") is None
            lanes["orders"].release()
            answer = await asyncio.wait_for(served, timeout=5.0)
    finally:
        await venue.stop()
    assert stop_rests, "the protective stop waited for a slot of the quotes' lane"
    assert quote_waits  # the quote keeps its lane
    assert isinstance(answer, IntentResult) and answer.seq == 7 and answer.errors == []
    assert sorted(o.client_order_id or "" for o in answer.placed) == ["g1-quote", "g1-stop"]


def test_a_mixed_intent_splits_into_its_protective_orders_and_the_rest_in_execution_order() -> None:
    stop = NewOrderSpec(client_order_id="s", side="sell", price=90.0, size=3, order_type="stop_market_order",
                        reduce_only=True)
    quote = NewOrderSpec(client_order_id="q", side="buy", price=99.0, size=1)
    move_stop = AmendSpec(order_id=1, price=91.0, size=3, order_type="stop_market_order")
    move_tp = AmendSpec(order_id=2, price=98.0, size=1)
    req = OrderIntents(symbol="SYN_0001", seq=3, product_id=1, cancel=[5], amend=[move_tp, move_stop],
                       place=[quote, stop], sent_ns=0)
    parts = protective_first(req)
    assert parts is not None
    guard, rest = parts
    assert (guard.seq, guard.cancel, guard.amend, guard.place) == (3, [], [move_stop], [stop])
    assert (rest.seq, rest.cancel, rest.amend, rest.place) == (3, [5], [move_tp], [quote])
    assert lane_of(guard) == "protect" and lane_of(rest) == "orders"
    assert protective_first(msgspec.structs.replace(req, amend=[move_stop], place=[stop])) is None  # protect whole
    assert protective_first(msgspec.structs.replace(req, amend=[move_tp], place=[quote])) is None  # quotes whole
    # The answer: quotes refused unsent stay first among the errors; a failed part makes the bot read back.
    first = IntentResult(symbol="SYN_0001", seq=3, cancelled=[], amended=[], placed=[], sent_ns=1,
                         errors=["s: bad_stop: no"])
    second = IntentResult(symbol="SYN_0001", seq=3, cancelled=[5], amended=[], placed=[], sent_ns=2, unsent=1,
                          errors=["q: rate_budget_share: not sent"], retry_after_s=4.0)
    both = joined(req, first, second)
    assert both is not None and both.errors == ["q: rate_budget_share: not sent", "s: bad_stop: no"]
    assert (both.unsent, both.retry_after_s, both.cancelled, both.venue_state_uncertain) == (1, 4.0, [5], True)
    lost = joined(req, None, msgspec.structs.replace(second, unsent=0, errors=[]))
    assert lost is not None and lost.venue_state_uncertain and "gateway_error" in lost.errors[0]
