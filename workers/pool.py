"""Compute-pool member: serves signal requests for the symbols that hash to it.

A plain blocking zmq loop (no asyncio: it is the hot path and zmq.asyncio adds 20-30 us per round
trip, perf-floors §1). Each wake-up drains every pending request (bounded), reads each symbol's
window straight from shared memory (a seqlocked copy, no prices through sockets), evaluates all of
them in one `SignalEngine.evaluate_batch` pass, and replies.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import socket
import time

import numpy as np
import zmq

from shared.messages import MessageCodec, PoolFigures, RLTable, SignalReply, SignalRequest
from shared.ring import BarRing, RingError, SlotReader
from shared.signals import BarWindow, SignalConfig, SignalEngine
from shared.transport import packet_path

from .runtime import ChildSpec, PacketListener, heartbeat_socket, send_heartbeat, setup_logging, supervisor_alive

log = logging.getLogger("pool")
ReplyTo = bytes | socket.socket  # a ZeroMQ identity (the ROUTER) or a worker's PacketLink connection
MAX_BATCH = 512  # bound on one pass; the rest waits for the next pass
RL_SAVE_INTERVAL_S = 60.0  # learned tables go to the supervisor's SQLite this often and at exit
# Bars copied for a request while the engine keeps the symbol's state (SignalEngine.tail_suffices):
# it reads the forming bar and the few closed since the last request; the whole window only to rebuild.
TAIL_BARS = 16


class PoolMember:
    def __init__(self, spec: ChildSpec, signal_config: SignalConfig | None = None) -> None:
        self.spec = spec
        cfg = spec.config
        self.window_bars = cfg.market.window_bars
        self.ring = BarRing.attach(spec.ring_name)
        self.engine = SignalEngine(signal_config or cfg.signal, seed=cfg.market.seed)
        self.codec = MessageCodec(spec.name)
        self.readers: dict[int, SlotReader] = {}
        self.buffers: dict[int, np.ndarray] = {}  # one reusable window buffer per slot (bounded by slots)
        self.requests = 0
        self.batches = 0
        self.max_batch = 0
        self.busy_ns = 0
        self.symbols: set[str] = set()
        for symbol, table in spec.rl_tables.items():
            try:
                self.engine.import_rl_table(symbol, table)
            except Exception as exc:  # a table from an older layout must not stop the pool
                log.warning("%s: stored RL table not loaded (%s); learning afresh", symbol, exc)

    def rl_tables(self) -> list[RLTable]:
        out = []
        for symbol in sorted(self.symbols):
            try:
                out.append(RLTable(symbol=symbol, table=self.engine.export_rl_table(symbol),
                                   sent_ns=time.perf_counter_ns()))
            except KeyError:
                continue
        return out

    def serve_batch(self, pending: list[tuple[ReplyTo, SignalRequest, int]]) -> list[tuple[ReplyTo, bytes]]:
        """Each pending request is (where its reply goes: the asker's ZeroMQ identity or its
        PacketLink connection, the request, when it was read)."""
        t0 = time.perf_counter_ns()
        # One evaluation per symbol even if it asked twice in this pass (newest request wins).
        latest: dict[str, int] = {}
        windows: list[BarWindow] = []
        for _ident, req, _read_ns in pending:
            if req.symbol in latest:
                continue
            win = self._read(req)
            if win is None:
                continue
            latest[req.symbol] = len(windows)
            windows.append(win)
        results = self.engine.evaluate_batch(windows) if windows else []
        compute_ns = time.perf_counter_ns() - t0
        out = []
        for ident, req, read_ns in pending:
            idx = latest.get(req.symbol)
            if idx is None:
                reply = SignalReply(symbol=req.symbol, seq=req.seq, bar_count=req.bar_count, bar_ts=0.0,
                                    direction="NONE", confidence=0.0, votes={}, close=math.nan,
                                    atr14=math.nan, rsi14=math.nan, valid=False,
                                    reason="pool could not read the symbol's window",
                                    batch_size=len(pending), compute_ns=compute_ns,
                                    sent_ns=time.perf_counter_ns(), read_ns=read_ns)
            else:
                r = results[idx]
                ind = r.indicators
                reply = SignalReply(symbol=req.symbol, seq=req.seq, bar_count=r.bar_count, bar_ts=r.bar_ts,
                                    direction=r.direction, confidence=r.confidence, votes=dict(r.votes),
                                    close=ind.close, atr14=ind.atr14, rsi14=ind.rsi14, valid=r.valid,
                                    reason=r.reason, batch_size=len(pending), compute_ns=compute_ns,
                                    sent_ns=time.perf_counter_ns(), read_ns=read_ns)
            out.append((ident, self.codec.encode(reply)))
        self.requests += len(pending)
        self.batches += 1
        self.max_batch = max(self.max_batch, len(pending))
        self.busy_ns += time.perf_counter_ns() - t0
        return out

    def _read(self, req: SignalRequest) -> BarWindow | None:
        if not 0 <= req.slot < self.ring.n_slots:
            self.codec.malformed += 1
            return None
        reader = self.readers.get(req.slot)
        if reader is None:
            reader = self.readers[req.slot] = self.ring.reader(req.slot)
            self.buffers[req.slot] = np.empty((6, self.window_bars))
        buf, first = self.buffers[req.slot], 0
        try:
            if self.engine.tail_suffices(req.symbol, req.bar_count, TAIL_BARS):
                w = reader.read_window(TAIL_BARS, buf)
                # nothing more arrived meanwhile, and the same data (the times line up)
                if self.engine.tail_suffices(req.symbol, w.bar_count, len(w.close), w.ts):
                    first = min(self.window_bars, w.bar_count) - len(w.close)
                else:
                    w = reader.read_window(self.window_bars, buf)
            else:
                w = reader.read_window(self.window_bars, buf)
        except RingError as exc:
            log.warning("%s: %s", req.symbol, exc)
            return None
        self.symbols.add(req.symbol)
        return BarWindow(req.symbol, w.bar_count, w.ts, w.open, w.high, w.low, w.close, w.volume, first)

    def figures(self, interval_ns: int) -> PoolFigures:
        busy = self.busy_ns / interval_ns if interval_ns else 0.0
        self.busy_ns = 0
        return PoolFigures(requests=self.requests, batches=self.batches, max_batch=self.max_batch,
                           symbols=len(self.symbols), busy_fraction=round(busy, 4),
                           malformed=self.codec.malformed)


# Every symbol's tick waits on the pool: in the per-hop breakdown a slow tick spent most of its
# time in its request sitting unread in the pool's socket while the pool waited for a core (to_pool).
# So the pool runs ahead of the workers and the rest of the tree when the process may raise its
# priority (root, CAP_SYS_NICE); where it may not, it runs as before.
PRIORITY_BOOST = 5


def raise_priority(boost: int) -> bool:
    """Lower this thread's nice value by `boost` (threads it starts later inherit it); False if
    not permitted."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) - boost)
    except OSError:
        return False
    return True


