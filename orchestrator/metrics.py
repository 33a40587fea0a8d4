"""Prometheus exposition of the status snapshot (prometheus_client, the ecosystem's standard)."""

from __future__ import annotations

import threading
from typing import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from wsgiref.simple_server import make_server

from shared.status import StatusSnapshot

_WORKER_GAUGES = (
    ("last_price", "Last traded price"),
    ("bar_count", "Bars in the shared-memory ring"),
    ("confidence", "Consensus confidence"),
    ("tick_to_signal_p50_us", "Tick receipt to signal receipt, p50 over the last minute (us)"),
    ("tick_to_signal_p99_us", "Tick receipt to signal receipt, p99 over the last minute (us)"),
    ("ticks", "Ticks received"),
    ("ticks_dropped", "Ticks lost (sequence gaps)"),
    ("loop_lag_ms", "Event-loop lag, max over the last heartbeat (ms)"),
    ("rss_mb", "Resident set size (MB)"),
    ("uss_mb", "Unique set size (MB)"),
    ("cpu_percent", "CPU percent"),
    ("restarts", "Restarts"),
    ("position", "Position (contracts)"),
    ("open_orders", "Open orders"),
    ("realized_pnl", "Realised PnL"),
    ("unrealized_pnl", "Unrealised PnL"),
    ("fees", "Fees paid"),
)


class SnapshotCollector:
    def __init__(self, get_snapshot: Callable[[], StatusSnapshot]) -> None:
        self._get = get_snapshot

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._get()
        for name, doc in _WORKER_GAUGES:
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
        h = GaugeMetricFamily("orchestrate_halted", "1 when account risk limits halted trading")
        h.add_metric([], 1.0 if snap.halted else 0.0)
        yield h


def start_metrics_server(host: str, port: int, get_snapshot: Callable[[], StatusSnapshot]) -> tuple[WSGIServer, int]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(get_snapshot))  # type: ignore[arg-type]
    app = make_wsgi_app(registry)
    httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
    thread.start()
    return httpd, httpd.server_port
