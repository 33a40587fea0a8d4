"""Contract suite, venue side: every recorded Delta sample in tests/fixtures/delta is requested from
a running paper venue over real sockets (REST with signed requests, the websocket with key-auth),
and the answer must have the sample's shape (contract.shape_diff)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from shared.delta.auth import sign, sign_ws
from workers.venue import PaperVenue, VenueSettings

from .contract import load, names, shape_diff

SYMBOLS = ["BTCUSD", "ETHUSD"]


class Session:
    def __init__(self, venue: PaperVenue, http: aiohttp.ClientSession) -> None:
        self.venue, self.http = venue, http

    async def rest(self, method: str, path: str, query: str = "", body: Any = None, *, auth: bool = True,
                   key: str | None = None, ts: str | None = None) -> tuple[int, Any]:
        text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        headers = {"Content-Type": "application/json", "User-Agent": "contract-suite"}
        if auth:
            ts = ts or str(int(time.time()))
            headers.update({"api-key": key or self.venue.api_key, "timestamp": ts,
                            "signature": sign(self.venue.api_secret, method, ts, path, query, text)})
        async with self.http.request(method, self.venue.rest_url + path + query,
                                     data=text.encode() if text else None, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def far_bid(self) -> str:
        _, data = await self.rest("GET", "/v2/tickers/BTCUSD", auth=False)
        bid = Decimal(data["result"]["quotes"]["best_bid"])
        return str((bid * Decimal("0.8") / Decimal("0.5")).to_integral_value() * Decimal("0.5"))  # BTCUSD tick

    async def open_position(self) -> None:
        status, data = await self.rest("POST", "/v2/orders", body={"product_id": 27, "size": 3, "side": "buy",
                                                                    "order_type": "market_order"})
        assert status == 200, data


def _fill(template: Any, values: dict[str, str]) -> Any:
    """Placeholders in a fixture request ({now}, {now-3600}, {far_bid}) with this run's values."""
    if isinstance(template, str):
        for k, v in values.items():
            template = template.replace("{" + k + "}", v)
        return template
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    return template


@pytest.fixture
async def session() -> AsyncIterator[Session]:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), SYMBOLS)
    await venue.start()
    for _ in range(1000):  # every market has traded (GET /v2/trades has a trade to show)
        if venue.ticks_replayed:
            break
        await asyncio.sleep(0.005)
    async with aiohttp.ClientSession() as http:
        yield Session(venue, http)
    await venue.stop()


def test_the_shape_comparison_catches_type_key_and_null_departures() -> None:
    fixture = {"body": {"success": True, "result": [{"price": "1.5", "size": 3, "product": {"id": 1}}]},
               "nullable": ["size"]}
    assert shape_diff(fixture, {"success": True, "result": [{"price": "2", "size": None, "product": {"id": 9}}]}) == []
    assert shape_diff(fixture, {"success": True, "result": [{"price": 2.0, "size": 1, "product": {"id": 1}}]}) == \
        ["result.price: number, the sample has a string"]
    assert shape_diff(fixture, {"success": True, "result": [{"size": 1, "product": {"id": 1, "x": 0}}]}) == \
        ["result.price: missing", "result.product.x: not in the sample"]
    assert shape_diff(fixture, {"success": True, "result": []}) == ["result: empty, nothing to compare"]


@pytest.mark.parametrize("name", names("rest") + names("error"))
async def test_rest_answers_have_the_recorded_shape(session: Session, name: str) -> None:
    fx = load(name)
    req = fx["request"]
    if req.get("setup") == "position":
        await session.open_position()
    if req.get("setup") == "heartbeat":  # an ack needs its heartbeat registered first
        created = load("heartbeat_create")["request"]["body"]
        status, data = await session.rest("POST", "/v2/heartbeat/create", body=created)
        assert status == 200, data
    values = {"now": str(int(time.time())), "now-3600": str(int(time.time()) - 3600)}
    if "{far_bid}" in json.dumps(req):
        values["far_bid"] = await session.far_bid()
    query = _fill(req.get("query", ""), values)
    body = _fill(req.get("body"), values)
    ts = str(int(time.time()) - 60) if req.get("stale_timestamp") else None
    status, data = await session.rest(req["method"], req["path"], query, body,
                                      auth=req.get("private", False) and not req.get("no_auth", False),
                                      key="0" * 32 if req.get("bad_key") else None, ts=ts)
    assert status == req.get("status", 200), data
    assert shape_diff(fx, data) == [], f"{name} ({fx['source']}): {json.dumps(data)[:600]}"


async def _ws_frames(session: Session, fx: dict[str, Any]) -> Any:
    req = fx["request"]
    url = session.venue.public_ws_url if req.get("path") == "public" else session.venue.ws_url
    async with session.http.ws_connect(url) as ws:
        if req.get("auth"):
            ts = str(int(time.time()))
            await ws.send_json({"type": "key-auth", "payload": {
                "api-key": session.venue.api_key, "timestamp": ts, "signature": sign_ws(session.venue.api_secret, ts)}})
            reply = await asyncio.wait_for(ws.receive_json(), 10)
            if "subscribe" not in req:
                return reply
        await ws.send_json({"type": "subscribe", "payload": {"channels": req["subscribe"]}})
        if req.get("place"):
            order = {"product_id": 27, "size": 1, "side": "buy", "client_order_id": "contract-ws"}
            order.update({"order_type": "market_order"} if req.get("market") else
                         {"order_type": "limit_order", "limit_price": await session.far_bid()})
            status, data = await session.rest("POST", "/v2/orders", body=order)
            assert status == 200, data
        want_type = req.get("frame_type", "subscriptions")
        for _ in range(5_000):
            frame = await asyncio.wait_for(ws.receive_json(), 30)
            if frame.get("type") != want_type:
                continue
            if "action" in req and frame.get("action") != req["action"]:
                continue
            if req.get("after_trades") is None or frame.get("trades"):
                return frame
    raise AssertionError(f"no {want_type} frame")


@pytest.mark.parametrize("name", names("ws"))
async def test_websocket_frames_have_the_recorded_shape(session: Session, name: str) -> None:
    fx = load(name)
    if fx["request"].get("after_trades"):
        await asyncio.sleep(0.3)  # a few replayed trades, so the snapshot has items to compare
    frame = await _ws_frames(session, fx)
    assert shape_diff(fx, frame) == [], f"{name} ({fx['source']}): {json.dumps(frame)[:600]}"
