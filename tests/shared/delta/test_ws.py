"""The websocket client against a scripted Delta-shaped websocket server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from shared.delta import auth
from shared.delta.ws import (
    AuthResult,
    CandleEvent,
    Connected,
    DataGap,
    DeltaWebSocket,
    Disconnected,
    Fresh,
    OrderSnapshot,
    OrderUpdate,
    QuietTracker,
    SequenceGap,
    SequenceTracker,
    Stale,
    Subscribed,
    TickerEvent,
    TradeEvent,
    UserTrade,
    parse_frame,
    reconnect_delay,
)

from .conftest import API_KEY, API_SECRET

OnSubscribe = Callable[[web.WebSocketResponse, int], Awaitable[None]]


class WsScript:
    """Scripted server: records every frame per connection and lets the test push frames."""

    def __init__(self) -> None:
        self.received: list[list[dict[str, Any]]] = []
        self.sockets: list[web.WebSocketResponse] = []
        self.on_subscribe: OnSubscribe | None = None
        self.key_auth_supported = True
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = len(self.received)
        self.received.append([])
        self.sockets.append(ws)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            frame = msgspec.json.decode(msg.data)
            self.received[conn].append(frame)
            kind = frame.get("type")
            if kind == "key-auth" and not self.key_auth_supported:
                await ws.send_json({"type": "error", "message": "unknown message type"})
            elif kind in ("key-auth", "auth"):
                p = frame["payload"]
                good = p["api-key"] == API_KEY and p["signature"] == auth.sign_ws(
                    API_SECRET, str(p["timestamp"]))
                if kind == "key-auth":
                    await ws.send_json({"type": "key-auth", "success": good,
                                        "status_code": 200 if good else 401,
                                        "status": "authenticated" if good else "invalid_signature"})
                else:
                    await ws.send_json({"type": "success", "message": "Authenticated"})
            elif kind == "subscribe":
                await ws.send_json({"type": "subscriptions",
                                    "channels": frame["payload"]["channels"]})
                if self.on_subscribe is not None:
                    await self.on_subscribe(ws, conn)
        return ws

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("/"))


@pytest.fixture
async def wss() -> AsyncIterator[WsScript]:
    script = WsScript()
    app = web.Application()
    app.router.add_get("/", script.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    script.server = server
    try:
        yield script
    finally:
        for ws in script.sockets:
            await ws.close()
        await server.close()


async def next_of(ws: DeltaWebSocket, kind: type, limit: int = 50) -> Any:
    """The next event of a type (skipping others), failing instead of hanging forever."""
    for _ in range(limit):
        event = await asyncio.wait_for(ws.events.get(), timeout=5)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} in {limit} events")


def client(url: str, **kw: Any) -> DeltaWebSocket:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", 0.05)
    return DeltaWebSocket(url, rng=random.Random(1), **kw)


async def test_key_auth_subscribe_and_typed_events(wss: WsScript) -> None:
    async def push(ws: web.WebSocketResponse, conn: int) -> None:
        await ws.send_json({"type": "v2/ticker", "symbol": "BTCUSD", "product_id": 27,
                            "mark_price": "60001.5", "close": 60000,
                            "quotes": {"best_bid": "60000", "best_ask": "60001"},
                            "timestamp": 1700000000123456})
        await ws.send_json({"type": "candlestick_1m", "symbol": "BTCUSD", "resolution": "1m",
                            "candle_start_time": 1700000040000000, "open": None, "high": None,
                            "low": None, "close": None, "volume": 0,
                            "last_updated": 1700000041000000})
        await ws.send_json({"type": "orders", "action": "snapshot", "success": True,
                            "symbol": "BTCUSD", "result": [
                                {"id": 9, "size": 1, "unfilled_size": 1, "state": "open",
                                 "created_at": "2020-11-16T02:38:26Z"}],
                            "meta": {"seq_no": 1}})
        await ws.send_json({"type": "orders", "action": "update", "reason": "fill",
                            "symbol": "BTCUSD", "product_id": 27, "order_id": 9,
                            "client_order_id": "c9", "size": 1, "unfilled_size": 0,
                            "state": "closed", "average_fill_price": "60000", "seq_no": 2,
                            "timestamp": 1700000042000000})
        await ws.send_json({"type": "user_trades", "symbol": "BTCUSD", "fill_id": "f1",
                            "order_id": 9, "client_order_id": "c9", "side": "buy", "size": 1,
                            "price": "60000", "role": "maker", "seq_no": 3,
                            "timestamp": 1700000042000000})

    wss.on_subscribe = push
    ws = client(wss.url, api_key=API_KEY, api_secret=API_SECRET)
    await ws.subscribe("v2/ticker", ["BTCUSD"])
    await ws.subscribe("candlestick_1m", ["BTCUSD"])
    await ws.subscribe("orders", ["all"])
    await ws.subscribe("user_trades", ["all"])
    async with ws:
        assert (await next_of(ws, AuthResult)) == AuthResult(ok=True, method="key-auth",
                                                              message="authenticated")
        ticker = await next_of(ws, TickerEvent)
        candle = await next_of(ws, CandleEvent)
        snapshot = await next_of(ws, OrderSnapshot)
        update = await next_of(ws, OrderUpdate)
        fill = await next_of(ws, UserTrade)
    assert (ticker.mark_price, ticker.best_ask, ticker.exchange_ts_us) == (
        60001.5, 60001.0, 1700000000123456)
    assert candle.close is None and candle.volume == 0 and candle.start_us == 1700000040000000
    assert snapshot.orders[0].created_at == 1605494306000000
    assert (update.state, update.unfilled_size, update.average_fill_price) == ("closed", 0, 60000.0)
    assert (fill.order_id, fill.size, fill.price) == ("9", 1, 60000.0)
    kinds = [f["type"] for f in wss.received[0]]
    assert kinds[:3] == ["enable_heartbeat", "key-auth", "subscribe"]
    names = {c["name"] for c in wss.received[0][2]["payload"]["channels"]}
    assert names == {"v2/ticker", "candlestick_1m", "orders", "user_trades"}
    assert API_SECRET not in repr(ws)


async def test_falls_back_to_legacy_auth(wss: WsScript) -> None:
    wss.key_auth_supported = False
    ws = client(wss.url, api_key=API_KEY, api_secret=API_SECRET)
    await ws.subscribe("positions", ["all"])
    async with ws:
        result = await next_of(ws, AuthResult)
        assert result.ok and result.method == "auth"
        for _ in range(100):  # wait for the subscribe that follows auth
            if any(f["type"] == "subscribe" for f in wss.received[0]):
                break
            await asyncio.sleep(0.01)
    assert [f["type"] for f in wss.received[0]] == ["enable_heartbeat", "key-auth", "auth",
                                                    "subscribe"]


async def test_failed_auth_keeps_private_channels_unsent(wss: WsScript) -> None:
    ws = client(wss.url, api_key=API_KEY, api_secret="wrong-secret")
    await ws.subscribe("orders", ["all"])
    await ws.subscribe("v2/ticker", ["BTCUSD"])
    async with ws:
        result = await next_of(ws, AuthResult)
        await next_of(ws, Subscribed)
    assert not result.ok and ws.authenticated is False
    sub = [f for f in wss.received[0] if f["type"] == "subscribe"][0]
    assert [c["name"] for c in sub["payload"]["channels"]] == ["v2/ticker"]


async def test_drop_reconnects_and_resubscribes(wss: WsScript) -> None:
    async def drop_first(ws: web.WebSocketResponse, conn: int) -> None:
        if conn == 0:
            await ws.close()
        else:
            await ws.send_json({"type": "trades", "sy": "ETHUSD", "p": "3000.5", "s": 7,
                                "r": "t", "t": 1700000000000001, "ts": 1700000000000002})

    wss.on_subscribe = drop_first
    ws = client(wss.url)
    await ws.subscribe("all_trades", ["ETHUSD"])
    await ws.subscribe("v2/ticker", ["BTCUSD", "ETHUSD"])
    async with ws:
        assert (await next_of(ws, Connected)).connection == 1
        await next_of(ws, Disconnected)
        assert (await next_of(ws, Connected)).connection == 2
        trade = await next_of(ws, TradeEvent)
    assert (trade.symbol, trade.price, trade.size, trade.buyer_role) == ("ETHUSD", 3000.5, 7, "taker")
    subs = [[f for f in conn if f["type"] == "subscribe"] for conn in wss.received]
    assert len(subs) == 2 and subs[0] == subs[1]  # identical resubscription
    assert subs[1][0]["payload"]["channels"] == [
        {"name": "all_trades", "symbols": ["ETHUSD"]},
        {"name": "v2/ticker", "symbols": ["BTCUSD", "ETHUSD"]}]


async def test_silent_socket_is_replaced(wss: WsScript) -> None:
    ws = client(wss.url, heartbeat_timeout_s=0.2)
    await ws.subscribe("v2/ticker", ["BTCUSD"])
    async with ws:
        gone = await next_of(ws, Disconnected)
        assert (await next_of(ws, Connected)).connection == 2
    assert gone.reason.startswith("silent")


async def test_quiet_symbols_go_stale_and_fresh_again(wss: WsScript) -> None:
    ws = client(wss.url, stale_after_s=0.15)
    await ws.subscribe("v2/ticker", ["BTCUSD", "ETHUSD"])
    async with ws:
        stale = {(await next_of(ws, Stale)).symbol, (await next_of(ws, Stale)).symbol}
        assert stale == {"BTCUSD", "ETHUSD"} and ws.is_stale("BTCUSD")
        quiet = ws.quiet_for("BTCUSD")
        assert quiet is not None and quiet >= 0.15
        await wss.sockets[0].send_json({"type": "v2/ticker", "symbol": "BTCUSD", "close": 1})
        assert (await next_of(ws, Fresh)).symbol == "BTCUSD"
        assert ws.is_stale("ETHUSD")  # (BTCUSD may legitimately go stale again: no more data)
    assert ws.quiet_for("XRPUSD") is None


async def test_full_queue_drops_oldest_and_says_so() -> None:
    ws = DeltaWebSocket("ws://127.0.0.1:9/", queue_size=3)
    for i in range(5):
        await ws._emit(Connected(i))
    items = [ws.events.get_nowait() for _ in range(ws.events.qsize())]
    assert len(items) == 3 and ws.dropped > 0
    assert any(isinstance(e, DataGap) for e in items) and items[-1] == Connected(4)


def test_compact_public_payloads() -> None:
    [candle] = parse_frame({"type": "candlestick_1m", "sy": "BTCUSD", "o": "1", "h": 2, "l": 0.5,
                            "c": "1.5", "v": 3, "res": "1m", "ts": 1700000065000000}, 0)
    assert isinstance(candle, CandleEvent) and candle.start_us == 1700000040000000
    assert candle.close == 1.5
    tickers = parse_frame({"type": "ticker", "sy": "BTCUSD", "ts": 1700000000000000, "sp": "59990",
                           "d": [{"s": "BTCUSD", "i": 27, "m": "60000", "ohlc": [1, 2, 0.5, "1.5"],
                                  "q": ["60001", "10", "59999", "12", "60000"]}]}, 0)
    assert tickers[0] == TickerEvent(symbol="BTCUSD", product_id=27, mark_price=60000.0,
                                     close=1.5, best_bid=59999.0, best_ask=60001.0,
                                     spot_price=59990.0, exchange_ts_us=1700000000000000,
                                     received_ts_us=0)
    [fill] = parse_frame({"type": "v2/user_trades", "sy": "ETHUSD", "f": "ab", "R": "normal",
                          "o": 5, "S": "sell", "s": 2, "p": "3000", "r": "maker", "c": "c5",
                          "t": 1700000000000000, "se": 11}, 0)
    assert isinstance(fill, UserTrade)
    assert (fill.side, fill.size, fill.client_order_id, fill.seq_no) == ("sell", 2, "c5", 11)
    snap = parse_frame({"type": "all_trades_snapshot", "symbol": "BTCUSD",
                        "trades": [{"price": "1", "size": 2, "timestamp": 1}]}, 0)
    assert len(snap) == 1 and isinstance(snap[0], TradeEvent) and snap[0].from_snapshot
    assert parse_frame({"type": "heartbeat"}, 0) == []


def test_quiet_tracker_and_reconnect_delay() -> None:
    q = QuietTracker(stale_after_s=10)
    q.watch(["A"], now=0.0)
    assert q.newly_stale(9.9) == [] and q.quiet_for("A", 5.0) == 5.0
    assert q.newly_stale(10.0) == [("A", 10.0)] and q.newly_stale(11.0) == []  # reported once
    assert q.heard("A", 12.0) is True and q.heard("A", 13.0) is False
    rng = random.Random(3)
    delays = [reconnect_delay(n, 0.5, 30.0, rng) for n in range(20)]
    assert all(0.25 <= d <= 30.0 for d in delays) and max(delays[10:]) <= 30.0
    assert min(delays[10:]) >= 15.0  # capped, never collapsing back to hammering


async def test_subscribe_while_connected_is_sent_at_once_and_kept(wss: WsScript) -> None:
    ws = client(wss.url)
    await ws.subscribe("v2/ticker", ["BTCUSD"])
    async with ws:
        await next_of(ws, Subscribed)
        await ws.subscribe("candlestick_1m", ["ETHUSD"])
        added = await next_of(ws, Subscribed)
        assert added.channels == [{"name": "candlestick_1m", "symbols": ["ETHUSD"]}]
        await ws.force_reconnect()
        await next_of(ws, Disconnected)
        again = await next_of(ws, Subscribed)
    assert again.channels == [{"name": "candlestick_1m", "symbols": ["ETHUSD"]},
                              {"name": "v2/ticker", "symbols": ["BTCUSD"]}]
    assert ws.quiet_for("ETHUSD") is not None


def test_sequence_tracker_reports_jumps_not_repeats() -> None:
    t = SequenceTracker()
    assert t.check("orders", "BTCUSD", 5) is None  # no baseline yet
    assert t.check("orders", "BTCUSD", 6) is None
    assert t.check("orders", "BTCUSD", 6) is None  # repeat
    assert t.check("orders", "BTCUSD", 9) == SequenceGap("orders", "BTCUSD", 7, 9)
    assert t.check("orders", "ETHUSD", 1) is None  # per symbol
    t.baseline("orders", "BTCUSD", 100)
    assert t.check("orders", "BTCUSD", 101) is None
    t.reset()
    assert t.check("orders", "BTCUSD", 500) is None


async def test_missed_order_event_is_flagged(wss: WsScript) -> None:
    async def push(ws: web.WebSocketResponse, conn: int) -> None:
        await ws.send_json({"type": "orders", "action": "snapshot", "symbol": "BTCUSD",
                            "result": [], "meta": {"seq_no": 10}})
        for seq in (11, 13):
            await ws.send_json({"type": "orders", "action": "update", "symbol": "BTCUSD",
                                "order_id": seq, "state": "open", "seq_no": seq})

    wss.on_subscribe = push
    ws = client(wss.url, api_key=API_KEY, api_secret=API_SECRET)
    await ws.subscribe("orders", ["BTCUSD"])
    async with ws:
        gap = await next_of(ws, SequenceGap)
        after = await asyncio.wait_for(ws.events.get(), timeout=5)
    assert gap == SequenceGap("orders", "BTCUSD", 12, 13)
    assert isinstance(after, OrderUpdate) and after.seq_no == 13 and ws.sequence_gaps == 1


async def test_a_failing_event_handler_does_not_kill_the_feed(wss: WsScript) -> None:
    async def push(ws: web.WebSocketResponse, conn: int) -> None:
        for close in (1, 2):
            await ws.send_json({"type": "v2/ticker", "symbol": "BTCUSD", "close": close})

    wss.on_subscribe = push
    got: list[float | None] = []
    done = asyncio.Event()

    async def handler(event: Any) -> None:
        if isinstance(event, TickerEvent):
            got.append(event.close)
            if event.close == 1:
                raise RuntimeError("consumer bug")
            done.set()

    ws = client(wss.url, on_event=handler)
    await ws.subscribe("v2/ticker", ["BTCUSD"])
    async with ws:
        await asyncio.wait_for(done.wait(), timeout=5)
    assert got == [1.0, 2.0] and ws.callback_errors == 1 and ws.connections == 1


def test_stop_order_updates_carry_the_trigger_fields() -> None:
    from shared.delta.ws import parse_frame
    [ev] = parse_frame({"type": "orders", "action": "update", "reason": "stop_trigger", "symbol": "BTCUSD",
                        "product_id": 27, "order_id": 12, "client_order_id": "dg1-a1-BTCUSD-Ss00-3",
                        "side": "sell", "size": 4, "unfilled_size": 4, "state": "open",
                        "stop_order_type": "stop_loss_order", "stop_price": "58000.5",
                        "reduce_only": "true", "seq_no": 5}, 1)
    assert isinstance(ev, OrderUpdate)
    assert (ev.reason, ev.stop_order_type, ev.stop_price, ev.reduce_only) == (
        "stop_trigger", "stop_loss_order", 58000.5, True)
    [plain] = parse_frame({"type": "orders", "action": "create", "order_id": 13, "state": "open",
                           "reduce_only": False}, 1)
    assert isinstance(plain, OrderUpdate)
    assert (plain.stop_order_type, plain.stop_price, plain.reduce_only) == (None, None, False)
