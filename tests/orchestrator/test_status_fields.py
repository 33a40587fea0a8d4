"""A worker figure has one home (issue 11 §3): the status row copies the worker's figures by field
name, and the Prometheus gauges are the WorkerStatus fields marked Gauge, so a new figure needs
no edit in orchestrator/status_builder.py or orchestrator/metrics.py."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from orchestrator import status_builder as sb
from orchestrator.metrics import SnapshotCollector
from shared.messages import WorkerFigures
from shared.status import Gauge, StatusSnapshot, WorkerStatus, worker_gauges

# What deploy/grafana and the operators' alerts read: these names must not move.
EXPORTED_BEFORE = {
    "last_price", "bar_count", "confidence", "tick_to_signal_p50_us", "tick_to_signal_p99_us", "ticks",
    "ticks_dropped", "loop_lag_ms", "rss_mb", "uss_mb", "cpu_percent", "restarts", "position", "open_orders",
    "realized_pnl", "unrealized_pnl", "fees", "funding",
}


class FiguresWithQueue(WorkerFigures, frozen=True, kw_only=True, tag="worker"):
    intent_queue_depth: int = 0


class StatusWithQueue(WorkerStatus, kw_only=True):
    intent_queue_depth: Annotated[int, Gauge("Order intents waiting for the gateway")] = 0


def _row(cls: type[WorkerStatus] = WorkerStatus, **kw: Any) -> WorkerStatus:
    base: dict[str, Any] = dict(symbol="BTCUSD", pid=1, state="running", uptime_s=1.0, restarts=2, rss_mb=50.0,
                                uss_mb=40.0, cpu_percent=3.0, budget="ok", heartbeat_age_s=0.5,
                                first_signal_after_launch_s=1.0, last_price=60_000.0, position=3.0)
    return cls(**{**base, **kw})


def _page(snap: StatusSnapshot, worker_type: type[WorkerStatus] = WorkerStatus) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: snap, worker_type))
    return generate_latest(registry).decode()


def _snapshot(workers: list[WorkerStatus]) -> StatusSnapshot:
    return StatusSnapshot(run_dir="run", mode="paper", venue="paper", supervisor_pid=1, started_at=0.0,
                          uptime_s=1.0, workers=workers)


def test_the_exported_worker_gauges_keep_their_names_and_help() -> None:
    gauges = dict(worker_gauges())
    assert set(gauges) == EXPORTED_BEFORE
    assert gauges["realized_pnl"] == "Realised PnL" and gauges["restarts"] == "Restarts"
    page = _page(_snapshot([_row()]))
    assert '# HELP orchestrate_worker_realized_pnl Realised PnL' in page
    assert 'orchestrate_worker_restarts{symbol="BTCUSD"} 2.0' in page
    assert 'orchestrate_worker_position{symbol="BTCUSD"} 3.0' in page
    assert 'orchestrate_worker_loop_lag_ms{symbol="BTCUSD"}' not in page  # null: no sample, not 0


def test_a_new_numeric_status_field_is_exported_without_touching_metrics() -> None:
    assert ("intent_queue_depth", "Order intents waiting for the gateway") in worker_gauges(StatusWithQueue)
    page = _page(_snapshot([_row(StatusWithQueue, intent_queue_depth=7)]), StatusWithQueue)
    assert "# HELP orchestrate_worker_intent_queue_depth Order intents waiting for the gateway" in page
    assert 'orchestrate_worker_intent_queue_depth{symbol="BTCUSD"} 7.0' in page


def test_a_gauge_on_a_field_that_is_not_a_number_is_refused() -> None:
    class Wrong(WorkerStatus, kw_only=True):
        mood: Annotated[str, Gauge("not a number")] = ""

    with pytest.raises(TypeError, match="Wrong.mood is marked Gauge but is not a number"):
        worker_gauges(Wrong)


def test_a_new_figure_in_both_structs_is_copied_into_the_status_by_name() -> None:
    figures = msgspec.convert({
        "state": "running", "last_price": 60_000.123456789, "bar_count": 5, "ticks": 1, "ticks_dropped": 0,
        "signals": 1, "signal": "UP", "confidence": 0.5, "votes": {}, "atr14": 1.0, "tick_to_signal_p50_us": 1.0,
        "tick_to_signal_p99_us": float("nan"), "tick_to_signal_p999_us": 1.0, "tick_to_signal_count": 1,
        "loop_lag_ms": 0.1, "malformed": 0, "first_signal_mono_ns": 0, "intent_queue_depth": 4,
        "trading": "trading", "note": "worker's note"}, FiguresWithQueue)
    copied = sb.copied_figures(figures, StatusWithQueue)
    assert copied["intent_queue_depth"] == 4
    assert copied["last_price"] == 60_000.12345679 and copied["tick_to_signal_p99_us"] is None  # JSON has no NaN
    assert "atr14" not in copied and "malformed" not in copied  # figures the status does not show
    row = _row(StatusWithQueue, **{**copied, "state": "running"})
    assert row.intent_queue_depth == 4  # type: ignore[attr-defined]  # the subclass's field
    assert sb.copied_figures(None, StatusWithQueue) == {}


def test_a_worker_that_has_not_reported_shows_the_same_row_as_before() -> None:
    row = _row(last_price=None, position=0.0)
    assert (row.bar_count, row.signal, row.confidence, row.votes, row.tick_to_signal_p50_us, row.ticks,
            row.loop_lag_ms, row.open_orders, row.stop_price) == (0, "NONE", 0.0, {}, None, 0, None, 0, None)
