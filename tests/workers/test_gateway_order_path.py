"""The gateway's request lanes: how many workers' requests of each kind run at once. The venue
answers in arrival order, so an order intent must not find every bot's history and
reconciliation reads in flight ahead of it (the start-up minute of a fleet)."""

from __future__ import annotations

import asyncio
from typing import Any

from shared.messages import AccountRequest, AmendSpec, HistoryRequest, NewOrderSpec, OrderIntents
from workers.gateway_exchange import MAX_INFLIGHT_READS, MAX_INFLIGHT_REQUESTS, lane_of, request_lanes


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
