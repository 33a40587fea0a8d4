"""Prometheus exposition of the status snapshot: prometheus_client (the ecosystem's standard)
writes the format; the supervisor's own event loop serves it with aiohttp. prometheus_client's
server takes a thread per connection with no timeout (400 idle connections made 400 threads and
hung 139 requests); here an idle or slow connection is closed after IDLE_TIMEOUT_S, the page is
built once per CACHE_S whatever the number of scrapers, and at most MAX_WAITING requests wait
for it (the rest get 503 at once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from shared.status import StatusSnapshot, WorkerStatus, worker_gauges

IDLE_TIMEOUT_S = 5.0
CACHE_S = 0.5
MAX_WAITING = 32

class SnapshotCollector:
    def __init__(self, get_snapshot: Callable[[], StatusSnapshot],
                 worker_type: type[WorkerStatus] = WorkerStatus) -> None:
        self._get = get_snapshot
        # one gauge per WorkerStatus field marked Gauge (shared/status.py), named after the field
        self._worker_gauges = worker_gauges(worker_type)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self._get()
        for name, doc in self._worker_gauges:
            g = GaugeMetricFamily(f"orchestrate_worker_{name}", doc, labels=["symbol"])
            for w in snap.workers:
                v = getattr(w, name)
                if v is not None:
                    g.add_metric([w.symbol], float(v))
            yield g
        sig = GaugeMetricFamily("orchestrate_worker_signal", "Consensus direction: 1 UP, -1 DOWN, 0 NONE",
                                labels=["symbol"])
        for w in snap.workers:
            sig.add_metric([w.symbol], {"UP": 1.0, "DOWN": -1.0}.get(w.signal, 0.0))
        yield sig
        for name in ("rss_mb", "uss_mb", "cpu_percent", "load", "restarts"):
            g = GaugeMetricFamily(f"orchestrate_process_{name}", f"Process {name}", labels=["kind", "name"])
            for p in snap.processes:
                v = getattr(p, name)
                if v is not None:
                    g.add_metric([p.kind, p.name], float(v))
            yield g
        h = GaugeMetricFamily("orchestrate_halted", "1 when trading is halted (account risk limit, storage)")
        h.add_metric([], 1.0 if snap.halted else 0.0)
        yield h
        om = GaugeMetricFamily("orchestrate_order_management_up",
                               "1 when the gateway manages the account's orders, 0 when it is down")
        om.add_metric([], 0.0 if snap.order_management.startswith("down") else 1.0)
        yield om
        st = GaugeMetricFamily("orchestrate_storage_ok", "1 when the ledger is being written, 0 when writes fail")
        st.add_metric([], 0.0 if snap.storage.startswith("failing") else 1.0)
        yield st
        for name, doc in (("equity", "Account equity the gateway last read (USD)"),
                          ("rate_budget_left", "Units left in the account's rate-limit window"),
                          ("rate_budget_capacity", "Units in the account's rate-limit window")):
            g = GaugeMetricFamily(f"orchestrate_account_{name}", doc)
            if (v := getattr(snap, name)) is not None:
                g.add_metric([], float(v))
            yield g
        yield from _alert_and_deadman_metrics(snap)


def _alert_and_deadman_metrics(snap: StatusSnapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Whether the trader would hear of trouble: alerts delivered, failed and dropped, and the
    dead-man switch (absent while unknown: alerts off, no gateway heartbeat yet)."""
    c = CounterMetricFamily("orchestrate_alerts", "Alerts since start by outcome: sent, failed (the receiver "
                            "refused or timed out), dropped (the queue was full)", labels=["outcome"])
    for outcome in ("sent", "failed", "dropped"):
        if (n := getattr(snap, f"alerts_{outcome}")) is not None:
            c.add_metric([outcome], float(n))
    yield c
    armed = GaugeMetricFamily("orchestrate_deadman_armed", "1 while the exchange holds the account's dead-man "
                              "switch (renewing or failing, not lapsed); 0 when off, not armed yet or lapsed")
    failing = GaugeMetricFamily("orchestrate_deadman_failing", "1 while the dead-man switch's renewals fail")
    left = GaugeMetricFamily("orchestrate_deadman_expires_in_seconds",
                             "Seconds until the exchange cancels the open orders unless a renewal gets through")
    if snap.deadman:
        armed.add_metric([], 1.0 if snap.deadman in ("armed", "failing") else 0.0)
        failing.add_metric([], 1.0 if snap.deadman in ("failing", "lapsed") else 0.0)
        if snap.deadman_expires_in_s is not None:
            left.add_metric([], float(snap.deadman_expires_in_s))
    yield from (armed, failing, left)


class MetricsServer:
    """GET /metrics on the running event loop."""

    def __init__(self, get_snapshot: Callable[[], StatusSnapshot]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(SnapshotCollector(get_snapshot))
        self._page = b""
        self._built_at = -1e9
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _metrics(self, request: web.Request) -> web.Response:
        if self._waiting >= MAX_WAITING:
            return web.Response(status=503, text="busy\n", headers={"Retry-After": "1"})
        self._waiting += 1
        try:
            async with self._lock:
                if time.monotonic() - self._built_at > CACHE_S:
                    self._page = generate_latest(self._registry)
                    self._built_at = time.monotonic()
                page = self._page
        finally:
            self._waiting -= 1
        return web.Response(body=page, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int, dashboard: Any = None) -> int:
        """Serve /metrics (and the dashboard's routes when given: orchestrator/dashboard/)."""
        app = web.Application(client_max_size=4096)
        app.router.add_get("/metrics", self._metrics)
        if dashboard is not None:
            dashboard.install(app)
        else:
            app.router.add_get("/", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=IDLE_TIMEOUT_S,
                                     max_line_size=4096, max_field_size=4096, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=128)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def add_site(self, host: str, port: int) -> int:
        """One more address for the same app (the dashboard on a non-loopback host); its port."""
        assert self._runner is not None
        before = {tuple(a) for a in self._runner.addresses}
        await web.TCPSite(self._runner, host, port, backlog=128).start()
        return int(next(a for a in self._runner.addresses if tuple(a) not in before)[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
