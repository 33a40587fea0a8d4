"""What the gateway tests share: an ExchangeGateway on a real paper venue, the sockets a
supervisor starts it with, and the gateway running for the length of an `async with` (started,
then stopped and its sockets closed whatever the test did)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from shared.config import load_config
from shared.messages import MessageCodec, topic
from shared.ring import BarRing
from shared.transport import make_endpoints
from workers.gateway_exchange import ExchangeGateway
from workers.runtime import ChildSpec, VenueAccess
from workers.venue import PaperVenue, VenueSettings
from workers.worker import Worker


def gateway_on(tmp_path: Path, venue: PaperVenue, stored: Sequence[str] = (), *,
               symbols: Sequence[str] = ("BTCUSD",), paper: bool = False,
               public_ws_url: str | None = None) -> ExchangeGateway:
    """A gateway for `symbols` on `venue`. `stored`: the fill ids the ledger has, oldest first;
    `paper`: it knows the venue is the paper one (as the supervisor's venue access says);
    `public_ws_url`: the public host it takes trades from (None: none, the main socket's)."""
    cfg, _ = load_config(None, {"run": {"symbols": list(symbols)}})
    spec = ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=tuple(symbols),
                     stored_fill_ids=tuple(reversed(stored)),  # the store gives them newest first
                     venue_access=VenueAccess(port=0, api_key="", api_secret="") if paper else None)
    conn = {"rest_url": venue.rest_url, "ws_url": venue.ws_url, "api_key": venue.api_key,
            "api_secret": venue.api_secret}
    if public_ws_url is not None:
        conn["public_ws_url"] = public_ws_url
    return ExchangeGateway(spec, conn)


def supervisor_sockets(ctx: zmq.asyncio.Context) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket, zmq.asyncio.Socket]:
    """What a gateway is started with: (our end of its supervisor socket, that socket, its PUB)."""
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    sup = ctx.socket(zmq.PUSH)
    sup.connect(f"tcp://127.0.0.1:{port}")
    pub = ctx.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    return pull, sup, pub


async def started_venue(start_ts: float, symbols: Sequence[str] = ("BTCUSD", "ETHUSD")) -> PaperVenue:
    """A paper venue whose market hardly moves (an hour a bar) from `start_ts`."""
    venue = PaperVenue(VenueSettings(bar_seconds=3600, history_bars=200, start_ts=start_ts), list(symbols))
    await venue.start()
    return venue


@dataclass
class RunningGateway:
    gw: ExchangeGateway
    pull: zmq.asyncio.Socket  # what the gateway sends its supervisor
    sub: zmq.asyncio.Socket  # what it publishes on the watched symbols' topics
    codec: MessageCodec

    async def published(self, timeout_ms: int = 200) -> Any | None:
        """The next message it published for a watched symbol; None when none came in time."""
        if not await self.sub.poll(timeout_ms):
            return None
        _, raw = await self.sub.recv_multipart()
        return self.codec.decode(raw)

    async def sent_up(self, kind: type, timeout_ms: int = 500) -> list[Any]:
        """Every message of `kind` it sent its supervisor until it fell silent for `timeout_ms`."""
        got = []
        while await self.pull.poll(timeout_ms):
            if isinstance(msg := self.codec.decode(await self.pull.recv()), kind):
                got.append(msg)
        return got


@contextlib.asynccontextmanager
async def running(gw: ExchangeGateway, watch: Sequence[str] = ()) -> AsyncIterator[RunningGateway]:
    """`gw` started as the supervisor starts it, with a subscriber on the `watch` symbols."""
    ctx = zmq.asyncio.Context()
    try:
        pull, sup, pub = supervisor_sockets(ctx)
        sub = ctx.socket(zmq.SUB)
        sub.connect(str(pub.getsockopt_string(zmq.LAST_ENDPOINT)))
        for symbol in watch:
            sub.setsockopt(zmq.SUBSCRIBE, topic(symbol))
        await gw.start(pub, sup)
        yield RunningGateway(gw, pull, sub, MessageCodec("test"))
    finally:
        await gw.stop()
        ctx.destroy(linger=0)


def btc_worker(tmp_path: Path) -> Iterator[Worker]:
    """A BTCUSD Worker (bot g1) in this process, on a ring of its own: for a fixture to `yield from`."""
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"], "bot_id": "g1"}})
    name = f"dgw-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ring = BarRing.create(name, n_slots=1, capacity=64)
    try:
        yield Worker(ChildSpec(kind="worker", name="BTCUSD", run_dir=str(tmp_path), ring_name=name, config=cfg,
                               endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, slot=0))
    finally:
        ring.close()
        ring.unlink()

