"""One fill type past the exchange edge (issue 11 §3): Delta's wire fill is mapped once, by the
gateway, into shared.trading.pnl.Fill; the gateway's messages carry that very type and the
ledger (real SQLite), PnL and the bot take it without another mapping."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

import shared.messages as messages
from orchestrator.ledger import LedgerWriter
from shared.delta import models
from shared.messages import AccountSnapshot, FillEvent, MessageCodec
from shared.products import PAPER_PRODUCTS
from shared.store import Store
from shared.trading.pnl import Fill, positions_from_fills
from workers.gateway_exchange import domain_fill

BTC = PAPER_PRODUCTS["BTCUSD"]


def wire_fill(fid: int, side: str, size: int, price: str, commission: str) -> models.Fill:
    """A fill as Delta's REST answers it (strings for amounts, µs timestamps as strings)."""
    body = {"id": fid, "size": size, "side": side, "price": price, "commission": commission, "role": "maker",
            "order_id": str(9000 + fid), "client_order_id": f"g1-BTCUSD-b{fid}", "product_id": BTC.product_id,
            "product_symbol": "BTCUSD", "created_at": str(1_800_000_000_000_000 + fid)}
    fill: models.Fill = models.decode(msgspec.json.encode(body), models.Fill)
    return fill


def test_a_fill_keeps_one_type_from_the_gateway_message_through_the_ledger_to_pnl(tmp_path: Path) -> None:
    codec = MessageCodec("test")
    sent = [domain_fill(wire_fill(1, "buy", 3, "60000.5", "0.09"), "BTCUSD", BTC.contract_value),
            domain_fill(wire_fill(2, "sell", 2, "60100", "0.06"), "BTCUSD", BTC.contract_value)]
    heard: list[FillEvent] = []
    for f in sent:
        ev = codec.decode(codec.encode(FillEvent(symbol="BTCUSD", fill=f, sent_ns=0)))
        assert type(ev) is FillEvent
        heard.append(ev)
    assert all(type(ev.fill) is Fill for ev in heard)
    assert [ev.fill for ev in heard] == sent  # nothing lost or reshaped on the wire
    assert sent[0].contract_value == repr(BTC.contract_value) and sent[0].ts == 1_800_000_000.000001

    ledger = LedgerWriter(halt=lambda why: None)
    store = ledger.store = Store(tmp_path / "ledger.sqlite")
    try:
        for ev in heard:
            ledger.on_fill(ev)
        assert ledger.fills_stored == 2 and not ledger.unstored
        stored = store.fills("BTCUSD")
        assert all(type(f) is Fill for f in stored)
        assert stored == [ev.fill for ev in heard]  # every field, the maker/taker role too
        from_ledger = positions_from_fills(stored)["BTCUSD"]
        from_wire = positions_from_fills(ev.fill for ev in heard)["BTCUSD"]
        assert from_ledger == from_wire
        assert from_wire.contracts == 1
        assert from_wire.realised == (Decimal("60100") - Decimal("60000.5")) * 2 * Decimal(repr(BTC.contract_value))
        assert from_wire.fees == Decimal("0.15")
    finally:
        store.close()


def test_the_account_snapshot_carries_the_same_fill_type() -> None:
    codec = MessageCodec("test")
    f = domain_fill(wire_fill(7, "buy", 1, "60000", "0.03"), "BTCUSD", BTC.contract_value)
    snap = codec.decode(codec.encode(AccountSnapshot(symbol="BTCUSD", product=BTC, open_orders=[], fills=[f],
                                                     available_balance=1.0, equity=1.0)))
    assert type(snap) is AccountSnapshot and snap.fills == [f] and type(snap.fills[0]) is Fill


def test_no_second_fill_struct_on_the_wire() -> None:
    """Every message struct with a fill_id field is the one Fill (the old FillView is gone)."""
    twins = [name for name, obj in vars(messages).items()
             if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj is not Fill
             and "fill_id" in obj.__struct_fields__]
    assert twins == []


def test_a_fill_no_book_can_hold_is_refused_at_the_edge() -> None:
    with pytest.raises(ValueError, match="side must be buy or sell"):
        domain_fill(wire_fill(3, "hold", 1, "60000", "0"), "BTCUSD", BTC.contract_value)
    with pytest.raises(ValueError, match="size must be > 0"):
        domain_fill(wire_fill(4, "buy", 0, "60000", "0"), "BTCUSD", BTC.contract_value)
