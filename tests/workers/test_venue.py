"""Paper venue over real loopback sockets: auth, public and private REST, fills driven by the
replay, batch, paging, rate limits, websocket channels, venue.json and unknown symbols."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.delta.auth import sign, sign_ws
from shared.matching import OrderRequest
from shared.products import UnknownSymbolError
from workers.venue import PaperVenue, VenueSettings, write_venue_json
from workers.venue.ws import WsClient

SYN = "SYN_0001"  # tick 0.01, seeded walk: moves many ticks per replayed tick
SYN_ID = 900_001
FAST = VenueSettings(bar_seconds=0.04, history_bars=200, heartbeat_s=0.05)


class Api:
    def __init__(self, venue: PaperVenue, session: aiohttp.ClientSession) -> None:
        self.venue = venue
        self.session = session

    async def call(self, method: str, path: str, query: str = "", body: Any = None, *,
                   key: str | None = None, secret: str | None = None, ts: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        ts = ts or str(int(time.time()))
        if headers is None:
            headers = {"api-key": key or self.venue.api_key, "timestamp": ts,
                       "signature": sign(secret or self.venue.api_secret, method, ts, path, query, text),
                       "Content-Type": "application/json", "User-Agent": "venue-tests"}
        async with self.session.request(method, self.venue.rest_url + path + query,
                                        data=text.encode() if text else None, headers=headers) as r:
            return r.status, await r.json(content_type=None), r.headers

    async def ok(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        status, data, _ = await self.call(method, path, query, body)
        assert status == 200 and data["success"] is True, (status, data)
        return data


async def _start(settings: VenueSettings = FAST) -> PaperVenue:
    venue = PaperVenue(settings, ["BTCUSD", "ETHUSD", SYN])
    await venue.start()
    return venue


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    venue = await _start()
    async with aiohttp.ClientSession() as session:
        yield Api(venue, session)
    await venue.stop()


async def wait_for(predicate: Any, what: str, ticks: int = 2000) -> None:
    """Poll until true, bounded by replayed ticks (not wall time) so a loaded box cannot fail it."""
    for _ in range(ticks):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def touch(api: Api, symbol: str = SYN) -> tuple[D, D]:
    q = (await api.ok("GET", f"/v2/tickers/{symbol}"))["result"]["quotes"]
    return D(q["best_bid"]), D(q["best_ask"])


# ---- auth ------------------------------------------------------------------------------------

async def test_auth_failures_answer_like_live(api: Api) -> None:
    status, data, _ = await api.call("GET", "/v2/orders", headers={})
    assert (status, data) == (401, {"error": "unauthorized", "success": False})
    status, data, _ = await api.call("GET", "/v2/orders", key="nope")
    assert (status, data["error"]["code"]) == (401, "invalid_api_key")
    status, data, _ = await api.call("GET", "/v2/orders", secret="wrong-secret")
    assert (status, data["error"]["code"]) == (401, "invalid_signature")
    old = str(int(time.time()) - 30)
    status, data, _ = await api.call("GET", "/v2/orders", ts=old)
    assert (status, data["error"]["code"]) == (401, "expired_signature")
    assert data["error"]["context"]["request_time"] == int(old)
    assert abs(data["error"]["context"]["server_time"] - time.time()) < 60
    # the signature covers the exact query: tampering after signing is refused
    ts = str(int(time.time()))
    sig = sign(api.venue.api_secret, "GET", ts, "/v2/orders", "?page_size=1")
    async with api.session.get(api.venue.rest_url + "/v2/orders?page_size=2",
                               headers={"api-key": api.venue.api_key, "timestamp": ts, "signature": sig}) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_signature"
    assert api.venue.api_secret not in json.dumps(data)


# ---- public ----------------------------------------------------------------------------------

async def test_public_market_data_shapes(api: Api) -> None:
    products = (await api.ok("GET", "/v2/products"))["result"]
    btc = next(p for p in products if p["symbol"] == "BTCUSD")
    assert (btc["id"], btc["contract_value"], btc["tick_size"]) == (27, "0.001", "0.5")
    assert "created_at" not in btc and "launch_time" in btc
    eth = (await api.ok("GET", "/v2/products/ETHUSD"))["result"]
    assert (eth["id"], eth["contract_value"], eth["tick_size"]) == (3136, "0.01", "0.05")
    ticker = (await api.ok("GET", "/v2/tickers/BTCUSD"))["result"]
    assert ticker["timestamp"] > 10**15  # µs
    assert D(ticker["quotes"]["best_ask"]) - D(ticker["quotes"]["best_bid"]) == D("0.5")
    assert {t["symbol"] for t in (await api.ok("GET", "/v2/tickers"))["result"]} == {"BTCUSD", "ETHUSD", SYN}
    book = (await api.ok("GET", "/v2/l2orderbook/ETHUSD"))["result"]
    assert D(book["sell"][0]["price"]) - D(book["buy"][0]["price"]) == D("0.05")
    await wait_for(lambda: _has_trades(api), "replayed trades")
    trades = (await api.ok("GET", "/v2/trades/BTCUSD"))["result"]
    assert isinstance(trades, list)
    assert {"buyer_role", "seller_role", "price", "size", "symbol", "timestamp"} <= set(trades[0])
    server_time = (await api.ok("GET", "/v2/settings"))["result"]["server_time"]
    assert abs(server_time / 1e6 - time.time()) < 60


async def _has_trades(api: Api) -> bool:
    return bool((await api.ok("GET", "/v2/trades/BTCUSD"))["result"])


async def test_candles_are_history_then_live_then_forming(api: Api) -> None:
    venue = api.venue
    await wait_for(lambda: _live_bars(venue, 3), "three live bars")
    now_market = venue.market_us // 1_000_000
    q = f"?resolution=1m&symbol=ETHUSD&start={now_market - 60 * 2500}&end={now_market + 60}"
    bars = (await api.ok("GET", "/v2/history/candles", q))["result"]
    assert len(bars) >= 203 and bars[0]["time"] == int(venue.markets["ETHUSD"].history.ts[0])
    times = [b["time"] for b in bars]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert all(t2 - t1 == 60 for t1, t2 in pairwise(times))
    five = (await api.ok("GET", "/v2/history/candles", q.replace("1m", "5m")))["result"]
    assert all(b["time"] % 300 == 0 for b in five)
    status, data, _ = await api.call("GET", "/v2/history/candles", "?resolution=7d&symbol=ETHUSD&start=0&end=1")
    assert (status, data["error"]["code"]) == (400, "bad_schema")


async def _live_bars(venue: PaperVenue, n: int) -> bool:
    return len(venue.markets["ETHUSD"].live) >= n


async def test_unknown_symbol_names_close_matches_and_synthetic_is_created(api: Api) -> None:
    status, data, _ = await api.call("GET", "/v2/products/ETHUDS")
    assert status == 404 and data["error"]["code"] == "invalid_contract"
    assert "ETHUSD" in data["error"]["context"]["message"]
    syn = (await api.ok("GET", "/v2/products/SYN_0042"))["result"]
    assert syn["id"] == 900_042
    with pytest.raises(UnknownSymbolError, match="BTCUSD"):
        PaperVenue(FAST, ["BTCUSDX"])


# ---- orders ----------------------------------------------------------------------------------

async def test_order_life_cycle_place_fill_edit_cancel(api: Api) -> None:
    bid, ask = await touch(api)
    placed = (await api.ok("POST", "/v2/orders", body={
        "product_id": SYN_ID, "side": "buy", "size": 3, "order_type": "limit_order",
        "limit_price": str(bid), "client_order_id": "grid-b-1", "post_only": "true"}))["result"]
    assert placed["state"] == "open" and placed["close_on_trigger"] == "false"
    oid = placed["id"]

    async def filled() -> bool:
        return (await api.ok("GET", f"/v2/orders/{oid}"))["result"]["state"] == "closed"
    await wait_for(filled, "a replayed trade below the limit")
    fills = (await api.ok("GET", "/v2/fills"))["result"]
    assert sum(f["size"] for f in fills if f["order_id"] == str(oid)) == 3
    assert all(f["role"] == "maker" and D(f["price"]) == bid for f in fills)
    assert (await api.ok("GET", "/v2/positions", f"?product_id={SYN_ID}"))["result"]["size"] == 3

    bid, _ = await touch(api)
    resting = (await api.ok("POST", "/v2/orders", body={
        "product_symbol": SYN, "side": "buy", "size": 2, "limit_price": str(bid - 50)}))["result"]
    edited = (await api.ok("PUT", "/v2/orders", body={"id": resting["id"], "product_id": SYN_ID,
                                                      "size": 5, "limit_price": str(bid - 60)}))["result"]
    assert (edited["size"], edited["unfilled_size"], D(edited["limit_price"])) == (5, 5, bid - 60)
    by_coid = (await api.ok("GET", "/v2/orders/client_order_id/grid-b-1"))["result"]
    assert by_coid["id"] == oid
    cancelled = (await api.ok("DELETE", "/v2/orders", body={"id": resting["id"], "product_id": SYN_ID}))["result"]
    assert (cancelled["state"], cancelled["cancellation_reason"]) == ("cancelled", "cancelled_by_user")
    status, data, _ = await api.call("DELETE", "/v2/orders", body={"id": resting["id"], "product_id": SYN_ID})
    assert (status, data["error"]["code"]) == (404, "open_order_not_found")
    history = (await api.ok("GET", "/v2/orders/history"))["result"]
    assert {o["id"] for o in history} == {oid, resting["id"]}


async def test_rejections_post_only_margin_reduce_only_and_bad_input(api: Api) -> None:
    bid, ask = await touch(api)
    # twice the ask: still through the touch when the replay has moved on (a dollar above it was
    # not, now and then, on a loaded box: the seeded walk moves many ticks per replayed tick)
    status, data, _ = await api.call("POST", "/v2/orders", body={
        "product_id": SYN_ID, "side": "buy", "size": 1, "limit_price": str(ask * 2), "post_only": True})
    assert (status, data["error"]["code"]) == (400, "immediate_execution_post_only")
    status, data, _ = await api.call("POST", "/v2/orders", body={  # ~2.5M notional vs 10k at 10x
        "product_id": SYN_ID, "side": "buy", "size": 100_000, "limit_price": str(bid - 1)})
    assert (status, data["error"]["code"]) == (400, "insufficient_margin")
    assert D(data["error"]["context"]["required_additional_balance"]) > 0
    status, data, _ = await api.call("POST", "/v2/orders", body={
        "product_id": SYN_ID, "side": "sell", "size": 1, "limit_price": str(ask + 5), "reduce_only": "true"})
    assert (status, data["error"]["code"]) == (400, "bad_schema")
    status, data, _ = await api.call("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "up", "size": 1})
    assert (status, data["error"]["code"]) == (400, "bad_schema")
    status, data, _ = await api.call("POST", "/v2/orders", body={
        "product_id": SYN_ID, "side": "buy", "size": 1, "limit_price": "1", "client_order_id": "c" * 33})
    assert data["error"]["code"] == "bad_schema"
    assert (await api.ok("GET", "/v2/orders"))["result"] == []


async def test_market_order_reduce_only_and_ledger_identity_over_rest(api: Api) -> None:
    await api.ok("POST", "/v2/orders",
                 body={"product_id": SYN_ID, "side": "buy", "size": 40, "order_type": "market_order"})
    await api.ok("POST", "/v2/orders", body={"product_id": 27, "side": "sell", "size": 7, "order_type": "market_order"})
    closed = (await api.ok("POST", "/v2/orders", body={
        "product_id": SYN_ID, "side": "sell", "size": 100, "order_type": "market_order",
        "reduce_only": True}))["result"]
    assert closed["size"] - closed["unfilled_size"] == 40 and closed["state"] == "cancelled"
    wallet = (await api.ok("GET", "/v2/wallet/balances"))
    bal = wallet["result"][0]
    fills = (await api.ok("GET", "/v2/fills"))["result"]
    fees = sum(D(f["commission"]) for f in fills)
    realised = sum(D(f["meta_data"]["realized_pnl"]) for f in fills)
    assert D(bal["balance"]) == D("10000") + realised - fees
    assert D(bal["commission"]) == fees
    positions = (await api.ok("GET", "/v2/positions/margined"))["result"]
    assert [(p["product_id"], p["size"]) for p in positions] == [(27, -7)]
    assert D(bal["position_margin"]) == D(positions[0]["margin"]) > 0


async def test_batch_create_edit_cancel_and_limit(api: Api) -> None:
    bid, _ = await touch(api)
    orders = [{"side": "buy", "size": 1, "limit_price": str(bid - 10 - i), "order_type": "limit_order",
               "client_order_id": f"b{i}"} for i in range(3)]
    created = (await api.ok("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": orders}))["result"]
    assert [o["client_order_id"] for o in created] == ["b0", "b1", "b2"]
    edits = [{"id": o["id"], "size": 2, "limit_price": o["limit_price"]} for o in created]
    edited = (await api.ok("PUT", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": edits}))["result"]
    assert [o["size"] for o in edited] == [2, 2, 2]
    gone = (await api.ok("DELETE", "/v2/orders/batch", body={
        "product_id": SYN_ID, "orders": [{"id": created[0]["id"]}, {"client_order_id": "b1"}]}))["result"]
    assert [o["state"] for o in gone] == ["cancelled", "cancelled"]
    too_many = [dict(orders[0], client_order_id=f"x{i}") for i in range(51)]
    status, data, _ = await api.call("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": too_many})
    assert (status, data["error"]["code"]) == (400, "bad_schema")
    status, data, _ = await api.call("DELETE", "/v2/orders/all", body={"product_id": SYN_ID})
    assert (status, data) == (200, {"success": True, "result": {}})
    assert (await api.ok("GET", "/v2/orders"))["result"] == []


async def test_a_batch_answers_the_orders_it_did_and_refuses_whole_only_when_it_did_none(api: Api) -> None:
    """Delta's batch semantics: the processed orders come back, in order, each a full Order;
    one the engine refuses is left out; with none processed the first refusal is the answer."""
    bid, ask = await touch(api)
    orders = [{"side": "buy", "size": 1, "limit_price": str(bid - 10 - i), "order_type": "limit_order",
               "client_order_id": f"p{i}", "post_only": "true"} for i in range(5)]
    orders[2] = dict(orders[2], limit_price=str(ask + 1000))  # post-only that would cross
    done = (await api.ok("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": orders}))["result"]
    assert [o["client_order_id"] for o in done] == ["p0", "p1", "p3", "p4"]
    assert all(o["state"] == "open" and o["product_id"] == SYN_ID and o["time_in_force"] == "gtc" for o in done)
    crossing = [dict(orders[2], client_order_id=f"q{i}") for i in range(2)]
    status, data, _ = await api.call("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": crossing})
    assert (status, data["error"]["code"]) == (400, "immediate_execution_post_only")
    edits = [{"id": o["id"], "size": 3} for o in done] + [{"id": 999_999_999, "size": 3}]
    edited = (await api.ok("PUT", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": edits}))["result"]
    assert [o["size"] for o in edited] == [3, 3, 3, 3]  # the unknown id is left out
    gone = (await api.ok("DELETE", "/v2/orders/batch", body={
        "product_id": SYN_ID, "orders": [{"id": o["id"]} for o in done] + [{"client_order_id": "nope"}]}))["result"]
    assert [o["client_order_id"] for o in gone] == ["p0", "p1", "p3", "p4"]
    assert all(o["state"] == "cancelled" for o in gone)
    market = [{"side": "buy", "size": 1, "order_type": "market_order"}]
    status, data, _ = await api.call("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": market})
    assert (status, data["error"]["code"]) == (400, "bad_schema")  # Delta's batches: limit orders only
    assert (await api.ok("GET", "/v2/orders"))["result"] == []


async def test_a_batch_meets_the_same_injected_rejections_as_single_orders() -> None:
    venue = await _start(VenueSettings(bar_seconds=0.04, history_bars=200, fault_reject_probability=1.0))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            bid, _ = await touch(api)
            orders = [{"side": "buy", "size": 1, "limit_price": str(bid - 30 - i)} for i in range(5)]
            status, data, _ = await api.call("POST", "/v2/orders/batch", body={"product_id": SYN_ID, "orders": orders})
            assert (status, data["error"]["code"]) == (400, "risk_limits_breached")
            status, data, _ = await api.call("POST", "/v2/orders", body={"product_id": SYN_ID, **orders[0]})
            assert (status, data["error"]["code"]) == (400, "risk_limits_breached")
    finally:
        await venue.stop()


async def test_a_batch_edit_over_the_engine_limit_edits_nothing() -> None:
    """The engine operations of a batch are charged whole before any edit: a 429 must not
    leave some edits done that the caller is told were refused."""
    venue = await _start(VenueSettings(bar_seconds=0.04, history_bars=200, engine_ops_per_s=4))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            bid, _ = await touch(api)
            ids = [venue.engine.place_order(OrderRequest(product_id=SYN_ID, side="buy", size=1,
                                                         limit_price=bid - 30 - i)).id for i in range(5)]
            status, _, headers = await api.call("PUT", "/v2/orders/batch", body={
                "product_id": SYN_ID, "orders": [{"id": i, "size": 2} for i in ids]})
            assert status == 429 and "X-RATE-LIMIT-RESET" in headers
            assert [venue.engine.order(i).size for i in ids] == [1] * 5  # type: ignore[union-attr]
    finally:
        await venue.stop()


async def test_open_orders_cursor_paging(api: Api) -> None:
    bid, _ = await touch(api)
    ids = []
    for i in range(7):
        ids.append((await api.ok("POST", "/v2/orders", body={
            "product_id": SYN_ID, "side": "buy", "size": 1, "limit_price": str(bid - 20 - i)}))["result"]["id"])
    seen, after, pages = [], "", 0
    while True:
        data = await api.ok("GET", "/v2/orders", f"?page_size=3{'&after=' + after if after else ''}")
        seen += [o["id"] for o in data["result"]]
        pages += 1
        after = data["meta"]["after"]
        if after is None:
            break
    assert pages == 3 and seen == sorted(ids, reverse=True)


async def test_leverage_changes_margin(api: Api) -> None:
    data = (await api.ok("POST", f"/v2/products/{SYN_ID}/orders/leverage", body={"leverage": "20"}))["result"]
    assert (data["leverage"], data["product_id"]) == ("20", SYN_ID)
    status, data, _ = await api.call("POST", f"/v2/products/{SYN_ID}/orders/leverage", body={"leverage": "500"})
    assert (status, data["error"]["code"]) == (400, "bad_schema")


async def test_rate_limit_answers_429_with_reset_header() -> None:
    venue = await _start(VenueSettings(bar_seconds=0.04, history_bars=200, rate_limit_units=20))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            statuses = []
            for _ in range(8):  # weight 3 each: the 7th exceeds 20
                status, data, headers = await api.call("GET", "/v2/wallet/balances")
                statuses.append(status)
            assert statuses == [200] * 6 + [429, 429]
            assert data["error"]["code"] == "rate_limit_exceeded"
            assert 0 < int(headers["X-RATE-LIMIT-RESET"]) <= 300_000
    finally:
        await venue.stop()


async def test_engine_ops_limit_per_product() -> None:
    venue = await _start(VenueSettings(bar_seconds=0.04, history_bars=200, engine_ops_per_s=3))
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            bid, _ = await touch(api)
            body = {"product_id": SYN_ID, "orders": [
                {"side": "buy", "size": 1, "limit_price": str(bid - 30 - i)} for i in range(4)]}
            status, data, headers = await api.call("POST", "/v2/orders/batch", body=body)
            assert status == 429 and "X-RATE-LIMIT-RESET" in headers
            assert data["error"]["context"]["scope"] == "matching_engine"
    finally:
        await venue.stop()


# ---- websocket -------------------------------------------------------------------------------

async def recv_until(ws: aiohttp.ClientWebSocketResponse, pred: Any, limit: int = 5000) -> dict[str, Any]:
    for _ in range(limit):
        msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        if pred(msg):
            return msg
    raise AssertionError("frame never arrived")


async def test_ws_public_channels_and_heartbeat(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        await ws.send_json({"type": "subscribe", "payload": {"channels": [
            {"name": "all_trades", "symbols": ["BTCUSD", SYN]}, {"name": "candlestick_1m", "symbols": ["ETHUSD"]},
            {"name": "v2/ticker", "symbols": ["all"]}, {"name": "orders", "symbols": ["all"]},
            {"name": "l9_book", "symbols": ["BTCUSD"]}]}})
        subs = await recv_until(ws, lambda m: m["type"] == "subscriptions")
        by_name = {c["name"]: c for c in subs["channels"]}
        assert by_name["all_trades"]["symbols"] == sorted(["BTCUSD", SYN])
        assert "Unauthorized" in by_name["orders"]["error"] and "error" in by_name["l9_book"]
        trade = await recv_until(ws, lambda m: m["type"] == "all_trades" and m["symbol"] == SYN)
        assert {"price", "size", "buyer_role", "seller_role", "timestamp"} <= set(trade)
        assert trade["timestamp"] > 10**15
        # one frame per replay tick: consecutive SYN trades are 15 market-seconds apart
        nxt = await recv_until(ws, lambda m: m["type"] == "all_trades" and m["symbol"] == SYN)
        assert nxt["timestamp"] - trade["timestamp"] == 15_000_000
        candle = await recv_until(ws, lambda m: m["type"] == "candlestick_1m")
        assert candle["symbol"] == "ETHUSD" and candle["candle_start_time"] % 60_000_000 == 0
        assert {"open", "high", "low", "close", "volume", "last_updated"} <= set(candle)
        ticker = await recv_until(ws, lambda m: m["type"] == "v2/ticker")
        assert ticker["symbol"] in {"BTCUSD", "ETHUSD", SYN}
        await ws.send_json({"type": "enable_heartbeat"})
        await recv_until(ws, lambda m: m["type"] == "heartbeat")
        await ws.send_json({"type": "unsubscribe", "payload": {"channels": [{"name": "all_trades"}]}})
        subs = await recv_until(ws, lambda m: m["type"] == "subscriptions")
        assert "all_trades" not in {c["name"] for c in subs["channels"]}


async def test_ws_auth_and_private_order_events(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        ts = str(int(time.time()))
        await ws.send_json({"type": "key-auth", "payload": {"api-key": api.venue.api_key,
                                                            "signature": sign_ws("wrong", ts), "timestamp": ts}})
        bad = await recv_until(ws, lambda m: m["type"] == "key-auth")
        assert (bad["success"], bad["status_code"], bad["status"]) == (False, 401, "invalid_signature")
        await ws.send_json({"type": "key-auth", "payload": {"api-key": api.venue.api_key,
                                                            "signature": sign_ws(api.venue.api_secret, ts),
                                                            "timestamp": int(ts)}})
        good = await recv_until(ws, lambda m: m["type"] == "key-auth")
        assert good == {"type": "key-auth", "success": True, "status_code": 200, "status": "authenticated"}
        await ws.send_json({"type": "subscribe", "payload": {"channels": [
            {"name": "orders", "symbols": [SYN]}, {"name": "user_trades", "symbols": ["all"]},
            {"name": "positions", "symbols": [SYN]}]}})
        snap = await recv_until(ws, lambda m: m["type"] == "orders" and m.get("action") == "snapshot")
        assert snap["result"] == [] and snap["symbol"] == SYN
        seq0 = snap["meta"]["seq_no"]
        bid, _ = await touch(api)
        placed = (await api.ok("POST", "/v2/orders", body={
            "product_id": SYN_ID, "side": "buy", "size": 1, "limit_price": str(bid - 40),
            "client_order_id": "w1"}))["result"]
        create = await recv_until(ws, lambda m: m["type"] == "orders" and m.get("action") == "create")
        assert (create["order_id"], create["client_order_id"], create["seq_no"]) == (placed["id"], "w1", seq0 + 1)
        await api.ok("DELETE", "/v2/orders", body={"id": placed["id"], "product_id": SYN_ID})
        delete = await recv_until(ws, lambda m: m["type"] == "orders" and m.get("action") == "delete")
        assert (delete["state"], delete["seq_no"]) == ("cancelled", seq0 + 2)
        await api.ok("POST", "/v2/orders", body={
            "product_id": SYN_ID, "side": "buy", "size": 2, "order_type": "market_order", "client_order_id": "w2"})
        fill = await recv_until(ws, lambda m: m["type"] == "user_trades")
        assert (fill["client_order_id"], fill["size"], fill["role"]) == ("w2", 2, "taker")
        pos = await recv_until(ws, lambda m: m["type"] == "positions" and m.get("action") == "update")
        assert pos["size"] == 2
        await ws.send_json({"type": "subscribe", "payload": {"channels": [{"name": "margins"}]}})
        await recv_until(ws, lambda m: m["type"] == "subscriptions")
        await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "sell", "size": 1,
                                                 "order_type": "market_order"})
        margins = await recv_until(ws, lambda m: m["type"] == "margins")
        assert D(margins["balance"]) == api.venue.engine.balance and margins["asset_symbol"] == "USD"


async def test_ws_legacy_auth_reply(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        ts = str(int(time.time()))
        await ws.send_json({"type": "auth", "payload": {"api-key": api.venue.api_key,
                                                        "signature": sign_ws(api.venue.api_secret, ts),
                                                        "timestamp": ts}})
        assert await recv_until(ws, lambda m: True) == {"type": "success", "message": "Authenticated"}


async def test_a_client_that_stops_reading_is_disconnected() -> None:
    symbols = [f"SYN_{i:04d}" for i in range(1, 121)]
    # 120 symbols over 8 replay sub-steps: 30 frames at a time, more than the queue of 20 holds
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200, ws_send_queue=20), symbols)
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(venue.ws_url, max_msg_size=0) as ws:
                await ws.send_json({"type": "subscribe", "payload": {"channels": [
                    {"name": "all_trades", "symbols": ["all"]}, {"name": "candlestick_1m", "symbols": ["all"]}]}})

                async def dropped() -> bool:
                    return not venue.ws.clients
                await wait_for(dropped, "the server to drop a client that does not read", ticks=6000)
                # the frames already in flight, then the close frame
                while (msg := await asyncio.wait_for(ws.receive(), 30)).type == aiohttp.WSMsgType.TEXT:
                    pass
                assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008  # policy: too slow
    finally:
        await venue.stop()


async def test_slow_client_queue_is_bounded() -> None:
    class FakeWs:
        closed = False
    client = WsClient(FakeWs(), queue_size=3)  # type: ignore[arg-type]  # a stand-in socket
    assert all(client.send(f"{i}") for i in range(3))
    assert client.send("overflow") is False and client.too_slow
    assert client.queue.qsize() <= 3 and client.send("more") is False


# ---- files -----------------------------------------------------------------------------------

async def test_venue_json_is_private(tmp_path: Path, api: Api) -> None:
    path = write_venue_json(tmp_path / "run", api.venue)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {"rest_url": api.venue.rest_url, "ws_url": api.venue.ws_url,
                    "public_ws_url": api.venue.public_ws_url,
                    "api_key": api.venue.api_key, "api_secret": api.venue.api_secret}
    assert data["ws_url"].startswith("ws://127.0.0.1:") and data["ws_url"].endswith("/ws")
