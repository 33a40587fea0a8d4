"""Funding as pure functions: when (boundaries on the market clock), at what rate (the seeded
model, a FUNDING series laid out like the candles) and how much; the engine books each payment
once into the balance, the position and the wallet ledger."""

from __future__ import annotations

import statistics
from decimal import Decimal as D
from itertools import pairwise

import numpy as np
import pytest

from shared.funding import (
    MODEL_CLAMP,
    FundingRates,
    FundingSeries,
    boundaries,
    last_boundary,
    load_series,
    payment,
    seeded_rate,
)
from shared.marketdata import Candles
from shared.matching import MatchingEngine, OrderRequest
from shared.matching import protocol as wire
from tests.shared.matching.support import BTC, Clock

H8 = 8 * 3600
US = 1_000_000


def test_funding_times_are_epoch_aligned_multiples_of_the_interval_after_then_up_to_now() -> None:
    assert list(boundaries(0, 3 * H8 * US, H8)) == [H8 * US, 2 * H8 * US, 3 * H8 * US]
    assert list(boundaries(H8 * US, H8 * US, H8)) == []  # the time already settled is not again
    assert list(boundaries(H8 * US - 1, H8 * US, H8)) == [H8 * US]
    assert list(boundaries(5 * US, 1_199 * US, 600)) == [600 * US]
    assert last_boundary(1_199 * US, 600) == 600 * US and last_boundary(1_200 * US, 600) == 1_200 * US
    with pytest.raises(ValueError):
        boundaries(0, 1, 0)


def test_the_seeded_model_is_repeatable_varied_and_clamped() -> None:
    times = [k * H8 * US for k in range(2_000)]
    rates = [seeded_rate(7, "BTCUSD", t) for t in times]
    assert rates == [seeded_rate(7, "BTCUSD", t) for t in times]  # a restarted venue charges the same
    assert rates != [seeded_rate(8, "BTCUSD", t) for t in times]
    assert rates != [seeded_rate(7, "ETHUSD", t) for t in times]
    assert all(abs(r) <= D(repr(MODEL_CLAMP)) for r in rates)
    assert all(r == r.quantize(D("1e-8")) for r in rates)
    mean = statistics.fmean(float(r) for r in rates)
    assert 0.00007 < mean < 0.00013  # 0.01% an interval: longs usually pay
    assert sum(1 for r in rates if r < 0) > 100  # and sometimes receive


def test_a_positive_rate_makes_longs_pay_and_shorts_receive() -> None:
    assert payment(10, D("0.001"), D("50000"), D("0.0001")) == D("-0.05")
    assert payment(-10, D("0.001"), D("50000"), D("0.0001")) == D("0.05")
    assert payment(10, D("0.001"), D("50000"), D("-0.0003")) == D("0.15")
    assert payment(1, D("0.001"), D("0.5"), D("0.00000001")) == D(0)  # below a 1e-8 USD


def test_a_funding_series_is_laid_out_from_the_accounts_first_bar_and_wraps() -> None:
    # three rows an 8 h apart in 2025; the paper market began at some other time
    ts = np.array([1_735_689_600, 1_735_689_600 + H8, 1_735_689_600 + 2 * H8], dtype=np.int64)
    rates = np.array([0.0001, -0.0002, 0.0003])
    series = FundingSeries("BTCUSD", Candles(ts, rates, rates, rates, rates, np.zeros(3)))
    origin = 1_800_000_000
    assert series.rate_at(origin * US, origin) == D("0.0001")
    assert series.rate_at((origin + H8 - 1) * US, origin) == D("0.0001")  # last row at or before
    assert series.rate_at((origin + H8) * US, origin) == D("-0.0002")
    assert series.rate_at((origin + 2 * H8) * US, origin) == D("0.0003")
    assert series.rate_at((origin + 3 * H8) * US, origin) == D("0.0001")  # wrapped
    given = FundingRates(0, {"BTCUSD": series})
    assert given.source("BTCUSD") == "series" and given.source("ETHUSD") == "model"
    assert given.rate("ETHUSD", H8 * US, origin) == seeded_rate(0, "ETHUSD", H8 * US)


