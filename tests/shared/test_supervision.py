import math

from shared.config import BudgetConfig, SupervisionConfig
from shared.supervision import (
    USS_MAX_AGE_S,
    BreachTracker,
    ResourceSample,
    RestartPolicy,
    budget_breaches,
    uss_due,
    worker_heartbeat,
)


def test_backoff_doubles_to_cap_then_quarantines() -> None:
    cfg = SupervisionConfig(backoff_initial_s=1, backoff_max_s=8, max_restarts=5, restart_window_s=1000)
    p = RestartPolicy(cfg)
    delays = [p.on_failure(now=float(i), why="crash") for i in range(5)]
    assert delays == [1, 2, 4, 8, 8]
    assert p.restarts == 5
    assert p.on_failure(now=6.0, why="crash again") is None
    assert p.quarantined and "crash again" in p.reason


def test_failures_outside_window_do_not_count() -> None:
    cfg = SupervisionConfig(max_restarts=2, restart_window_s=10)
    p = RestartPolicy(cfg)
    for t in (0.0, 20.0, 40.0, 60.0):
        assert p.on_failure(now=t, why="x") is not None
    assert not p.quarantined


def test_healthy_run_resets_backoff() -> None:
    cfg = SupervisionConfig(backoff_initial_s=1, backoff_max_s=60, restart_window_s=10)
    p = RestartPolicy(cfg)
    p.on_failure(0, "x")
    p.on_failure(1, "x")
    p.on_healthy(now=100, up_since=50)
    assert p.on_failure(101, "x") == 1


def test_budget_breaches_ignore_unmeasured_and_disabled() -> None:
    b = BudgetConfig(rss_mb=100, uss_mb=0, cpu_percent=50, loop_lag_ms=10, tick_to_signal_p99_us=1000)
    assert budget_breaches(ResourceSample(), b) == []
    out = budget_breaches(ResourceSample(rss_mb=150, uss_mb=1e6, cpu_percent=10, loop_lag_ms=math.nan,
                                         tick_to_signal_p99_us=2000), b)
    assert len(out) == 2 and out[0].startswith("rss") and out[1].startswith("tick_to_signal_p99")


def test_breach_must_be_sustained_for_grace() -> None:
    t = BreachTracker(grace_s=5)
    assert not t.update(["rss"], now=0)
    assert not t.update(["rss"], now=4)
    assert t.update(["rss"], now=5.5)
    assert not t.update([], now=6)
    assert t.state == "ok"
    assert not t.update(["rss"], now=7)


def test_a_child_that_may_not_be_quarantined_keeps_being_retried_at_the_capped_backoff() -> None:
    cfg = SupervisionConfig(backoff_initial_s=1, backoff_max_s=8, max_restarts=3, restart_window_s=100)
    p = RestartPolicy(cfg, may_quarantine=False)
    delays = [p.on_failure(float(t), "crash") for t in range(10)]
    assert delays == [1, 2, 4, 8, 8, 8, 8, 8, 8, 8]
    assert not p.quarantined and p.failing and p.restarts == 10
    assert "retrying every 8s" in p.reason and "last: crash" in p.reason
    p.on_healthy(200.0, up_since=50.0)  # a clean window earns it back
    assert not p.failing and p.on_failure(300.0, "crash") == 1


def test_restarts_are_tallied_by_cause_with_numbers_masked_and_bounded() -> None:
    from shared.supervision import MAX_CAUSES, failure_cause
    cfg = SupervisionConfig(backoff_initial_s=1, backoff_max_s=8, max_restarts=3, restart_window_s=1000)
    p = RestartPolicy(cfg)
    p.on_failure(0.0, "no heartbeat for 5.1s (hung)")
    p.on_failure(1.0, "no heartbeat for 5.3s (hung)")
    p.on_failure(2.0, "budget tick_to_signal_p99 52142.8us > 50000us")
    assert p.causes == {"no heartbeat for Ns (hung)": 2, "budget tick_to_signal_p99 Nus > Nus": 1}
    assert p.on_failure(3.0, "exited with code -9") is None  # quarantined: not a restart, not tallied
    assert sum(p.causes.values()) == p.restarts == 3
    assert failure_cause("exited with code -9") == "exited with code -N"
    many = RestartPolicy(SupervisionConfig(max_restarts=1000, restart_window_s=1))
    for i in range(MAX_CAUSES + 5):
        many.on_failure(float(i), f"reason {chr(65 + i)}")
    assert len(many.causes) == MAX_CAUSES + 1 and many.causes["other"] == 5


def test_a_gateway_past_its_limit_still_tallies_each_restart() -> None:
    p = RestartPolicy(SupervisionConfig(max_restarts=2, restart_window_s=1000), may_quarantine=False)
    for t in range(5):
        p.on_failure(float(t), "exited with code 1")
    assert p.failing and p.causes == {"exited with code N": 5} and p.restarts == 5


def test_uss_is_read_where_it_may_have_moved_or_may_breach_and_else_only_when_old() -> None:
    def due(rss: float, at_read: float = 40.0, read_at: float | None = 100.0, now: float = 105.0,
            budget: float = 60.0) -> bool:
        return uss_due(rss_mb=rss, rss_at_read_mb=at_read, read_at=read_at, now=now, budget_mb=budget)

    assert due(40.0, read_at=None)  # never read since (re)start
    assert due(math.nan) and due(40.0, at_read=math.nan)  # RSS not sampled yet
    assert not due(40.0) and not due(40.9)  # RSS steady, far under the budget: USS (<= RSS) cannot breach
    assert due(41.0) and due(39.0)  # RSS moved: the figure may have too
    assert due(54.0, at_read=54.0) and not due(53.9, at_read=53.9)  # within 10% of the budget: every pass
    assert not due(500.0, at_read=500.0, budget=0.0)  # no budget: steady RSS is not re-read
    assert due(40.0, now=100.0 + USS_MAX_AGE_S)  # the status figure is refreshed at last


def test_a_worker_beats_every_two_seconds_at_most_three_apart_under_the_default_timeout() -> None:
    assert worker_heartbeat(SupervisionConfig()) == (2.0, 1.0)  # heartbeat_interval_s 1, timeout 5


def test_a_worker_beats_often_enough_for_a_tight_timeout_and_never_faster_than_the_interval() -> None:
    for interval, timeout in ((1.0, 2.0), (0.1, 0.5), (1.0, 1.5), (0.5, 5.0), (3.0, 60.0), (10.0, 11.0)):
        period, grace = worker_heartbeat(SupervisionConfig(heartbeat_interval_s=interval, heartbeat_timeout_s=timeout))
        assert period >= interval and grace >= 0.0
        # the longest gap between beats before loop lag leaves the supervisor's timeout a margin
        assert period + grace <= max(interval, 0.6 * timeout) + 1e-9, (interval, timeout)
    period, grace = worker_heartbeat(SupervisionConfig(heartbeat_interval_s=1.0, heartbeat_timeout_s=2.0))
    assert period == 1.0 and math.isclose(grace, 0.2)  # deadman e2e's timeout: as often as before
