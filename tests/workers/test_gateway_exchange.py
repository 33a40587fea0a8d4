"""The exchange gateway against a real paper venue over loopback: which fills are news."""

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
from workers.runtime import ChildSpec
from workers.venue import PaperVenue, VenueSettings


async def fills_published(tmp_path: Path, venue: PaperVenue, last_stored_fill_ts: float) -> list[str]:
    """Start a gateway on `venue`, run its fill poll once, return the fill ids it sent to the ledger."""
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})
    spec = ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",),
                     last_stored_fill_ts=last_stored_fill_ts)
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


@pytest.mark.parametrize("stored_before", [True, False])
async def test_fills_made_while_we_were_down_reach_the_ledger(tmp_path: Path, stored_before: bool) -> None:
    # The venue's clock runs an hour behind the wall here, as a live fill from an hour ago would.
    hour_ago = int(time.time()) - 3600
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, start_ts=hour_ago), ["BTCUSD"])
    await venue.start()
    try:
        venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=2, order_type="market_order"))
        venue.ws.publish_engine_events()
        [made] = list(venue.engine.fills)
        made_ts = made.timestamp / 1e6
        assert made_ts < time.time() - 600  # older than the "last minute" rule would take
        last_stored = made_ts - 30.0 if stored_before else 0.0
        published = await fills_published(tmp_path, venue, last_stored)
    finally:
        await venue.stop()
    # With a ledger that ends before the fill, it is news; with an empty ledger (a new run dir on
    # an old account) fills older than a minute are history, read by the workers' reconciliation.
    assert published == ([made.id] if stored_before else [])
