"""The grid's size does not depend on whether the grid itself rests: the venue's available balance
is read with our entries holding margin, and a plan on that read keeps the grid it placed (no
size amends the moment the account is re-read). Real Worker and ring; the gateway's replies are
built by hand, the held margin as the paper venue holds it (notional / leverage)."""

from __future__ import annotations

from collections.abc import Callable

from shared.messages import AccountSnapshot
from shared.products import PAPER_PRODUCTS
from shared.trading.orders import OpenOrder
from tests.workers.order_support import resting as resting_orders
from tests.workers.test_worker_position_check import REPLY
from workers.runtime import ChildSpec
from workers.worker import Worker

ETH = PAPER_PRODUCTS["ETHUSD"]


def snapshot(available: float, orders: list[OpenOrder]) -> AccountSnapshot:
    return AccountSnapshot(symbol="ETHUSD", product=ETH, open_orders=orders, fills=[], available_balance=available,
                           equity=10_000.0, venue_position=0)


def test_a_grid_re_read_with_its_own_margin_held_keeps_its_size(worker_spec: Callable[..., ChildSpec]) -> None:
    # 1% of 10,000 at 2,000 x 0.01 a contract: exactly 5 contracts a level, the boundary where
    # the grid's own margin would cost a contract
    w = Worker(worker_spec({"risk": {"risk_percentage": 1.0, "min_balance": 100.0}}))
    w.on_account(snapshot(10_000.0, []), full=True)
    first = w.make_intents(REPLY)
    assert first is not None and first.place and not first.amend
    entries = [p for p in first.place if p.order_type == "limit_order" and not p.reduce_only]
    assert entries and {p.size for p in entries} == {5}, first.place
    w.intent_in_flight = None
    # the venue now rests them, each holding size x 0.01 x price / 10 of the balance
    resting = resting_orders(first.place, "ETHUSD")
    held = sum(p.size * ETH.contract_value * p.price / ETH.default_leverage for p in entries)
    assert held > 20.0
    w.resync_asked_at_seq = w.intent_seq
    w.on_account(snapshot(10_000.0 - held, resting), full=True)
    again = w.make_intents(REPLY)
    # nothing to do: the old sizing amended every entry to 4 contracts here
    assert again is None or (not again.amend and not again.place and not again.cancel), again
