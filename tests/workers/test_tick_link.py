"""The gateway -> worker tick link (Unix SOCK_SEQPACKET beside the market-data PUB's socket): the
gateway's real MarketDataOut over a real zmq PUB, the worker's real PacketLink and SUB, on real
sockets in a private directory. A linked symbol's ticks leave the PUB for the link, other
symbols and other messages stay on the PUB; a full link drops and counts instead of blocking or
growing; a worker that links again replaces its link; a gateway that restarts is linked again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from shared.messages import MessageCodec, OrderEvent, Tick, topic
from shared.trading.orders import OpenOrder
from shared.transport import TICK_LINK_HANDOVER, TICK_LINK_HELLO, make_private_dir, packet_path
from workers.gateway import MarketDataOut
from workers.runtime import PacketLink

CODEC = MessageCodec("test")


def tick(symbol: str, seq: int) -> Tick:
    return Tick(symbol=symbol, epoch=1, seq=seq, price=100.0 + seq, size=1.0, exch_ts_us=seq,
                sent_ns=time.perf_counter_ns())


class Gateway:
    def __init__(self, ctx: zmq.asyncio.Context, url: str) -> None:
        self.pub = ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(url)
        self.out = MarketDataOut(self.pub, max_links=4)

    async def publish(self, t: Tick) -> None:
        await self.out.send_multipart((topic(t.symbol), CODEC.encode(t)))

    def close(self) -> None:
        self.out.close()
        self.pub.close(0)


async def until(cond: object, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


async def drain_sub(sub: zmq.asyncio.Socket, wait_s: float = 0.3) -> list[object]:
    out = []
    while await sub.poll(int(wait_s * 1000)):
        out.append(CODEC.decode((await sub.recv_multipart())[1]))
    return out


async def link_recv(link: PacketLink, within_s: float = 5.0) -> bytes:
    return await asyncio.wait_for(link.recv(), within_s)


@pytest.fixture
def md_url(tmp_path: Path) -> str:
    d = tmp_path / "sock"
    make_private_dir(d)
    return f"ipc://{d}/md"


async def test_a_linked_symbols_ticks_leave_the_pub_for_the_link(md_url: str) -> None:
    ctx = zmq.asyncio.Context()
    gw = Gateway(ctx, md_url)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect(md_url)
    for s in ("ETHUSD", "BTCUSD"):
        sub.setsockopt(zmq.SUBSCRIBE, topic(s))
    path = packet_path(md_url)
    assert path is not None
    link = PacketLink(path)
    try:
        await asyncio.sleep(0.3)  # the SUB's subscription reaches the PUB
        await gw.publish(tick("ETHUSD", 1))  # before the link: on the PUB, and remembered for the handover
        got = await drain_sub(sub)
        assert [(m.symbol, m.seq) for m in got if isinstance(m, Tick)] == [("ETHUSD", 1)]
        assert link.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))
        handover = await link_recv(link)
        assert handover.startswith(TICK_LINK_HANDOVER)
        last = CODEC.decode(handover[len(TICK_LINK_HANDOVER):])
        assert isinstance(last, Tick) and last.seq == 1
        for seq in (2, 3):
            await gw.publish(tick("ETHUSD", seq))
        await gw.publish(tick("BTCUSD", 1))  # not linked: the PUB
        order = OrderEvent(symbol="ETHUSD", order=OpenOrder(order_id=1, symbol="ETHUSD", side="buy", price=99.0,
                                                              size=1, unfilled_size=1), sent_ns=0)
        await gw.out.send_multipart((topic("ETHUSD"), CODEC.encode(order)))  # not a tick: the PUB
        on_link = [CODEC.decode(await link_recv(link)) for _ in range(2)]
        assert [(m.symbol, m.seq) for m in on_link if isinstance(m, Tick)] == [("ETHUSD", 2), ("ETHUSD", 3)]
        got = await drain_sub(sub)
        assert [(m.symbol, m.seq) for m in got if isinstance(m, Tick)] == [("BTCUSD", 1)]
        assert [type(m) for m in got if not isinstance(m, Tick)] == [OrderEvent]
        # The worker restarts: its new link replaces the old one, which is closed.
        link2 = PacketLink(path)
        assert link2.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))
        assert (await link_recv(link2)).startswith(TICK_LINK_HANDOVER)
        await until(lambda: not link.connected)
        await gw.publish(tick("ETHUSD", 4))
        got4 = CODEC.decode(await link_recv(link2))
        assert isinstance(got4, Tick) and got4.seq == 4
        # It dies: its ticks go on the PUB again.
        link2.close()
        await asyncio.sleep(0.1)
        await gw.publish(tick("ETHUSD", 5))
        await gw.publish(tick("ETHUSD", 6))
        got = await drain_sub(sub)
        assert [m.seq for m in got if isinstance(m, Tick)][-1] == 6
    finally:
        link.close()
        gw.close()
        sub.close(0)
        ctx.term()


async def test_a_worker_not_reading_costs_dropped_ticks_never_a_blocked_gateway(md_url: str) -> None:
    ctx = zmq.asyncio.Context()
    gw = Gateway(ctx, md_url)
    path = packet_path(md_url)
    assert path is not None
    link = PacketLink(path)
    try:
        assert link.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))
        await until(lambda: gw.out.links is not None and topic("ETHUSD") in gw.out.links.by_topic)
        # The worker's loop does not run while the gateway writes 5,000 ticks (a worker stalled).
        started = time.perf_counter()
        for seq in range(1, 5001):
            await gw.publish(tick("ETHUSD", seq))
        assert time.perf_counter() - started < 2.0
        assert gw.out.links is not None
        dropped = gw.out.links.dropped
        assert 0 < dropped < 5000  # the socket's buffer took some, the rest were dropped and counted
        seqs = []
        while True:
            try:
                data = await asyncio.wait_for(link.recv(), 0.5)
            except TimeoutError:
                break
            m = CODEC.decode(data)
            if isinstance(m, Tick):
                seqs.append(m.seq)
        # in order, and what the link's inbox kept ends with a gap the worker counts by seq
        assert seqs == sorted(seqs) and len(seqs) < 5000 - dropped + 1
    finally:
        link.close()
        gw.close()
        ctx.term()


async def test_a_restarted_gateway_is_linked_again_at_the_same_place(md_url: str) -> None:
    ctx = zmq.asyncio.Context()
    gw = Gateway(ctx, md_url)
    path = packet_path(md_url)
    assert path is not None
    link = PacketLink(path)
    try:
        assert link.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))
        assert (await link_recv(link)).startswith(TICK_LINK_HANDOVER)
        gw.close()
        await until(lambda: not link.connected)
        assert not link.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))  # nobody listening: said so
        gw = Gateway(ctx, md_url)
        assert link.send_nowait(TICK_LINK_HELLO + topic("ETHUSD"))
        assert (await link_recv(link)).startswith(TICK_LINK_HANDOVER)
        await gw.publish(tick("ETHUSD", 1))
        got1 = CODEC.decode(await link_recv(link))
        assert isinstance(got1, Tick) and got1.seq == 1
    finally:
        link.close()
        gw.close()
        ctx.term()
