"""The supervisor's writes to the run's SQLite ledger (it is the one writer): fills committed before
anything else, kept in a bounded queue and retried while the disk refuses them; order events,
snapshots and samples batched. A failing write halts new entries (the `halt` callback: a fill we
cannot record is a position we cannot account for) and is said in status until a write goes
through again. No processes: unit-tested on real SQLite (tests/orchestrator/test_ledger.py)."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from shared.messages import FillEvent, OrderRecord, WorkerFigures
from shared.store import EquitySnapshot, PositionSnapshot, Store
from shared.store import OrderEvent as StoredOrderEvent
from shared.trading.pnl import Fill

log = logging.getLogger("supervisor")
# Fills the ledger could not take yet (disk full), kept for retry. Entries are halted meanwhile,
# so only orders already resting add to it; past the cap the oldest is dropped, loudly (it stays
# on the exchange's ledger).
MAX_UNSTORED_FILLS = 100_000


class LedgerWriter:
    def __init__(self, *, halt: Callable[[str], None], max_unstored: int = MAX_UNSTORED_FILLS) -> None:
        self.store: Store | None = None  # set when the supervisor opens the ledger
        self.fills_stored = 0
        self.unstored: deque[Fill] = deque()
        self.max_unstored = max_unstored
        self.storage_error = ""  # why the ledger cannot be written; "" when it can
        self.venue_storage_error = ""  # why the paper venue cannot write its account journal
        self._halt = halt

    # --- fills: committed first, retried ---------------------------------------------------------

    def on_fill(self, ev: FillEvent) -> None:
        if self.store is None:
            return
        if len(self.unstored) >= self.max_unstored:
            lost = self.unstored.popleft()
            log.error("ledger retry queue full: fill %s dropped from memory (it stays on the exchange's ledger)",
                      lost.fill_id)
        self.unstored.append(ev.fill)  # the gateway's domain fill is what the store takes
        self.store_fills()

    def store_fills(self) -> None:
        """Write the waiting fills, oldest first; stop at the first the ledger cannot take (it and
        the rest are retried on the next monitor pass)."""
        while self.unstored and self.store is not None:
            fill = self.unstored[0]
            try:
                stored = self.store.record_fill(fill)
            except (sqlite3.Error, OSError) as exc:  # disk full, I/O error: worth retrying
                self.failed(f"fill {fill.fill_id} not written: {exc}")
                return
            except Exception:  # a fill the ledger refuses for what it is: retrying cannot help
                log.exception("could not store fill %s (it stays on the venue's ledger)", fill.fill_id)
                stored = False
            self.unstored.popleft()
            if stored:
                self.fills_stored += 1
        self.ok()

    def known_fill_ids(self, limit: int) -> tuple[str, ...]:
        """The newest fill ids the ledger holds, newest first: those still waiting in memory for
        a full disk (we have them; a restarted gateway must not hand them on again) ahead of
        those in the store, `limit` in all."""
        assert self.store is not None
        ids = dict.fromkeys(f.fill_id for f in itertools.islice(reversed(self.unstored), limit))
        for fid in self.store.newest_fill_ids(limit):
            if len(ids) >= limit:
                break
            ids.setdefault(fid)
        return tuple(ids)

    # --- failures -----------------------------------------------------------------------------

    def failed(self, why: str) -> None:
        """A ledger write failed: no new entries, said in status; writes are retried every pass."""
        if not self.storage_error:
            log.error("ledger write failed: %s; halting new entries, retrying", why)
        self.storage_error = why
        self._halt(f"storage: {why}")

    def ok(self) -> None:
        if self.storage_error:
            log.warning("ledger writable again; %d fills stored in all (the storage halt stays until "
                        "`orchestrate resume --all`)", self.fills_stored)
        self.storage_error = ""

    def venue_journal(self, error: str) -> None:
        """The paper venue's word on its account journal ("" when it can write it); it refuses
        order actions meanwhile, so entries halt."""
        self.venue_storage_error = error
        if error:
            self._halt(f"storage: paper venue: {error}")

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Around a batched ledger write (order events, samples, snapshots: what the exchange
        can rebuild): a failure halts entries and is shown, and never stops the caller's loop."""
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            self.failed(f"{what} not written: {exc}")

    def status(self, *, funding: str = "") -> str:
        """`ok`, or `failing: <why>` (status's `storage`): every store failing now, each from its own
        slot (fills and the ledger's batched rows here, `funding` from the funding ledger's
        status, the paper venue's journal), so one written again does not hide another."""
        failing = [*([f"{len(self.unstored)} fills waiting to be written; {self.storage_error}"]
                     if self.storage_error else []),
                   *([funding] if funding else []),
                   *([f"paper venue: {self.venue_storage_error}"] if self.venue_storage_error else [])]
        return "failing: " + " | ".join(failing) if failing else "ok"

    # --- batched rows -------------------------------------------------------------------------

    def flush(self) -> None:
        if self.store is not None:
            with self.writing("ledger commit"):
                self.store.flush()
                if not self.unstored:
                    # A commit went through and no fill waits: the ledger is writable again, even
                    # when no new fill arrives to prove it (entries are halted; fills may not come).
                    self.ok()

    def on_order_record(self, rec: OrderRecord) -> None:
        if self.store is None:
            return
        try:
            # the stored row is the gateway's record by field name (tests/orchestrator/test_ledger.py
            # holds that every row field has its namesake in OrderRecord)
            self.store.record_order_event(StoredOrderEvent(
                **{name: getattr(rec, name) for name in StoredOrderEvent.__struct_fields__}))
        except (sqlite3.Error, OSError):
            raise  # storage failing: writing() says so once, not a traceback per event
        except Exception:
            log.exception("could not store an order event for %s (the venue keeps the order)", rec.symbol)

    def record_account(self, now: float, equity: float, workers: Iterable[tuple[str, WorkerFigures]]) -> None:
        """The account's equity and each bot's position at `now` (batched)."""
        if self.store is None:
            return
        with self.writing("account snapshot"):
            self.store.record_equity(EquitySnapshot(ts=now, equity=repr(equity), available_balance=""))
            for symbol, wf in workers:
                if math.isfinite(wf.last_price):
                    self.store.record_position(PositionSnapshot(
                        ts=now, symbol=symbol, contracts=int(wf.position), average_entry="",
                        mark=repr(wf.last_price), realised=repr(wf.realized_pnl),
                        unrealised=repr(wf.unrealized_pnl), fees=repr(wf.fees)))

    # --- exit ---------------------------------------------------------------------------------

    def close(self) -> None:
        """At shutdown: a last try at the waiting fills, then close (each step on its own: a full
        disk failing the ledger must not stop the rest of the shutdown)."""
        if self.store is None:
            return
        self.store_fills()
        if self.unstored:
            log.error("%d fills not written to the ledger before exit (%s); they stay on the exchange's "
                      "ledger", len(self.unstored), self.storage_error)
        try:
            self.store.close()
        except (sqlite3.Error, OSError) as exc:
            log.error("ledger not closed cleanly: %s", exc)
        self.store = None
