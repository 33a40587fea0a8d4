"""The account risk state machine: the day's figures and the halt, as the supervisor keeps and
persists them (shared/trading/account_risk.py)."""

from __future__ import annotations

import math

import msgspec

from shared.trading import account_risk as ar
from shared.trading.risk import RiskConfig, utc_day

DAY = 86_400.0
T0 = 20_000 * DAY + 3_600.0  # 01:00 UTC
CFG = RiskConfig(daily_loss_limit=100.0, max_drawdown_fraction=0.5, max_total_notional=50_000.0)


def test_no_reading_changes_nothing_and_the_first_starts_the_day() -> None:
    state, verdict = ar.observe(ar.AccountRisk(), math.nan, T0, CFG)
    assert state == ar.AccountRisk() and verdict.allow_new_orders
    state, verdict = ar.observe(state, 1_000.0, T0, CFG)
    assert state.day is not None and state.day.day_start_equity == 1_000.0 and state.day.utc_day == utc_day(T0)
    assert ar.change(ar.AccountRisk(), state) == "durable"


def test_the_first_reading_is_checked_at_once() -> None:
    state, verdict = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG, {"BTCUSD": 60_000.0})
    assert verdict.halted and state.halt is not None and state.halt.kind == "limit"
    assert "total notional" in state.halt_reason and state.halt.by == "risk limits" and state.halt.ts == T0


def test_a_restored_record_of_today_keeps_the_days_loss_budget() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 10_000.0, T0, CFG)
    state, verdict = ar.observe(state, 9_950.0, T0 + 60, CFG)
    assert verdict.allow_new_orders
    # A restart: the record goes through its persisted form and the first reading after it is lower.
    restored = msgspec.json.decode(msgspec.json.encode(state), type=ar.AccountRisk)
    assert restored == state
    state, verdict = ar.observe(restored, 9_900.0, T0 + 120, CFG)
    assert verdict.halted and "daily loss 100.00" in verdict.reason  # measured from 10,000, not 9,950


def test_a_restored_record_of_an_earlier_day_rolls_over_from_its_last_reading() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 10_000.0, T0, CFG)
    state, _ = ar.observe(state, 9_990.0, T0 + 60, CFG)
    assert ar.change(ar.observe(state, 9_990.0, T0 + 61, CFG)[0], state) == "none"
    # the last reading changed: it reaches the store with the next batch, so a restart has it
    moved, _ = ar.observe(state, 9_980.0, T0 + 62, CFG)
    assert ar.change(state, moved) == "batched"
    restored = msgspec.json.decode(msgspec.json.encode(moved), type=ar.AccountRisk)
    # a restart the next day: the new day starts from the last reading before midnight (9,980),
    # so what was lost while no one looked (80) is today's
    state, verdict = ar.observe(restored, 9_900.0, T0 + DAY, CFG)
    assert verdict.allow_new_orders
    assert state.day is not None and state.day.day_start_equity == 9_980.0 and state.day.utc_day == utc_day(T0) + 1
    _, verdict = ar.observe(state, 9_880.0, T0 + DAY + 1, CFG)
    assert verdict.halted and "daily loss 100.00" in verdict.reason


def test_a_halt_stands_across_readings_and_days_and_keeps_its_first_reason() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    state, new = ar.halt(state, "storage: disk full", T0 + 1, by="supervisor", kind="storage")
    assert new and state.halted
    state, new = ar.halt(state, "another", T0 + 2, by="alice", kind="operator")
    assert not new and state.halt_reason == "storage: disk full"
    for ts, equity in ((T0 + 3, 1_200.0), (T0 + DAY, 1_300.0)):
        state, verdict = ar.observe(state, equity, ts, CFG)
        assert verdict.halted and verdict.reason == "storage: disk full" and not verdict.allow_new_orders
    assert state.day is not None and state.day.day_peak_equity == 1_300.0  # figures still tracked
    assert not state.day.halted  # the halt's one home is AccountRisk.halt


def test_clearing_a_limit_halt_rebases_the_day_at_the_current_equity() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    state, verdict = ar.observe(state, 890.0, T0 + 1, CFG)
    assert verdict.halted
    state, lifted = ar.clear(state, T0 + 2, equity=890.0)
    assert lifted is not None and lifted.kind == "limit" and not state.halted
    assert state.day is not None and state.day.day_start_equity == 890.0
    state, verdict = ar.observe(state, 880.0, T0 + 3, CFG)
    assert verdict.allow_new_orders


def test_clearing_a_limit_halt_without_equity_rebases_at_the_next_reading() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    state, _ = ar.observe(state, 890.0, T0 + 1, CFG)
    state, _ = ar.clear(state, T0 + 2)
    assert state.day is None and not state.halted
    state, verdict = ar.observe(state, 885.0, T0 + 3, CFG)
    assert verdict.allow_new_orders and state.day is not None and state.day.day_start_equity == 885.0


def test_clearing_an_operator_halt_does_not_buy_a_fresh_loss_budget() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    state, _ = ar.observe(state, 920.0, T0 + 1, CFG)
    state, _ = ar.halt(state, "by hand", T0 + 2, by="alice", kind="operator")
    state, lifted = ar.clear(state, T0 + 3, equity=920.0)
    assert lifted is not None and lifted.by == "alice"
    assert state.day is not None and state.day.day_start_equity == 1_000.0
    _, verdict = ar.observe(state, 900.0, T0 + 4, CFG)
    assert verdict.halted and "daily loss 100.00" in verdict.reason


def test_clearing_nothing_is_a_no_op() -> None:
    state, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    assert ar.clear(state, T0 + 1, equity=1.0) == (state, None)


def test_changes_are_classified_for_the_store() -> None:
    s0, _ = ar.observe(ar.AccountRisk(), 1_000.0, T0, CFG)
    same, _ = ar.observe(s0, 1_000.0, T0 + 5, CFG)
    assert ar.change(s0, same) == "none"
    peak, _ = ar.observe(s0, 1_010.0, T0 + 6, CFG)
    assert ar.change(s0, peak) == "batched"
    rolled, _ = ar.observe(s0, 1_000.0, T0 + DAY, CFG)
    assert ar.change(s0, rolled) == "durable"
    halted, _ = ar.halt(s0, "x", T0, by="alice", kind="operator")
    assert ar.change(s0, halted) == "durable"
    assert ar.change(ar.AccountRisk(), ar.AccountRisk()) == "none"
    assert "HALTED by alice: x" in ar.describe(halted)
