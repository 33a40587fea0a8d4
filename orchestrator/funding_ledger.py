"""The supervisor's funding ledger: funding payments from the gateway into SQLite (each once, by
the venue's transaction id), and each symbol's funding to date for status.

Funding is money like a fill: it is committed as it arrives, and one the store cannot take (a
full disk) waits in memory, oldest first and bounded, for the next try; meanwhile the
supervisor halts entries with reason `storage`, as it does for fills. Its failure is its own
(`error`, `status`): a fill written meanwhile does not make the ledger read `ok` while payments
still wait.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import deque
from decimal import Decimal

from shared.messages import Funding
from shared.store import Store
from shared.trading.pnl import to_decimal

log = logging.getLogger("supervisor")
MAX_UNSTORED_FUNDING = 10_000  # past it the oldest is dropped, loudly (it stays on the venue's ledger)
STORED_FUNDING_IDS = 2_000  # newest stored ids a (re)started gateway reads the ledger back to


class FundingLedger:
    def __init__(self) -> None:
        self.by_symbol: dict[str, Decimal] = {}  # + received, - paid, to date
        self.stored = 0
        self._waiting: deque[Funding] = deque()
        self.error = ""  # why the waiting payments could not be written; "" when none failed

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def load(self, store: Store) -> None:
        self.by_symbol = store.funding_by_symbol()

    def add(self, funding: Funding) -> None:
        if len(self._waiting) >= MAX_UNSTORED_FUNDING:
            lost = self._waiting.popleft()
            log.error("funding retry queue full: payment %s dropped from memory (it stays on the venue's ledger)",
                      lost.funding_id)
        self._waiting.append(funding)

    def store_waiting(self, store: Store) -> str:
        """Write the waiting payments, oldest first; "" when all are written, else why not (the
        rest waits for the next call)."""
        while self._waiting:
            f = self._waiting[0]
            try:
                new = store.record_funding(f)
            except (sqlite3.Error, OSError) as exc:
                if not self.error:
                    log.error("funding %s not written to the ledger: %s; it waits, retried each pass",
                              f.funding_id, exc)
                self.error = f"funding {f.funding_id} not written: {exc}"
                return self.error
            except Exception:  # refused for what it is (not an amount, replayed with other contents)
                log.exception("could not store funding %s (it stays on the venue's ledger)", f.funding_id)
                new = False
            self._waiting.popleft()
            if new:
                self.stored += 1
                self.by_symbol[f.symbol] = self.by_symbol.get(f.symbol, Decimal(0)) + to_decimal(f.amount)
        if self.error:
            log.warning("funding payments written to the ledger again; %d stored in all", self.stored)
        self.error = ""
        return ""

    def status(self) -> str:
        """"" when every payment is written, else what waits and why (a part of status's `storage`)."""
        return f"{len(self._waiting)} funding payments waiting to be written; {self.error}" if self.error else ""

    def known_ids(self, store: Store) -> tuple[str, ...]:
        """The newest funding ids the ledger has, newest first: those waiting in memory, then the
        stored ones (a restarted gateway must not read them as news)."""
        ids = dict.fromkeys(f.funding_id for f in reversed(self._waiting))
        for fid in store.newest_funding_ids(STORED_FUNDING_IDS):
            if len(ids) >= STORED_FUNDING_IDS:
                break
            ids.setdefault(fid)
        return tuple(ids)

    def of(self, symbol: str) -> float:
        return float(self.by_symbol.get(symbol, Decimal(0)))

    def total(self) -> float:
        """All symbols' funding to date as stored (+ received, - paid): the daily summary's source."""
        return float(sum(self.by_symbol.values(), Decimal(0)))
