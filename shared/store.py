"""The run's SQLite store: order events, fills, position and equity snapshots, sampled signals,
each symbol's RL table, and the account's risk state (day-start equity, peak, halt) with a log of
halts set and lifted.

One writer: exactly one process (the supervisor) opens `Store(path)`; workers send it records.
Readers (`orchestrate history`, tests) open `Store(path, readonly=True)` at any time, WAL lets
them read while the writer runs.

Commit policy: a fill is committed (WAL + synchronous=FULL, so fsynced) before `record_fill`
returns, and the caller acknowledges a fill only after that, so no acknowledged fill is lost on a
crash. RL tables are committed on save. Everything else (order events, snapshots, signals) is
batched and committed with the next fill, at `batch_size` pending rows, or on `flush()`; a crash
can lose at most that uncommitted batch, which is rebuilt from the exchange anyway.
"""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from shared.messages import Funding
from shared.trading.account_risk import AccountRisk
from shared.trading.pnl import Fill, PnlSummary, positions_from_fills, summarise, to_decimal

DB_FILENAME = "trading.sqlite"
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS order_events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    symbol TEXT NOT NULL,
    event TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    side TEXT NOT NULL,
    price TEXT NOT NULL,
    size INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_events_symbol_ts ON order_events (symbol, ts);
