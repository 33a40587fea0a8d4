"""The supervisor's funding ledger: each payment stored once, totals per symbol for status, and a
store that cannot take one (full disk, I/O error) keeps it waiting for the next try."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestrator.funding_ledger import FundingLedger
from shared.messages import Funding
from shared.store import Store, db_path


def pay(i: int, amount: str, symbol: str = "BTCUSD") -> Funding:
    return Funding(funding_id=str(i), symbol=symbol, amount=amount, ts=1_700_000_000.0 + i)


class FailingOnce:
    """A store whose next write fails as a full disk does, then works."""

    def __init__(self, store: Store) -> None:
        self.store, self.fail = store, True

    def record_funding(self, f: Funding) -> bool:
        if self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.store.record_funding(f)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_payments_are_stored_once_and_totalled_and_wait_while_the_store_fails(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        store.record_funding(pay(1, "-0.5"))
        ledger = FundingLedger()
        ledger.load(store)
        assert ledger.of("BTCUSD") == -0.5 and ledger.of("ETHUSD") == 0.0
        flaky = FailingOnce(store)
        ledger.add(pay(2, "-0.25"))
        ledger.add(pay(3, "0.1", "ETHUSD"))
        why = ledger.store_waiting(flaky)  # type: ignore[arg-type]  # a Store in all it is asked
        assert "funding 2 not written" in why and "disk is full" in why and ledger.waiting == 2
        assert ledger.status() == f"2 funding payments waiting to be written; {why}" and ledger.error == why
        assert ledger.of("BTCUSD") == -0.5  # not counted before it is stored
        assert ledger.known_ids(store) == ("3", "2", "1")  # a restarted gateway must not hand them on again
        assert ledger.store_waiting(flaky) == "" and ledger.waiting == 0  # type: ignore[arg-type]
        assert ledger.status() == "" and ledger.error == ""
        ledger.add(pay(2, "-0.25"))  # the same payment read again: stored once, counted once
        assert ledger.store_waiting(store) == ""
        assert ledger.by_symbol == {"BTCUSD": Decimal("-0.75"), "ETHUSD": Decimal("0.1")}
        assert ledger.stored == 2 and [f.funding_id for f in store.funding()] == ["1", "2", "3"]
        assert ledger.total() == float(Decimal("-0.65"))  # the daily summary's source: stored payments only
        ledger.add(pay(4, "0.05"))
        assert ledger.total() == float(Decimal("-0.65"))  # waiting, not yet stored: not counted
        assert ledger.store_waiting(store) == "" and ledger.total() == float(Decimal("-0.60"))
