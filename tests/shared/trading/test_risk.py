from __future__ import annotations

import math

import msgspec
import pytest

from shared.trading.orders import DesiredOrder, Side
from shared.trading.risk import (
    AccountSnapshot,
    RiskConfig,
    evaluate,
    initial_state,
    limit_desired,
    utc_day,
)

DAY = 86_400.0
T0 = 20_000 * DAY + 3_600.0  # 01:00 UTC on some day
CFG = RiskConfig(daily_loss_limit=100.0, max_drawdown_fraction=0.05, max_total_notional=50_000.0)


def snap(ts: float, equity: float, **notional: float) -> AccountSnapshot:
    return AccountSnapshot(ts=ts, equity=equity, position_notional=notional)


def test_within_limits_is_ok_and_tracks_the_peak() -> None:
    state = initial_state(1_000.0, T0)
    decision, state = evaluate(state, snap(T0 + 60, 1_050.0, BTCUSD=20_000.0), CFG)
    assert decision.allow_new_orders and not decision.halted
    assert state.day_peak_equity == 1_050.0 and state.day_start_equity == 1_000.0


def test_daily_loss_limit_halts_and_cancels() -> None:
    state = initial_state(10_000.0, T0)
    decision, state = evaluate(state, snap(T0 + 60, 9_950.0), CFG)
    assert decision.allow_new_orders
    decision, state = evaluate(state, snap(T0 + 120, 9_900.0), CFG)  # exactly at the limit
    assert decision.halted and not decision.allow_new_orders and decision.cancel_open_orders
    assert "daily loss 100.00" in decision.reason and not decision.flatten
    assert state.halted and state.halt_reason == decision.reason


def test_drawdown_from_the_days_peak_halts() -> None:
    state = initial_state(1_000.0, T0)
    _, state = evaluate(state, snap(T0 + 1, 1_200.0), CFG)  # new peak
    # 1,141 is above the day's start (no daily loss) but 4.9% under the peak: ok
    decision, state = evaluate(state, snap(T0 + 2, 1_141.0), CFG)
    assert decision.allow_new_orders
    decision, state = evaluate(state, snap(T0 + 3, 1_140.0), CFG)  # 5.0% under the peak
    assert decision.halted and "drawdown" in decision.reason


def test_total_notional_across_symbols_halts_with_optional_flatten() -> None:
    cfg = msgspec.structs.replace(CFG, flatten_on_halt=True)
    state = initial_state(1_000.0, T0)
    decision, _ = evaluate(state, snap(T0, 1_000.0, BTCUSD=30_000.0, ETHUSD=-20_000.0), cfg)
    assert decision.allow_new_orders  # exactly at the limit
    decision, _ = evaluate(state, snap(T0, 1_000.0, BTCUSD=30_000.0, ETHUSD=-20_000.5), cfg)
    assert decision.halted and decision.flatten and "total notional" in decision.reason


def test_day_rollover_resets_the_baseline_in_utc() -> None:
    cfg = msgspec.structs.replace(CFG, max_drawdown_fraction=0.5)  # only the daily loss matters here
    state = initial_state(1_000.0, T0)
    decision, state = evaluate(state, snap(T0 + 1, 920.0), cfg)  # -80 today
    assert decision.allow_new_orders
    end_of_day = (utc_day(T0) + 1) * DAY - 0.001
    decision, state = evaluate(state, snap(end_of_day, 920.0), cfg)
    assert state.day_start_equity == 1_000.0
    # next UTC day: the baseline is 920, so a further -80 is within the limit
    decision, state = evaluate(state, snap(end_of_day + 0.002, 920.0), cfg)
    assert state.day_start_equity == 920.0 and state.day_peak_equity == 920.0
    decision, state = evaluate(state, snap(end_of_day + 60, 874.1), cfg)
    assert decision.allow_new_orders, decision.reason


