"""Shared set-up of the matching-engine tests: an injectable clock and a BTC account."""

from __future__ import annotations

from shared.matching import MatchingEngine
from shared.products import PAPER_PRODUCTS, ProductSpec, synthetic_spec

BTC = PAPER_PRODUCTS["BTCUSD"]  # id 27, cv 0.001, tick 0.5, taker 0.05%


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def make(balance: float = 10_000.0, leverage: float = 10.0, last: float = 50_000.0) -> MatchingEngine:
    """An account trading BTCUSD with a first trade at `last` and no events pending."""
    e = MatchingEngine(initial_balance_usd=balance, default_leverage=leverage, clock=Clock())
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", last, 1, 1)
    e.drain_events()  # the product's arrival (for the account journal): not what the tests watch
    return e


def two_product_account(balance: float) -> tuple[MatchingEngine, list[ProductSpec], dict[str, float]]:
    """BTCUSD and a synthetic product, each with a first trade: the start of a random session.
    Returns the engine, the specs and each symbol's last price (for the session to move)."""
    e = MatchingEngine(initial_balance_usd=balance, default_leverage=10, clock=Clock())
    specs = [BTC, synthetic_spec("SYN_0001")]
    px = {"BTCUSD": 50_000.0, "SYN_0001": 100.0}
    for s in specs:
        e.add_product(s)
        e.on_market_trade(s.symbol, px[s.symbol], 1, 0)
    return e, specs, px
