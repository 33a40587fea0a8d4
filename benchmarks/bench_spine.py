"""Spine figures (issue 2): seqlocked window read, tick-to-signal with 2 symbols, worker USS,
and launch-to-first-signal for 50 symbols, each beside perf-floors' anchor."""

from __future__ import annotations

import statistics
import timeit
import uuid
from typing import Any

import numpy as np

from shared.ring import BarRing

from .harness import OrchestrateRun, all_signalled, print_table, row

FLOOR_SHM_READ_NS = 721.0  # perf-floors §3: seqlock check + copy of 1000 floats
FLOOR_RTT_P50_US = 123.0  # perf-floors: asyncio+uvloop worker -> pool -> worker, TA-Lib, unpinned
FLOOR_RTT_P99_US = 182.0
FLOOR_FORKSERVER_USS_MB = 6.2  # perf-floors §5: marginal USS of an idle forkserver child


def bench_ring_read() -> list[dict[str, Any]]:
    ring = BarRing.create(f"dgo-bench-{uuid.uuid4().hex[:8]}", n_slots=1, capacity=1024)
    try:
        w = ring.writer(0)
        for i in range(1024):
            w.append(i, 1, 2, 0.5, 1.5, 1)
        r = ring.reader(0)
        out = np.empty((6, 1000))
        n = 20_000
        best = min(timeit.repeat(lambda: r.read_window(1000, out), number=n, repeat=5)) / n * 1e9
    finally:
        ring.close()
        ring.unlink()
    # Our read copies six columns (OHLCV + ts); the floor copies one.
    return [row("seqlocked read of 1000 bars x 6 columns (ns)", best, "ns", FLOOR_SHM_READ_NS, "1-col copy floor")]


def _echo_server(endpoint: str) -> None:
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind(endpoint)
    while True:
        sock.send_multipart(sock.recv_multipart())


def bench_wakeup_floor(gap_s: float, n: int) -> tuple[float, float]:
    """A bare ZeroMQ DEALER/ROUTER echo between two processes, one message every `gap_s`: what
    this VM charges to wake an idle process, before any of our code runs. Sparse ticks pay it
    (measured here: ~40 us at 1 ms gaps, ~300 us at 10 ms, ~900 us at 100 ms)."""
    import multiprocessing as mp
    import tempfile
    import time

    import zmq
    endpoint = f"ipc://{tempfile.mkdtemp(prefix='dgo-echo-')}/echo"
    proc = mp.get_context("fork").Process(target=_echo_server, args=(endpoint,), daemon=True)
    proc.start()
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    lat = []
    try:
        for i in range(n + 5):
            t0 = time.perf_counter_ns()
            sock.send(b"x" * 110)
            sock.recv()
            if i >= 5:
                lat.append((time.perf_counter_ns() - t0) / 1000.0)
            time.sleep(gap_s)
    finally:
        proc.kill()
        ctx.destroy(linger=0)
    arr = np.array(lat)
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def bench_two_symbols(bar_seconds: float, seconds: float = 25.0) -> list[dict[str, Any]]:
    import time
    gap_s = bar_seconds / 4
    run = OrchestrateRun(["--symbols", "BTCUSD,ETHUSD", "--bar-seconds", str(bar_seconds)])
    try:
        doc = run.wait_for(all_signalled, 60)
        if doc is None:
            raise RuntimeError("2-symbol run never signalled")
        time.sleep(seconds)
        doc = run.status() or doc
    finally:
        run.stop()
    floor50, floor99 = bench_wakeup_floor(gap_s, n=min(400, int(20 / max(gap_s, 0.001))))
    p50 = statistics.median(w["tick_to_signal_p50_us"] for w in doc["workers"])
    p99 = max(w["tick_to_signal_p99_us"] for w in doc["workers"])
    uss = max(w["uss_mb"] or 0.0 for w in doc["workers"])
    rate = f"{1 / gap_s:.0f} ticks/s/symbol"
    return [
        row(f"2 symbols @ {rate}: tick-to-signal p50 (us)", p50, "us", FLOOR_RTT_P50_US,
            "perf-floors RTT @1kHz", target=250),
        row(f"2 symbols @ {rate}: tick-to-signal p99 (us)", p99, "us", FLOOR_RTT_P99_US,
            "perf-floors RTT @1kHz", target=1000),
        row("  bare zmq echo @ same gap, p50 (us)", floor50, "us", None, "wake-up floor, this run"),
        row("  tick-to-signal p50 / echo floor p50", p50 / floor50, "x", None, ""),
        row(f"2 symbols @ {rate}: worker USS, max (MB)", uss, "MB", FLOOR_FORKSERVER_USS_MB,
            "idle forkserver child", target=12),
    ]


def bench_fifty_symbol_start() -> list[dict[str, Any]]:
    syms = ",".join(f"SYN_{i:04d}" for i in range(1, 51))
    run = OrchestrateRun(["--symbols", syms, "--bar-seconds", "2.0"])
    try:
        doc = run.wait_for(all_signalled, 120)
        if doc is None:
            raise RuntimeError("50-symbol run did not signal on every symbol within 120 s")
        slowest = max(w["first_signal_after_launch_s"] for w in doc["workers"])
        uss = sorted(w["uss_mb"] or 0.0 for w in doc["workers"])
    finally:
        run.stop()
    return [
        row("50 symbols: launch to first signal on all (s)", slowest, "s", None, "", target=5),
        row("50 symbols: worker USS, median (MB)", statistics.median(uss), "MB", FLOOR_FORKSERVER_USS_MB,
            "idle forkserver child", target=12),
    ]


def main() -> list[dict[str, Any]]:
    rows = (bench_ring_read() + bench_two_symbols(0.004) + bench_two_symbols(0.02) + bench_two_symbols(0.4)
            + bench_fifty_symbol_start())
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
