"""The web dashboard: pages and a JSON API on the supervisor's aiohttp app (the one serving
/metrics), live over server-sent events. Reads what the supervisor holds (status, the workers'
heartbeats), its own bounded history (history.py) and the run's SQLite ledger (read-only, off
the event loop: fills, order events, equity, funding and the halt log). Who may read and act
is decided in shared/dashboard.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from shared import dashboard as policy
from shared.config import DashboardConfig
from shared.messages import FillEvent, WorkerFigures
from shared.status import StatusSnapshot
from shared.store import Store, StoreError, db_path

from .history import FleetHistory

log = logging.getLogger("dashboard")

STATIC = Path(__file__).parent / "static"
TOKEN_ENV = "ORCHESTRATE_DASHBOARD_TOKEN"
MIN_TOKEN_CHARS = 24
COOKIE = "dgo_dashboard"
SAMPLE_INTERVAL_S = 2.0
STREAM_INTERVAL_S = 1.0
FLEET_CACHE_S = 0.5
MAX_STREAMS = 16  # live pages at once; more get 503 (each costs a task and a snapshot a second)
PAGE_MAX = 500
FUNDING_ROWS = 200  # newest funding payments listed (the total counts them all)
FILLS_ON_CHART = 300  # fills remembered per symbol (arrival time on our clock) for the chart
REPORT_SUFFIXES = {".md": "text/plain; charset=utf-8", ".png": "image/png", ".json": "application/json",
                   ".svg": "image/svg+xml", ".html": "text/plain; charset=utf-8", ".toml": "text/plain; charset=utf-8"}
REPORT_DIRS = ("optimize", "reports")  # under the run dir: optimize's default and backtest --report's suggested home
MAX_REPORT_FILES = 200
MAX_HALTS = 200  # halt log rows on the account page (the ledger keeps MAX_HALT_EVENTS)
PAGES = ("/", "/account", "/orders", "/fills", "/reports")


class DashboardError(ValueError):
    """The dashboard cannot start as configured (bad input: exit 2)."""


@dataclass
class AccountFacts:
    equity: float
    day_start_equity: float
    day_peak_equity: float


@dataclass
class FleetSource:
    """What the dashboard reads from the supervisor and the one thing it may ask of it."""
    run_dir: Path
    symbols: tuple[str, ...]
    snapshot: Callable[[], StatusSnapshot]
    figures: Callable[[], dict[str, WorkerFigures]]
    account: Callable[[], AccountFacts]
    control: Callable[[str, dict[str, Any]], Awaitable[Any]]


def token_from_env() -> str:
    """The operator's own token (ORCHESTRATE_DASHBOARD_TOKEN), "" when unset; DashboardError when
    too short to be one (checked before the run starts)."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token and len(token) < MIN_TOKEN_CHARS:
        raise DashboardError(f"{TOKEN_ENV} is too short: at least {MIN_TOKEN_CHARS} characters")
    return token