def test_a_series_file_that_is_not_ohlcv_is_refused_naming_the_key_and_file(tmp_path) -> None:
    bad = tmp_path / "f.csv"
    bad.write_text("not,a,series\n1,2,3\n")
    with pytest.raises(ValueError, match=r"market.funding_series.BTCUSD: .*f.csv"):
        load_series({"BTCUSD": str(bad)})
    good = tmp_path / "g.csv"
    good.write_text("ts,open,high,low,close,volume\n1735689600,-0.0002,-0.0002,-0.0002,-0.0002,0\n"
                    "1735689660,0.0001,0.0001,0.0001,0.0001,0\n")
    assert load_series({"BTCUSD": str(good)})["BTCUSD"].rate_at(1_800_000_000 * US, 1_800_000_000) == D("-0.0002")


def long_account() -> tuple[MatchingEngine, Clock]:
    clock = Clock()
    e = MatchingEngine(initial_balance_usd=10_000, default_leverage=10, clock=clock)
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    clock.now = 2 * US
    e.place_order(OrderRequest(product_id=27, side="buy", size=20, order_type="market_order"))
    e.drain_events()
    return e, clock


def test_the_engine_books_funding_once_into_balance_position_and_ledger() -> None:
    e, clock = long_account()
    before = e.balance
    assert e.funding_settled_until(27) == 1_000_000  # a product settles funding from when it joined
    fp = e.charge_funding(27, D("0.0001"), H8 * US)
    # on the mark (the paper mark: the last trade, 50,000), not on the taker fill's price
    assert fp is not None and fp.amount == payment(20, D("0.001"), D("50000"), D("0.0001")) == D("-0.1")
    assert (fp.position, fp.mark, fp.rate, fp.timestamp) == (20, D("50000"), D("0.0001"), H8 * US)
    assert e.balance == before + fp.amount
    assert e.charge_funding(27, D("0.0001"), H8 * US) is None  # the same time again: nothing
    assert e.charge_funding(27, D("0.0001"), H8 * US - 1) is None  # nor an older one
    assert e.balance == before + fp.amount and e.position(27).funding == fp.amount
    events = [type(ev).__name__ for ev in e.drain_events()]
    assert events == ["FundingEvent", "PositionEvent"]
    # the ledger identity with funding, and the wallet ledger lists it between the fills it falls between
    e.place_order(OrderRequest(product_id=27, side="sell", size=20, order_type="market_order"))
    assert e.charge_funding(27, D("0.0001"), 2 * H8 * US) is None  # flat: nothing to charge
    assert e.balance == e.initial_balance + e.realized_pnl_total - e.fees_total + e.funding_total
    entries = [wire.transaction_json(k, t) for k, t in wire.wallet_transactions(
        reversed(e.fills), e.balance, e.initial_balance, 0, complete=True, funding=reversed(e.funding))]
    kinds = [x["transaction_type"] for x in entries]
    assert kinds == ["commission", "cashflow", "funding", "commission", "deposit"]
    f = entries[2]
    assert f["amount"] == "-0.1" and f["product_id"] == 27 and f["meta_data"]["funding_rate"] == "0.0001"
    for newer, older in pairwise(entries):
        assert D(newer["balance"]) == D(older["balance"]) + D(newer["amount"])
    assert [x["id"] for x in entries] == sorted((x["id"] for x in entries), reverse=True)
    # a restored account keeps what it settled
    back = MatchingEngine.restore(e.snapshot(), clock=clock)
    assert back.funding_settled_until(27) == 2 * H8 * US and list(back.funding) == list(e.funding)
    assert back.charge_funding(27, D("0.0001"), 2 * H8 * US) is None


def test_settling_before_a_time_covers_every_product() -> None:
    e, _ = long_account()
    e.settle_funding_before(3 * H8 * US)
    assert e.charge_funding(27, D("0.0001"), 3 * H8 * US) is None
    assert e.charge_funding(27, D("0.0001"), 4 * H8 * US) is not None
