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
    sup._control_pub = pub  # type: ignore[assignment]  # a recording stand-in for the PUB socket
    sup._build_children()
    assert sup.children["gateway"].figures is None  # down, restarting: no equity ever arrived
    sup._halt("storage: fill 1 not written: database or disk is full")
    await sup._check_account_risk()
    await sup._check_account_risk()  # and again each pass, for workers that restart meanwhile
    codec = MessageCodec("test")
    halts = [codec.decode(frames[1]) for frames in pub.sent]
    assert len(halts) == 2 and all(isinstance(h, Control) and h.command == "halt" for h in halts)
    first = halts[0]
    assert isinstance(first, Control) and first.reason.startswith("storage: ")
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
        sup.ledger.unstored.extend([fill(3), fill(2), fill(4)])  # 2 again: a repeat waiting to be ignored
        spec = sup._spec_from_store(sup.children["gateway"])
        assert spec.stored_fill_ids == ("4", "2", "3", "1")  # newest first, each once
    finally:
        sup.store.close()


# --- account risk: persisted, restored, lifted only by the operator ------------------------------

DAY = 86_400.0


def _supervisor(tmp_path: Path, risk: dict[str, Any] | None = None) -> tuple[Supervisor, _Pub]:
    from shared.store import Store
    cfg = msgspec.convert({"run": {"symbols": ["BTCUSD", "ETHUSD"]}, "risk": risk or {}}, Config)
    sup = Supervisor(cfg, RunDir(tmp_path / "run"))
    pub = _Pub()
    sup._control_pub = pub  # type: ignore[assignment]  # a recording stand-in for the PUB socket
    sup._build_children()
    sup.store = Store(tmp_path / "ledger.sqlite")
    sup.account.restore(sup.store)
    return sup, pub


def _gateway_says(sup: Supervisor, equity: float, **notional: float) -> None:
    from shared.messages import GatewayFigures
    sup.children["gateway"].figures = GatewayFigures(ticks_published=0, symbols=2, source="venue", requests=0,
                                                     malformed=0, equity=equity, position_notional=notional)


def _worker_figures(**kw: Any) -> Any:
    from shared.messages import WorkerFigures
    base = {"state": "running", "last_price": 1.0, "bar_count": 1, "ticks": 1, "ticks_dropped": 0, "signals": 1,
            "signal": "UP", "confidence": 1.0, "votes": {}, "atr14": 1.0, "tick_to_signal_p50_us": 1.0,
            "tick_to_signal_p99_us": 1.0, "tick_to_signal_p999_us": 1.0, "tick_to_signal_count": 1,
            "loop_lag_ms": 1.0, "malformed": 0, "first_signal_mono_ns": 1}
    return msgspec.convert({**base, **kw}, WorkerFigures)


def _sent(pub: _Pub) -> list[Control]:
    codec = MessageCodec("test")
    out = [codec.decode(frames[1]) for frames in pub.sent]
    return [m for m in out if isinstance(m, Control)]


async def test_a_loss_halt_survives_a_restart_and_the_days_budget_is_not_rearmed(tmp_path: Path) -> None:
    sup, pub = _supervisor(tmp_path, {"daily_loss_limit": 100.0, "max_drawdown_fraction": 0.9})
    _gateway_says(sup, 10_000.0)
    await sup._check_account_risk()
    _gateway_says(sup, 9_950.0)
    await sup._check_account_risk()
    assert not sup.halted
    assert sup.store is not None
    # The supervisor dies: its uncommitted batch is lost (the connection goes without a commit),
    # and a new one starts on the same ledger.
    sup.store._db.close()
    sup.store = None
    sup2, pub2 = _supervisor(tmp_path, {"daily_loss_limit": 100.0, "max_drawdown_fraction": 0.9})
    _gateway_says(sup2, 9_900.0)  # -100 from this UTC day's start, -50 from the restart
    await sup2._check_account_risk()
    assert sup2.halted and "daily loss 100.00" in sup2.halt_reason
    assert [c.command for c in _sent(pub2)] == ["halt"]
    # ... and once more (killed again): the halt itself survives, with its time and author.
    assert sup2.store is not None
    sup2.store._db.close()
    sup2.store = None
    sup3, pub3 = _supervisor(tmp_path)
    assert sup3.halted and sup3.halt_reason == sup2.halt_reason
    snap = sup3.snapshot()
    assert snap.halted and snap.halted_by == "risk limits" and snap.halted_at is not None
    await sup3._check_account_risk()  # no equity yet: still halted, told to the bots
    assert [c.command for c in _sent(pub3)] == ["halt"]
    assert sup3.store is not None
    sup3.store.close()