def make_token(path: Path) -> str:
    """The run's token: from ORCHESTRATE_DASHBOARD_TOKEN when set (stays the same across restarts),
    else fresh; written to `path` readable by the owner alone."""
    token = token_from_env() or secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (token + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise DashboardError(f"cannot write the dashboard token {path}: {exc.strerror or exc}") from None
    return token


class Dashboard:
    def __init__(self, cfg: DashboardConfig, source: FleetSource, token: str) -> None:
        self.cfg = cfg
        self.src = source
        self._token = token
        self.history = FleetHistory(source.symbols)
        self._fills: dict[str, deque[tuple[float, str, float, int]]] = {
            s: deque(maxlen=FILLS_ON_CHART) for s in source.symbols}
        self._streams = 0
        self._fleet_doc = b""
        self._fleet_built = -1e9
        self._sampler: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    # --- wiring --------------------------------------------------------------------------------

    @property
    def own_site(self) -> bool:
        """A non-loopback host is served on its own site (the metrics site stays on loopback)."""
        return not policy.is_loopback(self.cfg.host)

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._guard)
        for page in PAGES:
            app.router.add_get(page, self._page)
        app.router.add_get("/symbol/{symbol}", self._page)
        app.router.add_get("/api/fleet", self._api_fleet)
        app.router.add_get("/api/stream", self._api_stream)
        app.router.add_get("/api/symbol/{symbol}", self._api_symbol)
        app.router.add_get("/api/account", self._api_account)
        app.router.add_get("/api/orders", self._api_orders)
        app.router.add_get("/api/fills", self._api_fills)
        app.router.add_get("/api/reports", self._api_reports)
        app.router.add_get("/reports/{group}/{name}/{file}", self._report_file)
        app.router.add_post("/api/action", self._api_action)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)

    def start(self) -> None:
        self._sampler = asyncio.create_task(self._sample_loop())

    async def stop(self) -> None:
        self._closing.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def on_fill(self, ev: FillEvent) -> None:
        """A fill as it reaches the supervisor, on our clock (the venue's may run ahead of it)."""
        d = self._fills.get(ev.symbol)
        if d is not None:
            d.append((round(time.time(), 3), ev.fill.side, float(ev.fill.price), int(ev.fill.size)))

    async def _sample_loop(self) -> None:
        while True:
            try:
                now = time.time()
                self.history.sample(now, self.src.figures())
                self.history.note_equity(now, self.src.account().equity)
            except Exception:  # the dashboard must never take the supervisor down
                log.exception("dashboard sample failed")
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    # --- access --------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
        local = str(sock[0]) if sock else ""
        given = request.query.get("token")
        if given is not None and request.method == "GET" and policy.token_matches(given, self._token):
            # The token link: remember it in a cookie and drop it from the address bar (and history).
            rest = request.rel_url.with_query({k: v for k, v in request.query.items() if k != "token"})
            resp = web.Response(status=303, headers={"Location": str(rest)})
            resp.set_cookie(COOKIE, self._token, httponly=True, samesite="Strict", path="/")
            return resp
        header = request.headers.get("X-Dashboard-Token") or _bearer(request.headers.get("Authorization", ""))
        status, why = policy.access(
            over_loopback=policy.is_loopback(local), action=request.method != "GET",
            actions_enabled=self.cfg.actions, header_token_ok=policy.token_matches(header, self._token),
            cookie_token_ok=policy.token_matches(request.cookies.get(COOKIE), self._token))
        if status != 200:
            if request.path.startswith("/api/") or request.method != "GET":
                return web.json_response({"ok": False, "message": why}, status=status)
            return web.Response(status=status, content_type="text/html", text=_TOKEN_FORM.format(why=why))
        return await handler(request)

    # --- pages ---------------------------------------------------------------------------------

    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    # --- API -----------------------------------------------------------------------------------

    def _fleet(self) -> bytes:
        """The fleet as JSON, built at most once per FLEET_CACHE_S whatever the number of live
        pages (hundreds of symbols make a few hundred kB; the supervisor's loop pays for it)."""
        now = time.monotonic()
        if now - self._fleet_built >= FLEET_CACHE_S:
            self._fleet_doc = msgspec.json.encode(
                {"status": self.src.snapshot(), "actions": self.cfg.actions, "now": time.time()})
            self._fleet_built = now
        return self._fleet_doc

    async def _api_fleet(self, request: web.Request) -> web.Response:
        return web.Response(body=self._fleet(), content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _api_stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the fleet once a second until the page goes away."""
        if self._streams >= MAX_STREAMS:
            return web.json_response({"ok": False, "message": "too many live pages"}, status=503,
                                     headers={"Retry-After": "5"})
        self._streams += 1
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        try:
            await resp.prepare(request)
            while not self._closing.is_set():
                await resp.write(b"data: " + self._fleet() + b"\n\n")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), STREAM_INTERVAL_S)
        except ConnectionError:  # the page went away
            pass
        finally:
            self._streams -= 1
        return resp

    async def _api_symbol(self, request: web.Request) -> web.Response:
        sym = request.match_info["symbol"]
        h = self.history.symbols.get(sym)
        if h is None:
            return web.json_response({"ok": False, "message": f"no symbol {sym[:40]!r} in this run"}, status=404)
        status = next((w for w in self.src.snapshot().workers if w.symbol == sym), None)
        f = self.src.figures().get(sym)
        stored = await self._read(  # oldest first, as Store.fills
            lambda s: [msgspec.to_builtins(x) for _, x in reversed(s.fills_page(symbol=sym, limit=50))])
        return _json({
            "symbol": sym, "status": msgspec.to_builtins(status) if status else None,
            "history": h.as_columns(), "grid_levels": list(f.grid_levels) if f else [],
            "resting_orders": [list(r) for r in f.resting_orders] if f else [],
            "stop_price": f.stop_price if f and math.isfinite(f.stop_price) else None,
            "fills_seen": [list(x) for x in self._fills.get(sym, ())], "fills": stored or [],
            "actions": self.cfg.actions})

    async def _api_account(self, request: web.Request) -> web.Response:
        acct = self.src.account()
        snap = self.src.snapshot()
        stored = await self._read(lambda s: s.equity_series(last=2000))
        series = self.history.equity_series([(ts, float(e)) for ts, e in (stored or []) if _finite(e)])
        if math.isfinite(acct.equity):
            series.append((time.time(), acct.equity))
        run_dd, run_peak = policy.max_drawdown(e for _, e in series)
        today_dd = policy.drawdown(acct.equity, acct.day_peak_equity)
        run_dd = max(run_dd, today_dd)  # the risk state saw today's peak even if no sample did
        funding = await self._read(_funding)
        halts = await self._read(lambda s: s.halt_events(limit=MAX_HALTS))  # the halt log, oldest first
        return _json({
            "equity": _num(acct.equity), "day_start_equity": _num(acct.day_start_equity),
            "day_peak_equity": _num(acct.day_peak_equity),
            "drawdown_today": today_dd,
            "drawdown_run": run_dd, "run_peak_equity": _num(run_peak),
            "equity_series": {"ts": [t for t, _ in series], "equity": [e for _, e in series]},
            "halted": snap.halted, "halt_reason": snap.halt_reason,
            "halts": [msgspec.to_builtins(e) for e in reversed(halts or [])],  # newest first
            "fees": sum(w.fees for w in snap.workers),
            "realized_pnl": sum(w.realized_pnl for w in snap.workers),
            "unrealized_pnl": sum(w.unrealized_pnl for w in snap.workers),
            "funding": funding, "actions": self.cfg.actions,
            "storage": snap.storage, "order_management": snap.order_management})

    async def _api_orders(self, request: web.Request) -> web.Response:
        q = request.query
        return await self._ledger_page(q, "id", lambda s, before, limit: s.order_events_page(
            symbol=q.get("symbol") or None, event=q.get("event") or None, before_id=before, limit=limit))

    async def _api_fills(self, request: web.Request) -> web.Response:
        q = request.query
        return await self._ledger_page(q, "seq", lambda s, before, limit: s.fills_page(
            symbol=q.get("symbol") or None, side=q.get("side") or None, before_seq=before, limit=limit))

    async def _ledger_page(self, q: Any, id_key: str,
                    query: Callable[[Store, int | None, int], list[tuple[int, Any]]]) -> web.Response:
        """One page of a ledger table, newest first: rows keyed by their id, and where the next
        (older) page starts (None on the last page)."""
        try:
            before, limit = _page_args(q)
        except ValueError as exc:
            return web.json_response({"ok": False, "message": str(exc)}, status=400)
        rows = await self._read(lambda s: query(s, before, limit))
        return _json({"rows": [{id_key: i, **msgspec.to_builtins(r)} for i, r in rows or []],
                      "next_before": rows[-1][0] if rows and len(rows) == limit else None})

    async def _api_reports(self, request: web.Request) -> web.Response:
        return _json({"reports": await asyncio.to_thread(_list_reports, self.src.run_dir)})

    async def _report_file(self, request: web.Request) -> web.StreamResponse:
        group, name, file = (request.match_info[k] for k in ("group", "name", "file"))
        path = _report_path(self.src.run_dir, group, name, file)
        if path is None:
            raise web.HTTPNotFound(text="no such report file")
        return web.FileResponse(path, headers={"Content-Type": REPORT_SUFFIXES[path.suffix],
                                               "X-Content-Type-Options": "nosniff"})

    async def _api_action(self, request: web.Request) -> web.Response:
        try:
            req = await request.json()
        except ValueError:
            return web.json_response({"ok": False, "message": "expected a JSON body"}, status=400)
        if not isinstance(req, dict):
            return web.json_response({"ok": False, "message": "expected a JSON object"}, status=400)
        cmd, sym, confirm = (str(req.get(k, "")) for k in ("cmd", "symbol", "confirm"))
        why = policy.check_action(cmd, sym, confirm, self.src.symbols)
        if why:
            return web.json_response({"ok": False, "message": why}, status=400)
        body = policy.control_request(cmd, sym)
        log.warning("dashboard action: %s %s", cmd, sym or "(account)")
        reply = await self.src.control(cmd, body)
        ok = isinstance(reply, dict) and bool(reply.get("ok"))
        return web.json_response(reply if isinstance(reply, dict) else {"ok": ok}, status=200 if ok else 409)

    # --- the ledger ------------------------------------------------------------------------------

    async def _read(self, query: Callable[[Store], Any]) -> Any:
        """A read-only query on the run's SQLite, in a thread (a slow disk must not stall the
        supervisor's loop); None while no ledger exists yet."""
        path = db_path(self.src.run_dir)

        def run() -> Any:
            try:
                with Store(path, readonly=True) as store:
                    return query(store)
            except (StoreError, sqlite3.Error) as exc:
                log.warning("dashboard could not read the ledger: %s", exc)
                return None
        return await asyncio.to_thread(run)


def _funding(store: Store) -> dict[str, Any]:
    """The newest funding payments and the total to date (+ received, - paid), summed exactly."""
    rows = [[f.funding_id, f.symbol, f.amount, f.ts] for f in store.newest_funding(FUNDING_ROWS)]
    try:
        total: str | None = str(sum(store.funding_by_symbol().values(), Decimal(0)))
    except (ValueError, ArithmeticError):
        total = None  # a row we cannot read as an amount: the rows still show
    return {"columns": ["funding_id", "symbol", "amount", "ts"], "rows": rows, "total": total}


def _list_reports(run_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in REPORT_DIRS:
        base = run_dir / group
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if not d.is_dir() or d.is_symlink():
                continue
            files = sorted(f.name for f in d.iterdir() if f.is_file() and f.suffix in REPORT_SUFFIXES)
            if files:
                out.append({"group": group, "name": d.name, "files": files[:50],
                            "modified": max((d / f).stat().st_mtime for f in files)})
            if len(out) >= MAX_REPORT_FILES:
                return out
    return out


def _report_path(run_dir: Path, group: str, name: str, file: str) -> Path | None:
    """A report file under <run dir>/<group>/<name>/, or None (anything that leaves it, hidden, or
    not a report type)."""
    if group not in REPORT_DIRS or any(p in ("", ".", "..") or "/" in p or p.startswith(".") for p in (name, file)):
        return None
    path = run_dir / group / name / file
    if path.suffix not in REPORT_SUFFIXES or path.is_symlink() or not path.is_file():
        return None
    return path


def _page_args(q: Any) -> tuple[int | None, int]:
    try:
        before = int(q["before"]) if q.get("before") else None
        limit = int(q.get("limit") or 100)
    except ValueError:
        raise ValueError("before and limit must be whole numbers") from None
    if not 1 <= limit <= PAGE_MAX:
        raise ValueError(f"limit must be 1 to {PAGE_MAX}")
    return before, limit


def _bearer(value: str) -> str | None:
    return value[7:].strip() if value.lower().startswith("bearer ") else None


def _finite(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _json(doc: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(doc), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


_TOKEN_FORM = """<!doctype html><meta charset="utf-8"><title>Dashboard: token needed</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto">
<h1>Token needed</h1><p>{why}.</p>
<form method="get"><label>Token <input name="token" type="password" autocomplete="off" size="48"></label>
<button>Open</button></form>
<p>The token is in <code>&lt;run dir&gt;/dashboard.token</code> (readable by its owner alone).</p>
</body>"""