def run(spec: ChildSpec) -> None:
    # first: zmq's I/O thread, which receives the requests, is started below and inherits it
    boosted = raise_priority(PRIORITY_BOOST)
    member = PoolMember(spec)
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, 100_000)
    router.bind(spec.endpoints.pools[spec.pool_index])
    hb = heartbeat_socket(ctx, spec)
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    interval_ns = int(spec.config.supervision.heartbeat_interval_s * 1e9)
    ledger = ctx.socket(zmq.PUSH)  # RL tables: small, infrequent, not droppable like heartbeats
    ledger.setsockopt(zmq.LINGER, 2000)
    ledger.connect(spec.endpoints.supervisor)

    def save_tables() -> None:
        for t in member.rl_tables():
            try:
                ledger.send(member.codec.encode(t), zmq.NOBLOCK)
            except zmq.Again:
                log.warning("supervisor not taking RL tables; %s kept for the next save", t.symbol)
                return

    # One epoll over the ROUTER (ZeroMQ's FD: edge-triggered, so ZMQ_EVENTS is read before every
    # sleep), the workers' PacketLinks and a wake-up pipe for SIGTERM (epoll retries on EINTR).
    path = packet_path(spec.endpoints.pools[spec.pool_index])
    # Bounded by the run's symbols, twice over: a restarted worker's new link can come before its
    # old one's close has been read.
    links = PacketListener(path, max_links=2 * len(spec.config.run.symbols) + 16) if path else None
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    ep = select.epoll()
    router_fd = int(router.getsockopt(zmq.FD))
    ep.register(router_fd, select.EPOLLIN)
    ep.register(wake_r, select.EPOLLIN)
    listening = links is not None
    if links is not None:
        ep.register(links.sock.fileno(), select.EPOLLIN)
    next_save = time.monotonic() + RL_SAVE_INTERVAL_S
    next_hb = time.perf_counter_ns()
    last_hb = next_hb
    log.info("pool member %d up%s%s", spec.pool_index, f" (nice {os.getpriority(os.PRIO_PROCESS, 0)})" if boosted
             else " (at the tree's priority: raising it is not permitted here)",
             f"; workers' signal links on {path}" if path else "")
    while not stopping:
        pending: list[tuple[ReplyTo, SignalRequest, int]] = []
        router_ready = bool(int(router.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
        timeout_s = 0.0 if router_ready else max(0, next_hb - time.perf_counter_ns()) / 1e9
        for fd, _ev in ep.poll(timeout_s, MAX_BATCH):
            if fd == router_fd or fd == wake_r:
                if fd == wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                continue
            if links is None:
                continue
            if fd == links.sock.fileno():
                refused = links.refused
                for conn in links.accept():
                    ep.register(conn.fileno(), select.EPOLLIN)
                if links.refused > refused:  # out of descriptors: stop listening until the next heartbeat
                    ep.unregister(fd)
                    listening = False
                continue
            link = links.links.get(fd)
            if link is None:
                continue
            packets, _open = links.read(link, MAX_BATCH - len(pending))
            for data in packets:
                read_ns = time.perf_counter_ns()
                msg = member.codec.decode(data)
                if isinstance(msg, SignalRequest):
                    pending.append((link, msg, read_ns))
                elif msg is not None:
                    member.codec.malformed += 1
        while len(pending) < MAX_BATCH and int(router.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            try:
                frames = router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            read_ns = time.perf_counter_ns()
            if len(frames) != 2:
                member.codec.malformed += 1
                continue
            msg = member.codec.decode(frames[1])
            if isinstance(msg, SignalRequest):
                pending.append((frames[0], msg, read_ns))
            elif msg is not None:
                member.codec.malformed += 1
        if pending:
            for to, payload in member.serve_batch(pending):
                if isinstance(to, bytes):
                    router.send_multipart((to, payload))
                elif links is not None:
                    links.send(to, payload)
        now = time.perf_counter_ns()
        if now >= next_hb:
            if links is not None and not listening:
                ep.register(links.sock.fileno(), select.EPOLLIN)
                listening = True
            if not supervisor_alive(spec.supervisor_pid):
                log.warning("supervisor gone; exiting")
                break
            send_heartbeat(hb, member.codec, spec, member.figures(now - last_hb))
            last_hb = now
            next_hb = now + interval_ns
            if time.monotonic() >= next_save:
                save_tables()
                next_save = time.monotonic() + RL_SAVE_INTERVAL_S
    signal.set_wakeup_fd(-1)
    ep.close()
    if links is not None:
        if links.unsent:
            log.info("replies not sent (a worker's link full or gone): %d", links.unsent)
        links.close()
    os.close(wake_r)
    os.close(wake_w)
    save_tables()
    ledger.close(linger=2000)
    ctx.destroy(linger=0)
    member.ring.close()


def main(spec: ChildSpec) -> None:
    setup_logging(spec.run_dir, spec.name)
    try:
        run(spec)
    except Exception:
        log.exception("pool member crashed")
        raise
    os._exit(0)