def test_a_loss_on_the_days_first_reading_counts_against_that_day() -> None:
    """The day's loss is measured from the equity at the boundary (the last reading before it),
    not from the first reading after it, which already holds the first bar's move."""
    end_of_day = (utc_day(T0) + 1) * DAY - 1.0
    state = initial_state(1_000.0, T0)
    _, state = evaluate(state, snap(end_of_day, 1_000.0), CFG)
    decision, state = evaluate(state, snap(end_of_day + 60, 890.0), CFG)  # the day's first bar lost 110
    assert decision.halted and "daily loss 110.00" in decision.reason
    assert state.utc_day == utc_day(T0) + 1 and state.day_start_equity == 1_000.0
    # the drawdown limit alike: -6% on the first bar is 6% under the day's peak (the boundary)
    cfg = msgspec.structs.replace(CFG, daily_loss_limit=1e9)
    _, state = evaluate(initial_state(1_000.0, T0), snap(end_of_day, 1_000.0), cfg)
    decision, state = evaluate(state, snap(end_of_day + 60, 940.0), cfg)
    assert decision.halted and "drawdown 6.00% from today's peak 1000.00" in decision.reason
    # a gain on the first bar is the day's too: the peak is the higher of the two
    _, state = evaluate(initial_state(1_000.0, T0), snap(end_of_day, 1_000.0), CFG)
    decision, state = evaluate(state, snap(end_of_day + 60, 1_030.0), CFG)
    assert decision.allow_new_orders and (state.day_start_equity, state.day_peak_equity) == (1_000.0, 1_030.0)


def test_a_record_without_a_last_reading_starts_the_day_at_its_first_reading() -> None:
    # records persisted before the last reading was kept decode with none: nothing better is known
    old = msgspec.json.decode(b'{"utc_day": %d, "day_start_equity": 1000.0, "day_peak_equity": 1000.0}'
                              % utc_day(T0), type=type(initial_state(1.0, T0)))
    assert old.last_equity is None
    decision, state = evaluate(old, snap(T0 + DAY, 890.0), CFG)
    assert decision.allow_new_orders and state.day_start_equity == 890.0 and state.last_equity == 890.0


def test_halt_is_sticky_across_rollover() -> None:
    # lifting it is account_risk.clear's (tests/shared/trading/test_account_risk.py)
    state = initial_state(1_000.0, T0)
    _, state = evaluate(state, snap(T0, 890.0), CFG)
    assert state.halted
    decision, state = evaluate(state, snap(T0 + DAY, 1_000.0), CFG)
    assert decision.halted and decision.cancel_open_orders and state.halted


def test_unknown_equity_halts() -> None:
    decision, _ = evaluate(initial_state(1_000.0, T0), snap(T0, math.nan), CFG)
    assert decision.halted and "not a number" in decision.reason


def test_config_validation() -> None:
    assert msgspec.convert({"max_open_orders": 10}, RiskConfig).max_open_orders == 10
    for bad in ({"daily_loss_limit": 0}, {"max_drawdown_fraction": 0}, {"max_drawdown_fraction": 1.5},
                {"risk_percentage": 0}, {"risk_percentage": 101}, {"max_open_orders": -1},
                {"min_balance": -1}, {"unknown": 1}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, RiskConfig)


def order(level: int, side: Side = "buy", size: int = 2, reduce_only: bool = False) -> DesiredOrder:
    return DesiredOrder(symbol="X", side=side, level=level, purpose="take_profit" if reduce_only else "entry",
                        price=100.0, size=size, reduce_only=reduce_only)


def test_symbol_limits_trim_entries_nearest_first_and_keep_protective_orders() -> None:
    cfg = RiskConfig(max_position_contracts=7, max_open_orders=10)
    desired = [order(3), order(1), order(2), order(1, "sell", reduce_only=True)]
    # long 2 already: 2 + 2 + 2 = 6 fits, the third buy would make 8 > 7
    kept = limit_desired(desired, position_contracts=2, config=cfg)
    assert sorted((d.level, d.side, d.reduce_only) for d in kept) == [
        (1, "buy", False), (1, "sell", True), (2, "buy", False)]
    assert limit_desired(desired, position_contracts=7, config=cfg) == (desired[3],)


