"""Contract: the project's DeltaWebSocket against the paper venue over loopback."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from shared.delta.auth import sign
from shared.delta.ws import (
    AuthResult,
    CandleEvent,
    Connected,
    DeltaWebSocket,
    Disconnected,
    OrderSnapshot,
    OrderUpdate,
    TradeEvent,
    UserTrade,
)
from workers.venue import PaperVenue, VenueSettings

SYN = "SYN_0003"


async def next_event(ws: DeltaWebSocket, kind: type, pred: Any = lambda e: True, limit: int = 3_000) -> Any:
    for _ in range(limit):
        ev = await asyncio.wait_for(ws.events.get(), 30)
        if isinstance(ev, kind) and pred(ev):
            return ev
    raise AssertionError(f"no {kind.__name__} arrived")


async def place(venue: PaperVenue, body: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(body, separators=(",", ":"))
    ts = str(int(time.time()))
    headers = {"api-key": venue.api_key, "timestamp": ts, "Content-Type": "application/json",
               "signature": sign(venue.api_secret, "POST", ts, "/v2/orders", "", text)}
    async with aiohttp.ClientSession() as s:
        async with s.post(venue.rest_url + "/v2/orders", data=text, headers=headers) as r:
            data = await r.json()
    assert data["success"], data
    return data["result"]


async def test_ws_client_gets_trades_candles_and_private_events() -> None:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), ["BTCUSD", SYN])
    await venue.start()
    try:
        async with DeltaWebSocket(venue.ws_url, venue.api_key, venue.api_secret) as ws:
            await ws.subscribe("all_trades", [SYN])
            await ws.subscribe("candlestick_1m", [SYN])
            await ws.subscribe("orders", [SYN])
            await ws.subscribe("user_trades", [SYN])
            assert (await next_event(ws, AuthResult)).ok
            snap = await next_event(ws, OrderSnapshot)
            assert snap.orders == []
            trade = await next_event(ws, TradeEvent, lambda e: not e.from_snapshot)
            assert trade.symbol == SYN and trade.price > 0 and trade.exchange_ts_us > 10**15
            candle = await next_event(ws, CandleEvent)
            assert candle.symbol == SYN and candle.start_us % 60_000_000 == 0
            await place(venue, {"product_symbol": SYN, "side": "buy", "size": 2, "order_type": "market_order",
                                "client_order_id": "wsc-1"})
            seen: dict[type, Any] = {}
            for _ in range(3_000):
                ev = await asyncio.wait_for(ws.events.get(), 30)
                if isinstance(ev, UserTrade) or (isinstance(ev, OrderUpdate) and ev.action == "delete"):
                    seen[type(ev)] = ev
                if len(seen) == 2:
                    break
            update, fill = seen[OrderUpdate], seen[UserTrade]
            assert (update.client_order_id, update.state, update.unfilled_size) == ("wsc-1", "closed", 0)
            assert (fill.client_order_id, fill.size) == ("wsc-1", 2)
    finally:
        await venue.stop()


async def test_ws_client_heals_a_dropped_connection() -> None:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200, fault_ws_drop_interval_s=0.3), ["BTCUSD"])
    await venue.start()
    try:
        async with DeltaWebSocket(venue.ws_url, backoff_base_s=0.05, backoff_cap_s=0.2) as ws:
            await ws.subscribe("all_trades", ["BTCUSD"])
            await next_event(ws, TradeEvent)
            await next_event(ws, Disconnected)
            await next_event(ws, Connected)
            after = await next_event(ws, TradeEvent, lambda e: not e.from_snapshot)
            assert after.symbol == "BTCUSD" and ws.connections >= 2
    finally:
        await venue.stop()
