"""Supervisor decisions checked in-process (no children started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from orchestrator.rundir import RunDir
from orchestrator.supervisor import Supervisor
from shared.config import Config
from shared.messages import Control, MessageCodec


class _Pub:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send_multipart(self, frames: Any) -> None:
        self.sent.append(tuple(frames))


async def test_a_halt_is_broadcast_without_any_figure_from_the_gateway(tmp_path: Path) -> None:
    sup = Supervisor(msgspec.convert({}, Config), RunDir(tmp_path / "run"))
    pub = _Pub()
    sup._control_pub = pub  # type: ignore[assignment]
    sup._build_children()
    assert sup.children["gateway"].figures is None  # down, restarting: no equity ever arrived
    sup.halted, sup.halt_reason = True, "storage: fill 1 not written: database or disk is full"
    await sup._check_account_risk()
    await sup._check_account_risk()  # and again each pass, for workers that restart meanwhile
    codec = MessageCodec("test")
    halts = [codec.decode(frames[1]) for frames in pub.sent]
    assert len(halts) == 2 and all(isinstance(h, Control) and h.command == "halt" for h in halts)
    assert halts[0].reason.startswith("storage: ")
    snap = sup.snapshot()
    assert snap.halted and snap.order_management == "starting" and snap.storage == "ok"


def test_a_restarted_gateway_knows_the_fills_waiting_for_a_full_disk(tmp_path: Path) -> None:
    """Fills held in memory while the ledger cannot be written are the ledger's: a gateway
    restarted meanwhile must not read them back as news, nor the stored ones."""
    from shared.store import Store
    from shared.trading.pnl import Fill

    def fill(n: int) -> Fill:
        return Fill(fill_id=str(n), symbol="BTCUSD", side="buy", size=1, price="100", fee="0.01",
                    contract_value="0.001", ts=1_700_000_000.0 + n)

    sup = Supervisor(msgspec.convert({}, Config), RunDir(tmp_path / "run"))
    sup._build_children()
    sup.store = Store(tmp_path / "ledger.sqlite")
    try:
        for n in (1, 2):
            assert sup.store.record_fill(fill(n))
        sup.store.flush()
        sup._unstored.extend([fill(3), fill(2), fill(4)])  # 2 again: a repeat waiting to be ignored
        spec = sup._spec_from_store(sup.children["gateway"])
        assert spec.stored_fill_ids == ("4", "2", "3", "1")  # newest first, each once
    finally:
        sup.store.close()
