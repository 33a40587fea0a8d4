"""The real client against the project's paper venue over loopback: one order's life cycle.

The venue engineer's contract suite (tests/workers/test_venue_client.py) covers every endpoint;
this is the client-side smoke test that the two halves still speak the same protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.delta.errors import OrderNotFound
from shared.delta.rest import DeltaRestClient
from shared.delta.ws import AuthResult, DeltaWebSocket, OrderUpdate

venue_mod = pytest.importorskip("workers.venue")
SYMBOL = "SYN_0007"


@pytest.fixture
async def venue() -> AsyncIterator[Any]:
    v = venue_mod.PaperVenue(venue_mod.VenueSettings(bar_seconds=0.05, history_bars=50), [SYMBOL])
    await v.start()
    try:
        yield v
    finally:
        await v.stop()


async def test_place_read_back_and_cancel(venue: Any) -> None:
    v = venue
    ws = DeltaWebSocket(v.ws_url, v.api_key, v.api_secret)
    await ws.subscribe("orders", ["all"])
    async with DeltaRestClient(v.rest_url, v.api_key, v.api_secret) as rest, ws:
        auth = None
        while not isinstance(auth, AuthResult):
            auth = await asyncio.wait_for(ws.events.get(), timeout=5)
        assert auth.ok
        spec = (await rest.resolve_symbols([SYMBOL]))[SYMBOL]
        ticker = await rest.get_ticker(SYMBOL)
        assert ticker.quotes is not None and ticker.quotes.best_bid is not None
        price = spec.floor_price(ticker.quotes.best_bid * 0.9)  # far below: rests, never fills
        placed = await rest.place_order(product_id=spec.product_id, size=2, side="buy",
                                        limit_price=price, post_only=True,
                                        client_order_id="dg1-t1-SYN_0007-Be00-1")
        assert placed.state == "open" and placed.unfilled_size == 2
        by_id = await rest.get_order(placed.id)
        by_coid = await rest.get_order_by_client_id("dg1-t1-SYN_0007-Be00-1")
        open_ids = [o.id for o in await rest.get_open_orders([spec.product_id])]
        assert by_id.id == by_coid.id == placed.id and by_id.limit_price == price
        assert placed.id in open_ids
        cancelled = await rest.cancel_order(product_id=spec.product_id, order_id=placed.id)
        assert cancelled.state == "cancelled"
        assert placed.id not in [o.id for o in await rest.get_open_orders([spec.product_id])]
        with pytest.raises(OrderNotFound):
            await rest.cancel_order(product_id=spec.product_id, order_id=placed.id)
        states = []
        while "cancelled" not in states:
            event = await asyncio.wait_for(ws.events.get(), timeout=5)
            if isinstance(event, OrderUpdate) and event.order_id == placed.id:
                states.append(event.state)
        assert states[0] == "open"


async def test_an_orders_time_splits_into_budget_wait_http_and_the_venues_own(venue: Any) -> None:
    """The gateway's order-path breakdown: each route's wait for rate budget before the request,
    its HTTP round trip, and the venue's own handling inside it (the venue's Server-Timing)."""
    v = venue
    async with DeltaRestClient(v.rest_url, v.api_key, v.api_secret) as rest:
        spec = (await rest.resolve_symbols([SYMBOL]))[SYMBOL]
        ticker = await rest.get_ticker(SYMBOL)
        assert ticker.quotes is not None and ticker.quotes.best_bid is not None
        price = spec.floor_price(ticker.quotes.best_bid * 0.9)
        placed = await rest.place_order(product_id=spec.product_id, size=1, side="buy", limit_price=price,
                                        post_only=True, client_order_id="dg1-t1-SYN_0007-Be00-2")
        await rest.cancel_order(product_id=spec.product_id, order_id=placed.id)
    for route in ("POST /v2/orders", "DELETE /v2/orders"):
        http, wait, served = rest.latency[route], rest.budget_wait[route], rest.venue_time[route]
        assert http.total == wait.total == served.total == 1
        assert 0 < served.max_us <= http.max_us  # the venue's part of the round trip, inside it
        assert wait.max_us < 50_000  # a full budget: no wait to speak of
