"""The Prometheus endpoint on the supervisor's event loop: idle connections cost no thread and
are closed, scrapes are answered while hundreds of them hang around."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp

from orchestrator import metrics
from orchestrator.metrics import MetricsServer
from shared.status import StatusSnapshot


def _snapshot() -> StatusSnapshot:
    return StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0,
                          uptime_s=1.0, order_management="down: gateway failed", storage="ok")


async def test_idle_connections_take_no_thread_time_out_and_do_not_stop_scrapes(monkeypatch) -> None:
    monkeypatch.setattr(metrics, "IDLE_TIMEOUT_S", 1.0)
    server = MetricsServer(_snapshot)
    port = await server.start("127.0.0.1", 0)
    threads = threading.active_count()
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(300)]
    try:
        t0 = time.monotonic()
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
                body = await r.text()
        assert time.monotonic() - t0 < 1.0
        assert r.status == 200 and "orchestrate_order_management_up 0.0" in body
        assert "orchestrate_storage_ok 1.0" in body
        assert threading.active_count() == threads  # not a thread per connection
        closed = 0
        for reader, _ in idle:  # the server hangs up on connections that never ask
            try:
                if await asyncio.wait_for(reader.read(), timeout=5) == b"":
                    closed += 1
            except (ConnectionError, asyncio.TimeoutError):
                pass
        assert closed == len(idle)
    finally:
        for _, w in idle:
            w.close()
        await server.stop()
