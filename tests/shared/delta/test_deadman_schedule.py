"""The client's dead-man switch schedule (shared/delta/deadman.py): create, arm at once, renew
on time, retry after a failure (the same step for transient refusals, the other one where the
answer may mean the heartbeat's state), and what status says."""

from __future__ import annotations

import math

import pytest

from shared.delta.deadman import DeadmanSchedule, heartbeat_id_for, heartbeat_scope


def test_create_then_ack_at_once_then_every_renew_interval() -> None:
    s = DeadmanSchedule(ttl_s=300, renew_interval_s=30, retry_s=5)
    assert s.due(0.0) == "create"
    s.on_success("create", 0.0)
    assert s.due(0.0) == "ack" and s.lapses_at() is None
    s.on_success("ack", 0.1)
    assert s.due(30.0) is None and s.due(30.1) == "ack"
    assert s.lapses_at() == pytest.approx(300.1)
    assert s.ttl_ms == 300_000
    assert s.note(10.1) == "dead-man switch armed (TTL 300s, renewed 10s ago)"


def test_transient_failures_retry_the_same_step_and_count() -> None:
    s = DeadmanSchedule(ttl_s=300, renew_interval_s=30, retry_s=5)
    s.on_success("create", 0.0)
    s.on_success("ack", 0.0)
    for i, (code, status) in enumerate((("timeout", None), ("unavailable", 503), ("rate_limit_exceeded", 429),
                                        ("unauthorized", 401)), start=1):
        s.on_failure("ack", 30.0 * i, code=code, status=status)
        assert (s.state.next_step, s.state.due_at) == ("ack", 30.0 * i + 5)
    assert (s.state.failures, s.state.failing_in_a_row, s.state.last_error) == (4, 4, "unauthorized")
    assert s.note(150.0) == ("dead-man switch FAILING: 4 in a row (4 renewal failures, last unauthorized); "
                             "the exchange cancels open orders in 150s")
    assert s.note(301.0).endswith("the exchange has lapsed: open orders cancelled")
    s.on_success("ack", 151.0)
    assert (s.state.failing_in_a_row, s.state.last_error, s.state.failures) == (0, "", 4)


def test_a_refused_ack_recreates_and_a_refused_create_tries_the_ack() -> None:
    s = DeadmanSchedule(ttl_s=60, renew_interval_s=10, retry_s=30)
    assert s.retry_s == 10  # never later than a renewal would have been
    s.on_failure("create", 0.0, code="bad_schema", status=400)  # e.g. "exists already": the ack tells
    assert s.state.next_step == "ack"
    s.on_failure("ack", 10.0, code="heartbeat_not_found", status=404)
    assert s.state.next_step == "create"
    assert s.note(10.0) == "dead-man switch NOT armed yet (2 renewal failures, last heartbeat_not_found)"


def test_figures_for_metrics_say_armed_failing_lapsed_and_seconds_left() -> None:
    s = DeadmanSchedule(ttl_s=300, renew_interval_s=30, retry_s=5)
    state, left = s.figures(0.0)
    assert state == "not armed" and math.isnan(left)
    s.on_success("create", 0.0)
    assert s.figures(0.0)[0] == "not armed"  # armed only by the first confirmed renewal
    s.on_success("ack", 1.0)
    assert s.figures(21.0) == ("armed", pytest.approx(280.0))
    s.on_failure("ack", 31.0, code="timeout", status=None)
    assert s.figures(41.0) == ("failing", pytest.approx(260.0))  # the switch holds, counting down
    assert s.figures(301.0) == ("lapsed", 0.0)
    s.on_success("ack", 302.0)
    assert s.figures(302.0) == ("armed", pytest.approx(300.0))


def test_bad_intervals_are_refused() -> None:
    with pytest.raises(ValueError):
        DeadmanSchedule(ttl_s=10, renew_interval_s=10, retry_s=1)


def test_id_is_stable_per_bot_and_scope_names_symbols_up_to_ten() -> None:
    assert heartbeat_id_for("g1") == heartbeat_id_for("g1") == "dgo-g1"
    assert heartbeat_scope(["ETHUSD", "BTCUSD"], ["perpetual_futures"]) == {"product_symbols": ["BTCUSD", "ETHUSD"]}
    many = [f"SYN_{i:04d}" for i in range(11)]
    assert heartbeat_scope(many, ["perpetual_futures"] * 11) == {"contract_types": ["perpetual_futures"]}