def test_symbol_limits_count_what_both_sides_of_the_grid_hold() -> None:
    # net flat, but the buy levels hold 6 and the sell levels hold 6 (neutral grid): another
    # entry of 2 on either side would make 8 > 7, so only the take-profit may rest
    cfg = RiskConfig(max_position_contracts=7, max_open_orders=10)
    tp = DesiredOrder(symbol="X", side="sell", level=1, purpose="take_profit", price=101.0, size=6)
    desired = [order(1), order(1, "sell"), tp]
    assert limit_desired(desired, 0, cfg, long_held=6, short_held=6) == (tp,)
    assert limit_desired(desired, 0, cfg, long_held=6, short_held=0) == (desired[1], tp)
    assert limit_desired(desired, 0, cfg, long_held=5, short_held=0) == tuple(desired)
    with pytest.raises(ValueError):
        limit_desired(desired, 0, cfg, long_held=-1)


def test_symbol_limits_cap_open_orders() -> None:
    cfg = RiskConfig(max_position_contracts=1_000, max_open_orders=3)
    desired = [order(i) for i in range(1, 6)] + [order(9, "sell", reduce_only=True)]
    kept = limit_desired(desired, 0, cfg)
    assert len(kept) == 3 and [d.level for d in kept] == [1, 2, 9]


def test_risk_table_from_toml() -> None:
    cfg = msgspec.toml.decode(b"daily_loss_limit = 250.0\nflatten_on_halt = true\nmax_open_orders = 12",
                              type=RiskConfig)
    assert (cfg.daily_loss_limit, cfg.flatten_on_halt, cfg.max_open_orders) == (250.0, True, 12)
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b"max_drawdown = 0.1", type=RiskConfig)  # misspelt key: refused, not ignored


def _limit_by_ranking(desired: list[DesiredOrder], position: int, config: RiskConfig, long_held: int,
                      short_held: int) -> tuple[DesiredOrder, ...]:
    """The rule written out the long way (rank every entry nearest first, take while it fits):
    limit_desired decides the usual case without ranking and must agree."""
    protective = [d for d in desired if d.reduce_only or d.purpose != "entry"]
    slots = config.max_open_orders - len(protective)
    worst = {"buy": max(position, 0, long_held), "sell": max(-position, 0, short_held)}
    chosen = []
    for d in sorted((d for d in desired if d not in protective), key=lambda d: (d.level, d.side)):
        if slots <= 0:
            break
        if worst[d.side] + d.size > config.max_position_contracts:
            continue
        worst[d.side] += d.size
        chosen.append(d)
        slots -= 1
    return tuple(d for d in desired if d in chosen or d in protective)


def test_symbol_limits_agree_with_ranking_every_entry() -> None:
    import random

    rng = random.Random(5)
    fast = 0
    for _ in range(3_000):
        cfg = RiskConfig(max_position_contracts=rng.choice([5, 20, 100]), max_open_orders=rng.choice([3, 8, 20]))
        desired = [order(lv, side, size=rng.choice([1, 2, 5])) for side in ("buy", "sell")
                   for lv in rng.sample(range(1, 9), rng.randint(0, 5))]
        desired += [order(lv, "sell", reduce_only=True) for lv in rng.sample(range(1, 9), rng.randint(0, 2))]
        rng.shuffle(desired)
        pos, lh, sh = rng.randint(-20, 20), rng.randint(0, 15), rng.randint(0, 15)
        got = limit_desired(desired, pos, cfg, long_held=lh, short_held=sh)
        assert got == _limit_by_ranking(desired, pos, cfg, lh, sh)
        fast += got == tuple(desired)
    assert 300 < fast < 2_700  # both the usual case and trimming were exercised
