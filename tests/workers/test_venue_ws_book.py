"""The paper venue's book, mark-price and funding channels over a real websocket, followed by the
project's own parser and L2Book (sequence numbers and Delta's CRC32 checksum), and bad input
answered with frames, never a silent drop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest

from shared.delta.ws import BookDelta, BookLevels, BookTop, FundingRate, L2Book, MarkPrice, TradeEvent, parse_frame
from shared.funding import seeded_rate
from tests.workers.test_venue import SYN, SYN_ID, Api, _start, touch


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    venue = await _start()
    async with aiohttp.ClientSession() as session:
        yield Api(venue, session)
    await venue.stop()


async def recv(ws: aiohttp.ClientWebSocketResponse, pred: Any, limit: int = 5_000) -> dict[str, Any]:
    for _ in range(limit):
        msg = await asyncio.wait_for(ws.receive_json(), 30)
        if pred(msg):
            return msg
    raise AssertionError("frame never came")


async def subscribe(ws: aiohttp.ClientWebSocketResponse, *channels: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", "payload": {"channels": list(channels)}})
    return await recv(ws, lambda m: m["type"] == "subscriptions")


async def test_l2_updates_snapshot_then_numbered_deltas_that_checksum(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        subs = await subscribe(ws, {"name": "l2_updates", "symbols": [SYN]})
        assert subs["channels"] == [{"name": "l2_updates", "symbols": [SYN]}]
        snap = await recv(ws, lambda m: m["type"] == "l2_updates")
        assert snap["action"] == "snapshot" and isinstance(snap["cs"], int)
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in snap["bids"] + snap["asks"])
        book = L2Book(SYN)
        [first] = parse_frame(snap, 0)
        assert isinstance(first, BookDelta) and book.apply(first) is None
        # our own resting order shows up as a level of its own in the next delta
        bid, _ = await touch(api)
        price = bid - D(40)
        await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "buy", "size": 7,
                                                 "limit_price": str(price)})
        seen_ours = False
        for _ in range(12):  # several replayed ticks: the touch moves, every delta must check out
            frame = await recv(ws, lambda m: m["type"] == "l2_updates")
            assert frame["action"] == "update"
            [delta] = parse_frame(frame, 0)
            assert isinstance(delta, BookDelta)
            assert book.apply(delta) is None, frame
            seen_ours = seen_ours or book.bids.get(str(price)) == "7"
        assert seen_ours


def test_l2book_refuses_a_gap_a_bad_checksum_and_an_update_before_snapshot() -> None:
    def delta(action: str, seq: int, bids: list[list[str]], cs: int | None) -> BookDelta:
        [d] = parse_frame({"type": "l2_updates", "action": action, "symbol": "X", "bids": bids, "asks": [],
                           "sequence_no": seq, "cs": cs, "timestamp": 1}, 0)
        assert isinstance(d, BookDelta)
        return d
    book = L2Book("X")
    assert book.apply(delta("update", 1, [["10", "1"]], None)) == "update before snapshot"
    assert book.apply(delta("snapshot", 5, [["10", "1"]], None)) is None
    assert book.apply(delta("update", 7, [["9", "1"]], None)) == "sequence gap: expected 6, got 7"
    assert book.apply(delta("snapshot", 8, [["10", "1"]], None)) is None
    assert book.apply(delta("update", 9, [["10", "0"]], 12345)) == "checksum mismatch"


async def test_l2_orderbook_l1_mark_price_and_funding_frames(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        await subscribe(ws, {"name": "l2_orderbook", "symbols": ["BTCUSD"]},
                        {"name": "l1_orderbook", "symbols": ["BTCUSD"]},
                        {"name": "mark_price", "symbols": ["MARK:BTCUSD"]},
                        {"name": "funding_rate", "symbols": ["BTCUSD"]})
        l2 = await recv(ws, lambda m: m["type"] == "l2_orderbook")
        [levels] = parse_frame(l2, 0)
        assert isinstance(levels, BookLevels) and levels.bids and levels.asks
        assert D(levels.asks[0][0]) - D(levels.bids[0][0]) == D("0.5")
        l1 = await recv(ws, lambda m: m["type"] == "l1_orderbook")
        [top] = parse_frame(l1, 0)
        assert isinstance(top, BookTop) and top.best_bid is not None and top.best_ask is not None
        mark = await recv(ws, lambda m: m["type"] == "mark_price")
        [mp] = parse_frame(mark, 0)
        assert isinstance(mp, MarkPrice) and mark["symbol"] == "MARK:BTCUSD" and mp.symbol == "BTCUSD"
        funding = await recv(ws, lambda m: m["type"] == "funding_rate")
        [fr] = parse_frame(funding, 0)
        assert isinstance(fr, FundingRate) and fr.next_funding_us is not None
        assert fr.next_funding_us % (8 * 3600 * 1_000_000) == 0
        # the rate the next funding time will charge, in percent: the seeded model's (no series given)
        seed = api.venue.settings.seed
        assert fr.funding_rate == float(seeded_rate(seed, "BTCUSD", fr.next_funding_us) * 100) != 0


async def test_refused_subscriptions_and_bad_frames_get_reasons_not_a_drop(api: Api) -> None:
    async with api.session.ws_connect(api.venue.ws_url) as ws:
        subs = await subscribe(ws, {"name": "l2_orderbook", "symbols": ["all"]},
                               {"name": "mark_price", "symbols": ["BTCUSD"]},
                               {"name": "l9_book", "symbols": ["BTCUSD"]},
                               {"name": "l2_updates", "symbols": [f"SYN_{i:04d}" for i in range(1, 102)]})
        errors = {c["name"]: c["error"] for c in subs["channels"] if "error" in c}
        assert set(errors) == {"l2_orderbook", "mark_price", "l9_book", "l2_updates"}
        assert "all" in errors["l2_orderbook"] and "MARK:" in errors["mark_price"]
        assert "Unknown channel" in errors["l9_book"] and "100" in errors["l2_updates"]
        await ws.send_str("{not json")
        assert (await recv(ws, lambda m: m["type"] == "error"))["message"].startswith("bad frame")
        await ws.send_bytes(b"\x00\x01")
        assert "JSON text" in (await recv(ws, lambda m: m["type"] == "error"))["message"]
        await ws.send_json({"type": "subscribe", "payload": {"channels": "l2_updates"}})
        assert "channels" in (await recv(ws, lambda m: m["type"] == "error"))["message"]
        await ws.send_json({"type": "ping"})  # still connected and answering
        assert (await recv(ws, lambda m: m["type"] in ("pong", "error")))["type"] == "pong"


async def test_public_path_serves_compact_channels_and_refuses_private_ones(api: Api) -> None:
    async with api.session.ws_connect(api.venue.public_ws_url) as ws:
        subs = await subscribe(ws, {"name": "trades", "symbols": [SYN]}, {"name": "ob_updates", "symbols": [SYN]},
                               {"name": "orders", "symbols": ["all"]}, {"name": "all_trades", "symbols": [SYN]})
        errors = {c["name"]: c["error"] for c in subs["channels"] if "error" in c}
        assert set(errors) == {"orders", "all_trades"}  # private, and a legacy name: not here
        assert "main socket" in errors["orders"] and "Unknown channel" in errors["all_trades"]
        book = L2Book(SYN)
        trades = 0
        for _ in range(4_000):
            frame = await recv(ws, lambda m: m["type"] in ("trades", "ob_updates"))
            [ev] = parse_frame(frame, 0)
            if isinstance(ev, BookDelta):
                assert book.apply(ev) is None, frame
            else:
                assert isinstance(ev, TradeEvent) and ev.symbol == SYN and ev.price > 0
                trades += 1
            if trades >= 3 and (book.sequence_no or 0) >= 3:
                break
        assert trades >= 3 and (book.sequence_no or 0) >= 3
        await ws.send_json({"type": "key-auth", "payload": {"api-key": "k", "signature": "s", "timestamp": "1"}})
        reply = await recv(ws, lambda m: m["type"] == "key-auth")
        assert reply["success"] is False and "main socket" in reply["message"]
