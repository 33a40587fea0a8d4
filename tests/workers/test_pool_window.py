"""The pool member copies only the newest bars of a symbol's window while the signal engine keeps
the symbol's state, and its replies are the ones the whole window gives (real ring, real engine)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import msgspec
import numpy as np

from shared.config import Config
from shared.messages import MessageCodec, SignalReply, SignalRequest
from shared.ring import BarRing
from shared.signals import BarWindow, SignalEngine
from shared.transport import make_endpoints
from workers.pool import TAIL_BARS, PoolMember
from workers.runtime import ChildSpec

WINDOW = 256
SYMBOLS = ("AAAUSD", "BBBUSD", "CCCUSD")


def _reply_of(codec: MessageCodec, payload: bytes) -> tuple[object, ...]:
    m = codec.decode(payload)
    assert isinstance(m, SignalReply)
    return (m.symbol, m.bar_count, m.bar_ts, m.direction, m.confidence, sorted(m.votes.items()),
            m.close, m.atr14, m.rsi14, m.valid, m.reason)


def _expected(r: object) -> tuple[object, ...]:
    ind = r.indicators  # type: ignore[attr-defined]
    return (r.symbol, r.bar_count, r.bar_ts, r.direction, r.confidence,  # type: ignore[attr-defined]
            sorted(r.votes.items()), ind.close, ind.atr14, ind.rsi14, r.valid, r.reason)  # type: ignore[attr-defined]


def test_a_warm_symbol_is_read_from_the_ring_tail_with_the_whole_windows_results(tmp_path: Path) -> None:
    cfg = msgspec.convert({"market": {"window_bars": WINDOW, "history_bars": 200}}, Config)
    ring_name = f"test-pool-{uuid.uuid4().hex[:8]}"
    ring = BarRing.create(ring_name, n_slots=len(SYMBOLS), capacity=WINDOW)
    spec = ChildSpec(kind="pool", name="pool-0", run_dir=str(tmp_path), ring_name=ring_name, config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, pool_index=0)
    member = PoolMember(spec)
    oracle = SignalEngine(cfg.signal, seed=cfg.market.seed)  # fed the whole window every time
    codec = MessageCodec("test")
    try:
        rng = np.random.default_rng(7)
        writers = [ring.writer(s) for s in range(len(SYMBOLS))]
        t0 = 1_700_000_000 // 60 * 60
        for w in writers:
            c = 100 + np.cumsum(rng.normal(0, 0.3, 200))
            ts = t0 - 199 * 60 + 60.0 * np.arange(200)
            w.load(ts, c, c + 0.4, c - 0.4, c, np.ones(200))
        last_ts = [float(t0)] * len(SYMBOLS)
        seq = 0
        tails = 0
        reasons: list[tuple[int, str]] = []

        def ask(slot: int) -> None:
            nonlocal seq, tails
            seq += 1
            req = SignalRequest(symbol=SYMBOLS[slot], slot=slot, seq=seq, bar_count=writers[slot].bar_count,
                                tick_recv_ns=1, sent_ns=2)
            read = member._read(req)
            assert read is not None
            if len(read.close) == TAIL_BARS:
                tails += 1
                assert read.first_index == min(WINDOW, read.bar_count) - TAIL_BARS
            got = _reply_of(codec, member.serve_batch([(b"id", req, 1)])[0][1])
            whole = member.ring.reader(slot).read_window(WINDOW)
            want = oracle.evaluate(BarWindow(SYMBOLS[slot], whole.bar_count, whole.ts, whole.open, whole.high,
                                             whole.low, whole.close, whole.volume))
            assert repr(got) == repr(_expected(want)), (slot, seq)  # repr: NaN == NaN
            reasons.append((int(got[1]), str(got[10])))  # type: ignore[call-overload]

        for step in range(60):
            for slot, w in enumerate(writers):
                price = 100.0 + math.sin(step + slot) * 2
                if step == 30 and slot == 1:  # many bars closed at once: more than the tail holds
                    for _ in range(TAIL_BARS + 3):
                        last_ts[slot] += 60.0
                        w.append(last_ts[slot], price, price + 0.5, price - 0.5, price, 1.0)
                elif step == 50 and slot == 0:
                    # the worker reloads its history (the venue's clock went back) with as many bars
                    # as it had: the same bar count, other bars. The tail's check of the last
                    # committed bar's time sends the pool to the whole window; a rebuild from the
                    # 16-bar tail would warm the indicators on 15 bars and keep that state.
                    n = w.bar_count
                    last_ts[slot] -= 3_600.0
                    c = 90 + np.cumsum(rng.normal(0, 0.3, n))
                    w.load(last_ts[slot] - 60.0 * np.arange(n)[::-1], c, c + 0.4, c - 0.4, c, np.ones(n))
                elif step == 40 and slot == 2:  # a bad forming bar: named by its whole-window index
                    w.update_last(price + 1, price - 1, math.nan, 1.0)
                elif step % 4 == 0:
                    last_ts[slot] += 60.0
                    w.append(last_ts[slot], price, price + 0.3, price - 0.3, price, 1.0)
                else:
                    w.update_last(price + 0.6, price - 0.6, price, 2.0)
                ask(slot)
        assert tails > 100  # the warm requests took the tail; rebuilds took the whole window
        # (its index in the whole window, not in the tail the pool read: the same words as the oracle's)
        assert any(f"bad forming bar at window index {min(WINDOW, n) - 1} " in r for n, r in reasons)
    finally:
        member.ring.close()
        ring.close()
        ring.unlink()
