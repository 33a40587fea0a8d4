"""The gateway's market-data fan-out on real zmq sockets: each worker's subscription gets its
own symbol's messages only (the PUB filters by topic, so a worker neither receives nor decodes
the others'), and the gateway's sends never wait on a subscriber that does not read."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import zmq
import zmq.asyncio

from shared.config import Config
from shared.messages import MessageCodec, Tick, topic
from shared.transport import make_endpoints, make_private_dir, socket_dir
from workers.gateway import MarketDataOut
from workers.runtime import ChildSpec, gateway_sockets


def _spec(tmp_path: Path) -> ChildSpec:
    make_private_dir(socket_dir(tmp_path))
    return ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="",
                     config=msgspec.convert({}, Config), endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0)


def _tick(symbol: str, seq: int) -> Tick:
    return Tick(symbol=symbol, epoch=1, seq=seq, price=100.0 + seq, size=1.0, exch_ts_us=seq,
                sent_ns=time.perf_counter_ns())


async def test_a_worker_subscribed_to_its_symbol_receives_no_other_symbols_ticks(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ctx = zmq.asyncio.Context()
    plain: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    codec = MessageCodec("test")
    try:
        pub, _router = gateway_sockets(ctx, spec, sndhwm=10_000)
        out = MarketDataOut(pub)
        subs = {}
        for sym in ("BTCUSD", "BTCUSDT", "ETHUSD"):  # BTCUSD is a prefix of BTCUSDT: the NUL ends the topic
            s = plain.socket(zmq.SUB)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(spec.endpoints.market_data)
            s.setsockopt(zmq.SUBSCRIBE, topic(sym))  # as workers/worker.py subscribes
            subs[sym] = s
        await asyncio.sleep(0.3)  # subscriptions reach the PUB
        symbols = ["BTCUSD", "BTCUSDT", "ETHUSD", "SOLUSD", "XRPUSD"]
        rounds = 50
        for seq in range(1, rounds + 1):
            for sym in symbols:
                await out.send_multipart((topic(sym), codec.encode(_tick(sym, seq))))
        for sym, s in subs.items():
            got: list[Tick] = []
            while s.poll(500):
                frames = s.recv_multipart()
                msg = codec.decode(frames[1])
                assert isinstance(msg, Tick)
                got.append(msg)
            assert {t.symbol for t in got} == {sym}, f"{sym}'s subscriber got {sorted({t.symbol for t in got})}"
            assert [t.seq for t in got] == list(range(1, rounds + 1))
    finally:
        plain.destroy(linger=0)
        ctx.destroy(linger=0)


async def test_sends_never_wait_on_a_subscriber_that_does_not_read(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ctx = zmq.asyncio.Context()
    plain: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    codec = MessageCodec("test")
    try:
        pub, _router = gateway_sockets(ctx, spec, sndhwm=100)
        out = MarketDataOut(pub)
        idle = plain.socket(zmq.SUB)
        idle.setsockopt(zmq.RCVHWM, 10)
        idle.connect(spec.endpoints.market_data)
        idle.setsockopt(zmq.SUBSCRIBE, topic("BTCUSD"))
        await asyncio.sleep(0.3)
        payload = codec.encode(_tick("BTCUSD", 1))

        async def flood() -> None:
            for _ in range(20_000):  # far past both high-water marks: the rest is dropped, not waited on
                await out.send_multipart((topic("BTCUSD"), payload))

        await asyncio.wait_for(flood(), timeout=10.0)
        kept = 0
        while idle.poll(200):
            idle.recv_multipart()
            kept += 1
        assert 0 < kept < 20_000
    finally:
        plain.destroy(linger=0)
        ctx.destroy(linger=0)