async def test_operator_halt_resume_all_and_clear_halt_are_recorded_with_who(tmp_path: Path) -> None:
    from shared.store import Store
    sup, pub = _supervisor(tmp_path)
    _gateway_says(sup, 10_000.0)
    await sup._check_account_risk()
    r = await sup.command({"cmd": "halt", "reason": "news at 14:00"}, by="alice (pid 7)")
    assert r["ok"] and sup.halted and sup.halt_reason == "operator: news at 14:00"
    r = await sup.command({"cmd": "halt", "reason": "again"}, by="bob")
    assert r["ok"] and "already halted" in r["message"] and sup.halt_reason == "operator: news at 14:00"
    await sup.command({"cmd": "pause", "symbol": "ETHUSD"}, by="alice")
    r = await sup.command({"cmd": "clear-halt"}, by="bob (pid 8)")
    assert r["ok"] and "lifted" in r["message"] and not sup.halted
    assert sup.children["ETHUSD"].paused  # clear-halt leaves pauses alone
    r = await sup.command({"cmd": "clear-halt"}, by="bob")
    assert r["ok"] and r["message"] == "no account halt stood"
    await sup.command({"cmd": "halt"}, by="carol")
    r = await sup.command({"cmd": "resume", "all": True}, by="dave")
    assert r["ok"] and not sup.halted and not sup.children["ETHUSD"].paused
    sent = [(c.command, c.symbol) for c in _sent(pub)]
    assert ("clear_halt", "*") not in sent  # no bot reported the halt: nothing to send again
    assert ("resume", "BTCUSD") in sent and ("resume", "ETHUSD") in sent
    assert sup.store is not None
    sup.store.close()
    with Store(tmp_path / "ledger.sqlite", readonly=True) as store:
        log = [(e.event, e.by) for e in store.halt_events()]
        assert log == [("halt", "alice (pid 7)"), ("clear", "bob (pid 8)"), ("halt", "carol"), ("clear", "dave")]
        saved = store.load_account_risk()
        assert saved is not None and saved.halt is None


async def test_a_lift_is_sent_again_to_a_bot_still_reporting_the_halt(tmp_path: Path) -> None:
    sup, pub = _supervisor(tmp_path)
    await sup.command({"cmd": "halt", "reason": "x"}, by="alice")
    await sup.command({"cmd": "clear-halt"}, by="alice")
    child = sup.children["BTCUSD"]

    class _Alive:
        pid = 1
        exitcode = None
        sentinel = -1  # no fd to select on: Child.alive() falls back to exitcode
    child.process = _Alive()
    child.figures = _worker_figures(trading="halted: operator: x")
    pub.sent.clear()
    await sup._check_account_risk()
    assert [c.command for c in _sent(pub)] == ["clear_halt"]
    child.figures = msgspec.structs.replace(child.figures, trading="trading")
    pub.sent.clear()
    await sup._check_account_risk()
    assert _sent(pub) == []
    child.process = None
    assert sup.store is not None
    sup.store.close()


async def test_bad_commands_are_refused_as_bad_input_naming_the_problem(tmp_path: Path) -> None:
    sup, _ = _supervisor(tmp_path)
    for req, says in (({"cmd": "flatten"}, "SYMBOLs or --all"),
                      ({"cmd": "flatten", "symbols": ["DOGEUSD"]}, "no worker for symbol(s) DOGEUSD"),
                      ({"cmd": "resume", "symbol": "XRPUSD"}, "no worker for symbol 'XRPUSD'"),
                      ({"cmd": "halt", "reason": "x" * 201}, "length <= 200"),
                      ({"cmd": "halt", "flaten": True}, "unknown field `flaten`"),
                      ({"cmd": "explode"}, "unknown command 'explode'"),
                      (None, "JSON object")):
        r = await sup.command(req, by="t")
        assert r["ok"] is False and r["bad_input"] is True and says in r["message"], (req, r)
    assert not sup.halted and not sup.flattening
    assert sup.store is not None
    sup.store.close()


async def test_flatten_is_asked_of_each_bot_until_it_reports_flat(tmp_path: Path) -> None:
    sup, pub = _supervisor(tmp_path)
    r = await sup.command({"cmd": "flatten", "symbols": ["btcusd"]}, by="alice")
    assert r["ok"] and "flattening BTCUSD" in r["message"]
    assert sup.children["BTCUSD"].paused and not sup.children["ETHUSD"].paused
    assert [(c.command, c.symbol) for c in _sent(pub)] == [("flatten", "BTCUSD")]
    assert {w.symbol: w.flatten for w in sup.snapshot().workers} == {"BTCUSD": "requested; bot starting",
                                                                     "ETHUSD": ""}
    await sup._check_account_risk()
    assert [(c.command, c.symbol) for c in _sent(pub)][-1] == ("flatten", "BTCUSD")  # asked again
    sup.children["BTCUSD"].figures = _worker_figures(flatten="flat: confirmed on the venue at 12:00:00 UTC")
    pub.sent.clear()
    await sup._check_account_risk()
    assert _sent(pub) == [] and not sup.flattening
    r = await sup.command({"cmd": "halt", "flatten": True}, by="alice")
    assert sup.halted and "flattening BTCUSD, ETHUSD" in r["message"]
    assert set(sup.flattening) == {"ETHUSD"}  # BTCUSD still reports flat: done at once
    assert sup.store is not None
    sup.store.close()


