"""Gateway process: the one owner of the account's market I/O.

Market source today: replay of the shipped real candles (seeded model for SYN_ symbols), each bar
as four ticks (open, nearer extreme, farther extreme, close) spread over `bar_seconds` of wall
time. The market clock is derived from the run's start time, so a restarted gateway resumes
where the market is instead of rewinding it.

Publishes `Tick`s on PUB by symbol topic; answers `HistoryRequest`s on its ROUTER.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import numpy as np
import zmq
import zmq.asyncio

from shared.marketdata import BAR_SECONDS, ReplayMarket, candle_ticks
from shared.messages import GatewayFigures, HistoryReply, HistoryRequest, MessageCodec, Tick, topic
from shared.transport import packet_path

from .runtime import (
    ChildSpec,
    LoopLagMonitor,
    TickLinks,
    gateway_sockets,
    heartbeat_socket,
    install_stop_signals,
    run_event_loop,
    run_until_stopped,
    send_heartbeat,
    setup_logging,
    supervisor_alive,
)

log = logging.getLogger("gateway")


# A tick's frame as msgspec encodes it: the tag field comes first, after the map's header byte
# (tests/workers/test_tick_link.py holds the codec to it). Order and fill events stay on the PUB.
_TICK_TAG = b"\xa1t\xa4tick"
MAX_TICK_LINKS = 4096  # when the caller does not say how many symbols it serves


class MarketDataOut:
    """The market-data PUB written as a plain zmq socket: zmq.asyncio made a future per tick
    (its send path was ~23% of the exchange gateway's Python time at 200 symbols, py-spy --gil),
    and a PUB never waits for anyone: at a subscriber's high-water mark it drops that
    subscriber's copy (ticks carry sequence numbers; workers count the gaps). Subscribers
    filter by symbol topic (shared.messages.topic), so the PUB sends each worker its symbol
    only. A shadow of the asyncio socket, which keeps owning it (closed with its context).

    Where the PUB is ipc:// (workers on this box), a symbol whose worker has linked
    (runtime.TickLinks, beside the PUB's socket file) gets its ticks on that link instead: no
    ZeroMQ I/O thread wakes on either side for them. Other messages, and every symbol without
    a link (a worker starting, or on another box over tcp://), stay on the PUB."""

    def __init__(self, pub: zmq.asyncio.Socket, max_links: int = MAX_TICK_LINKS) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Socket.shadow(pub.underlying)
        path = packet_path(self.sock.getsockopt_string(zmq.LAST_ENDPOINT))
        self.links: TickLinks | None = None
        if path is not None:  # one listener a process: the exchange gateway makes a new out at each start try
            if (links := _TICK_LINKS.get(path)) is None:
                # one link per symbol, twice over: a restarted worker's new link can come before its old one's close
                links = _TICK_LINKS[path] = TickLinks(path, 2 * max_links + 16)
            self.links = links

    async def send_multipart(self, frames: tuple[bytes, bytes]) -> None:
        links = self.links
        if links is not None and frames[1].startswith(_TICK_TAG, 1):
            if links.send(frames[0], frames[1]):
                return
            links.last_on_pub[frames[0]] = frames[1]  # the handover to a link that comes later
        self.sock.send_multipart(frames, zmq.NOBLOCK)

    def close(self) -> None:
        if self.links is not None:
            _TICK_LINKS.pop(self.links.listener.path, None)
            self.links.close()
            self.links = None


_TICK_LINKS: dict[str, TickLinks] = {}


class ReplaySource:
    """Bars for every symbol on one market clock; keeps the last `keep` bars per symbol for
    history requests from (re)starting workers (bounded deque)."""

    def __init__(self, symbols: tuple[str, ...], run_start_wall: float, bar_seconds: float,
                 history_bars: int, keep: int, seed: int, files: dict[str, str] | None = None) -> None:
        self.bar_seconds = bar_seconds
        self.run_start_wall = run_start_wall
        start_ts = int(run_start_wall)
        self.markets = {s: ReplayMarket.for_symbol(s, start_ts, history_bars, seed, files) for s in symbols}
        self.emitted: dict[str, collections.deque[tuple[float, ...]]] = {
            s: collections.deque(maxlen=keep) for s in symbols}
        self.current: dict[str, tuple[int, float, float, float, float, float]] = {}
        self.bar_index = -1
        self._seek_to_clock()

    def _seek_to_clock(self) -> None:
        index = max(0, int((time.time() - self.run_start_wall) / self.bar_seconds))
        # Rebuild the recently emitted bars too, so history stays continuous after a restart.
        backfill = min(index, max(d.maxlen or 0 for d in self.emitted.values()) if self.emitted else 0)
        for sym, m in self.markets.items():
            m.seek(index - backfill)
            for _ in range(backfill):
                self.emitted[sym].append(m.next_bar())
        self.bar_index = index - 1

    def clock_position(self, now_wall: float) -> tuple[int, int]:
        """(bar index, tick phase 0..3) the wall clock says the market is at."""
        elapsed = max(0.0, now_wall - self.run_start_wall)
        bar = int(elapsed / self.bar_seconds)
        phase = min(3, int((elapsed - bar * self.bar_seconds) / (self.bar_seconds / 4)))
        return bar, phase

    def advance_bar(self) -> None:
        if self.bar_index >= 0:
            for sym, bar in self.current.items():
                self.emitted[sym].append(bar)
        self.bar_index += 1
        for sym, m in self.markets.items():
            self.current[sym] = m.next_bar()

    def history(self, symbol: str, bars: int) -> tuple[np.ndarray, ...]:
        m = self.markets[symbol]
        h = m.history()
        rows = [tuple(r) for r in zip(h.ts, h.open, h.high, h.low, h.close, h.volume, strict=True)]
        rows.extend(self.emitted[symbol])
        rows = rows[-bars:]
        arr = np.asarray(rows, dtype=np.float64)
        return tuple(np.ascontiguousarray(arr[:, i]) for i in range(6))


async def run(spec: ChildSpec) -> None:
    cfg = spec.config
    codec = MessageCodec(spec.name)
    ctx = zmq.asyncio.Context()
    pub_socket, router = gateway_sockets(ctx, spec, sndhwm=10_000)
    pub = MarketDataOut(pub_socket, max_links=len(spec.symbols))
    hb = heartbeat_socket(ctx, spec)
    stop = asyncio.Event()
    install_stop_signals(stop)
    lag = LoopLagMonitor()
    lag.start()

    run_start = spec.run_start_wall or time.time()
    source = ReplaySource(spec.symbols, run_start, cfg.market.bar_seconds, cfg.market.history_bars,
                          keep=cfg.market.window_bars, seed=cfg.market.seed, files=cfg.market.data)
    seqs = {s: 0 for s in spec.symbols}
    epoch = time.time_ns()
    topics = {s: topic(s) for s in spec.symbols}
    stats = {"ticks": 0, "requests": 0}

    async def publish_loop() -> None:
        next_bar, next_phase = source.clock_position(time.time())
        while not stop.is_set():
            now_bar, now_phase = source.clock_position(time.time())
            # Emit every tick up to the clock position (catches up after a stall, in order).
            while (next_bar, next_phase) <= (now_bar, now_phase):
                if next_phase == 0 or source.bar_index < next_bar:
                    while source.bar_index < next_bar:
                        source.advance_bar()
                for sym in spec.symbols:
                    ts, o, h, low, c, v = source.current[sym]
                    price = candle_ticks(o, h, low, c)[next_phase]
                    seqs[sym] += 1
                    tick = Tick(symbol=sym, epoch=epoch, seq=seqs[sym], price=price, size=v / 4.0,
                                exch_ts_us=int((ts + next_phase * BAR_SECONDS / 4) * 1_000_000),
                                sent_ns=time.perf_counter_ns())
                    await pub.send_multipart((topics[sym], codec.encode(tick)))
                    stats["ticks"] += 1
                next_phase += 1
                if next_phase == 4:
                    next_bar, next_phase = next_bar + 1, 0
            next_wall = run_start + next_bar * source.bar_seconds + next_phase * source.bar_seconds / 4
            await asyncio.sleep(max(0.0, next_wall - time.time()))

    async def request_loop() -> None:
        while not stop.is_set():
            frames = await router.recv_multipart()
            if len(frames) != 2:
                codec.malformed += 1
                continue
            ident, payload = frames
            msg = codec.decode(payload)
            if not isinstance(msg, HistoryRequest):
                if msg is not None:
                    codec.malformed += 1
                continue
            stats["requests"] += 1
            if msg.symbol not in source.markets:
                reply = HistoryReply(symbol=msg.symbol, n=0, ts=b"", open=b"", high=b"", low=b"",
                                     close=b"", volume=b"", error=f"gateway does not serve {msg.symbol}")
            else:
                cols = source.history(msg.symbol, msg.bars)
                reply = HistoryReply(symbol=msg.symbol, n=len(cols[0]),
                                     ts=cols[0].tobytes(), open=cols[1].tobytes(), high=cols[2].tobytes(),
                                     low=cols[3].tobytes(), close=cols[4].tobytes(), volume=cols[5].tobytes())
            await router.send_multipart((ident, codec.encode(reply)))

    async def heartbeat_loop() -> None:
        while not stop.is_set():
            if not supervisor_alive(spec.supervisor_pid):
                log.warning("supervisor %d gone; exiting", spec.supervisor_pid)
                stop.set()
                return
            send_heartbeat(hb, codec, spec, GatewayFigures(
                ticks_published=stats["ticks"], symbols=len(spec.symbols), source="replay",
                requests=stats["requests"], malformed=codec.malformed, loop_lag_ms=lag.take_max_ms()))
            await asyncio.sleep(cfg.supervision.heartbeat_interval_s)

    log.info("gateway up: %d symbols, bar every %.3fs", len(spec.symbols), cfg.market.bar_seconds)
    try:
        await run_until_stopped([publish_loop, request_loop, heartbeat_loop], stop)
    finally:
        pub.close()
        ctx.destroy(linger=0)


def main(spec: ChildSpec) -> None:
    setup_logging(spec.run_dir, spec.name)
    try:
        if spec.config.market.source == "replay":
            run_event_loop(run(spec))
        else:
            from .gateway_exchange import run_exchange
            code = run_event_loop(run_exchange(spec))
            if code:
                raise SystemExit(code)
    except Exception:
        log.exception("gateway crashed")
        raise
