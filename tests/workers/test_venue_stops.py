"""Stop orders on the paper venue over real loopback sockets: placement in state `pending`, the
trigger (injected trades on a frozen market, and the replay itself), stop-limit resting, edit,
cancel, DELETE /v2/orders/all kinds, GET /v2/orders filters, batch refusal, websocket frames,
the account file, and the ledger identity after stop fills."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shared.delta.auth import sign, sign_ws
from workers.venue import PaperVenue, VenueSettings

# One replayed step per 900 s: after the first step the market holds still, and the tests move
# it by feeding the engine trades exactly as the replay loop does.
FROZEN = VenueSettings(bar_seconds=3600, history_bars=200)
SYN = "SYN_0003"
SYN_ID = 900_003


class Api:
    def __init__(self, venue: PaperVenue, session: aiohttp.ClientSession) -> None:
        self.venue = venue
        self.session = session

    async def call(self, method: str, path: str, query: str = "", body: Any = None) -> tuple[int, Any]:
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        ts = str(int(time.time()))
        headers = {"api-key": self.venue.api_key, "timestamp": ts, "Content-Type": "application/json",
                   "signature": sign(self.venue.api_secret, method, ts, path, query, text)}
        async with self.session.request(method, self.venue.rest_url + path + query,
                                        data=text.encode() if text else None, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def ok(self, method: str, path: str, query: str = "", body: Any = None) -> Any:
        status, data = await self.call(method, path, query, body)
        assert status == 200 and data["success"] is True, (status, data)
        return data.get("result")

    async def refused(self, method: str, path: str, body: Any, code: str = "bad_schema") -> dict[str, Any]:
        status, data = await self.call(method, path, body=body)
        assert (status, data["error"]["code"]) == (400, code), data
        return data["error"]["context"]  # type: ignore[no-any-return]

    async def place(self, **body: Any) -> dict[str, Any]:
        return await self.ok("POST", "/v2/orders", body={"product_id": 27, **body})  # type: ignore[no-any-return]

    async def order(self, oid: int) -> dict[str, Any]:
        return await self.ok("GET", f"/v2/orders/{oid}")  # type: ignore[no-any-return]


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    venue = PaperVenue(FROZEN, ["BTCUSD"])
    await venue.start()
    async with aiohttp.ClientSession() as session:
        a = Api(venue, session)
        await a.ok("GET", "/v2/settings")  # lets the replay's first (and only) step run first
        trade(venue, 50_000)
        yield a
    await venue.stop()


def trade(venue: PaperVenue, price: float, symbol: str = "BTCUSD") -> None:
    """A market trade, handled as the replay loop handles one (engine, then event fan-out)."""
    venue.engine.on_market_trade(symbol, price, 100, venue.market_us)
    venue.ws.publish_engine_events()


async def ledger_holds(api: Api) -> None:
    bal = (await api.ok("GET", "/v2/wallet/balances"))[0]
    fills = await api.ok("GET", "/v2/fills")
    realised = sum(D(f["meta_data"]["realized_pnl"]) for f in fills)
    fees = sum(D(f["commission"]) for f in fills)
    assert D(bal["balance"]) == D("10000") + realised - fees
    assert D(bal["commission"]) == fees > 0


# ---- REST ------------------------------------------------------------------------------------

async def test_protective_stop_pending_edited_then_triggered_by_a_trade(api: Api) -> None:
    await api.place(side="buy", size=5, order_type="market_order")  # long 5 @ 50000.5
    placed = await api.place(side="sell", size=5, order_type="market_order", reduce_only="true",
                             stop_order_type="stop_loss_order", stop_price="49000", client_order_id="sl")
    assert (placed["state"], placed["stop_order_type"], placed["stop_price"], placed["stop_trigger_method"]) == \
        ("pending", "stop_loss_order", "49000", "mark_price")
    assert placed["unfilled_size"] == 5 and placed["limit_price"] is None
    wallet = (await api.ok("GET", "/v2/wallet/balances"))[0]
    assert wallet["order_margin"] == "0"  # a reduce-only stop holds nothing
    assert [o["id"] for o in await api.ok("GET", "/v2/orders")] == [placed["id"]]
    edited = await api.ok("PUT", "/v2/orders", body={"id": placed["id"], "product_id": 27, "stop_price": "49500"})
    assert (edited["state"], edited["stop_price"]) == ("pending", "49500")
    trade(api.venue, 49_600)
    assert (await api.order(placed["id"]))["state"] == "pending"
    trade(api.venue, 49_450)  # through the edited stop
    done = await api.ok("GET", "/v2/orders/client_order_id/sl")
    assert (done["state"], done["unfilled_size"], done["stop_order_type"]) == ("closed", 0, "stop_loss_order")
    fill = (await api.ok("GET", "/v2/fills"))[0]  # newest first
    assert (fill["order_id"], fill["role"], fill["price"], fill["size"]) == (str(placed["id"]), "taker", "49450", 5)
    assert (await api.ok("GET", "/v2/positions", "?product_id=27"))["size"] == 0
    assert await api.ok("GET", "/v2/orders") == []
    await ledger_holds(api)


async def test_a_stop_already_through_its_price_fills_at_placement(api: Api) -> None:
    done = await api.place(side="sell", size=2, order_type="market_order",
                           stop_order_type="stop_loss_order", stop_price="50500")  # market is at 50000
    assert (done["state"], done["average_fill_price"], done["stop_price"]) == ("closed", "50000", "50500")
    pending = await api.place(side="buy", size=2, order_type="market_order", reduce_only=True,
                              stop_order_type="stop_loss_order", stop_price="51000")
    assert pending["state"] == "pending"
    moved = await api.ok("PUT", "/v2/orders", body={"id": pending["id"], "stop_price": "50000"})
    assert (moved["state"], moved["average_fill_price"]) == ("closed", "50000.5")  # bought at the ask
    assert (await api.ok("GET", "/v2/positions", "?product_id=27"))["size"] == 0
    await ledger_holds(api)


async def test_a_triggered_stop_limit_rests_in_the_book(api: Api) -> None:
    placed = await api.place(side="buy", size=3, order_type="limit_order", limit_price="50050",
                             stop_order_type="stop_loss_order", stop_price="50100",
                             stop_trigger_method="last_traded_price")
    market_stop = await api.place(side="sell", size=1, order_type="market_order",
                                  stop_order_type="stop_loss_order", stop_price="40000")
    book = await api.ok("GET", "/v2/l2orderbook/BTCUSD")  # untriggered stops are not in the book
    assert [r["price"] for r in book["buy"]] == ["50000"] and [r["price"] for r in book["sell"]] == ["50000.5"]
    trade(api.venue, 50_100)
    live = await api.order(placed["id"])
    assert (live["state"], live["unfilled_size"], live["stop_trigger_method"]) == ("open", 3, "last_traded_price")
    book = await api.ok("GET", "/v2/l2orderbook/BTCUSD")
    assert {"price": "50050", "size": 3, "depth": str(3 + api.venue.markets["BTCUSD"].tick_size)} in book["buy"]
    assert (await api.ok("GET", "/v2/wallet/balances"))[0]["order_margin"] == "15.015"  # 3 x 0.001 x 50050 / 10
    trade(api.venue, 50_040)  # strictly below the limit: maker fill
    fill = (await api.ok("GET", "/v2/fills"))[0]
    assert (fill["order_id"], fill["role"], fill["price"]) == (str(placed["id"]), "maker", "50050")
    assert (await api.order(market_stop["id"]))["state"] == "pending"


async def test_cancel_a_pending_stop_and_cancel_all_by_kind(api: Api) -> None:
    await api.place(side="buy", size=4, order_type="market_order")
    plain = await api.place(side="buy", size=1, limit_price="49000")
    ro = await api.place(side="sell", size=1, limit_price="51000", reduce_only=True)
    sl = await api.place(side="sell", size=4, order_type="market_order", reduce_only=True,
                         stop_order_type="stop_loss_order", stop_price="48000")
    tp = await api.place(side="sell", size=4, order_type="limit_order", limit_price="52000", reduce_only=True,
                         stop_order_type="take_profit_order", stop_price="52000")
    gone = await api.ok("DELETE", "/v2/orders", body={"id": tp["id"], "product_id": 27})
    assert (gone["state"], gone["cancellation_reason"]) == ("cancelled", "cancelled_by_user")

    async def live() -> set[int]:
        return {o["id"] for o in await api.ok("GET", "/v2/orders")}

    status, data = await api.call("DELETE", "/v2/orders/all", body={"product_id": 27, "cancel_stop_orders": "true"})
    assert (status, data) == (200, {"success": True, "result": {}})
    assert await live() == {plain["id"], ro["id"]}
    await api.ok("DELETE", "/v2/orders/all", body={"cancel_reduce_only_orders": True, "cancel_limit_orders": False})
    assert await live() == {plain["id"]}
    again = await api.place(side="sell", size=4, order_type="market_order", reduce_only=True,
                            stop_order_type="stop_loss_order", stop_price="48000")
    await api.ok("DELETE", "/v2/orders/all", body={"cancel_limit_orders": "true", "cancel_stop_orders": "false",
                                                   "cancel_reduce_only_orders": "false"})
    assert await live() == {again["id"]}
    await api.ok("DELETE", "/v2/orders/all", body={"product_id": 27})  # no flags: everything
    assert await live() == set()
    assert (await api.order(sl["id"]))["cancellation_reason"] == "cancelled_by_user"


async def test_open_orders_states_and_order_types_filters(api: Api) -> None:
    limit = await api.place(side="buy", size=1, limit_price="49000")
    stop_market = await api.place(side="sell", size=1, order_type="market_order",
                                  stop_order_type="stop_loss_order", stop_price="48000")
    stop_limit = await api.place(side="buy", size=1, order_type="limit_order", limit_price="52010",
                                 stop_order_type="stop_loss_order", stop_price="52000")

    async def ids(query: str) -> list[int]:
        return [o["id"] for o in await api.ok("GET", "/v2/orders", query)]

    everything = sorted([limit["id"], stop_market["id"], stop_limit["id"]], reverse=True)
    assert await ids("") == everything
    assert await ids("?states=open,pending") == everything
    assert await ids("?states=pending") == [stop_limit["id"], stop_market["id"]]
    assert await ids("?states=open") == [limit["id"]]
    assert await ids("?order_types=limit") == [limit["id"]]
    assert await ids("?order_types=stop_market") == [stop_market["id"]]
    assert await ids("?order_types=stop_limit,limit") == [stop_limit["id"], limit["id"]]
    assert await ids("?order_types=all_stop&states=pending") == [stop_limit["id"], stop_market["id"]]
    assert await ids("?order_types=market") == []
    status, data = await api.call("GET", "/v2/orders", "?states=closed")
    assert (status, data["error"]["context"]["schema_errors"][0]["param"]) == (400, "states")
    status, data = await api.call("GET", "/v2/orders", "?order_types=stop")
    assert (status, data["error"]["context"]["schema_errors"][0]["param"]) == (400, "order_types")
    await api.ok("DELETE", "/v2/orders/all", body={})
    assert [o["id"] for o in await api.ok("GET", "/v2/orders/history", "?order_types=all_stop")] == \
        [stop_limit["id"], stop_market["id"]]


async def test_batch_refuses_stop_orders(api: Api) -> None:
    item = {"side": "sell", "size": 1, "limit_price": "51000", "order_type": "limit_order"}
    ctx = await api.refused("POST", "/v2/orders/batch", {"product_id": 27, "orders": [
        item, {**item, "stop_order_type": "take_profit_order", "stop_price": "51000"}]})
    assert ctx["schema_errors"][0]["param"] == "stop_order_type"
    assert await api.ok("GET", "/v2/orders") == []  # the batch is refused whole
    pending = await api.place(side="sell", size=1, order_type="market_order",
                              stop_order_type="stop_loss_order", stop_price="48000")
    ctx = await api.refused("PUT", "/v2/orders/batch", {"product_id": 27, "orders": [
        {"id": pending["id"], "size": 2, "limit_price": "48000"}]})
    assert ctx["schema_errors"][0]["param"] == "id"
    assert (await api.order(pending["id"]))["size"] == 1


async def test_bad_stop_bodies_are_refused_naming_the_field(api: Api) -> None:
    base = {"product_id": 27, "side": "sell", "size": 1, "order_type": "market_order"}
    for extra, param in (({"stop_price": "49000"}, "stop_order_type"),
                         ({"stop_order_type": "stop_loss_order"}, "stop_price"),
                         ({"stop_order_type": "stop_loss_order", "stop_price": "49000.2"}, "stop_price"),
                         ({"stop_order_type": "stop_loss_order", "stop_price": "49000", "reduce_only": "true"},
                          "reduce_only")):  # nothing to reduce
        ctx = await api.refused("POST", "/v2/orders", {**base, **extra})
        assert ctx["schema_errors"][0]["param"] == param
    resting = await api.place(side="buy", size=1, limit_price="49000")
    ctx = await api.refused("PUT", "/v2/orders", {"id": resting["id"], "stop_price": "48000"})
    assert ctx["schema_errors"][0]["param"] == "stop_price"
    assert [o["id"] for o in await api.ok("GET", "/v2/orders")] == [resting["id"]]


async def test_a_pending_stop_survives_a_venue_restart(tmp_path: Path) -> None:
    settings = VenueSettings(bar_seconds=3600, history_bars=200, state_file=str(tmp_path / "account.json"))
    first = PaperVenue(settings, ["BTCUSD"])
    await first.start()
    async with aiohttp.ClientSession() as session:
        api = Api(first, session)
        assert first.engine.last_price(27) > 1  # type: ignore[operator]  # the stop below waits
        await api.place(side="buy", size=2, order_type="market_order")
        placed = await api.place(side="sell", size=2, order_type="market_order", reduce_only=True,
                                 stop_order_type="stop_loss_order", stop_price="1", client_order_id="keep")
    await first.stop()
    second = PaperVenue(settings, ["BTCUSD"], api_key=first.api_key, api_secret=first.api_secret)
    await second.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(second, session)
            kept = await api.ok("GET", "/v2/orders", "?states=pending")
            assert [(o["id"], o["state"], o["stop_price"]) for o in kept] == [(placed["id"], "pending", "1")]
            trade(second, 1)  # and it still triggers
            assert (await api.order(placed["id"]))["state"] == "closed"
            assert (await api.ok("GET", "/v2/positions", "?product_id=27"))["size"] == 0
    finally:
        await second.stop()


# ---- websocket -------------------------------------------------------------------------------

async def recv_until(ws: aiohttp.ClientWebSocketResponse, pred: Any, limit: int = 5000) -> dict[str, Any]:
    for _ in range(limit):
        msg = json.loads((await asyncio.wait_for(ws.receive(), 30)).data)
        if pred(msg):
            return msg  # type: ignore[no-any-return]
    raise AssertionError("frame never arrived")


async def authed_ws(api: Api, channels: list[dict[str, Any]]) -> aiohttp.ClientWebSocketResponse:
    ws = await api.session.ws_connect(api.venue.ws_url)
    ts = str(int(time.time()))
    await ws.send_json({"type": "key-auth", "payload": {
        "api-key": api.venue.api_key, "signature": sign_ws(api.venue.api_secret, ts), "timestamp": ts}})
    assert (await recv_until(ws, lambda m: m["type"] == "key-auth"))["success"] is True
    await ws.send_json({"type": "subscribe", "payload": {"channels": channels}})
    await recv_until(ws, lambda m: m["type"] == "orders" and m.get("action") == "snapshot")
    return ws


def is_order(action: str) -> Any:
    return lambda m: m["type"] == "orders" and m.get("action") == action


async def test_ws_frames_of_a_stop_pending_create_trigger_update_then_fill(api: Api) -> None:
    await api.place(side="buy", size=2, order_type="market_order")
    ws = await authed_ws(api, [{"name": "orders", "symbols": ["BTCUSD"]}, {"name": "user_trades", "symbols": ["all"]}])
    try:
        placed = await api.place(side="sell", size=2, order_type="market_order", reduce_only=True,
                                 stop_order_type="stop_loss_order", stop_price="49900", client_order_id="ws-sl")
        create = await recv_until(ws, is_order("create"))
        assert (create["order_id"], create["state"], create["stop_order_type"], create["stop_price"]) == \
            (placed["id"], "pending", "stop_loss_order", "49900")
        assert create["reason"] is None and create["client_order_id"] == "ws-sl"
        trade(api.venue, 49_900)
        update = await recv_until(ws, is_order("update"))
        assert (update["order_id"], update["reason"], update["state"]) == (placed["id"], "stop_trigger", "open")
        assert (update["stop_order_type"], update["stop_price"]) == ("stop_loss_order", "49900")
        assert update["seq_no"] == create["seq_no"] + 1
        fill = await recv_until(ws, lambda m: m["type"] == "user_trades")
        assert (fill["order_id"], fill["size"], fill["role"], fill["price"]) == (str(placed["id"]), 2, "taker", "49900")
        delete = await recv_until(ws, is_order("delete"))
        assert (delete["order_id"], delete["state"], delete["reason"]) == (placed["id"], "closed", "fill")
    finally:
        await ws.close()


async def test_the_replay_itself_triggers_stops() -> None:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), [SYN])
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            ws = await authed_ws(api, [{"name": "orders", "symbols": [SYN]}])
            q = (await api.ok("GET", f"/v2/tickers/{SYN}"))["quotes"]
            bid, ask, tick = D(q["best_bid"]), D(q["best_ask"]), D("0.01")
            # one above and one below the market: the seeded walk reaches one of them
            for side, price in (("buy", ask + 10 * tick), ("sell", bid - 10 * tick)):
                placed = await api.ok("POST", "/v2/orders", body={
                    "product_id": SYN_ID, "side": side, "size": 1, "order_type": "market_order",
                    "stop_order_type": "stop_loss_order", "stop_price": str(price)})
                assert placed["state"] == "pending"
            update = await recv_until(ws, lambda m: m["type"] == "orders" and m.get("reason") == "stop_trigger")
            assert update["state"] == "open" and update["stop_order_type"] == "stop_loss_order"
            done = await recv_until(ws, lambda m: is_order("delete")(m) and m["order_id"] == update["order_id"])
            assert done["state"] == "closed"
            await ws.close()
            await ledger_holds(api)
    finally:
        await venue.stop()
