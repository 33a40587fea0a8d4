"""The wallet ledger's wire form (pure): balances walked back from now, and paging that reads
only as far as the page it answers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal as D
from typing import Any

from shared.matching import protocol as wire
from shared.matching.engine import Fill


def _fills(n: int) -> list[Fill]:
    return [Fill(seq=i, id=f"{i:012x}", order_id=i, client_order_id=None, product_id=27, symbol="BTCUSD",
                 side="buy", size=1, price=D("50000.5"), role="taker", commission=D("0.025"),
                 realized_pnl=D("1.5") if i % 3 == 0 else D(0), position_after=1, timestamp=1_700_000_000_000_000 + i)
            for i in range(1, n + 1)]


def test_each_entry_is_the_next_older_ones_balance_plus_its_amount() -> None:
    fills = _fills(30)
    start = D("10000")
    now = start + sum((f.realized_pnl - f.commission for f in fills), D(0))
    entries = [wire.transaction_json(k, e) for k, e in
               wire.wallet_transactions(reversed(fills), now, start, 0, complete=True)]
    assert entries[0]["balance"] == wire.s(now) and entries[-1]["transaction_type"] == "deposit"
    assert D(entries[-1]["balance"]) == start
    for newer, older in zip(entries, entries[1:]):
        assert D(newer["balance"]) == D(older["balance"]) + D(newer["amount"])
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)


def test_lazy_paging_equals_list_paging_and_stops_early() -> None:
    rng = random.Random(7)
    keyed = [(k, k) for k in sorted(rng.sample(range(1, 10_000), 500), reverse=True)]
    for _ in range(200):
        cursor = rng.choice(keyed)[0]
        kind = rng.choice(["after", "before", None])
        size = rng.randint(1, 60)
        kw: dict[str, Any] = {"after": cursor if kind == "after" else None,
                              "before": cursor if kind == "before" else None, "size": size}
        assert wire.page_newest_first(iter(keyed), **kw) == wire.page_newest_first(list(keyed), **kw)
    pulled = 0

    def counting() -> Iterator[tuple[int, int]]:
        nonlocal pulled
        for kv in keyed:
            pulled += 1
            yield kv
    wire.page_newest_first(counting(), after=None, before=None, size=50)
    assert pulled == 51  # the page and one more, to know whether older items exist


def test_time_window_keeps_the_balances_of_the_whole_walk() -> None:
    fills = _fills(10)
    now = D("10000") + sum((f.realized_pnl - f.commission for f in fills), D(0))
    every = {k: wire.transaction_json(k, e) for k, e in wire.wallet_transactions(reversed(fills), now, D("10000"), 0,
                                                                                 complete=True)}
    t5 = fills[4].timestamp
    window = {k: wire.transaction_json(k, e) for k, e in wire.wallet_transactions(
        reversed(fills), now, D("10000"), 0, complete=True, start_us=t5, end_us=t5 + 2)}
    assert window and all(window[k] == every[k] for k in window)
    assert {e["meta_data"]["fill_id"] for e in window.values()} == {f.id for f in fills[4:7]}
