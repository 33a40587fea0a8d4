"""A real worker process (workers.worker.main) between real sockets standing in for its gateway,
pool member (the PacketLink's listener) and supervisor: while ticks come, its housekeeping and heartbeat ride on
their wake-ups, every `worker_heartbeat` period (2 s by default, not 1 s: each beat cost a
wake-up of the worker and of the supervisor); when they stop, its own timer keeps the beats
coming well inside the supervisor's heartbeat timeout."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from shared.messages import (
    Heartbeat,
    HistoryReply,
    HistoryRequest,
    MessageCodec,
    SignalReply,
    SignalRequest,
    Tick,
    WorkerFigures,
    topic,
)
from shared.supervision import worker_heartbeat
from shared.transport import make_private_dir, packet_path
from workers import worker as worker_process
from workers.runtime import ChildSpec, PacketListener

HISTORY_BARS = 30
TICK_EVERY_S = 0.1
TICKING_S = 6.5
QUIET_S = 7.0


@pytest.fixture
def spec(worker_spec: Callable[..., ChildSpec]) -> ChildSpec:
    s = worker_spec({"market": {"source": "replay"}})  # signals only: no account traffic to serve
    assert not s.config.market.through_venue
    # the test process plays the supervisor: the worker stops when it is gone
    return ChildSpec(kind=s.kind, name=s.name, run_dir=s.run_dir, ring_name=s.ring_name, config=s.config,
                     endpoints=s.endpoints, supervisor_pid=os.getpid(), slot=s.slot)


def _history(n: int, t0_s: float) -> HistoryReply:
    ts = np.arange(n, dtype=np.float64) * 60.0 + (t0_s - n * 60.0)
    close = 2000.0 + np.arange(n, dtype=np.float64)
    vol = np.ones(n)
    return HistoryReply(symbol="ETHUSD", n=n, ts=ts.tobytes(), open=close.tobytes(), high=(close + 1).tobytes(),
                        low=(close - 1).tobytes(), close=close.tobytes(), volume=vol.tobytes())


def _reply(req: SignalRequest) -> SignalReply:
    return SignalReply(symbol=req.symbol, seq=req.seq, bar_count=req.bar_count, bar_ts=0.0, direction="UP",
                       confidence=0.9, votes={}, close=2000.0, atr14=2.0, rsi14=50.0, valid=True, reason="",
                       batch_size=1, compute_ns=1000, sent_ns=time.perf_counter_ns(), read_ns=time.perf_counter_ns())


def test_heartbeats_ride_on_ticks_every_period_and_keep_coming_when_ticks_stop(spec: ChildSpec) -> None:
    period, grace = worker_heartbeat(spec.config.supervision)
    assert (period, grace) == (2.0, 1.0)
    codec = MessageCodec("test")
    ctx = zmq.Context()
    socks: dict[str, zmq.Socket[bytes]] = {}
    proc = None
    links: PacketListener | None = None
    try:
        make_private_dir(Path(spec.endpoints.sock_dir))
        ep = spec.endpoints
        for name, kind, url in (("gw", zmq.ROUTER, ep.gateway), ("md", zmq.PUB, ep.market_data),
                                ("sup", zmq.PULL, ep.supervisor),
                                ("ctl", zmq.PUB, ep.control)):
            sock = ctx.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(url)
            socks[name] = sock
        proc = multiprocessing.get_context("spawn").Process(target=worker_process.main, args=(spec,), daemon=True)
        proc.start()
        link_path = packet_path(ep.pools[0])
        assert link_path is not None
        links = PacketListener(link_path, max_links=1)
        poller = zmq.Poller()
        for name in ("gw", "sup"):
            poller.register(socks[name], zmq.POLLIN)
        poller.register(links.sock.fileno(), zmq.POLLIN)
        beats: list[tuple[float, WorkerFigures]] = []  # (arrival monotonic s, figures)
        history_sent = False
        seq = 0
        price = 2000.0
        ticking_from = ticking_until = math.inf
        next_tick = 0.0
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            now = time.monotonic()
            if now > ticking_until + QUIET_S:
                break
            if history_sent and now >= next_tick and now < ticking_until:
                seq += 1
                price += 0.5 if seq % 2 else -0.25  # a new close every tick: every one asks a signal
                tick = Tick(symbol="ETHUSD", epoch=1, seq=seq, price=price, size=1.0,
                            exch_ts_us=int(time.time() * 1e6), sent_ns=time.perf_counter_ns())
                socks["md"].send_multipart((topic("ETHUSD"), codec.encode(tick)))
                next_tick = now + TICK_EVERY_S
            for sock, _ in poller.poll(timeout=20):
                if sock == links.sock.fileno():
                    for conn in links.accept():
                        poller.register(conn.fileno(), zmq.POLLIN)
                    continue
                if isinstance(sock, int):  # the worker's link: its signal requests
                    link = links.links[sock]
                    packets, still_open = links.read(link, 16)
                    if not still_open:
                        poller.unregister(sock)
                    for data in packets:
                        req = codec.decode(data)
                        assert isinstance(req, SignalRequest)
                        links.send(link, codec.encode(_reply(req)))
                    continue
                frames = sock.recv_multipart()
                msg = codec.decode(frames[-1])
                if sock is socks["gw"] and isinstance(msg, HistoryRequest):
                    socks["gw"].send_multipart((frames[0], codec.encode(_history(HISTORY_BARS, time.time()))))
                    history_sent = True
                    ticking_from = time.monotonic() + 1.0  # the SUB's subscription has reached the PUB
                    ticking_until = ticking_from + TICKING_S
                    next_tick = ticking_from
                elif sock is socks["sup"] and isinstance(msg, Heartbeat) and isinstance(msg.figures, WorkerFigures):
                    beats.append((time.monotonic(), msg.figures))
        assert history_sent and beats, "the worker never started"
        # While ticking (after its first second, the worker's first signal): a beat every period.
        window = [t for t, f in beats if ticking_from + 1.5 <= t <= ticking_until]
        ticked = [f for t, f in beats if t <= ticking_until]
        assert ticked[-1].signals > 10, "ticks did not reach the worker"
        span = ticking_until - (ticking_from + 1.5)
        assert len(window) <= math.ceil(span / period) + 1, [round(t - ticking_from, 2) for t in window]  # 1 s: 5-6
        # Ticks stopped: the worker's own timer keeps beating, every period + grace.
        quiet = [t for t, _ in beats if t > ticking_until]
        assert len(quiet) >= 2, [round(t - ticking_until, 2) for t in quiet]
        gaps = [b - a for a, b in zip([ticking_until, *quiet], quiet, strict=False)]
        assert max(gaps) < spec.config.supervision.heartbeat_timeout_s, gaps
        assert proc.is_alive()
    finally:
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        if links is not None:
            links.close()
        ctx.destroy(linger=0)
