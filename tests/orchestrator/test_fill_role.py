"""The fill's maker/taker role in the SQLite ledger (schema 2): stored, read back, shown by
`orchestrate history` and the dashboard's fills API. A ledger written before roles were kept
(schema 1, made here with the old fills table) stays readable, its fills' role unknown, and is
migrated in place when the supervisor (the one writer) opens it. Real SQLite files throughout."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from test_dashboard_server import _serve, _stop  # type: ignore[import-not-found]  # same directory
from test_history_halts import history  # type: ignore[import-not-found]  # same directory

import shared.store as store_module
from shared.config import DashboardConfig
from shared.store import SCHEMA_VERSION, Store, StoreError, db_path
from shared.trading.pnl import Fill, positions_from_fills

# The ledger as schema 1 wrote it: today's tables without the fills' role column.
OLD_SCHEMA = store_module._SCHEMA.replace(",\n    role TEXT\n", "\n")


def fill(fill_id: str, role: str, ts: float, side: str = "buy") -> Fill:
    return Fill(fill_id=fill_id, symbol="BTCUSD", side="buy" if side == "buy" else "sell", size=2, price="60000",
                fee="0.06", contract_value="0.001", ts=ts, client_order_id=f"c-{fill_id}", order_id="9001", role=role)


def old_ledger(path: Path) -> None:
    """A ledger file as schema 1 left it, with one fill (no role: it was never stored)."""
    assert OLD_SCHEMA != store_module._SCHEMA and "role" not in OLD_SCHEMA
    db = sqlite3.connect(path)
    try:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")
        db.execute("INSERT INTO fills (fill_id, ts, symbol, side, size, price, fee, contract_value, client_order_id,"
                   " order_id) VALUES ('old-1', 1780000000.0, 'BTCUSD', 'buy', 2, '60000', '0.06', '0.001',"
                   " 'c-old-1', '9001')")
        db.commit()
    finally:
        db.close()


def fill_lines(out: str) -> list[list[str]]:
    return [ln.split() for ln in out.splitlines() if ln.startswith("2026-")]


def test_the_role_round_trips_through_sqlite(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    with Store(path) as s:
        assert s.record_fill(fill("f1", "maker", 1.0)) and s.record_fill(fill("f2", "taker", 2.0, "sell"))
        assert s.record_fill(fill("f3", "", 3.0))  # the venue did not say
        assert not s.record_fill(fill("f1", "maker", 1.0))  # a replay is still one fill
    with Store(path, readonly=True) as r:
        assert [(f.fill_id, f.role) for f in r.fills()] == [("f1", "maker"), ("f2", "taker"), ("f3", "")]
        assert [f.role for _, f in r.fills_page()] == ["", "taker", "maker"]
        assert r.fills("BTCUSD") == [fill("f1", "maker", 1.0), fill("f2", "taker", 2.0, "sell"), fill("f3", "", 3.0)]
    db = sqlite3.connect(path)
    try:  # "not said" is one value in the table, NULL, as for the fills stored before roles
        assert db.execute("SELECT role FROM fills ORDER BY seq").fetchall() == [("maker",), ("taker",), (None,)]
    finally:
        db.close()


async def test_a_ledger_from_before_roles_stays_readable_and_is_migrated_in_place(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    old_ledger(path)
    # readers first (history, the dashboard), before any writer migrated it: the role is unknown
    with Store(path, readonly=True) as r:
        assert r.fills() == [fill("old-1", "", 1_780_000_000.0)]
    before = history(tmp_path)
    assert before.returncode == 0, before.stderr
    [line] = fill_lines(before.stdout)
    assert line[2:8] == ["BTCUSD", "buy", "2", "60000", "0.06", "-"]
    assert [f["role"] for f in json.loads(history(tmp_path, "--json").stdout)["fills"]] == [""]

    with Store(path) as s:  # the supervisor opens the ledger: schema 1 -> 2, the old row kept
        assert s.record_fill(fill("new-1", "maker", 1_780_000_060.0, "sell"))
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        assert db.execute("SELECT fill_id, role FROM fills ORDER BY seq").fetchall() == [("old-1", None),
                                                                                         ("new-1", "maker")]
    finally:
        db.close()
    with Store(path) as s:  # opening it again migrates nothing twice
        assert [f.role for f in s.fills()] == ["", "maker"]
        assert positions_from_fills(s.fills())["BTCUSD"].contracts == 0  # PnL reads old and new rows alike

    after = history(tmp_path)
    assert after.returncode == 0, after.stderr
    assert [ln[7] for ln in fill_lines(after.stdout)] == ["-", "maker"]
    server, dash, _, url = await _serve(tmp_path, DashboardConfig())
    try:
        async with aiohttp.ClientSession() as http, http.get(url + "/api/fills") as resp:
            rows = (await resp.json())["rows"]
    finally:
        await _stop(server, dash)
    assert [(row["fill_id"], row["role"]) for row in rows] == [("new-1", "maker"), ("old-1", "")]


def test_a_ledger_from_a_newer_version_is_refused_not_read_wrong(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    Store(path).close()
    db = sqlite3.connect(path)
    try:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
        db.commit()
    finally:
        db.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, this code reads up to"):
        Store(path)
