"""The status rows built from the process table (orchestrator/status_builder.py), without processes."""

from __future__ import annotations

from typing import Any

import msgspec

from orchestrator import status_builder as sb
from orchestrator.supervisor import Child
from shared.config import Config
from shared.messages import GatewayFigures, PoolFigures, WorkerFigures
from shared.supervision import BreachTracker, RestartPolicy
from workers.runtime import ChildSpec


class _Proc:
    def __init__(self, pid: int, exitcode: int | None = None) -> None:
        self.pid, self.exitcode = pid, exitcode
        self.sentinel = -1  # no fd to select on: Child.alive() falls back to exitcode


def child(kind: str, name: str, figures: Any = None, *, alive: bool = True, state: str = "running") -> Child:
    cfg = msgspec.convert({}, Config)
    spec: ChildSpec = None  # type: ignore[assignment]  # a status row never reads the child's spec
    c = Child(kind, name, spec, RestartPolicy(cfg.supervision), BreachTracker(5.0))
    c.process = _Proc(4242, None if alive else -9)
    c.state, c.figures, c.started_mono, c.last_hb_mono, c.launched_mono = state, figures, 100.0, 109.5, 99.0
    return c


def figures(**kw: Any) -> WorkerFigures:
    base = {"state": "running", "last_price": 60_000.123456789, "bar_count": 500, "ticks": 10, "ticks_dropped": 1,
            "signals": 9, "signal": "UP", "confidence": 0.81234, "votes": {"trend": "UP"}, "atr14": 5.0,
            "tick_to_signal_p50_us": 120.04, "tick_to_signal_p99_us": float("nan"), "tick_to_signal_p999_us": 300.0,
            "tick_to_signal_count": 9, "loop_lag_ms": 0.5, "malformed": 0, "first_signal_mono_ns": 101_500_000_000,
            "trading": "trading", "position": 3.0, "open_orders": 4}
    return msgspec.convert({**base, **kw}, WorkerFigures)


def test_a_worker_row_carries_its_figures_cleaned_for_json() -> None:
    w = sb.worker_status(child("worker", "BTCUSD", figures()), 110.0, order_management="up", flattening=False)
    assert (w.symbol, w.pid, w.state, w.uptime_s, w.heartbeat_age_s) == ("BTCUSD", 4242, "running", 10.0, 0.5)
    assert w.last_price == 60_000.12345679 and w.confidence == 0.8123 and w.tick_to_signal_p99_us is None
    assert w.first_signal_after_launch_s == 2.5 and w.position == 3.0 and w.trading == "trading"
    assert w.flatten == "" and w.budget == "ok"


def test_nobody_managing_orders_overrides_what_the_bot_last_said() -> None:
    w = sb.worker_status(child("worker", "BTCUSD", figures()), 110.0, order_management="down: gateway failed",
                         flattening=False)
    assert w.trading == "not trading: order management down"
    assert sb.trading("halted: x", "down: gateway failed") == "halted: x"


def test_a_dead_quarantined_worker_says_why_and_a_flatten_asked_of_it_says_so() -> None:
    c = child("worker", "ETHUSD", None, alive=False, state="quarantined")
    c.policy.reason = "exited 5 times in 60 s"
    w = sb.worker_status(c, 110.0, order_management="up", flattening=True)
    assert (w.pid, w.uptime_s, w.heartbeat_age_s, w.last_price) == (0, 0.0, None, None)
    assert w.budget == "quarantined: exited 5 times in 60 s" and w.note == "exited 5 times in 60 s"
    assert w.flatten == "requested; bot quarantined"
    running = child("worker", "ETHUSD", figures(flatten="closing 3 contract(s) with a reduce-only market order"))
    assert sb.worker_status(running, 110.0, order_management="up", flattening=True).flatten.startswith("closing 3")
    assert sb.worker_status(child("worker", "ETHUSD", figures()), 110.0, order_management="up",
                            flattening=True).flatten == "requested"


def test_process_rows_and_the_split_between_workers_and_processes() -> None:
    pool = child("pool", "pool-0", PoolFigures(requests=5, batches=2, max_batch=3, symbols=2, busy_fraction=0.25,
                                               malformed=0))
    gw = child("gateway", "gateway", GatewayFigures(ticks_published=7, symbols=2, source="venue", requests=1,
                                                   malformed=0, note="public trades"))
    workers, procs = sb.rows([pool, child("worker", "BTCUSD", figures()), gw], 110.0, order_management="up",
                             flattening=["BTCUSD"])
    assert [w.symbol for w in workers] == ["BTCUSD"] and workers[0].flatten == "requested"
    assert [(p.name, p.load) for p in procs] == [("pool-0", 0.25), ("gateway", 7.0)]
    assert procs[0].note == "requests 5 batches 2 max batch 3 symbols 2"
    assert procs[1].note == "source venue ticks 7 public trades"


def test_pool_and_gateway_rows_carry_their_figures_as_typed_fields() -> None:
    pool = child("pool", "pool-0", PoolFigures(requests=5, batches=2, max_batch=3, symbols=2, busy_fraction=0.25,
                                               malformed=0))
    gw = child("gateway", "gateway", GatewayFigures(ticks_published=7, symbols=2, source="exchange", requests=1,
                                                   malformed=0, loop_lag_ms=1.834, note="3 polled ticks"))
    replay = child("gateway", "gateway", GatewayFigures(ticks_published=7, symbols=2, source="replay", requests=1,
                                                       malformed=0, loop_lag_ms=0.5))
    p, g, r = (sb.process_status(c, 110.0) for c in (pool, gw, replay))
    assert (p.signal_requests, p.signal_batches, p.max_batch, p.loop_lag_ms) == (5, 2, 3, None)
    assert (g.signal_requests, g.loop_lag_ms) == (None, 1.83)
    # people read the lag in the note as before
    assert g.note == "source exchange ticks 7 loop lag 1.8 ms, 3 polled ticks"
    assert r.note == "source replay ticks 7 loop lag 0.5 ms"
    unknown = sb.process_status(child("venue", "venue", GatewayFigures(
        ticks_published=1, symbols=1, source="paper venue", requests=0, malformed=0, note="http://x")), 110.0)
    assert unknown.loop_lag_ms is None and unknown.note == "source paper venue ticks 1 http://x"


def test_restarts_by_cause_add_up_over_the_process_table_by_kind() -> None:
    a, b, pool = child("worker", "A"), child("worker", "B"), child("pool", "pool-0")
    a.policy.on_failure(0.0, "no heartbeat for 5.1s (hung)")
    b.policy.on_failure(0.0, "no heartbeat for 6.0s (hung)")
    b.policy.on_failure(1.0, "exited with code -9")
    pool.policy.on_failure(0.0, "exited with code -9")
    assert sb.restarts_by_cause([a, b, pool, child("gateway", "gateway")]) == {
        "worker: no heartbeat for Ns (hung)": 2, "worker: exited with code -N": 1, "pool: exited with code -N": 1}
    assert list(sb.restarts_by_cause([a, b, pool]))[0] == "worker: no heartbeat for Ns (hung)"
