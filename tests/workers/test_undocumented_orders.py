"""Our own order answered in a state Delta does not document (review F4): before, the gateway
dropped it at the exchange edge, so the bot never heard of its resting orders and placed the same
levels again. Real paper venue, real gateway and REST client over loopback, a real Worker and its
bot; between the gateway and the venue a small real HTTP proxy plays a live Delta that names the
state of our resting orders in a word its docs do not list (what no paper venue does)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import msgspec
import pytest
import zmq
import zmq.asyncio
from aiohttp import web

from shared.delta.ws import OrderUpdate, parse_frame
from shared.matching import OrderRequest
from shared.messages import AccountRequest, OrderEvent, SignalReply
from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from tests.workers.gateway_support import btc_worker, gateway_on, running, started_venue
from workers.venue import PaperVenue
from workers.worker import Worker

BTC = PAPER_PRODUCTS["BTCUSD"]
UNDOCUMENTED = "live"  # a resting order's state in a word Delta's docs do not list


def undocumented_states(body: Any) -> Any:
    """Delta's answer with our resting orders' state renamed."""
    result = body.get("result") if isinstance(body, dict) else None
    for o in result if isinstance(result, list) else [result]:
        if isinstance(o, dict) and str(o.get("client_order_id") or "").startswith("dg1-") \
                and o.get("state") in ("open", "pending"):
            o["state"] = UNDOCUMENTED
    return body


async def proxy_to(venue: PaperVenue) -> tuple[web.AppRunner, str, aiohttp.ClientSession]:
    """An HTTP server on 127.0.0.1 passing every request to `venue` as is (the signature covers
    method, path, query and body, none of which change) and its order answers back renamed."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with session.request(request.method, venue.rest_url + request.path_qs, headers=headers,
                                   data=await request.read()) as r:
            raw = await r.read()
        if request.path.startswith("/v2/orders") and raw:
            raw = json.dumps(undocumented_states(json.loads(raw))).encode()
        return web.Response(body=raw, status=r.status, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", session


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    yield from btc_worker(tmp_path)


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = await started_venue(time.time())
    try:
        yield v
    finally:
        await v.stop()


def reply(close: float, direction: str = "UP") -> SignalReply:
    return SignalReply(symbol="BTCUSD", seq=1, bar_count=500, bar_ts=time.time(), direction=direction, confidence=0.9,
                       votes={}, close=close, atr14=100.0, rsi14=50.0, valid=True, reason="", batch_size=1,
                       compute_ns=0, sent_ns=0)


def levels(client_order_ids: list[str | None]) -> list[tuple[str, str, int]]:
    tags = [coid.parse(c) for c in client_order_ids]
    return sorted((t.side, t.purpose, t.level) for t in tags if t is not None)


async def test_our_orders_in_an_undocumented_state_are_the_bots_and_never_placed_twice(
        tmp_path: Path, venue: PaperVenue, worker: Worker) -> None:
    runner, proxy_url, session = await proxy_to(venue)
    via_proxy = SimpleNamespace(rest_url=proxy_url, ws_url=venue.ws_url, api_key=venue.api_key,
                                api_secret=venue.api_secret)
    gw = gateway_on(tmp_path, via_proxy)  # type: ignore[arg-type]  # only the venue's addresses are read
    try:
        async with running(gw):
            ask = AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0)
            worker.on_account(await gw.account(ask), full=True)
            worker.market_ts = venue.market_us / 1e6
            price = float(venue.engine.last_price(BTC.product_id) or 0)  # the grid rests below it: nothing fills
            first = worker.make_intents(reply(price))
            assert first is not None and first.place, "the bot places its grid"
            res = await gw.execute(first)
            # every placement the venue accepted reaches the bot, read as resting
            assert levels([o.client_order_id for o in res.placed]) == levels([p.client_order_id for p in first.place])
            assert {o.state for o in res.placed} == {"open"}
            # and the book is in doubt: the bot reads it back before it places anything more
            assert any("undocumented_answer" in e for e in res.errors)
            assert sum(gw.orders_undocumented.values()) == len(first.place)
            assert f"{len(first.place)} answers of own orders in a kind or state Delta" in gw.figures(0.0).note
            worker.on_intent_result(res, time.perf_counter_ns())
            assert worker.needs_resync and worker.make_intents(reply(price)) is None

            worker.resync_asked_at_seq = worker.intent_seq  # as the worker's periodic read asks
            snap = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=False, sent_ns=0))
            resting = [o for o in venue.engine.open_orders() if o.client_order_id]
            assert levels([o.client_order_id for o in snap.open_orders]) == levels(
                [o.client_order_id for o in resting]) != []
            worker.on_account(snap, full=False)
            bot = worker.bot
            assert bot is not None and not worker.needs_resync
            assert sorted(bot.open_orders) == sorted(o.order_id for o in snap.open_orders)

            # later plans (an hour on, past any churn limit) never place a level that rests already
            worker.market_ts += 3600
            again = worker.make_intents(reply(price))
            placed_again = levels([p.client_order_id for p in again.place]) if again is not None else []
            assert not set(placed_again) & set(levels([o.client_order_id for o in resting]))
    finally:
        await session.close()
        await runner.cleanup()


