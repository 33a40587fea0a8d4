from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from shared.messages import Funding
from shared.store import (
    EquitySnapshot,
    OrderEvent,
    PositionSnapshot,
    SignalSample,
    Store,
    StoreError,
    db_path,
)
from shared.trading.orders import Side
from shared.trading.pnl import Fill


def make_fill(i: int, symbol: str = "BTCUSD", side: Side = "buy", size: int = 1, price: str = "60000",
              fee: str = "0.03", cv: str = "0.001") -> Fill:
    return Fill(fill_id=f"fill-{i}", symbol=symbol, side=side, size=size, price=price, fee=fee,
                contract_value=cv, ts=1_700_000_000.0 + i, client_order_id=f"c{i}", order_id=str(i))


def test_fills_round_trip_and_replays_are_idempotent(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        assert store.record_fill(make_fill(1))
        assert store.record_fill(make_fill(2, symbol="ETHUSD", side="sell", price="2000.05", cv="0.01"))
        assert not store.record_fill(make_fill(1))  # replayed after a reconnect
        with pytest.raises(StoreError, match="different contents"):
            store.record_fill(make_fill(1, price="60001"))
        assert store.fills() == [make_fill(1), make_fill(2, symbol="ETHUSD", side="sell", price="2000.05",
                                                         cv="0.01")]
        assert [f.fill_id for f in store.fills("ETHUSD")] == ["fill-2"]
        store.record_fill(make_fill(3))
        assert [f.fill_id for f in store.fills(last=2)] == ["fill-2", "fill-3"]
        assert [f.fill_id for f in store.fills("BTCUSD", last=1)] == ["fill-3"]


def test_pnl_summary_uses_fills_and_last_mark(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        store.record_fill(make_fill(1, size=10, price="60000", fee="0.3"))
        store.record_fill(make_fill(2, side="sell", size=4, price="60500", fee="0.121"))
        store.record_fill(make_fill(3, symbol="ETHUSD", side="sell", size=2, price="2000", fee="0.02", cv="0.01"))
        for mark in ("60100", "61000"):
            store.record_position(PositionSnapshot(ts=1.0, symbol="BTCUSD", contracts=6, average_entry="60000",
                                                   mark=mark, realised="2", unrealised="0", fees="0.421"))
        summary = store.pnl_summary()
        btc = {r.symbol: r for r in summary.symbols}["BTCUSD"]
        assert btc.realised == Decimal("2")  # 500 x 4 x 0.001
        assert btc.unrealised == Decimal("6")  # (61,000 - 60,000) x 6 x 0.001 at the LAST mark
        assert btc.fees == Decimal("0.421")
        eth = {r.symbol: r for r in summary.symbols}["ETHUSD"]
        assert eth.mark is None and eth.unrealised == 0 and eth.contracts == -2
        assert summary.fees == Decimal("0.441") and summary.net == Decimal("2") + 6 - Decimal("0.441")
        only = store.pnl_summary("ETHUSD")
        assert [r.symbol for r in only.symbols] == ["ETHUSD"]


def test_batched_records_commit_with_the_next_fill_or_flush(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    store = Store(path, batch_size=1000)
    store.record_order_event(OrderEvent(ts=1.0, symbol="BTCUSD", event="placed", client_order_id="c1",
                                        order_id="9", side="buy", price="59400", size=2))
    store.record_equity(EquitySnapshot(ts=1.0, equity="1000", available_balance="900"))
    reader = Store(path, readonly=True)
    assert reader.order_events() == [] and reader.latest_equity() is None  # not committed yet
    store.record_fill(make_fill(1))
    assert [e.event for e in reader.order_events()] == ["placed"]
    assert reader.latest_equity() == EquitySnapshot(ts=1.0, equity="1000", available_balance="900")
    store.record_equity(EquitySnapshot(ts=2.0, equity="1001", available_balance="901"))
    store.flush()
    latest = reader.latest_equity()
    assert latest is not None and latest.equity == "1001"
    reader.close()
    store.close()


def test_durable_order_events_and_sent_client_order_ids(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    store = Store(path, batch_size=1000)
    reader = Store(path, readonly=True)
    store.record_order_event(OrderEvent(ts=1.0, symbol="BTCUSD", event="sending", client_order_id="c1"),
                             durable=True)
    assert reader.sent_client_order_ids("BTCUSD") == ["c1"]  # committed before the order goes out
    store.record_fill(make_fill(7))  # client order id "c7": the venue reports fills, not this list
    store.record_order_event(OrderEvent(ts=0.5, symbol="ETHUSD", event="sending", client_order_id="e1"))
    store.flush()
    assert reader.sent_client_order_ids("BTCUSD") == ["c1"]
    assert reader.sent_client_order_ids("ETHUSD") == ["e1"]
    # sent ids follow the order they were recorded in, whatever the event times say
    store.record_order_event(OrderEvent(ts=0.1, symbol="BTCUSD", event="placed", client_order_id="c9"))
    store.record_order_event(OrderEvent(ts=9.0, symbol="BTCUSD", event="rejected", client_order_id=""))
    assert store.sent_client_order_ids("BTCUSD") == ["c9", "c1"]  # the writer sees its own batch
    assert store.sent_client_order_ids("BTCUSD", last=1) == ["c9"]
    reader.close()
    store.close()


def test_batch_size_bounds_uncommitted_rows(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    store = Store(path, batch_size=3)
    reader = Store(path, readonly=True)
    for i in range(7):
        store.record_order_event(OrderEvent(ts=float(i), symbol="X", event="placed", client_order_id=f"c{i}"))
    assert len(reader.order_events()) == 6  # two full batches committed, one row pending
    store.close()
    assert len(reader.order_events()) == 7  # close flushes
    reader.close()


def test_signals_are_sampled(tmp_path: Path) -> None:
    with Store(db_path(tmp_path), signal_interval_s=60.0) as store:
        def sig(ts: float, direction: str = "UP") -> bool:
            return store.record_signal(SignalSample(ts=ts, symbol="BTCUSD", direction=direction,
                                                    confidence=0.75, price=1.0, atr=0.1))
        assert sig(0.0)
        assert not sig(30.0)
        assert sig(31.0, "DOWN")  # direction change is always kept
        assert not sig(90.0, "DOWN")
        assert sig(91.0, "DOWN")
        store.flush()
        assert store._db.execute("SELECT COUNT(*) FROM signals").fetchone()[0] == 3


def test_rl_tables_save_replace_and_load(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with Store(path) as store:
        assert store.load_rl_table("BTCUSD") is None
        store.save_rl_table("BTCUSD", b"\x00\x01", ts=1.0)
        store.save_rl_table("BTCUSD", b"\x02", ts=2.0)
        with Store(path, readonly=True) as reader:  # committed on save, visible at once
            assert reader.load_rl_table("BTCUSD") == b"\x02"


def test_rl_tables_saved_uncommitted_go_out_in_one_commit(tmp_path: Path) -> None:
    """A pool's tables arrive together: written with the next flush, not one commit (fsync) each."""
    path = db_path(tmp_path)
    with Store(path) as store:
        store.save_rl_table("ETHUSD", b"\x01", ts=1.0)  # an older, committed table
        for sym in ("BTCUSD", "ETHUSD"):
            store.save_rl_table(sym, sym.encode(), ts=2.0, commit=False)
        with Store(path, readonly=True) as reader:
            assert reader.load_rl_table("BTCUSD") is None and reader.load_rl_table("ETHUSD") == b"\x01"
        store.flush()
        with Store(path, readonly=True) as reader:
            assert reader.load_rl_table("BTCUSD") == b"BTCUSD" and reader.load_rl_table("ETHUSD") == b"ETHUSD"


def test_readonly_store_refuses_writes_and_missing_files(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    Store(path).close()
    reader = Store(path, readonly=True)
    with pytest.raises(StoreError):
        reader.record_fill(make_fill(1))
    reader.close()
    with pytest.raises(StoreError):
        Store(tmp_path / "nope.sqlite", readonly=True)


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def _writer(path: str, acks: Connection, start: int) -> None:
    """Child: records fills forever, acknowledging each only after record_fill returned."""
    store = Store(path, batch_size=50)
    i = start
    while True:
        i += 1
        store.record_order_event(OrderEvent(ts=float(i), symbol="BTCUSD", event="filled", client_order_id=f"c{i}"))
        store.record_fill(make_fill(i, side="buy" if i % 2 else "sell"))
        acks.send(i)


def test_sigkill_mid_write_loses_no_acknowledged_fill(tmp_path: Path) -> None:
    path = str(db_path(tmp_path))
    ctx = mp.get_context("fork")
    all_acked: set[str] = set()
    for round_ in range(3):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_writer, args=(path, child, round_ * 1_000_000), daemon=True)
        proc.start()
        child.close()
        acked: list[int] = []
        while len(acked) < 40 + 17 * round_:  # stop at a different point each round
            acked.append(parent.recv())
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
        assert proc.exitcode == -signal.SIGKILL
        while parent.poll():  # acks already in the pipe were also promised
            try:
                acked.append(parent.recv())
            except EOFError:
                break
        parent.close()
        with Store(path, readonly=True) as reader:
            stored = {f.fill_id for f in reader.fills()}
        all_acked |= {f"fill-{i}" for i in acked}
        assert all_acked <= stored  # this round's and every earlier round's
        # the database is intact and the next writer (a restarted supervisor) carries on
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()


def test_account_risk_state_survives_reopening_and_a_halt_is_durable_at_once(tmp_path: Path) -> None:
    from shared.store import HaltEvent
    from shared.trading import account_risk as ar
    from shared.trading.risk import RiskConfig

    cfg = RiskConfig()
    state, _ = ar.observe(ar.AccountRisk(), 10_000.0, 1_700_000_000.0, cfg)
    state, _ = ar.halt(state, "daily loss 600.00 reached the limit 500.00", 1_700_000_100.0, by="risk limits",
                       kind="limit")
    store = Store(db_path(tmp_path))
    assert store.load_account_risk() is None
    store.save_account_risk(state, 1_700_000_100.0)
    store.record_halt_event(HaltEvent(ts=1_700_000_100.0, event="halt", reason=state.halt_reason, by="risk limits"))
    # No close, no flush: a reader (another connection, as after a SIGKILL) already sees both.
    with Store(db_path(tmp_path), readonly=True) as reader:
        assert reader.load_account_risk() == state
        assert [e.event for e in reader.halt_events()] == ["halt"]
    store.close()


def test_a_new_peak_goes_with_the_batch_and_the_halt_log_is_bounded(tmp_path: Path) -> None:
    from shared import store as store_mod
    from shared.store import HaltEvent
    from shared.trading import account_risk as ar
    from shared.trading.risk import RiskConfig

    state, _ = ar.observe(ar.AccountRisk(), 10_000.0, 1_700_000_000.0, RiskConfig())
    with Store(db_path(tmp_path)) as store:
        store.save_account_risk(state, 1.0, durable=False)
        with Store(db_path(tmp_path), readonly=True) as reader:
            assert reader.load_account_risk() is None  # not committed yet
        store.flush()
        with Store(db_path(tmp_path), readonly=True) as reader:
            assert reader.load_account_risk() == state
        n = store_mod.MAX_HALT_EVENTS + 5
        for i in range(n):
            store.record_halt_event(HaltEvent(ts=float(i), event="halt" if i % 2 else "clear", reason=str(i), by="t"))
        assert store._db.execute("SELECT COUNT(*) FROM account_halts").fetchone()[0] == store_mod.MAX_HALT_EVENTS
        assert store.halt_events(limit=2)[-1].reason == str(n - 1)


def test_an_unreadable_account_risk_row_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        store._write("INSERT INTO account_risk (id, updated_ts, state) VALUES (1, 0, '{\"halt\": 5}')", ())
        store.flush()
        with pytest.raises(StoreError, match="account risk state unreadable"):
            store.load_account_risk()


def test_funding_is_kept_once_by_the_venues_id_and_counts_in_net_pnl(tmp_path: Path) -> None:
    paid = Funding(funding_id="184", symbol="BTCUSD", amount="-0.0601", ts=1_700_028_800.0)
    with Store(db_path(tmp_path)) as store:
        store.record_fill(make_fill(1, size=10, price="60000", fee="0.3"))
        assert store.record_funding(paid)
        assert not store.record_funding(paid)  # read again after a gateway restart
        with pytest.raises(StoreError, match="different contents"):
            store.record_funding(Funding(funding_id="184", symbol="BTCUSD", amount="-0.06", ts=1_700_028_800.0))
        with pytest.raises(ValueError):
            store.record_funding(Funding(funding_id="185", symbol="BTCUSD", amount="lots", ts=1.0))
        assert store.record_funding(Funding(funding_id="190", symbol="ETHUSD", amount="0.02", ts=1_700_057_600.0))
        assert store.funding() == [paid, Funding(funding_id="190", symbol="ETHUSD", amount="0.02", ts=1_700_057_600.0)]
        assert store.funding_by_symbol() == {"BTCUSD": Decimal("-0.0601"), "ETHUSD": Decimal("0.02")}
        assert store.newest_funding_ids(5) == ["190", "184"]
        summary = store.pnl_summary()
        rows = {r.symbol: r for r in summary.symbols}
        assert rows["BTCUSD"].funding == Decimal("-0.0601")
        assert rows["BTCUSD"].net == -Decimal("0.3") - Decimal("0.0601")  # no mark yet: unrealised 0
        assert rows["ETHUSD"].contracts == 0 and rows["ETHUSD"].net == Decimal("0.02")  # funding alone
        assert summary.funding == Decimal("-0.0401") and summary.net == Decimal("-0.3401")
        assert store.pnl_summary("ETHUSD").funding == Decimal("0.02")


def test_the_newest_funding_payments_newest_first(tmp_path: Path) -> None:
    with Store(db_path(tmp_path)) as store:
        for i, amount in enumerate(("-0.10", "0.35", "0.05")):
            store.record_funding(Funding(funding_id=f"p{i}", ts=1.0 + i, symbol="BTCUSD", amount=amount))
        assert [f.funding_id for f in store.newest_funding(2)] == ["p2", "p1"]
        assert store.newest_funding(0) == [] and store.newest_funding(10)[-1].amount == "-0.10"
