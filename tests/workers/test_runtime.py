"""Process-runtime helpers that every child uses."""

from __future__ import annotations

import asyncio
import time

import zmq
import zmq.asyncio

from workers.runtime import DutyOnWake, LoopLagMonitor, send_nowait


async def test_send_nowait_reports_a_full_queue_on_an_asyncio_socket() -> None:
    # An asyncio socket hands back a finished future holding zmq.Again instead of raising: the
    # helper must read it (else asyncio logs "exception was never retrieved" per dropped send).
    ctx = zmq.asyncio.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 1)
        push.setsockopt(zmq.LINGER, 0)
        push.connect("tcp://127.0.0.1:9")  # nobody listening: at most the HWM is queued
        outcomes = [send_nowait(push, b"x") for _ in range(5)]
        assert outcomes[0] is True and outcomes[-1] is False
    finally:
        ctx.destroy(linger=0)


def test_send_nowait_on_a_plain_socket() -> None:
    ctx = zmq.Context()
    try:
        pull = ctx.socket(zmq.PULL)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"tcp://127.0.0.1:{port}")
        assert send_nowait(push, b"hello")
        assert pull.poll(2000) and pull.recv() == b"hello"
    finally:
        ctx.destroy(linger=0)


def test_a_log_file_on_a_full_disk_says_so_once_without_a_traceback(small_disk, capsys) -> None:
    import logging

    from workers.runtime import bounded_log_handler

    handler = bounded_log_handler(small_disk.path / "x.log")
    logger = logging.getLogger("full-disk-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before")
        small_disk.fill()
        for _ in range(2000):  # past the last page the file had
            logger.warning("a line that needs room " * 4)
        err = capsys.readouterr().err
        assert err.count("cannot write log") == 1 and "Traceback" not in err, err
        small_disk.free()
        logger.warning("after")
        handler.flush()
        assert "after" in (small_disk.path / "x.log").read_text()
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_idle_subscribers_cannot_make_the_gateway_hold_much(tmp_path) -> None:
    import subprocess
    import sys
    import time
    from pathlib import Path

    import psutil

    from shared.config import load_config
    from shared.transport import make_endpoints
    from workers.runtime import ChildSpec, gateway_sockets

    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})
    spec = ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",))
    Path(spec.endpoints.sock_dir).mkdir()
    ctx = zmq.Context()  # the same sockets as the gateway's asyncio ones, without a loop
    pub, _router = gateway_sockets(ctx, spec, sndhwm=100_000)  # type: ignore[arg-type]  # a plain context: same sockets, no loop
    # Someone connects 8 subscribers to every topic and never reads.
    idle = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, zmq\n"
        "c = zmq.Context(); socks = []\n"
        "for _ in range(8):\n"
        "    s = c.socket(zmq.SUB); s.setsockopt(zmq.RCVHWM, 1); s.setsockopt(zmq.RCVBUF, 4096)\n"
        "    s.connect(sys.argv[1]); s.setsockopt(zmq.SUBSCRIBE, b''); socks.append(s)\n"
        "time.sleep(60)\n"), spec.endpoints.market_data])
    try:
        time.sleep(1.0)
        before = psutil.Process().memory_info().rss / 2**20
        frame = b"BTCUSD\0" + b"x" * 120
        for _ in range(200_000):
            send_nowait(pub, frame)
        time.sleep(0.5)
        grown = psutil.Process().memory_info().rss / 2**20 - before
        assert grown < 25, f"the gateway grew {grown:.0f} MB for subscribers that never read"
    finally:
        idle.kill()
        idle.wait()
        ctx.destroy(linger=0)


async def test_a_duty_rides_on_wake_ups_and_its_own_timer_fires_only_when_none_come() -> None:
    lag = LoopLagMonitor()
    duty = DutyOnWake(period_s=0.3, grace_s=0.3, lag=lag)

    async def fallback() -> None:  # as the worker's housekeeping loop
        while True:
            await duty.wait_timer()
            duty.begin(time.monotonic(), on_timer=True)

    task = asyncio.create_task(fallback())
    try:
        # Wake-ups every 30 ms for 1.5 s (ticks): the duty runs in them, its timer never fires.
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.5:
            await asyncio.sleep(0.03)
            now = time.monotonic()
            if duty.due(now):
                duty.begin(now)
        assert duty.on_timer == 0 and 3 <= duty.on_wake <= 5
        assert not duty.due(time.monotonic())
        # No wake-ups (a quiet market): the timer runs it, grace past due.
        await asyncio.sleep(1.4)
        assert duty.on_timer == 2  # at ~0.6 s and ~1.2 s
    finally:
        task.cancel()
        duty.close()
