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
            except (TimeoutError, ConnectionError):
                pass
        assert closed == len(idle)
    finally:
        for _, w in idle:
            w.close()
        await server.stop()


async def _scrape(snap: StatusSnapshot) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families
    server = MetricsServer(lambda: snap)
    port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    finally:
        await server.stop()
    return {s.name + "".join(f"{{{k}={v}}}" for k, v in sorted(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


async def test_alert_counters_and_the_dead_man_switch_are_exported() -> None:
    snap = _snapshot()
    snap.alerts_sent, snap.alerts_failed, snap.alerts_dropped = 7, 2, 1
    snap.deadman, snap.deadman_expires_in_s = "failing", 212.5
    got = await _scrape(snap)
    assert got["orchestrate_alerts_total{outcome=sent}"] == 7.0
    assert got["orchestrate_alerts_total{outcome=failed}"] == 2.0
    assert got["orchestrate_alerts_total{outcome=dropped}"] == 1.0
    assert got["orchestrate_deadman_armed"] == 1.0 and got["orchestrate_deadman_failing"] == 1.0
    assert got["orchestrate_deadman_expires_in_seconds"] == 212.5

    snap.deadman, snap.deadman_expires_in_s = "armed", 290.0
    got = await _scrape(snap)
    assert (got["orchestrate_deadman_armed"], got["orchestrate_deadman_failing"]) == (1.0, 0.0)
    snap.deadman, snap.deadman_expires_in_s = "lapsed", 0.0
    got = await _scrape(snap)
    assert (got["orchestrate_deadman_armed"], got["orchestrate_deadman_failing"]) == (0.0, 1.0)
    snap.deadman, snap.deadman_expires_in_s = "off", None
    got = await _scrape(snap)
    assert got["orchestrate_deadman_armed"] == 0.0 and "orchestrate_deadman_expires_in_seconds" not in got

    # alerts off and no gateway heartbeat yet: nothing is invented
    got = await _scrape(_snapshot())
    assert not any(k.startswith(("orchestrate_alerts", "orchestrate_deadman")) for k in got), got
