"""Bot worker: one asyncio process per symbol.

Market data in (SUB) -> its shared-memory bar ring (sole writer) -> a signal request to its pool
member (DEALER; only {symbol, slot, seq, bar_count, timestamps} travel, prices stay in shared
memory) -> the reply, timed from tick receipt (tick_to_signal) -> the trading decision.
At most one signal request is in flight: ticks that arrive meanwhile are folded into the next
request (the ring already holds them), so a slow pool costs freshness, never an unbounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time

import numpy as np
import zmq
import zmq.asyncio

from shared.bars import apply_tick
from shared.latency import RollingHistogram
from shared.messages import (ALL_TOPIC, Control, HistoryReply, HistoryRequest, MessageCodec,
                             SignalReply, SignalRequest, Tick, WorkerFigures, topic)
from shared.ring import BarRing

from .runtime import (ChildSpec, LoopLagMonitor, heartbeat_socket, install_stop_signals,
                      send_heartbeat, setup_logging, supervisor_alive)

log = logging.getLogger("worker")
SIGNAL_TIMEOUT_S = 2.0  # a pool member restart loses in-flight requests; ask again after this


class Worker:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.symbol = spec.name
        self.cfg = spec.config
        self.codec = MessageCodec(f"worker-{self.symbol}")
        self.ring = BarRing.attach(spec.ring_name)
        self.bars = self.ring.writer(spec.slot)
        self.latency = RollingHistogram(window_s=60.0, parts=6)
        self.state = "starting"
        self.paused = False
        self.last_price = math.nan
        self.ticks = 0
        self.ticks_dropped = 0
        self.ticks_late = 0
        self.last_seq = 0
        self.signals = 0
        self.last_signal: SignalReply | None = None
        self.first_signal_mono_ns = 0
        self.req_seq = 0
        self.in_flight: tuple[int, int, float] | None = None  # (seq, tick_recv_ns, sent monotonic s)
        self.pending_tick_ns = 0  # receipt time of the oldest tick not yet covered by a request
        self._leak: list[bytearray] = []

    # --- market data -------------------------------------------------------------------------

    def on_tick(self, tick: Tick, recv_ns: int) -> bool:
        """Apply a tick to the ring; True when a signal should be requested."""
        if self.last_seq and tick.seq > self.last_seq + 1:
            self.ticks_dropped += tick.seq - self.last_seq - 1
        if tick.seq <= self.last_seq:
            self.ticks_late += 1
            return False
        self.last_seq = tick.seq
        if not (tick.price > 0 and math.isfinite(tick.price)):
            self.codec.malformed += 1
            return False
        self.ticks += 1
        self.last_price = tick.price
        u = apply_tick(self.bars.last_bar(), tick.price, tick.size, tick.exch_ts_us)
        if u.kind == "new":
            self.bars.append(u.ts, u.open, u.high, u.low, u.close, u.volume)
        elif u.kind == "update":
            self.bars.update_last(u.high, u.low, u.close, u.volume)
        else:
            self.ticks_late += 1
            return False
        if self.pending_tick_ns == 0:
            self.pending_tick_ns = recv_ns
        return True

    def make_request(self) -> SignalRequest | None:
        if self.in_flight is not None or self.pending_tick_ns == 0:
            return None
        self.req_seq += 1
        req = SignalRequest(symbol=self.symbol, slot=self.spec.slot, seq=self.req_seq,
                            bar_count=self.bars.bar_count, tick_recv_ns=self.pending_tick_ns,
                            sent_ns=time.perf_counter_ns())
        self.in_flight = (self.req_seq, self.pending_tick_ns, time.monotonic())
        self.pending_tick_ns = 0
        return req

    def on_signal(self, reply: SignalReply, recv_ns: int) -> None:
        if self.in_flight is None or reply.seq != self.in_flight[0]:
            return  # a stale reply to a request we already gave up on
        tick_ns = self.in_flight[1]
        self.in_flight = None
        if self.first_signal_mono_ns:
            # The first reply includes the pool's warm-up from the whole window (tens of ms, once per
            # start); it is reported as start-up time, not as tick-to-signal latency.
            self.latency.record((recv_ns - tick_ns) / 1000.0, time.monotonic())
        self.signals += 1
        self.last_signal = reply
        if reply.valid and self.first_signal_mono_ns == 0:
            self.first_signal_mono_ns = recv_ns
            self.state = "running"
            log.info("%s: first signal %s (%.2f)", self.symbol, reply.direction, reply.confidence)

    def check_timeout(self) -> None:
        if self.in_flight and time.monotonic() - self.in_flight[2] > SIGNAL_TIMEOUT_S:
            # The request (or its reply) was lost: ask again, timed from the same tick.
            self.pending_tick_ns = self.pending_tick_ns or self.in_flight[1]
            self.in_flight = None

    # --- history -----------------------------------------------------------------------------

    def load_history(self, reply: HistoryReply) -> None:
        if reply.error:
            raise RuntimeError(f"history for {self.symbol}: {reply.error}")
        cols = [np.frombuffer(b, dtype=np.float64) for b in
                (reply.ts, reply.open, reply.high, reply.low, reply.close, reply.volume)]
        if any(len(c) != reply.n for c in cols):
            raise RuntimeError(f"history for {self.symbol}: inconsistent column lengths")
        if reply.n and (not np.all(np.isfinite(cols[4])) or np.any(cols[4] <= 0)):
            raise RuntimeError(f"history for {self.symbol}: NaN or non-positive close")
        self.bars.load(*cols)
        if reply.n:
            self.last_price = float(cols[4][-1])

    # --- status ------------------------------------------------------------------------------

    def figures(self, loop_lag_ms: float) -> WorkerFigures:
        w = self.latency.window(time.monotonic())
        sig = self.last_signal
        return WorkerFigures(
            state="paused" if self.paused else self.state, last_price=self.last_price,
            bar_count=self.bars.bar_count, ticks=self.ticks, ticks_dropped=self.ticks_dropped,
            signals=self.signals, signal=sig.direction if sig else "NONE",
            confidence=sig.confidence if sig else 0.0, votes=dict(sig.votes) if sig else {},
            tick_to_signal_p50_us=w.percentile(50), tick_to_signal_p99_us=w.percentile(99),
            tick_to_signal_p999_us=w.percentile(99.9),
            tick_to_signal_count=self.latency.lifetime.total, loop_lag_ms=loop_lag_ms,
            malformed=self.codec.malformed, first_signal_mono_ns=self.first_signal_mono_ns,
            note=(sig.reason if sig and not sig.valid else ""))

    def leak(self, mb: float) -> None:
        """Test-only fault (config [testing], needs ORCHESTRATE_TEST_FAULTS=1)."""
        chunk = bytearray(int(mb * 1024 * 1024))
        chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page so it counts as USS
        self._leak.append(chunk)


async def run(spec: ChildSpec) -> None:
    worker = Worker(spec)
    cfg = spec.config
    ctx = zmq.asyncio.Context()
    codec = worker.codec

    gw = ctx.socket(zmq.DEALER)
    gw.setsockopt(zmq.LINGER, 0)
    gw.connect(spec.endpoints.gateway)
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 10_000)
    sub.connect(spec.endpoints.market_data)
    sub.setsockopt(zmq.SUBSCRIBE, topic(worker.symbol))
    pool = ctx.socket(zmq.DEALER)
    pool.setsockopt(zmq.LINGER, 0)
    pool.connect(spec.endpoints.pools[spec.endpoints.pool_for(worker.symbol)])
    ctl = ctx.socket(zmq.SUB)
    ctl.setsockopt(zmq.LINGER, 0)
    ctl.connect(spec.endpoints.control)
    ctl.setsockopt(zmq.SUBSCRIBE, topic(worker.symbol))
    ctl.setsockopt(zmq.SUBSCRIBE, ALL_TOPIC)
    hb = heartbeat_socket(ctx, spec)

    stop = asyncio.Event()
    install_stop_signals(stop)
    lag = LoopLagMonitor()
    lag.start()

    # History first, so the very first tick already has a full window behind it.
    worker.state = "loading history"
    while True:
        await gw.send(codec.encode(HistoryRequest(symbol=worker.symbol, bars=cfg.market.history_bars,
                                                  sent_ns=time.perf_counter_ns())))
        if await gw.poll(5000):
            msg = codec.decode(await gw.recv())
            if isinstance(msg, HistoryReply) and msg.symbol == worker.symbol:
                worker.load_history(msg)
                break
        log.warning("%s: no history from the gateway yet; asking again", worker.symbol)
        if stop.is_set():
            return
    worker.state = "warming up"

    async def send_request() -> None:
        req = worker.make_request()
        if req is not None:
            await pool.send(codec.encode(req))

    async def market_loop() -> None:
        while True:
            _topic, payload = await sub.recv_multipart()
            recv_ns = time.perf_counter_ns()
            msg = codec.decode(payload)
            if isinstance(msg, Tick) and msg.symbol == worker.symbol:
                if worker.on_tick(msg, recv_ns):
                    await send_request()
            elif msg is not None:
                codec.malformed += 1

    async def signal_loop() -> None:
        while True:
            payload = await pool.recv()
            recv_ns = time.perf_counter_ns()
            msg = codec.decode(payload)
            if isinstance(msg, SignalReply):
                worker.on_signal(msg, recv_ns)
                await send_request()
            elif msg is not None:
                codec.malformed += 1

    async def control_loop() -> None:
        while True:
            _topic, payload = await ctl.recv_multipart()
            msg = codec.decode(payload)
            if not isinstance(msg, Control):
                continue
            if msg.command == "pause":
                worker.paused = True
            elif msg.command == "resume":
                worker.paused = False
            log.info("%s: control %s", worker.symbol, msg.command)

    async def housekeeping_loop() -> None:
        interval = cfg.supervision.heartbeat_interval_s
        leak_mb = cfg.testing.leak_mb_per_s if cfg.testing.leak_symbol in ("", worker.symbol) else 0.0
        while True:
            if not supervisor_alive(spec.supervisor_pid):
                log.warning("supervisor gone; exiting")
                stop.set()
                return
            worker.check_timeout()
            await send_request()
            if leak_mb > 0:
                worker.leak(leak_mb * interval)
            send_heartbeat(hb, codec, spec, worker.figures(lag.take_max_ms()))
            await asyncio.sleep(interval)

    tasks = [asyncio.create_task(c()) for c in (market_loop, signal_loop, control_loop, housekeeping_loop)]
    done_or_stop = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([*tasks, done_or_stop], return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    done_or_stop.cancel()
    for t in finished:
        if t is not done_or_stop and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]
    ctx.destroy(linger=0)


def main(spec: ChildSpec) -> None:
    setup_logging(spec.run_dir, f"worker-{spec.name}")
    try:
        asyncio.run(run(spec))
    except Exception:
        log.exception("worker %s crashed", spec.name)
        raise
    os._exit(0)
