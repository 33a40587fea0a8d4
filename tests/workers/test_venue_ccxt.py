"""A stock ccxt `delta` client, pointed at a running paper venue (README: any Delta client can
inspect the paper account): it loads markets, reads balances keyed by asset, reads fills with
timestamps, and cancels all, without an error. ccxt is a test-only dependency; its urls are
overridden to the venue on 127.0.0.1, so nothing here reaches the network.

The synchronous client runs in a thread beside the venue's event loop: ccxt 4.5.90's asyncio
`delta.cancel_all_orders` forgets to await its request (a ccxt bug: the DELETE is never sent)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from workers.venue import PaperVenue, VenueSettings

ccxt = pytest.importorskip("ccxt", reason="ccxt is not installed (pip install -e '.[test]')")


class Client:
    """The stock ccxt delta client; each call runs in a thread so the venue keeps serving."""

    def __init__(self, exchange: Any) -> None:
        self.exchange = exchange

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.exchange, name)

        async def call(*args: Any) -> Any:
            return await asyncio.to_thread(method, *args)
        return call


@pytest.fixture
async def delta() -> AsyncIterator[tuple[Any, PaperVenue]]:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), ["BTCUSD", "ETHUSD"])
    await venue.start()
    exchange = ccxt.delta({"apiKey": venue.api_key, "secret": venue.api_secret, "enableRateLimit": False,
                           "timeout": 10_000})
    exchange.urls["api"] = {"public": venue.rest_url, "private": venue.rest_url}
    try:
        yield Client(exchange), venue
    finally:
        await venue.stop()


async def test_ccxt_loads_markets_reads_balances_fills_and_cancels_all(delta: tuple[Any, PaperVenue]) -> None:
    exchange, venue = delta
    markets = await exchange.load_markets()
    btc = next(m for m in markets.values() if m["id"] == "BTCUSD")
    assert (btc["swap"], btc["contractSize"], btc["settle"]) == (True, 0.001, "USD")
    assert btc["precision"]["price"] == 0.5

    balance = await exchange.fetch_balance()
    assert balance["USD"]["total"] == 10_000.0  # keyed by asset code, via /v2/assets

    await exchange.create_order(btc["symbol"], "market", "buy", 2)
    trades = await exchange.fetch_my_trades(btc["symbol"])
    assert trades and trades[0]["amount"] == 2 and trades[0]["fee"]["currency"] == "USD"
    ts = trades[0]["timestamp"]
    assert isinstance(ts, int) and abs(ts * 1000 - venue.market_us) < 120 * 1_000_000  # ms, from ISO 8601

    ticker = await exchange.fetch_ticker(btc["symbol"])
    bid = Decimal(str(ticker["bid"]))
    far = float((bid * Decimal("0.8") / Decimal("0.5")).to_integral_value() * Decimal("0.5"))
    await exchange.create_order(btc["symbol"], "limit", "buy", 1, far)
    assert len(await exchange.fetch_open_orders(btc["symbol"])) == 1
    await exchange.cancel_all_orders(btc["symbol"])
    assert await exchange.fetch_open_orders(btc["symbol"]) == []

    ledger = await exchange.fetch_ledger("USD")
    assert {e["type"] for e in ledger} >= {"fee", "transaction"}  # commission + the start deposit
    positions = await exchange.fetch_positions([btc["symbol"]])
    assert [p["contracts"] for p in positions] == [2]
