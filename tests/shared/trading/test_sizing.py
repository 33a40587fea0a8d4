from __future__ import annotations

import math
from decimal import Decimal

import msgspec
import pytest

from shared.matching import OrderRequest
from shared.products import PAPER_PRODUCTS, ProductSpec
from shared.trading import client_order_id as coid
from shared.trading import sizing
from shared.trading.orders import OpenOrder, Purpose, Side
from tests.shared.matching.support import make

BTC = PAPER_PRODUCTS["BTCUSD"]  # 0.001 BTC per contract
ETH = PAPER_PRODUCTS["ETHUSD"]  # 0.01 ETH per contract


def test_atr_size_is_the_original_rule() -> None:
    # 10,000 x 1% / 50 x 0.7 = 1.4 units
    assert sizing.atr_position_size(10_000, 50) == pytest.approx(1.4)
    assert sizing.atr_position_size(0, 50) == 0


def test_stop_and_take_profit_sides() -> None:
    assert sizing.stop_price(100, 2, "long") == pytest.approx(97)
    assert sizing.stop_price(100, 2, "short") == pytest.approx(103)
    assert sizing.take_profit_price(100, 2, "long") == pytest.approx(107)
    assert sizing.take_profit_price(100, 2, "short") == pytest.approx(93)


def test_risk_plan_numbers_and_validity() -> None:
    plan = sizing.risk_plan(10_000, entry=2_000, atr=20, direction="long")
    assert plan.size == pytest.approx(10_000 * 0.01 / 20 * 0.7)
    assert plan.stop == pytest.approx(1_970)
    assert plan.take_profit == pytest.approx(2_070)
    # risk = size x 1.5 ATR = balance x 1% x 1.05 = 105 <= 2% of 10,000
    assert plan.risk_amount == pytest.approx(105)
    assert plan.reward_amount == pytest.approx(245)
    assert plan.reward_risk_ratio == pytest.approx(3.5 / 1.5)
    assert plan.valid
    # 2% risk fraction -> risk 2.1% > 2%: not valid
    assert not sizing.risk_plan(10_000, 2_000, 20, "short", risk_fraction=0.02).valid
    assert not sizing.risk_plan(0, 2_000, 20, "long").valid


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, -math.inf])
def test_bad_atr_or_price_is_a_clear_error(bad: float) -> None:
    with pytest.raises(ValueError, match="atr"):
        sizing.atr_position_size(1000, bad)
    with pytest.raises(ValueError, match="atr"):
        sizing.risk_plan(1000, 100, bad, "long")
    with pytest.raises(ValueError, match="entry"):
        sizing.stop_price(bad, 1, "long")
    with pytest.raises(ValueError, match="price"):
        sizing.contracts_per_level(1000, bad, BTC, risk_percentage=1, min_balance=100)


def test_bad_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        sizing.stop_price(100, 1, "UP")  # type: ignore[arg-type]  # bad on purpose


def test_contracts_floor_to_whole_contracts() -> None:
    # 10,000 x 5% = 500 USD per order; ETH contract = 0.01 x 2,000 = 20 USD -> 25 contracts
    assert sizing.contracts_per_level(10_000, 2_000, ETH, risk_percentage=5, min_balance=100) == 25
    # 510 USD -> 25.5 -> floor 25, never above the budget
    assert sizing.contracts_per_level(10_200, 2_000, ETH, risk_percentage=5, min_balance=100) == 25
    # an exact fit on float noise still gives the whole number (0.07 x 3 is not exact in binary)
    product = ProductSpec(symbol="X", product_id=1, contract_value=0.07, tick_size=0.01)
    assert sizing.contracts_per_level(2_100, 100, product, risk_percentage=1, min_balance=0) == 3


def test_below_min_balance_or_zero_balance_means_no_orders() -> None:
    assert sizing.contracts_per_level(99.99, 2_000, ETH, risk_percentage=1, min_balance=100) == 0
    assert sizing.contracts_per_level(0, 2_000, ETH, risk_percentage=1, min_balance=0) == 0
    assert sizing.contracts_per_level(-50, 2_000, ETH, risk_percentage=1, min_balance=0) == 0
    with pytest.raises(ValueError, match="available_balance"):
        sizing.contracts_per_level(math.nan, 2_000, ETH, risk_percentage=1, min_balance=0)


def test_small_budget_trades_min_size_only_if_it_can_be_margined() -> None:
    # 1,000 x 1% = 10 USD < one BTC contract (0.001 x 60,000 = 60 USD): the original's "at least
    # the minimum" rule gives 1 contract, whose margin (6 USD at 10%) the balance covers.
    assert sizing.contracts_per_level(1_000, 60_000, BTC, risk_percentage=1, min_balance=100) == 1
    assert sizing.contracts_per_level(1_000, 60_000, BTC, risk_percentage=1, min_balance=100,
                                      at_least_min_size=False) == 0
    # 5 USD cannot margin a 6 USD requirement
    assert sizing.contracts_per_level(5, 60_000, BTC, risk_percentage=1, min_balance=0) == 0