CREATE TABLE IF NOT EXISTS fills (
    seq INTEGER PRIMARY KEY,
    fill_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    size INTEGER NOT NULL,
    price TEXT NOT NULL,
    fee TEXT NOT NULL,
    contract_value TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    role TEXT
);
CREATE INDEX IF NOT EXISTS fills_symbol_ts ON fills (symbol, ts);
CREATE TABLE IF NOT EXISTS position_snapshots (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    symbol TEXT NOT NULL,
    contracts INTEGER NOT NULL,
    average_entry TEXT NOT NULL,
    mark TEXT NOT NULL,
    realised TEXT NOT NULL,
    unrealised TEXT NOT NULL,
    fees TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS position_snapshots_symbol_ts ON position_snapshots (symbol, ts);
CREATE TABLE IF NOT EXISTS equity_snapshots (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    equity TEXT NOT NULL,
    available_balance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    symbol TEXT NOT NULL,
    direction TEXT NOT NULL,
    confidence REAL NOT NULL,
    price REAL NOT NULL,
    atr REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_symbol_ts ON signals (symbol, ts);
CREATE TABLE IF NOT EXISTS funding (
    seq INTEGER PRIMARY KEY,
    funding_id TEXT NOT NULL UNIQUE,
    ts REAL NOT NULL,
    symbol TEXT NOT NULL,
    amount TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS funding_symbol_ts ON funding (symbol, ts);
CREATE TABLE IF NOT EXISTS rl_tables (
    symbol TEXT PRIMARY KEY,
    updated_ts REAL NOT NULL,
    blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS account_risk (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    updated_ts REAL NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS account_halts (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    reason TEXT NOT NULL,
    by TEXT NOT NULL
);
"""
MAX_HALT_EVENTS = 1_000  # account_halts keeps the newest this many rows
# How a ledger written by an older version becomes this one's, by the version it was written at;
# each step runs in one transaction with the version bump. Readers of a ledger no writer has
# migrated yet read it as it is (see Store._fill_columns).
_MIGRATIONS: dict[int, str] = {
    # 1 -> 2: the fill's maker/taker role; fills stored before it have none (NULL: not known)
    1: "ALTER TABLE fills ADD COLUMN role TEXT",
}


class OrderEvent(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    symbol: str
    event: str  # placed | amended | cancelled | rejected | filled | ...
    client_order_id: str
    order_id: str = ""
    side: str = ""
    price: str = ""
    size: int = 0
    detail: str = ""


class PositionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    symbol: str
    contracts: int
    average_entry: str
    mark: str
    realised: str
    unrealised: str
    fees: str


class EquitySnapshot(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    equity: str
    available_balance: str


class SignalSample(msgspec.Struct, frozen=True, kw_only=True):
    ts: float
    symbol: str
    direction: str
    confidence: float
    price: float
    atr: float


class HaltEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An account halt set or lifted, and by whom (the operator's user name, `risk limits`, ...)."""
    ts: float
    event: str  # halt | clear
    reason: str
    by: str


class StoreError(RuntimeError):
    pass


def db_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / DB_FILENAME


class Store:
    """SQLite store; one writer process, any number of read-only readers."""

    def __init__(
        self,
        path: str | Path,
        *,
        readonly: bool = False,
        batch_size: int = 256,
        signal_interval_s: float = 60.0,
        max_tracked_symbols: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._batch_size = max(1, batch_size)
        self._signal_interval_s = signal_interval_s
        self._max_tracked_symbols = max_tracked_symbols
        self._pending = 0
        # symbol -> (ts, direction) of the last stored signal, for sampling. Bounded: past the
        # cap it is cleared, which at worst stores one extra sample per symbol.
        self._last_signal: dict[str, tuple[float, str]] = {}
        if readonly:
            if not self.path.exists():
                raise StoreError(f"no store at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            self._db.execute("PRAGMA query_only=ON")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode with explicit BEGIN, so we decide exactly when a commit happens.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: could not enable WAL (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._migrate()
        self._db.execute("PRAGMA busy_timeout=5000")
        self._fill_select: str | None = None  # the fills columns this ledger has (read on first use)

    def _migrate(self) -> None:
        """Bring a ledger an older version wrote up to SCHEMA_VERSION, step by step; refuse one a
        newer version wrote (its rows may mean what this code does not know)."""
        version = int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version}, this code reads up to {SCHEMA_VERSION}")
        while version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_MIGRATIONS[version])
                version += 1
                self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(version),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @property
    def _fill_columns(self) -> str:
        if self._fill_select is None:
            has_role = any(row[1] == "role" for row in self._db.execute("PRAGMA table_info(fills)"))
            self._fill_select = _FILL_COLUMNS if has_role else _FILL_COLUMNS_V1
        return self._fill_select

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        if not self.readonly:
            self.flush()
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        if self.readonly:
            raise StoreError("store opened read-only")
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
        return self._db.execute(sql, params)

    def _batched(self) -> None:
        self._pending += 1
        if self._pending >= self._batch_size:
            self.flush()

    def flush(self) -> None:
        """Commit everything pending."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._pending = 0

    # --- writes ---------------------------------------------------------------------------------

    def record_fill(self, fill: Fill) -> bool:
        """Store a fill durably; True if new, False if this fill id was already stored (a replay).
        Returns only after the commit, so the caller may then acknowledge the fill. A role the
        venue did not say is stored as NULL, as the fills stored before roles were kept."""
        cur = self._write(
            "INSERT OR IGNORE INTO fills (fill_id, ts, symbol, side, size, price, fee, contract_value,"
            " client_order_id, order_id, role) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (fill.fill_id, fill.ts, fill.symbol, fill.side, fill.size, fill.price, fill.fee,
             fill.contract_value, fill.client_order_id, fill.order_id, fill.role or None),
        )
        self.flush()
        if cur.rowcount == 1:
            return True
        stored = self._db.execute(
            "SELECT ts, symbol, side, size, price, fee, contract_value FROM fills WHERE fill_id=?",
            (fill.fill_id,),
        ).fetchone()
        if tuple(stored) != (fill.ts, fill.symbol, fill.side, fill.size, fill.price, fill.fee, fill.contract_value):
            # Same id, different trade: one of the two reports is wrong; keep the first, say so.
            raise StoreError(f"fill {fill.fill_id} replayed with different contents: stored {tuple(stored)}")
        return False

    def record_funding(self, funding: Funding) -> bool:
        """Store a funding payment durably, as a fill is; True if new, False if this venue
        transaction id was already stored (a replay)."""
        to_decimal(funding.amount)  # a payment that is not an amount is refused, not stored
        cur = self._write("INSERT OR IGNORE INTO funding (funding_id, ts, symbol, amount) VALUES (?,?,?,?)",
                          (funding.funding_id, funding.ts, funding.symbol, funding.amount))
        self.flush()
        if cur.rowcount == 1:
            return True
        stored = self._db.execute("SELECT ts, symbol, amount FROM funding WHERE funding_id=?",
                                  (funding.funding_id,)).fetchone()
        if tuple(stored) != (funding.ts, funding.symbol, funding.amount):
            raise StoreError(f"funding {funding.funding_id} replayed with different contents: stored {tuple(stored)}")
        return False

    def record_order_event(self, event: OrderEvent, *, durable: bool = False) -> None:
        """Batched by default; `durable` commits now (use it for a placement intent recorded
        before the order is sent, so a restart can continue past every client order id used)."""
        self._write(
            "INSERT INTO order_events (ts, symbol, event, client_order_id, order_id, side, price, size,"
            " detail) VALUES (?,?,?,?,?,?,?,?,?)",
            (event.ts, event.symbol, event.event, event.client_order_id, event.order_id, event.side,
             event.price, event.size, event.detail),
        )
        if durable:
            self.flush()
        else:
            self._batched()

    def record_position(self, snap: PositionSnapshot) -> None:
        self._write(
            "INSERT INTO position_snapshots (ts, symbol, contracts, average_entry, mark, realised,"
            " unrealised, fees) VALUES (?,?,?,?,?,?,?,?)",
            (snap.ts, snap.symbol, snap.contracts, snap.average_entry, snap.mark, snap.realised,
             snap.unrealised, snap.fees),
        )
        self._batched()

    def record_equity(self, snap: EquitySnapshot) -> None:
        self._write(
            "INSERT INTO equity_snapshots (ts, equity, available_balance) VALUES (?,?,?)",
            (snap.ts, snap.equity, snap.available_balance),
        )
        self._batched()

    def record_signal(self, sample: SignalSample) -> bool:
        """Stores a signal when its direction changed or `signal_interval_s` passed since the
        last stored one for the symbol; returns whether it was stored."""
        last = self._last_signal.get(sample.symbol)
        if last is not None and last[1] == sample.direction and sample.ts - last[0] < self._signal_interval_s:
            return False
        if len(self._last_signal) >= self._max_tracked_symbols and sample.symbol not in self._last_signal:
            self._last_signal.clear()
        self._last_signal[sample.symbol] = (sample.ts, sample.direction)
        self._write(
            "INSERT INTO signals (ts, symbol, direction, confidence, price, atr) VALUES (?,?,?,?,?,?)",
            (sample.ts, sample.symbol, sample.direction, sample.confidence, sample.price, sample.atr),
        )
        self._batched()
        return True

    def save_rl_table(self, symbol: str, blob: bytes, ts: float, *, commit: bool = True) -> None:
        """`commit=False`: with the next batch or flush (many tables arrive together)."""
        self._write(
            "INSERT INTO rl_tables (symbol, updated_ts, blob) VALUES (?,?,?) ON CONFLICT(symbol) DO"
            " UPDATE SET updated_ts=excluded.updated_ts, blob=excluded.blob",
            (symbol, ts, bytes(blob)),
        )
        if commit:
            self.flush()
        else:
            self._batched()

    def save_account_risk(self, state: AccountRisk, ts: float, *, durable: bool = True) -> None:
        """The account's risk state, one row replaced on each change. `durable` commits now (a
        halt, a clear, a new day: nothing may act on them before they are on disk); otherwise
        it goes with the next batch (a new peak)."""
        self._write(
            "INSERT INTO account_risk (id, updated_ts, state) VALUES (1,?,?) ON CONFLICT(id) DO"
            " UPDATE SET updated_ts=excluded.updated_ts, state=excluded.state",
            (ts, msgspec.json.encode(state).decode()),
        )
        if durable:
            self.flush()
        else:
            self._batched()

    def record_halt_event(self, event: HaltEvent) -> None:
        """Committed at once; the log keeps the newest MAX_HALT_EVENTS rows."""
        cur = self._write("INSERT INTO account_halts (ts, event, reason, by) VALUES (?,?,?,?)",
                          (event.ts, event.event, event.reason, event.by))
        if cur.lastrowid is not None and cur.lastrowid > MAX_HALT_EVENTS:
            self._write("DELETE FROM account_halts WHERE id <= ?", (cur.lastrowid - MAX_HALT_EVENTS,))
        self.flush()

    # --- reads ----------------------------------------------------------------------------------

    def load_account_risk(self) -> AccountRisk | None:
        """The persisted account risk state; None when none was saved yet. A row this code
        cannot read is an error, not a fresh start: a fresh start would lift a halt."""
        row = self._db.execute("SELECT state FROM account_risk WHERE id=1").fetchone()
        if row is None:
            return None
        try:
            return msgspec.json.decode(row[0], type=AccountRisk)
        except msgspec.DecodeError as exc:
            raise StoreError(f"{self.path}: account risk state unreadable ({exc})") from None

    def halt_events(self, limit: int = 100) -> list[HaltEvent]:
        """The newest account halt events, oldest first."""
        rows = self._db.execute("SELECT ts, event, reason, by FROM account_halts ORDER BY id DESC LIMIT ?",
                                (max(0, limit),)).fetchall()
        return [HaltEvent(ts=r[0], event=r[1], reason=r[2], by=r[3]) for r in reversed(rows)]

    def load_rl_table(self, symbol: str) -> bytes | None:
        row = self._db.execute("SELECT blob FROM rl_tables WHERE symbol=?", (symbol,)).fetchone()
        return bytes(row[0]) if row else None

    def fills(self, symbol: str | None = None, *, last: int | None = None) -> list[Fill]:
        """Fills in the order they were stored (the order they arrived); `last` keeps only the
        most recent ones (for display; PnL always replays all of them)."""
        where = " WHERE symbol=?" if symbol is not None else ""
        params: tuple[Any, ...] = (symbol,) if symbol is not None else ()
        limit = ""
        if last is not None:
            limit = " LIMIT ?"
            params += (max(0, last),)
        rows = self._db.execute(
            f"SELECT {self._fill_columns} FROM fills{where} ORDER BY seq DESC{limit}", params).fetchall()
        rows.reverse()
        return [_fill(r) for r in rows]

    def order_events(self, symbol: str | None = None, limit: int = 1000) -> list[OrderEvent]:
        sql = ("SELECT ts, symbol, event, client_order_id, order_id, side, price, size, detail"
               " FROM order_events")
        params: tuple[Any, ...] = ()
        if symbol is not None:
            sql += " WHERE symbol=?"
            params = (symbol,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", params + (limit,)).fetchall()
        return [
            OrderEvent(ts=r[0], symbol=r[1], event=r[2], client_order_id=r[3], order_id=r[4], side=r[5],
                       price=r[6], size=r[7], detail=r[8])
            for r in reversed(rows)
        ]

    def order_events_page(self, *, symbol: str | None = None, event: str | None = None, before_id: int | None = None,
                          limit: int = 100) -> list[tuple[int, OrderEvent]]:
        """(row id, event) newest first, `limit` at most, older than `before_id`: one page of the
        dashboard's order events (the next page starts before the last id of this one)."""
        where, params = _page_filter(("symbol", symbol), ("event", event), before_id=before_id, id_column="id")
        rows = self._db.execute(
            "SELECT id, ts, symbol, event, client_order_id, order_id, side, price, size, detail FROM order_events"
            f"{where} ORDER BY id DESC LIMIT ?", (*params, max(0, limit))).fetchall()
        return [(r[0], OrderEvent(ts=r[1], symbol=r[2], event=r[3], client_order_id=r[4], order_id=r[5], side=r[6],
                                  price=r[7], size=r[8], detail=r[9])) for r in rows]

    def fills_page(self, *, symbol: str | None = None, side: str | None = None, before_seq: int | None = None,
                   limit: int = 100) -> list[tuple[int, Fill]]:
        """(seq, fill) newest first: one page of fills, as order_events_page."""
        where, params = _page_filter(("symbol", symbol), ("side", side), before_id=before_seq, id_column="seq")
        rows = self._db.execute(
            f"SELECT seq, {self._fill_columns} FROM fills{where} ORDER BY seq DESC LIMIT ?",
            (*params, max(0, limit))).fetchall()
        return [(r[0], _fill(r[1:])) for r in rows]

    def equity_series(self, *, last: int = 2000) -> list[tuple[float, str]]:
        """(ts, equity) of the last `last` account snapshots, oldest first."""
        rows = self._db.execute("SELECT ts, equity FROM equity_snapshots ORDER BY id DESC LIMIT ?",
                                (max(0, last),)).fetchall()
        return [(float(r[0]), str(r[1])) for r in reversed(rows)]

    def funding(self, symbol: str | None = None) -> list[Funding]:
        """Funding payments in the order they were stored."""
        where, params = (" WHERE symbol=?", (symbol,)) if symbol is not None else ("", ())
        rows = self._db.execute(f"SELECT funding_id, symbol, amount, ts FROM funding{where} ORDER BY seq",
                                params).fetchall()
        return [Funding(funding_id=r[0], symbol=r[1], amount=r[2], ts=r[3]) for r in rows]

    def funding_by_symbol(self) -> dict[str, Decimal]:
        """Each symbol's funding to date (+ received, - paid), exact."""
        out: dict[str, Decimal] = {}
        for sym, amount in self._db.execute("SELECT symbol, amount FROM funding ORDER BY seq"):
            out[sym] = out.get(sym, Decimal(0)) + to_decimal(amount)
        return out

    def newest_funding(self, limit: int) -> list[Funding]:
        """The last `limit` funding payments stored, newest first (the dashboard's table)."""
        rows = self._db.execute("SELECT funding_id, symbol, amount, ts FROM funding ORDER BY seq DESC LIMIT ?",
                                (max(0, limit),)).fetchall()
        return [Funding(funding_id=r[0], symbol=r[1], amount=r[2], ts=r[3]) for r in rows]

    def newest_funding_ids(self, limit: int) -> list[str]:
        """Ids of the last `limit` funding payments stored, newest first (see newest_fill_ids)."""
        rows = self._db.execute("SELECT funding_id FROM funding ORDER BY seq DESC LIMIT ?",
                                (max(0, limit),)).fetchall()
        return [r[0] for r in rows]

    def newest_fill_ids(self, limit: int) -> list[str]:
        """Ids of the last `limit` fills stored, newest first: what a restarted gateway already
        has, so it reads the venue's fills back to them and no further."""
        rows = self._db.execute("SELECT fill_id FROM fills ORDER BY seq DESC LIMIT ?", (max(0, limit),)).fetchall()
        return [r[0] for r in rows]

    def sent_client_order_ids(self, symbol: str, *, last: int = 50) -> list[str]:
        """Client order ids of our latest order events on `symbol` (placed, rejected, ...), in the
        order they were recorded, newest first: what a restarted worker continues past. Fills are
        left out: the venue reports them (and their times are the venue's clock, which a paper
        market runs faster than the wall, so they cannot be ordered with our events)."""
        rows = self._db.execute(
            "SELECT client_order_id FROM order_events WHERE symbol=? AND client_order_id != ''"
            " ORDER BY id DESC LIMIT ?", (symbol, max(0, last))).fetchall()
        return [r[0] for r in rows]

    def last_marks(self) -> dict[str, Decimal]:
        """The mark of each symbol's latest position snapshot."""
        rows = self._db.execute(
            "SELECT symbol, mark FROM position_snapshots WHERE id IN"
            " (SELECT MAX(id) FROM position_snapshots GROUP BY symbol)"
        ).fetchall()
        return {s: to_decimal(m) for s, m in rows if m}

    def latest_equity(self) -> EquitySnapshot | None:
        row = self._db.execute(
            "SELECT ts, equity, available_balance FROM equity_snapshots ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return EquitySnapshot(ts=row[0], equity=row[1], available_balance=row[2]) if row else None

    def pnl_summary(self, symbol: str | None = None) -> PnlSummary:
        """Realised, fees and position replayed from the stored fills; unrealised at the last
        recorded mark (0 for a symbol with no snapshot yet); funding from the stored payments."""
        positions = positions_from_fills(self.fills(symbol))
        funding = self.funding_by_symbol()
        if symbol is not None:
            funding = {symbol: funding[symbol]} if symbol in funding else {}
        return summarise(positions, self.last_marks(), funding)


_FILL_COLUMNS = "fill_id, ts, symbol, side, size, price, fee, contract_value, client_order_id, order_id, role"
# a ledger of schema 1 read before any writer migrated it: no role column, every role unknown
_FILL_COLUMNS_V1 = _FILL_COLUMNS.replace(", role", ", NULL")


def _fill(r: Any) -> Fill:
    """A fills row (in _FILL_COLUMNS order) as the domain Fill; NULL role: not known ("")."""
    return Fill(fill_id=r[0], ts=r[1], symbol=r[2], side=r[3], size=r[4], price=r[5], fee=r[6],
                contract_value=r[7], client_order_id=r[8], order_id=r[9], role=r[10] or "")


def _page_filter(*equals: tuple[str, str | None], before_id: int | None, id_column: str) -> tuple[str, tuple[Any, ...]]:
    """WHERE clause of a page: columns equal to the given values (None: any), ids below before_id."""
    clauses = [f"{column}=?" for column, value in equals if value is not None]
    params: list[Any] = [value for _, value in equals if value is not None]
    if before_id is not None:
        clauses.append(f"{id_column}<?")
        params.append(before_id)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
