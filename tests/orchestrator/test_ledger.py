"""The supervisor's ledger writer (orchestrator/ledger.py) on real SQLite: fills committed first,
a refused fill kept and retried with entries halted, the retry queue bounded, snapshots batched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from orchestrator.ledger import LedgerWriter
from shared.messages import FillEvent, OrderRecord, WorkerFigures
from shared.store import Store
from shared.trading.pnl import Fill


class _DiskFullStore(Store):
    full = False

    def record_fill(self, fill: Fill) -> bool:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().record_fill(fill)


def event(n: int) -> FillEvent:
    return FillEvent(symbol="BTCUSD", sent_ns=0, fill=Fill(
        fill_id=str(n), symbol="BTCUSD", order_id=str(n), client_order_id=f"c{n}", side="buy", size=1, price="60000",
        fee="0.03", contract_value="0.001", role="maker", ts=1_800_000_000.0 + n))


def test_a_refused_fill_waits_halts_entries_and_is_written_when_the_disk_has_room(tmp_path: Path) -> None:
    halts: list[str] = []
    ledger = LedgerWriter(halt=halts.append)
    store = ledger.store = _DiskFullStore(tmp_path / "l.sqlite")
    ledger.on_fill(event(1))
    assert ledger.fills_stored == 1 and ledger.status() == "ok"
    store.full = True
    ledger.on_fill(event(2))
    ledger.on_fill(event(3))
    assert [f.fill_id for f in ledger.unstored] == ["2", "3"]
    assert ledger.status().startswith("failing: 2 fills waiting to be written; fill 2 not written: database or disk")
    assert halts and all(h.startswith("storage: fill 2 not written") for h in halts)
    assert ledger.known_fill_ids(10) == ("3", "2", "1")  # waiting ones first: a new gateway must not resend them
    store.full = False
    ledger.store_fills()
    assert not ledger.unstored and ledger.fills_stored == 3 and ledger.status() == "ok"
    assert [f.fill_id for f in store.fills()] == ["1", "2", "3"]
    ledger.close()
    assert ledger.store is None


def test_the_retry_queue_is_bounded_oldest_dropped(tmp_path: Path) -> None:
    ledger = LedgerWriter(halt=lambda why: None, max_unstored=2)
    store = ledger.store = _DiskFullStore(tmp_path / "l.sqlite")
    store.full = True
    for n in range(5):
        ledger.on_fill(event(n))
    assert [f.fill_id for f in ledger.unstored] == ["3", "4"]
    store.full = False
    ledger.close()


def test_order_events_and_account_snapshots_are_batched_and_a_venue_journal_failure_halts(tmp_path: Path) -> None:
    halts: list[str] = []
    ledger = LedgerWriter(halt=halts.append)
    ledger.store = Store(tmp_path / "l.sqlite")
    ledger.on_order_record(OrderRecord(ts=1.0, symbol="BTCUSD", event="placed", client_order_id="c1", order_id="9",
                                       side="buy", price="60000", size=1, detail="limit_order"))
    base = {"state": "running", "last_price": 60_000.0, "bar_count": 1, "ticks": 1, "ticks_dropped": 0, "signals": 1,
            "signal": "UP", "confidence": 1.0, "votes": {}, "atr14": 1.0, "tick_to_signal_p50_us": 1.0,
            "tick_to_signal_p99_us": 1.0, "tick_to_signal_p999_us": 1.0, "tick_to_signal_count": 1,
            "loop_lag_ms": 1.0, "malformed": 0, "first_signal_mono_ns": 1, "position": 2.0}
    priced = msgspec.convert(base, WorkerFigures)
    unpriced = msgspec.convert({**base, "last_price": float("nan")}, WorkerFigures)
    ledger.record_account(5.0, 10_000.0, [("BTCUSD", priced), ("ETHUSD", unpriced)])
    with Store(tmp_path / "l.sqlite", readonly=True) as reader:
        assert reader.order_events() == [] and reader.latest_equity() is None  # batched, not yet committed
    ledger.flush()
    with Store(tmp_path / "l.sqlite", readonly=True) as reader:
        assert [e.client_order_id for e in reader.order_events()] == ["c1"]
        equity = reader.latest_equity()
        assert equity is not None and equity.equity == "10000.0"
        assert set(reader.last_marks()) == {"BTCUSD"}  # a bot with no price yet has no snapshot
    ledger.venue_journal("")
    assert not halts and ledger.status() == "ok"
    ledger.venue_journal("No space left on device")
    assert halts == ["storage: paper venue: No space left on device"]
    assert ledger.status() == "failing: paper venue: No space left on device"
    ledger.close()


def test_an_order_record_is_stored_whole_by_field_name(tmp_path: Path) -> None:
    """The ledger copies the gateway's OrderRecord into the store's row by field name: every row
    field has its namesake in the message, and nothing the gateway said is lost on the way."""
    from shared.store import OrderEvent as StoredOrderEvent
    assert set(StoredOrderEvent.__struct_fields__) <= set(OrderRecord.__struct_fields__)
    ledger = LedgerWriter(halt=lambda why: None)
    ledger.store = Store(tmp_path / "l.sqlite")
    rec = OrderRecord(ts=2.5, symbol="ETHUSD", event="rejected", client_order_id="c7", order_id="", side="sell",
                      price="2000.5", size=3, detail="insufficient_margin: not enough")
    ledger.on_order_record(rec)
    ledger.flush()
    [stored] = ledger.store.order_events()
    assert msgspec.structs.asdict(stored) == {k: getattr(rec, k) for k in StoredOrderEvent.__struct_fields__}
    ledger.close()