def test_storage_reads_failing_while_funding_waits_even_when_fills_are_written(tmp_path: Path) -> None:
    """Fills and funding payments each have their own failure: a fill (or a batched commit)
    written while funding payments still wait for the disk does not make storage read `ok`."""
    import sqlite3

    from shared.messages import FillEvent, Funding
    from shared.store import Store
    from shared.trading.pnl import Fill

    class FundingDiskFull(Store):
        full = True

        def record_funding(self, funding: Funding) -> bool:
            if self.full:
                raise sqlite3.OperationalError("database or disk is full")
            return super().record_funding(funding)

    sup = Supervisor(msgspec.convert({}, Config), RunDir(tmp_path / "run"))
    sup._build_children()
    store = FundingDiskFull(tmp_path / "ledger.sqlite")
    sup.store = sup.ledger.store = store
    try:
        sup.funding.add(Funding(funding_id="p1", symbol="BTCUSD", amount="-0.25", ts=1_700_000_000.0))
        sup._store_funding()
        assert sup.halted and sup.halt_reason.startswith("storage: funding p1 not written")
        failing = "failing: 1 funding payments waiting to be written; funding p1 not written: database or disk is full"
        assert sup.snapshot().storage == failing
        sup.ledger.on_fill(FillEvent(symbol="BTCUSD", sent_ns=0, fill=Fill(
            fill_id="f1", symbol="BTCUSD", side="buy", size=1, price="100", fee="0.01", contract_value="0.001",
            ts=1_700_000_001.0)))
        sup.ledger.flush()
        assert sup.ledger.fills_stored == 1
        assert sup.snapshot().storage == failing  # the old single slot read "ok" here
        store.full = False
        sup._store_funding()
        assert sup.snapshot().storage == "ok" and sup.funding.stored == 1
        assert sup.halted  # a storage halt stays until the operator lifts it
    finally:
        store.close()


async def test_polling_readers_share_one_status_document_no_older_than_a_budget_interval(tmp_path: Path) -> None:
    """The status rows are built when read, not on every monitor pass: metrics, dashboard and
    display get the last document while it is at most budget_check_interval_s old, then a fresh
    one; `status` always gets a fresh one."""
    import asyncio

    from shared.messages import WorkerFigures

    cfg = msgspec.convert({"supervision": {"budget_check_interval_s": 0.2}}, Config)
    sup = Supervisor(cfg, RunDir(tmp_path / "run"))
    sup._build_children()

    def figures(price: float) -> WorkerFigures:
        return WorkerFigures(state="running", last_price=price, bar_count=1, ticks=1, ticks_dropped=0, signals=1,
                             signal="UP", confidence=0.5, votes={}, atr14=1.0, tick_to_signal_p50_us=1.0,
                             tick_to_signal_p99_us=1.0, tick_to_signal_p999_us=1.0, tick_to_signal_count=1,
                             loop_lag_ms=0.1, malformed=0, first_signal_mono_ns=1)

    def price(snap: Any) -> float | None:
        return next(w.last_price for w in snap.workers if w.symbol == "BTCUSD")

    sup.children["BTCUSD"].figures = figures(100.0)
    first = sup.recent_snapshot()
    assert price(first) == 100.0
    sup.children["BTCUSD"].figures = figures(101.0)
    assert sup.recent_snapshot() is first  # within the interval: shared, not rebuilt
    assert price(await sup.command({"cmd": "status"}, by="test")) == 101.0  # status: always fresh
    await asyncio.sleep(0.25)
    later = sup.recent_snapshot()
    assert later is not first and price(later) == 101.0


def test_a_child_is_alive_until_it_exits_and_a_restart_is_watched_anew(tmp_path: Path) -> None:
    import multiprocessing as mp
    import time

    sup = Supervisor(msgspec.convert({}, Config), RunDir(tmp_path / "run"))
    sup._build_children()
    child = sup.children["BTCUSD"]
    ctx = mp.get_context("fork")
    for _ in range(2):  # the second round: a restarted child, with a new sentinel
        proc = ctx.Process(target=time.sleep, args=(30,))
        proc.start()
        child.process, child.sentinel = proc, proc.sentinel
        assert child.alive() and child.alive()  # asked again: the kept watch still says alive
        proc.kill()
        proc.join()
        assert not child.alive()
        proc.close()  # its sentinel closed: the next one may reuse the descriptor number
    child.process = None
    assert not child.alive()
