"""Weighted account budget: window accounting, reserve for cancels, 429 blocking, priority."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from shared.delta.ratelimit import (
    FLIP_UNITS,
    INTENT_BUDGET_WAIT_S,
    MAX_RETRY_AFTER_S,
    AccountRateLimiter,
    IntentBudgetTally,
    IntentCharge,
    LimiterBusy,
    Priority,
    RequestBudget,
    SymbolShares,
    batch_pays,
    endpoint_weight,
    fill_read_wait,
    order_units,
    pace_wait_s,
    quote_verdict,
    resync_phase_s,
    spend_kind,
)


def test_documented_weights() -> None:
    assert endpoint_weight("GET", "/v2/products") == 3
    assert endpoint_weight("GET", "/v2/l2orderbook/BTCUSD") == 3
    assert endpoint_weight("GET", "/v2/tickers/BTCUSD") == 3
    assert endpoint_weight("GET", "/v2/orders?product_ids=1") == 3
    assert endpoint_weight("GET", "/v2/positions/margined") == 3
    assert endpoint_weight("GET", "/v2/wallet/balances") == 3
    assert endpoint_weight("GET", "/v2/history/candles") == 3
    assert endpoint_weight("POST", "/v2/orders") == 5
    assert endpoint_weight("PUT", "/v2/orders") == 5
    assert endpoint_weight("DELETE", "/v2/orders") == 5
    assert endpoint_weight("GET", "/v2/orders/history") == 10
    assert endpoint_weight("GET", "/v2/fills") == 10
    assert endpoint_weight("POST", "/v2/orders/batch") == 25
    assert endpoint_weight("DELETE", "/v2/orders/batch") == 25
    assert endpoint_weight("GET", "/v2/profile") == 1


def test_fixed_window_refills_at_once() -> None:
    b = RequestBudget(capacity=100, window_s=300, reserve=0)
    for _ in range(20):
        assert b.wait_time(5, Priority.READ, now=1.0) == 0.0
        b.consume(5, now=1.0)
    assert b.wait_time(5, Priority.READ, now=100.0) == pytest.approx(201.0)
    assert b.wait_time(5, Priority.READ, now=301.0) == 0.0  # new window, full quota
    assert b.snapshot(301.0).used == 0


def test_reserve_is_only_for_risk_actions() -> None:
    b = RequestBudget(capacity=100, window_s=300, reserve=20)
    b.consume(80, now=0.0)
    assert b.wait_time(5, Priority.NEW_ORDER, now=0.0) > 0
    assert b.wait_time(5, Priority.READ, now=0.0) > 0
    assert b.wait_time(5, Priority.RISK, now=0.0) == 0.0


def test_429_blocks_everything_until_reset() -> None:
    b = RequestBudget(capacity=100, window_s=300)
    b.on_rate_limited(1500, now=10.0)
    assert b.wait_time(1, Priority.RISK, now=10.0) == pytest.approx(1.5)
    assert b.wait_time(1, Priority.RISK, now=11.5) == 0.0
    b.on_rate_limited(None, now=20.0)
    assert b.wait_time(1, Priority.READ, now=20.0) > 0
    with pytest.raises(ValueError):
        b.wait_time(101, Priority.READ, now=0.0)


async def test_cancels_jump_ahead_of_new_orders() -> None:
    limiter = AccountRateLimiter(RequestBudget(capacity=10, window_s=0.05, reserve=0))
    await limiter.acquire(10, Priority.NEW_ORDER)  # window now full
    order: list[str] = []

    async def go(name: str, prio: Priority) -> None:
        await limiter.acquire(10, prio)
        order.append(name)

    first = asyncio.create_task(go("new-1", Priority.NEW_ORDER))
    await asyncio.sleep(0)
    second = asyncio.create_task(go("new-2", Priority.NEW_ORDER))
    await asyncio.sleep(0)
    cancel = asyncio.create_task(go("cancel", Priority.RISK))
    await asyncio.wait_for(asyncio.gather(first, second, cancel), timeout=5)
    assert order == ["cancel", "new-1", "new-2"]


async def test_waiting_queue_is_bounded_and_cancellation_cleans_up() -> None:
    limiter = AccountRateLimiter(RequestBudget(capacity=10, window_s=60, reserve=0), max_waiting=2)
    await limiter.acquire(10)
    waiters = [asyncio.create_task(limiter.acquire(1)) for _ in range(2)]
    await asyncio.sleep(0.01)
    with pytest.raises(LimiterBusy):
        await limiter.acquire(1)
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert limiter.waiting == 0


async def test_order_actions_have_their_own_lane_ahead_of_reads() -> None:
    limiter = AccountRateLimiter(RequestBudget(capacity=10, window_s=0.05, reserve=0))
    await limiter.acquire(10, Priority.READ)  # window now full
    order: list[str] = []

    async def go(name: str, prio: Priority) -> None:
        await limiter.acquire(10, prio)
        order.append(name)

    reads = [asyncio.create_task(go(f"read-{i}", Priority.READ)) for i in range(3)]
    await asyncio.sleep(0)
    place = asyncio.create_task(go("place", Priority.NEW_ORDER))
    await asyncio.sleep(0)
    cancel = asyncio.create_task(go("cancel", Priority.RISK))
    await asyncio.wait_for(asyncio.gather(*reads, place, cancel), timeout=5)
    assert order == ["cancel", "place", "read-0", "read-1", "read-2"]


def test_order_units_are_what_the_cheaper_of_batch_and_single_calls_costs() -> None:
    assert [order_units(n) for n in (0, 1, 4, 5, 10, 50, 53, 55, 100)] == [0, 5, 20, 25, 25, 25, 40, 50, 50]
    assert [batch_pays(n) for n in (1, 4, 5, 50)] == [False, False, True, True]


def test_units_are_charged_to_order_actions_by_route_and_to_reads_by_their_purpose() -> None:
    assert spend_kind("POST", "/v2/orders/batch", "reconcile") == "batch place"  # a route names an order action
    assert spend_kind("delete", "/v2/orders") == "cancel"
    assert spend_kind("DELETE", "/v2/orders/all") == "cancel"
    assert spend_kind("PUT", "/v2/orders/batch") == "batch amend"
    assert spend_kind("GET", "/v2/orders/123", "fill read") == "order lookup"
    assert spend_kind("GET", "/v2/orders/client_order_id/x") == "order lookup"
    assert spend_kind("GET", "/v2/orders", "reconcile") == "reconcile"
    assert spend_kind("GET", "/v2/fills?after=x") == "fill read"
    assert spend_kind("GET", "/v2/fills", "reconcile") == "reconcile"
    assert spend_kind("POST", "/v2/heartbeat/ack") == "dead-man"
    assert spend_kind("GET", "/v2/wallet/balances") == "other"


def test_the_intent_tally_counts_waits_above_a_millisecond_and_refusals() -> None:
    t = IntentBudgetTally()
    t.add(IntentCharge(waited_s=0.0005))
    t.add(IntentCharge(waited_s=2.0))
    t.add(IntentCharge(waited_s=0.5, refused=True))
    t.add(IntentCharge(refused=True))
    assert (t.intents, t.waited, t.refused, t.wait_max_s) == (4, 2, 2, 2.0)
    assert t.wait_s == pytest.approx(2.5)


def test_each_symbol_draws_its_quotes_from_its_own_share_of_the_window() -> None:
    shares = SymbolShares(100, capacity=10_000, window_s=300.0, share=0.5)  # 50 units a symbol per 5 min
    assert shares.burst == 50.0 and shares.rate_per_s == pytest.approx(50 / 300)
    assert shares.wait_s("A", 25, 0.0) == 0.0  # the first grid: one batch of five
    shares.charge("A", 25, 0.0)
    shares.charge("A", 25, 0.0)  # a flip's cancels and places
    assert shares.wait_s("A", 25, 0.0) == pytest.approx(150.0)  # A's next batch waits for its refill...
    assert shares.wait_s("B", 50, 0.0) == 0.0  # ...and B, which spent nothing, is not held up by A
    assert shares.wait_s("A", 25, 150.0) == pytest.approx(0.0, abs=1e-9)
    assert shares.units("A", 10_000.0) == 50.0  # a bucket never holds more than its burst


def test_cancels_are_charged_into_debt_and_a_big_symbol_count_still_leaves_a_flip() -> None:
    shares = SymbolShares(1000, capacity=10_000, window_s=300.0, share=0.5)
    assert shares.burst == FLIP_UNITS  # 5 units a symbol per window would not hold one batch
    shares.charge("A", 75, 0.0)  # cancels that went although the share was short
    assert shares.units("A", 0.0) == -25.0
    assert shares.wait_s("A", 200, 0.0) == pytest.approx(75.0 / shares.rate_per_s)  # more than a bucket: a full one
    with pytest.raises(ValueError):
        SymbolShares(0)


def test_quotes_go_within_the_share_and_a_budget_a_few_seconds_away_else_are_held() -> None:
    assert quote_verdict(0.0, 0.0) == (None, 0.0)
    assert quote_verdict(0.0, INTENT_BUDGET_WAIT_S) == (None, 0.0)  # waits its turn: it comes in time
    assert quote_verdict(0.0, 200.0) == ("rate_budget_spent", MAX_RETRY_AFTER_S)
    assert quote_verdict(12.5, 0.0) == ("rate_budget_share", 12.5)
    assert quote_verdict(3.0, 4.0, 8.0) == ("rate_budget_share", 8.0)  # held as long as either says
    assert quote_verdict(3.0, 8.0) == ("rate_budget_spent", 8.0)


def test_one_fill_read_serves_a_burst_of_trades_and_a_quiet_socket_is_still_polled() -> None:
    assert fill_read_wait(100.0, 99.2, woken=True, socket_up=True) == pytest.approx(0.2)  # paced after the last read
    assert fill_read_wait(100.0, 90.0, woken=True, socket_up=True) == 0.0
    assert fill_read_wait(100.0, 99.0, woken=False, socket_up=True) == pytest.approx(14.0)
    assert fill_read_wait(100.0, 99.0, woken=False, socket_up=False) == pytest.approx(2.0)  # socket down: poll often
    assert fill_read_wait(100.0, -math.inf, woken=False, socket_up=True) == 0.0  # the first read at once


def test_quotes_keep_the_window_on_an_even_pace_after_a_start_up_slack() -> None:
    # 10,000 units, 500 reserved: 9,500 spendable; 4,000 at once, the other 5,500 evenly over 300 s
    assert pace_wait_s(3_000, 25, 0.0) == 0.0  # the start-up's reconciliations and first grids
    assert pace_wait_s(4_000, 25, 0.0) == pytest.approx(25 * 300 / 5_500)
    assert pace_wait_s(4_500, 50, 30.0) == 0.0  # 4,000 + 550 by 30 s: exactly on pace
    assert pace_wait_s(4_500, 51, 30.0) == pytest.approx(1 * 300 / 5_500)
    assert pace_wait_s(9_100, 25, 280.0) == 0.0  # the last minute has its share: 4,000 + 5,133 by 280 s
    assert pace_wait_s(9_100, 50, 280.0) == pytest.approx(5_150 * 300 / 5_500 - 280.0)
    assert pace_wait_s(9_480, 25, 290.0) == pytest.approx(10.0)  # beyond what the window can spend: its end
    assert pace_wait_s(100, 25, 10.0, capacity=200, reserve=0, window_s=10.0, slack_share=0.0) == 0.0
    assert quote_verdict(0.0, 0.0, 12.0) == ("rate_budget_pace", 12.0)
    assert quote_verdict(0.0, 0.0, 0.8, 25.0) == ("rate_budget_pace", 25.0)  # the bot's fair turn, not the pace's
    assert quote_verdict(0.0, 0.0, 0.0, 25.0) == (None, 0.0)
    assert quote_verdict(0.0, 100.0, 12.0) == ("rate_budget_spent", MAX_RETRY_AFTER_S)


def test_regular_re_reads_are_spread_over_the_interval_by_symbol() -> None:
    symbols = [f"S{i}USD" for i in range(100)]
    phases = [resync_phase_s(90.0, s, symbols) for s in symbols]
    assert phases[0] == 0.0 and max(phases) < 90.0
    # evenly: at most one symbol's first re-read in any 0.9 s slot, so 100 x 9 units never come due together
    assert sorted(phases) == phases and all(b - a == pytest.approx(0.9) for a, b in itertools.pairwise(phases))
    assert resync_phase_s(90.0, "XRPUSD", symbols) == 0.0  # not in the run: no phase
    assert resync_phase_s(15.0, "BTCUSD", ["BTCUSD"]) == 0.0
