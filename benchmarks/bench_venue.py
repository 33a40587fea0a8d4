"""Paper venue: what the account journal costs per engine drain, against the full snapshot it
saves us from writing on every change (the snapshot is the anchor: same account, same run)."""

from __future__ import annotations

import os
import tempfile
import time
from decimal import Decimal
from typing import Any

from shared.matching import MatchingEngine, OrderRequest
from shared.matching.engine import encode_journal_entry
from shared.products import PAPER_PRODUCTS

from .harness import row


def _account(fills: int) -> MatchingEngine:
    e = MatchingEngine(initial_balance_usd=Decimal(10**9), default_leverage=10, clock=lambda: 1)
    e.add_product(PAPER_PRODUCTS["BTCUSD"])
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    for i in range(fills):
        e.place_order(OrderRequest(product_id=27, side="buy" if i % 2 else "sell", size=1, order_type="market_order"))
    e.drain_events()
    return e


def main() -> list[dict[str, Any]]:
    e = _account(3_000)
    e.place_order(OrderRequest(product_id=27, side="buy", size=1, order_type="market_order"))
    one_fill = e.drain_events()  # order create, fill, position, order close
    fd, path = tempfile.mkstemp(prefix="dgo-journal-")
    os.close(fd)
    jfd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        n = 20_000
        t = time.perf_counter()
        for _ in range(n):
            os.write(jfd, encode_journal_entry(one_fill))
        journal_us = (time.perf_counter() - t) / n * 1e6
    finally:
        os.close(jfd)
        os.unlink(path)
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        snap = e.snapshot()
    snapshot_us = (time.perf_counter() - t) / reps * 1e6
    print(f"journal one-fill drain: {journal_us:.1f} us ({len(encode_journal_entry(one_fill))} B); "
          f"snapshot of {len(e.fills)} fills: {snapshot_us / 1000:.2f} ms ({len(snap) / 1e6:.1f} MB)")
    return [row("venue journal: one-fill drain", journal_us, "us", anchor=snapshot_us,
                anchor_name="snapshot, 3,001 fills")]