async def test_a_foreign_order_in_an_undocumented_state_is_still_passed_over(
        tmp_path: Path, venue: PaperVenue) -> None:
    """Only our own orders are read tolerantly: a trader's manual order in an odd state is not
    the bot's to trade, and is dropped and counted as before."""
    below = (venue.engine.last_price(BTC.product_id) or Decimal(1)) * Decimal("0.8")
    venue.engine.place_order(OrderRequest(product_id=BTC.product_id, side="buy", size=1, order_type="limit_order",
                                          limit_price=Decimal(int(below)), client_order_id="manual-1"))
    gw = gateway_on(tmp_path, venue)
    try:
        [o] = await gw.rest.get_open_orders([BTC.product_id])
    finally:
        await gw.rest.close()
    odd = msgspec.structs.replace(o, state=UNDOCUMENTED)
    assert gw.read_orders("BTCUSD", [odd]) == [] and gw.orders_dropped == 1 and not gw.orders_undocumented


@pytest.mark.parametrize(("action", "expected"), [("update", "open"), ("delete", "closed")])
def test_the_orders_channel_in_an_undocumented_state_keeps_our_order(tmp_path: Path, action: str,
                                                                     expected: str) -> None:
    """An orders-channel update of ours in an odd state: resting unless the channel deletes it."""
    nowhere = SimpleNamespace(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", api_key="k", api_secret="s")
    gw = gateway_on(tmp_path, nowhere)  # type: ignore[arg-type]  # not started: the mapping needs no connection
    ours = coid.encode(bot_id="g1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
    [ev] = parse_frame({"type": "orders", "action": action, "reason": None, "symbol": "BTCUSD",
                        "product_id": BTC.product_id, "order_id": 12, "client_order_id": ours, "side": "buy",
                        "order_type": "limit_order", "limit_price": "600", "size": 2, "unfilled_size": 2,
                        "state": "expired" if action == "delete" else UNDOCUMENTED, "seq_no": 3,
                        "timestamp": 1_800_000_000_000_000}, 1_800_000_000_000_001)
    assert isinstance(ev, OrderUpdate)
    view = gw.read_order("BTCUSD", ev)
    assert view is not None and (view.client_order_id, view.state) == (ours, expected)
    assert gw.orders_undocumented["BTCUSD"] == 1 and gw.orders_dropped == 0


@pytest.mark.parametrize(("state", "unfilled", "wakes"), [("closed", 0, True), ("closed", 2, False),
                                                          ("cancelled", 1, False)])
async def test_an_order_of_ours_closed_with_fills_wakes_the_fill_read(tmp_path: Path, state: str, unfilled: int,
                                                                      wakes: bool) -> None:
    """The bot waits for a closed order's fills before it plans again, its stop included: the
    orders channel's word that our order closed filled wakes the fill read at once, so a missing
    user-trade event costs no poll interval (15 s while the account socket is up)."""
    nowhere = SimpleNamespace(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", api_key="k", api_secret="s")
    gw = gateway_on(tmp_path, nowhere)  # type: ignore[arg-type]  # not started: no connection needed
    gw.products = {"BTCUSD": BTC}  # (what start() resolves from the venue)
    ctx = zmq.asyncio.Context()
    try:
        gw.pub, gw.sup = ctx.socket(zmq.PUB), ctx.socket(zmq.PUSH)  # (what start() is handed)
        gw.pub.bind("tcp://127.0.0.1:*")
        gw.sup.bind("tcp://127.0.0.1:*")
        ours = coid.encode(bot_id="g1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
        [ev] = parse_frame({"type": "orders", "action": "delete", "reason": None, "symbol": "BTCUSD",
                            "product_id": BTC.product_id, "order_id": 12, "client_order_id": ours, "side": "buy",
                            "order_type": "limit_order", "limit_price": "600", "size": 2, "unfilled_size": unfilled,
                            "state": state, "seq_no": 3, "timestamp": 1_800_000_000_000_000}, 1_800_000_000_000_001)
        assert isinstance(ev, OrderUpdate)
        assert not gw.fill_wakeup.is_set()
        await gw.on_ws_event(ev)
        assert gw.fill_wakeup.is_set() is wakes
    finally:
        ctx.destroy(linger=0)


def rests_ours(venue: PaperVenue) -> tuple[str, Decimal, Any]:
    """A buy entry of ours resting 20% below the market on the venue: (its client id, its price, the order)."""
    ours = coid.encode(bot_id="g1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
    below = (venue.engine.last_price(BTC.product_id) or Decimal(1)) * Decimal("0.8")
    placed = venue.engine.place_order(OrderRequest(product_id=BTC.product_id, side="buy", size=2,
                                                   order_type="limit_order", limit_price=Decimal(int(below)),
                                                   client_order_id=ours))
    return ours, below, placed


async def test_our_order_the_socket_reports_in_an_undocumented_state_is_read_back_soon(
        tmp_path: Path, venue: PaperVenue) -> None:
    """The socket deletes our resting order in a word Delta does not document: read as closed
    (the safe guess), and read back by id within a second, the bot is told the venue's own word
    (here: it still rests), not after its regular re-read (15 s; 900 s at 1,000 symbols). One
    lookup (3 units of the rate budget); a repeated odd word for the same order asks no second."""
    ours, below, placed = rests_ours(venue)
    gw = gateway_on(tmp_path, venue)
    async with running(gw, watch=["BTCUSD"]) as run:
        odd = {"type": "orders", "action": "delete", "reason": None, "symbol": "BTCUSD",
               "product_id": BTC.product_id, "order_id": placed.id, "client_order_id": ours, "side": "buy",
               "order_type": "limit_order", "limit_price": str(int(below)), "size": 2, "unfilled_size": 0,
               "state": "expired", "seq_no": 3, "timestamp": 1_800_000_000_000_000}
        await asyncio.sleep(0.3)  # (the subscriber joins the gateway's PUB)
        for _ in range(2):
            [ev] = parse_frame(odd, 1_800_000_000_000_001)
            assert isinstance(ev, OrderUpdate)
            await gw.on_ws_event(ev)
        guesses = [await run.published(), await run.published()]
        assert [(e.order.order_id, e.order.state) for e in guesses if isinstance(e, OrderEvent)] == [
            (placed.id, "closed")] * 2
        before = gw.rest.units_spent.get("order lookup", 0)
        task = asyncio.create_task(gw.reread_loop())
        try:
            got = await run.published(timeout_ms=2000)
            assert await run.published(timeout_ms=1500) is None  # one read back for both words
        finally:
            task.cancel()
    assert isinstance(got, OrderEvent) and (got.order.order_id, got.order.client_order_id) == (placed.id, ours)
    assert got.order.state == "open" and got.order.unfilled_size == 2  # the venue's word: it rests
    assert got.read_back and not any(e.read_back for e in guesses if isinstance(e, OrderEvent))
    assert gw.rest.units_spent["order lookup"] - before == 3


async def test_an_undocumented_answer_is_logged_as_a_book_in_doubt_not_as_a_rejection(
        tmp_path: Path, venue: PaperVenue, worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    """The gateway's `undocumented_answer` line rides with an intent's errors (the bot reads its book
    back), but the venue refused nothing: neither the gateway nor the worker logs it as "order
    rejected" (it read as a refused order in the logs an operator reads)."""
    runner, proxy_url, session = await proxy_to(venue)
    via_proxy = SimpleNamespace(rest_url=proxy_url, ws_url=venue.ws_url, api_key=venue.api_key,
                                api_secret=venue.api_secret)
    gw = gateway_on(tmp_path, via_proxy)  # type: ignore[arg-type]  # only the venue's addresses are read
    try:
        async with running(gw):
            worker.on_account(await gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0)),
                              full=True)
            worker.market_ts = venue.market_us / 1e6
            intents = worker.make_intents(reply(float(venue.engine.last_price(BTC.product_id) or 0)))
            assert intents is not None and intents.place
            caplog.clear()
            res = await gw.execute(intents)
            worker.on_intent_result(res, time.perf_counter_ns())
    finally:
        await session.close()
        await runner.cleanup()
    assert [e.split(": ")[1] for e in res.errors] == ["undocumented_answer"] and res.venue_state_uncertain
    assert worker.needs_resync  # still read back
    said = [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "order rejected" in m], said
    assert [m for m in said if "book in doubt, reading it back" in m and "undocumented_answer" in m], said


async def test_a_read_back_refused_by_a_full_limiter_queue_keeps_the_gateway_up(
        tmp_path: Path, venue: PaperVenue) -> None:
    """The account limiter's queue is full (LimiterBusy: 1,000 requests wait for budget, exactly
    when budget is tight): the read back fails like a timeout would, the order stays in doubt for
    a later read, and the loop goes on. Before, LimiterBusy (not a DeltaError) ended reread_loop,
    and with it the gateway (run_until_stopped takes the process down with a dying loop)."""
    ours, below, placed = rests_ours(venue)
    gw = gateway_on(tmp_path, venue)
    gw.rest.limiter.max_waiting = 0  # every signed request: LimiterBusy
    gw.rereads.doubt(placed.id, "BTCUSD", time.monotonic() - 10.0)  # due now
    assert await gw.reread_due() == 0
    assert gw.rest_errors == 1
    assert gw.rereads.take(time.monotonic() + 60.0) == [(placed.id, "BTCUSD")]  # still in doubt, asked again later