def test_min_size_above_one_and_position_limit() -> None:
    product = ProductSpec(symbol="X", product_id=1, contract_value=1.0, tick_size=0.01, min_size=10,
                          position_size_limit=40)
    assert sizing.contracts_per_level(1_000, 10, product, risk_percentage=1, min_balance=0) == 10
    # 100% of 100,000 at 10/contract = 10,000 contracts, capped by the product limit of 40
    assert sizing.contracts_per_level(100_000, 10, product, risk_percentage=100, min_balance=0) == 40


def test_the_grid_is_sized_as_if_its_own_entries_were_not_resting() -> None:
    """The add-back is the margin the paper venue holds for exactly our entries: not for our
    take-profit (it stays through a regrid), our stop (reduce-only) or a trader's manual order."""
    e = make(balance=10_000.0, leverage=10.0, last=50_000.0)
    before = float(e.available_balance())

    def cid(side: Side, purpose: Purpose, level: int) -> str:
        return coid.encode(bot_id="g1", symbol="BTCUSD", side=side, purpose=purpose, level=level, generation=1)

    ours: list[tuple[Side, float, int, str]] = [("buy", 49_000.0, 3, cid("buy", "entry", 1)),
                                                ("buy", 48_000.0, 2, cid("buy", "entry", 2))]
    others: list[tuple[Side, float, int, str]] = [
        ("sell", 52_000.0, 1, cid("sell", "take_profit", 1)),  # ours, kept through a regrid
        ("buy", 47_000.0, 4, "manual-1"),  # a trader's
        ("buy", 46_000.0, 2, coid.encode(bot_id="g2", symbol="BTCUSD", side="buy", purpose="entry", level=1,
                                         generation=1)),  # another bot's
    ]
    resting: list[OpenOrder] = []
    for side, price, size, client_id in ours + others:
        o = e.place_order(OrderRequest(product_id=BTC.product_id, side=side, size=size, order_type="limit_order",
                                       limit_price=Decimal(repr(price)), client_order_id=client_id))
        resting.append(OpenOrder(order_id=o.id, symbol="BTCUSD", side=side, price=price, size=size,
                                 unfilled_size=o.unfilled_size, client_order_id=client_id))
    others_margin = sum(size * BTC.contract_value * price / 10.0 for _, price, size, _ in others)
    available = float(e.available_balance())
    assert available < before - others_margin - 1.0  # our entries hold margin too
    got = sizing.grid_sizing_balance(available, resting, BTC, bot_id="g1", symbol="BTCUSD")
    assert got == pytest.approx(before - others_margin, abs=0.01)
    # so the size is what it was before our entries rested
    assert sizing.contracts_per_level(got, 50_000.0, BTC, risk_percentage=50.0, min_balance=0.0) == \
        sizing.contracts_per_level(before - others_margin, 50_000.0, BTC, risk_percentage=50.0, min_balance=0.0)
    # a partly filled entry holds margin only for what still rests
    half = [msgspec.structs.replace(resting[0], unfilled_size=1)]
    assert sizing.grid_sizing_balance(0.0, half, BTC, bot_id="g1", symbol="BTCUSD") == \
        pytest.approx(1 * BTC.contract_value * 49_000.0 * BTC.initial_margin)
    # reduce-only and stop orders hold none
    assert sizing.grid_sizing_balance(0.0, [msgspec.structs.replace(resting[0], reduce_only=True),
                                            msgspec.structs.replace(resting[0], order_type="stop_market_order")],
                                      BTC, bot_id="g1", symbol="BTCUSD") == 0.0


def test_every_balance_in_a_sizes_range_gives_that_size() -> None:
    # The backtest skips re-sizing a symbol whose balance stays inside this range: each end is
    # checked, the interior holds by monotonicity; here the interior is sampled too, and the
    # range must be tight (just past its top the size grows) or it would skip nothing useful.
    import numpy as np

    rng = np.random.default_rng(11)
    small = msgspec.structs.replace(ETH, min_size=3, position_size_limit=40)
    tight = finite = useful = cases = 0
    for spec in (BTC, ETH, small):
        for price in rng.uniform(0.5, 2.0, 15) * (60_000.0 if spec is BTC else 2_000.0):
            for balance in np.concatenate([rng.uniform(-50, 300, 10), rng.uniform(0, 2e5, 30)]):
                rp, mb = float(rng.choice([0.5, 2.0, 25.0])), float(rng.choice([0.0, 50.0]))
                n, lo, hi = sizing.balance_range_for_size(float(balance), float(price), spec,
                                                          risk_percentage=rp, min_balance=mb)
                cases += 1

                def size(b: float, price: float = float(price), rp: float = rp, mb: float = mb,
                         spec: ProductSpec = spec) -> int:
                    return sizing.contracts_per_level(b, price, spec, risk_percentage=rp, min_balance=mb)

                assert n == size(float(balance)) and lo <= balance <= hi
                inside = [b for b in (lo, hi, *rng.uniform(max(lo, -1e3), min(hi, 1e7), 20)) if math.isfinite(b)]
                assert all(size(float(b)) == n for b in inside), (spec.symbol, price, balance, n, lo, hi)
                useful += hi > balance
                if math.isfinite(hi) and hi > balance:
                    finite += 1
                    tight += size(hi + abs(hi) * 1e-6) > n
    assert useful > 0.9 * cases and finite > 0.5 * cases and tight == finite
