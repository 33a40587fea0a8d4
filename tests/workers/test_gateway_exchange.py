"""The exchange gateway against a real paper venue over loopback: which fills are news. Fills
are read in the venue's order back to the ones the ledger has, never by time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from shared.config import load_config
from shared.matching import OrderRequest
from shared.messages import FillEvent, MessageCodec
from shared.transport import make_endpoints
from workers.gateway_exchange import ExchangeGateway
from workers.runtime import ChildSpec, VenueAccess
from workers.venue import PaperVenue, VenueSettings


async def fills_published(tmp_path: Path, venue: PaperVenue, stored: list[str], *,
                          paper: bool = False) -> list[str]:
    """Start a gateway on `venue`, run its fill poll once, return the fill ids it sent to the ledger."""
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})
    spec = ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",),
                     stored_fill_ids=tuple(reversed(stored)),  # the store gives them newest first
                     venue_access=VenueAccess(port=0, api_key="", api_secret="") if paper else None)
    conn = {"rest_url": venue.rest_url, "ws_url": venue.ws_url, "api_key": venue.api_key,
            "api_secret": venue.api_secret}
    ctx = zmq.asyncio.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sup = ctx.socket(zmq.PUSH)
    sup.connect(f"tcp://127.0.0.1:{port}")
    pub = ctx.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    gw = ExchangeGateway(spec, conn)
    codec = MessageCodec("test")
    try:
        await gw.start(pub, sup)
        gw.fill_wakeup.set()
        task = asyncio.create_task(gw.fill_loop())
        ids: list[str] = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if await pull.poll(200):
                msg = codec.decode(await pull.recv())
                if isinstance(msg, FillEvent):
                    ids.append(msg.fill.fill_id)
        task.cancel()
        return ids
    finally:
        await gw.stop()
        ctx.destroy(linger=0)


def trade(venue: PaperVenue, n: int) -> list[str]:
    """`n` market orders on BTCUSD (alternating sides): the ids of the fills they made, oldest first."""
    before = len(venue.engine.fills)
    for i in range(n):
        venue.engine.place_order(OrderRequest(product_id=27, side="buy" if i % 2 == 0 else "sell", size=1,
                                              order_type="market_order"))
    venue.ws.publish_engine_events()
    return [f.id for f in list(venue.engine.fills)[before:]]


async def started_venue(start_ts: float) -> PaperVenue:
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, start_ts=start_ts), ["BTCUSD"])
    await venue.start()
    return venue


async def test_fills_behind_the_newest_stored_one_in_time_are_still_news(tmp_path: Path) -> None:
    """The ledger's newest fill is an hour AHEAD of the venue's clock (a paper market that once
    restarted behind, or any clock jump): fills made after it are news all the same."""
    venue = await started_venue(time.time() - 7200)
    try:
        [old] = trade(venue, 1)
        new = trade(venue, 3)
        assert all(f.timestamp < time.time() * 1e6 - 3600e6 for f in venue.engine.fills)
        published = await fills_published(tmp_path, venue, [old])
    finally:
        await venue.stop()
    assert published == new


async def test_every_fill_past_the_known_ones_is_read_across_pages_and_holes(tmp_path: Path) -> None:
    venue = await started_venue(time.time())
    try:
        made = trade(venue, 130)  # three pages of 50
        known = made[:10] + made[11:20]  # the 11th never reached the ledger (a hole near the top)
        published = await fills_published(tmp_path, venue, known)
    finally:
        await venue.stop()
    assert published == [made[10]] + made[20:]  # oldest first, each once


@pytest.mark.parametrize("paper", [True, False])
async def test_an_empty_ledger_takes_every_paper_fill_but_no_live_history(tmp_path: Path, paper: bool) -> None:
    # The venue's clock runs two hours behind the wall here, as a live fill from then would.
    venue = await started_venue(time.time() - 7200)
    try:
        made = trade(venue, 2)
        published = await fills_published(tmp_path, venue, [], paper=paper)
    finally:
        await venue.stop()
    # A paper account lives in the run dir with its ledger: all of it is news. On a live account
    # a new run dir's ledger starts now; older fills are history the workers' reconciliation reads.
    assert published == (made if paper else [])


async def test_an_account_read_carries_the_venues_position(tmp_path: Path) -> None:
    from shared.messages import AccountRequest
    venue = await started_venue(time.time())
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})
    spec = ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",))
    gw = ExchangeGateway(spec, {"rest_url": venue.rest_url, "ws_url": venue.ws_url, "api_key": venue.api_key,
                                "api_secret": venue.api_secret})
    ctx = zmq.asyncio.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.bind("tcp://127.0.0.1:*")
        await gw.start(pub, ctx.socket(zmq.PUSH))
        trade(venue, 3)  # buy, sell, buy: +1
        snap = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
        assert snap.error == "" and snap.venue_position == 1 and len(snap.fills) == 3
    finally:
        await gw.stop()
        ctx.destroy(linger=0)
        await venue.stop()
