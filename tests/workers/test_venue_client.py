"""Contract: the project's own DeltaRestClient against the paper venue over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.delta.errors import AuthError, InsufficientMargin, OrderNotFound, PostOnlyWouldCross
from shared.delta.models import Order
from shared.delta.rest import DeltaRestClient, NewOrder, OrderEdit
from shared.products import UnknownSymbolError
from workers.venue import PaperVenue, VenueSettings

SYN = "SYN_0002"


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), ["BTCUSD", "ETHUSD", SYN])
    await v.start()
    yield v
    await v.stop()


@pytest.fixture
async def client(venue: PaperVenue) -> AsyncIterator[DeltaRestClient]:
    async with DeltaRestClient(venue.rest_url, venue.api_key, venue.api_secret) as c:
        yield c


async def test_client_reads_products_market_data_and_account(venue: PaperVenue, client: DeltaRestClient) -> None:
    specs = await client.resolve_symbols(["BTCUSD", "ETHUSD", SYN])
    assert (specs["BTCUSD"].product_id, specs["BTCUSD"].contract_value, specs["BTCUSD"].tick_size) == (27, 0.001, 0.5)
    with pytest.raises(UnknownSymbolError, match="ETHUSD"):
        await client.resolve_symbols(["ETHUDS"])
    ticker = await client.get_ticker("ETHUSD")
    assert ticker.symbol == "ETHUSD"
    book = await client.get_l2_orderbook("ETHUSD")
    assert book.buy and book.sell
    now_s = venue.market_us // 1_000_000
    candles = await client.get_candles("ETHUSD", "1m", now_s - 60 * 150, now_s)
    assert len(candles) >= 150
    wallet = await client.get_wallet_balances()
    assert wallet[0].asset_symbol == "USD" and wallet[0].balance == 10_000.0
    lev = await client.set_leverage(27, 20)
    assert float(lev.leverage) == 20.0


async def test_client_order_life_cycle_and_errors(venue: PaperVenue, client: DeltaRestClient) -> None:
    pid = (await client.resolve_symbols([SYN]))[SYN].product_id
    ticker = await client.get_ticker(SYN)
    assert ticker.quotes is not None
    bid = float(ticker.quotes.best_bid)  # type: ignore[arg-type]  # the venue always quotes
    ask = float(ticker.quotes.best_ask)  # type: ignore[arg-type]  # the venue always quotes
    with pytest.raises(PostOnlyWouldCross):
        await client.place_order(product_id=pid, size=1, side="buy", limit_price=round(ask + 1, 2), post_only=True)
    await client.set_leverage(pid, 1)  # margin = notional, whatever the seeded price level
    needed_size = int(20_000 / (0.01 * bid)) + 1
    with pytest.raises(InsufficientMargin):
        await client.place_order(product_id=pid, size=needed_size, side="buy", limit_price=round(bid - 0.01, 2))
    await client.set_leverage(pid, 10)
    made = await client.place_orders(pid, [
        NewOrder(size=1, side="buy", limit_price=round(bid - 5 - i, 2), client_order_id=f"cc{i}") for i in range(5)])
    created = [o for o in made if isinstance(o, Order)]
    assert len(created) == 5 and all(o.state == "open" for o in created)
    await client.cancel_orders(pid, [o.id for o in created[3:]])
    [edited] = await client.edit_orders(pid, [OrderEdit(id=created[0].id, size=4, limit_price=round(bid - 9, 2))])
    assert isinstance(edited, Order) and edited.size == 4
    assert len(await client.get_open_orders([pid])) == 3
    assert (await client.get_order_by_client_id("cc1")).id == created[1].id
    cancelled = await client.cancel_order(product_id=pid, client_order_id="cc2")
    assert cancelled.state == "cancelled"
    with pytest.raises(OrderNotFound):
        await client.cancel_order(product_id=pid, order_id=created[2].id)
    await client.cancel_all(pid)
    assert await client.get_open_orders([pid]) == []
    filled = await client.place_order(product_id=pid, size=3, side="sell", order_type="market_order",
                                      client_order_id="mkt-1")
    assert filled.state == "closed" and filled.filled_size == 3
    position = await client.get_position(pid)
    assert position.size == -3
    fills = await client.get_fills([pid])
    # Delta's REST fill names its order by order_id only (api spec §5): no client_order_id
    assert [(f.size, f.role, f.order_id, f.client_order_id) for f in fills] == [(3, "taker", str(filled.id), None)]
    margined = await client.get_margined_positions()
    assert [(p.product_id, p.size) for p in margined] == [(pid, -3)]


async def test_client_refused_with_wrong_secret(venue: PaperVenue) -> None:
    async with DeltaRestClient(venue.rest_url, venue.api_key, "not-the-secret") as c:
        with pytest.raises(AuthError) as err:
            await c.get_wallet_balances()
    assert "not-the-secret" not in str(err.value) and venue.api_secret not in str(err.value)
    await asyncio.sleep(0)


async def test_a_public_flood_earns_a_429_that_does_not_stop_order_actions() -> None:
    """Unsigned requests have their own per-IP bucket on the venue, and the client blocks only
    the bucket a 429 came from: a flood of public reads from our own IP (the venue sees every
    local caller as 127.0.0.1) used to stop every order action until the window reset."""
    import time

    import aiohttp

    v = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200, rate_limit_units=60,
                                 rate_limit_window_s=30.0), ["BTCUSD"])
    await v.start()
    try:
        async with aiohttp.ClientSession() as flood:  # someone else on this box, no key
            statuses = []
            for _ in range(40):
                async with flood.get(v.rest_url + "/v2/tickers/BTCUSD") as r:
                    statuses.append(r.status)
        assert 429 in statuses
        async with DeltaRestClient(v.rest_url, v.api_key, v.api_secret, max_read_attempts=1) as client:
            # A public read: 429, so it waits for its bucket's reset (~30 s) before its one retry.
            read = asyncio.create_task(client.get_ticker("BTCUSD"))
            while client.public_limiter.snapshot().blocked_for_s == 0:
                await asyncio.sleep(0.01)
            t0 = time.monotonic()

            async def trade() -> None:
                order = await client.place_order(product_id=27, size=1, side="buy", order_type="limit_order",
                                                 limit_price="1000", client_order_id="after-flood")
                assert order.client_order_id == "after-flood"
                await client.cancel_all(product_id=27)
            await asyncio.wait_for(trade(), timeout=5)
            assert time.monotonic() - t0 < 2.0
            assert not read.done() and client.limiter.snapshot().blocked_for_s == 0
            read.cancel()
    finally:
        await v.stop()


async def test_a_429_from_one_products_matching_engine_does_not_stop_the_others() -> None:
    import time

    v = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200, engine_ops_per_s=1), ["BTCUSD", "ETHUSD"])
    await v.start()
    try:
        async with DeltaRestClient(v.rest_url, v.api_key, v.api_secret) as client:
            while int(time.monotonic() % 1 * 10) > 2:  # start early in a venue second, away from its edge
                await asyncio.sleep(0.02)
            # BTCUSD's engine allows one operation a second here
            await client.place_order(product_id=27, size=1, side="buy", order_type="limit_order",
                                     limit_price="1000", client_order_id="btc-0")
            over = asyncio.create_task(client.place_order(  # 429 from BTCUSD's engine: waits, then resent
                product_id=27, size=1, side="buy", order_type="limit_order", limit_price="1000",
                client_order_id="btc-1"))
            await asyncio.sleep(0.1)
            assert not over.done() and client.limiter.snapshot().blocked_for_s == 0  # the account is not blocked
            t0 = time.monotonic()
            await client.place_order(product_id=3136, size=1, side="buy", order_type="limit_order",
                                     limit_price="100", client_order_id="eth-0")
            assert time.monotonic() - t0 < 0.3
            assert (await over).client_order_id == "btc-1"
    finally:
        await v.stop()
