"""The gateway's funding reader against a real paper venue over loopback: every funding entry of
the wallet ledger reaches the supervisor once, in the venue's order, across pages, restarts
(read back to the ids the ledger has) and a supervisor that is not taking them."""

from __future__ import annotations

import asyncio
import functools
import time
from decimal import Decimal as D
from pathlib import Path

import zmq
import zmq.asyncio

from shared.delta.rest import DeltaRestClient
from shared.matching import OrderRequest
from shared.messages import FundingRecord, MessageCodec
from workers.gateway_funding import FundingReader
from workers.venue import PaperVenue, VenueSettings

INTERVAL_S = 600


async def venue_with_funding(n: int, size: int = 7) -> PaperVenue:
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200, funding_interval_s=INTERVAL_S),
                       ["BTCUSD", "ETHUSD"])
    await venue.start()
    venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=size, order_type="market_order"))
    venue.ws.publish_engine_events()
    await wait_funding(venue, n)
    return venue


async def wait_funding(venue: PaperVenue, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(venue.engine.funding) < n:
        assert time.monotonic() < deadline, "the venue charged no funding"
        await asyncio.sleep(0.05)


async def drain(pull: zmq.asyncio.Socket, codec: MessageCodec) -> list[FundingRecord]:
    out = []
    while await pull.poll(300):
        msg = codec.decode(await pull.recv())
        assert isinstance(msg, FundingRecord)
        out.append(msg)
    return out


async def test_every_funding_entry_reaches_the_ledger_once_in_the_venues_order() -> None:
    venue = await venue_with_funding(4)
    ctx = zmq.asyncio.Context()
    codec = MessageCodec("test")
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sup = ctx.socket(zmq.PUSH)
    sup.connect(f"tcp://127.0.0.1:{port}")
    nobody = ctx.socket(zmq.PUSH)  # a supervisor socket no one reads: every send is refused
    rest = DeltaRestClient(venue.rest_url, venue.api_key, venue.api_secret)
    pages = functools.partial(rest.get_wallet_transactions_page, page_size=2)  # many pages: the cursor at work
    by_product = {27: "BTCUSD", 3136: "ETHUSD"}
    try:
        refused = FundingReader(pages, nobody, codec, by_product, (), live=False)
        assert await refused.read_new() == 0 and refused.handed == 0

        reader = FundingReader(pages, sup, codec, by_product, (), live=False)
        handed = await reader.read_new()
        got = await drain(pull, codec)
        assert handed == len(got) >= 4
        venue_funding = {f"{2 * fp.seq}": fp for fp in venue.engine.funding}  # the ledger's id of each
        assert [r.funding.funding_id for r in got] == [k for k in venue_funding if k in
                                                       {r.funding.funding_id for r in got}]  # oldest first
        for r in got:
            fp = venue_funding[r.funding.funding_id]
            assert r.funding.symbol == "BTCUSD" and D(r.funding.amount) == fp.amount
            assert fp.position == 7 and (fp.amount < 0) == (fp.rate > 0)  # a long pays a positive rate
            assert r.funding.ts == fp.timestamp / 1e6
        again = await reader.read_new()  # only what was charged since (the market runs on): nothing twice
        extra = await drain(pull, codec)
        assert again == len(extra) and not {r.funding.funding_id for r in extra} & {r.funding.funding_id for r in got}
        got += extra

        # more funding; a restarted gateway reads back to the ids the ledger has, and no further
        await wait_funding(venue, len(venue.engine.funding) + 2)
        stored = tuple(r.funding.funding_id for r in reversed(got))  # newest first, as the store gives them
        restarted = FundingReader(pages, sup, codec, by_product, stored, live=False)
        await restarted.read_new()
        later = await drain(pull, codec)
        ids = [r.funding.funding_id for r in got + later]
        assert len(later) >= 2 and len(ids) == len(set(ids))
        newest_us = later[-1].funding.ts * 1e6
        assert set(ids) == {f"{2 * fp.seq}" for fp in venue.engine.funding if fp.timestamp <= newest_us}
    finally:
        await rest.close()
        ctx.destroy(linger=0)
        await venue.stop()


async def test_a_restarted_reader_stops_at_the_fills_the_ledger_has_not_at_the_last_funding() -> None:
    venue = await venue_with_funding(2)
    ctx = zmq.asyncio.Context()
    codec = MessageCodec("test")
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sup = ctx.socket(zmq.PUSH)
    sup.connect(f"tcp://127.0.0.1:{port}")
    rest = DeltaRestClient(venue.rest_url, venue.api_key, venue.api_secret)
    pages = functools.partial(rest.get_wallet_transactions_page, page_size=5)
    for t in venue._tasks:  # the market stands still from here: no funding time passes by itself
        if t.get_name() == "venue-replay":
            t.cancel()
    try:
        first = FundingReader(pages, sup, codec, {27: "BTCUSD"}, (), live=False)
        await first.read_new()
        got = await drain(pull, codec)
        stored_funding = tuple(r.funding.funding_id for r in reversed(got))
        for _ in range(40):  # hours of trading since the last funding time: 80 ledger entries
            venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=1, order_type="market_order"))
            venue.engine.place_order(OrderRequest(product_id=27, side="sell", size=1, order_type="market_order"))
        # then one funding time the ledger has not seen
        after = venue.engine.funding_settled_until(27) + INTERVAL_S * 1_000_000
        fresh = venue.engine.charge_funding(27, D("0.0001"), after)
        venue.ws.publish_engine_events()
        assert fresh is not None
        stored_fills = tuple(f.id for f in reversed(venue.engine.fills))  # the ledger has them all
        blind = FundingReader(pages, sup, codec, {27: "BTCUSD"}, stored_funding, live=False)
        await blind.read_new()
        blind_news = [r.funding.funding_id for r in await drain(pull, codec)]
        sighted = FundingReader(pages, sup, codec, {27: "BTCUSD"}, stored_funding, live=False,
                                stored_fill_ids=stored_fills)
        await sighted.read_new()
        sighted_news = [r.funding.funding_id for r in await drain(pull, codec)]
        assert sighted_news == blind_news == [f"{2 * fresh.seq}"]  # the same news...
        assert sighted.pages_read <= 2 < 16 <= blind.pages_read  # ...for a page or two, not the whole stretch
    finally:
        await rest.close()
        ctx.destroy(linger=0)
        await venue.stop()


async def test_the_equity_the_account_risk_limits_read_holds_the_funding(tmp_path: Path) -> None:
    """The supervisor's daily-loss and drawdown limits read the gateway's equity: the wallet's
    balance (which every funding payment moved) plus unrealised PnL."""
    from tests.workers.gateway_support import gateway_on, running

    venue = await venue_with_funding(3, size=500)  # ~0.03 USD a funding time
    for t in venue._tasks:  # the market stands still: the figures below cannot move under the read
        if t.get_name() == "venue-replay":
            t.cancel()
    e = venue.engine
    assert e.funding_total != 0
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total + e.funding_total
    gw = gateway_on(tmp_path, venue, paper=True)
    try:
        async with running(gw):
            task = asyncio.create_task(gw.account_loop())
            deadline = time.monotonic() + 10
            while gw.equity != gw.equity and time.monotonic() < deadline:  # NaN until the first read
                await asyncio.sleep(0.05)
            task.cancel()
            upnl = sum((e.unrealized_pnl(pid) for pid in (27,)), D(0))
            # floats on the wire (balance + unrealised): equal to far below a cent
            assert abs(D(repr(gw.equity)) - (e.balance + upnl)) < D("1e-6") < abs(e.funding_total) / 100
    finally:
        await venue.stop()
