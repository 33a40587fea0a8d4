"""The paper venue: a Delta-compatible REST v2 + websocket server on 127.0.0.1 over the matching
engine, with a market replayed from the shipped candles (or a seeded model for SYN_NNNN).

A thin shell: the trading logic is in shared/matching (engine + wire shapes); this file does
HTTP, auth, rate limits, websocket fan-out and the replay timer.

Clocks: auth windows and /v2/settings use the wall clock. Everything the market says (trade,
candle, order and fill timestamps) is on the market clock, an explicit choice (`clock`):
"replay" starts at the wall clock and runs 60 / bar_seconds times faster (timestamps run ahead
of now, so clients that check freshness against their own clock will reject them); "wall"
replays the candles' shape at real time, one bar per wall minute lined up with the minute, so
every timestamp is now (within a quarter bar). Bars built from trades line up with the candles
either way. The market clock is part of the paper account (saved with it) and never runs
backwards: a restarted venue continues it (shared/market_clock.py says where, in either mode).

Serves (all under /v2; shapes as LIVE Delta sends them, see the api spec's last section):
  public   GET products, products/{symbol}, tickers, tickers/{symbol}, l2orderbook/{symbol},
           trades/{symbol} (flat array), history/candles (1m..1w, max 2000), settings, assets,
           indices
  private  POST|PUT|DELETE orders (stop orders too: stop_order_type + stop_price, `pending` until
           triggered), POST|PUT|DELETE orders/batch (<= 50, one product, limit orders only),
           DELETE orders/all (cancel_limit/stop/reduce_only_orders), GET orders (states,
           order_types, cursor paging), orders/history, orders/{id},
           orders/client_order_id/{id}, positions?product_id=, positions/margined,
           wallet/balances, wallet/transactions (the ledger, cursor paging), fills (cursor
           paging), POST positions/change_margin, GET|POST products/{id}/orders/leverage
  /ws      see venue_ws.py; /public: the compact public channels (India's public host)
The recorded Delta samples these shapes are held to: tests/fixtures/delta (contract suite).
Auth order: no headers -> 401 {"error":"unauthorized"}; wrong key -> invalid_api_key; timestamp
outside 5 s -> expired_signature {request_time, server_time}; signature over the exact bytes
received -> invalid_signature. Rate limits: weighted fixed window per key (per IP when public),
and 500 engine ops/s per product (cancels exempt); both answer 429 + X-RATE-LIMIT-RESET (ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import math
import os
import random
import secrets
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from aiohttp import web

from shared.config import BarSeconds, Port
from shared.delta.auth import verify
from shared.delta.ratelimit import endpoint_weight
from shared.delta.venues import PAPER_PUBLIC_PATH
from shared.market_clock import CLOCKS, MarketClock, resume_clock, wall_replay_delay
from shared.marketdata import BAR_SECONDS, Candles, ReplayMarket, candle_ticks, synthetic_candles
from shared.matching import MatchingEngine, VenueError, bad_schema, dec
from shared.matching.engine import Event, decode_journal, encode_journal_entry
from shared.matching import protocol as wire
from shared.products import PAPER_PRODUCTS, UnknownSymbolError, is_synthetic, resolve_paper_symbol, \
    synthetic_symbol
from workers.venue_ws import SIGNATURE_WINDOW_S, WsHub, dumps

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1 << 20  # larger request bodies get 413 (Delta's bodies are a few KB)
# Set while serving an unauthenticated request: it may read the markets there are, never list a
# new one (a public flood once made 200 synthetic markets that outlived a restart).
_PUBLIC_CALLER = contextvars.ContextVar("public_caller", default=False)

MAX_BATCH = 50
MAX_CANDLES = 2000
RECENT_TRADES = 50
# Completed live bars kept for /v2/history/candles and the ticker's 24 h stats: a bot's window
# (1024) and a day (1440) with room. As tuples a bar costs ~230 B, so this is ~1 MB a symbol;
# 20,000 (the old bound) grew the venue ~36 MB/h at 50 symbols up to ~230 MB, 1.4 GB at 300.
LIVE_BARS_KEPT = 4_096
CLOCK_SAVE_INTERVAL_S = 10.0  # an account that did not change is rewritten for its clock this often
RESOLUTIONS = {"1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
               "4h": 14400, "6h": 21600, "1d": 86400, "1w": 604800}
SYNTHETIC_LIVE_BARS = 2_880  # two days of live bars before a synthetic series wraps (rescaled)
REPLAY_GROUPS = 8  # sub-steps a quarter-bar tick of all markets is spread over
SYNTHETIC_ID_BASE = 900_000  # shared.products.synthetic_spec: product_id = 900_000 + index


class VenueSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = 0  # ranges apply where settings are decoded (`orchestrate venue`, the config)
    bar_seconds: BarSeconds = 1.0  # wall seconds per replayed 1m bar
    clock: str = "replay"  # "replay": 60 / bar_seconds x real time; "wall": real time (see module doc)
    history_bars: int = 1000
    seed: int = 0
    initial_balance_usd: float = 10_000.0
    leverage: float = 10.0
    rate_limit_units: int = 10_000
    rate_limit_window_s: float = 300.0
    heartbeat_s: float = 30.0
    engine_ops_per_s: int = 500  # Delta's matching-engine limit per product; cancels exempt
    ws_send_queue: int = 2_000  # frames queued per websocket before the client counts as too slow
    ws_max_connections: int = 256  # more concurrent sockets -> handshake answered 429, like Delta's cap
    max_symbols: int = 5_000  # synthetic products are created on first reference: cap the memory
    state_file: str | None = None  # the paper account survives a venue restart through this file
    state_save_interval_s: float = 2.0  # how often a changed account is written (and on stop)
    # Wall time (epoch s) the run started, the same for every venue process of one run (None: a
    # run of its own, starting now): a venue restarted in the run catches up with the wall, a
    # new run resumes the saved market clock where the last one stopped.
    start_ts: float | None = None
    # Fault injection, all off by default; drawn from one RNG seeded by `seed`.
    fault_latency_ms: float = 0.0  # added to every REST request
    fault_5xx_probability: float = 0.0  # 503 `unavailable` before the request is processed
    fault_429_probability: float = 0.0  # spurious 429 before the request is processed
    fault_ws_drop_interval_s: float = 0.0  # close every websocket this often (0 = never)
    fault_reject_probability: float = 0.0  # order placements refused with `risk_limits_breached`
    fault_restart_interval_s: float = 0.0  # go away this often (0 = never)...
    fault_restart_down_s: float = 1.0  # ...for this long; the account survives (see restart())

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError("clock must be 'replay' or 'wall'")
        if self.clock == "wall":
            self.bar_seconds = float(BAR_SECONDS)
        if self.bar_seconds <= 0 or self.heartbeat_s <= 0 or self.rate_limit_window_s <= 0:
            raise ValueError("bar_seconds, heartbeat_s and rate_limit_window_s must be > 0")
        if self.history_bars < 1 or self.rate_limit_units < 1 or self.ws_send_queue < 1:
            raise ValueError("history_bars, rate_limit_units and ws_send_queue must be >= 1")
        for name in ("fault_5xx_probability", "fault_429_probability", "fault_reject_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")


class _Market:
    """One symbol's replay: the current bar, its forming candle, completed bars, recent trades."""

    __slots__ = ("symbol", "spec", "replay", "history", "live", "bar", "ticks", "tick_size",
                 "forming", "recent", "tick_no", "joined")

    def __init__(self, symbol: str, start_ts: int, history_bars: int, seed: int, joined: int = 0) -> None:
        self.symbol = symbol
        self.joined = joined  # lockstep index of this market's first live bar
        self.spec = resolve_paper_symbol(symbol)
        if is_synthetic(symbol):
            # Shorter than ReplayMarket.for_symbol's 20k-bar draw (about 1 MB a symbol): hundreds
            # of load-test symbols must stay cheap. Same seed and symbol -> same series here.
            candles = synthetic_candles(symbol, history_bars + SYNTHETIC_LIVE_BARS, seed)
            self.replay = ReplayMarket(symbol, candles, start_ts, history_bars)
        else:
            self.replay = ReplayMarket.for_symbol(symbol, start_ts, history_bars, seed)
        # Prices on the product's tick grid everywhere (history, trades, candles), as on an
        # exchange; the shipped series carry finer prices than Delta's ticks.
        h = self.replay.history()
        tick = self.spec.tick_size
        def on_grid(col: np.ndarray) -> np.ndarray:
            return np.round(np.round(col / tick) * tick, 10)
        self.history = Candles(h.ts, on_grid(h.open), on_grid(h.high), on_grid(h.low), on_grid(h.close), h.volume)
        self.live: deque[tuple[int, float, float, float, float, float]] = deque(maxlen=LIVE_BARS_KEPT)
        self.bar: tuple[int, float, float, float, float, float] = (0, 0.0, 0.0, 0.0, 0.0, 0.0)
        self.ticks: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.tick_size = 1
        self.forming: list[float] | None = None  # [open, high, low, close, volume] so far
        self.recent: deque[tuple[float, int, int, str]] = deque(maxlen=RECENT_TRADES)
        self.tick_no = 0

    def begin_bar(self) -> None:
        self.bar = self.replay.next_bar()
        _, o, h, low, c, v = self.bar
        r = self.spec.round_price
        self.ticks = candle_ticks(r(o), r(h), r(low), r(c))
        # bar volume is in the underlying; a replayed tick carries a quarter of it, in contracts
        self.tick_size = max(1, int(v / self.spec.contract_value / 4))
        self.forming = None

    def last_close(self) -> float:
        if self.forming is not None:
            return self.forming[3]
        if self.live:
            return self.live[-1][4]
        return float(self.history.close[-1])


def _ok(result: Any, meta: Mapping[str, Any] | None = None, status: int = 200) -> web.Response:
    body: dict[str, Any] = {"success": True, "result": result}
    if meta is not None:
        body["meta"] = meta
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def _err(code: str, context: Mapping[str, Any] | None, status: int,
         headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"success": False, "error": {"code": code, "context": dict(context or {})}}
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json",
                        headers=headers)


class _RateLimited(Exception):
    def __init__(self, reset_ms: int, context: Mapping[str, Any]) -> None:
        self.reset_ms = reset_ms
        self.context = dict(context)


class _Unauthorized(Exception):
    """No auth headers at all: live answers a bare {"error":"unauthorized","success":false}."""


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]


class PaperVenue:
    def __init__(self, settings: VenueSettings, symbols: Sequence[str], *, api_key: str | None = None,
                 api_secret: str | None = None) -> None:
        """Keys are generated per run unless given (a supervisor that restarts the venue keeps
        them, so clients find the same account credentials again)."""
        self.settings = settings
        self.api_key = api_key or secrets.token_hex(16)
        self.api_secret = api_secret or secrets.token_hex(32)
        now = time.time()
        run_wall = settings.start_ts if settings.start_ts is not None else now
        saved_clock = self._saved_clock()
        self._start_ts = saved_clock.origin_ts if saved_clock else int(run_wall) - int(run_wall) % BAR_SECONDS
        self.market_us = self._start_ts * 1_000_000
        self._journal_fd: int | None = None
        # Journal bytes a write could not take (disk full), oldest first; retried before anything
        # new, emptied by the next snapshot (which holds their state). Bounded in practice: while
        # it is not empty every order action is refused, so only resting orders add events.
        self._unjournaled: deque[bytes] = deque()
        self.storage_error = ""  # why the journal or the snapshot cannot be written; "" when fine
        self.engine = self._load_account()
        self._saved_revision = self.engine.revision
        clock = resume_clock(saved_clock, run_wall=run_wall, now_wall=now, bar_seconds=settings.bar_seconds,
                             newest_event_us=_newest_event_us(self.engine), clock=settings.clock)
        self._start_ts, self._run_wall, self._run_bars = clock.origin_ts, clock.run_wall, clock.run_bars
        self._next_bar = clock.next_bar  # lockstep index of the next bar to begin
        self._saved_next_bar = -1
        self._clock_saved_at = -math.inf
        self.market_us = clock.market_us
        self._bars_started = False
        self._lockstep_bar_ts = 0
        self.markets: dict[str, _Market] = {}
        self._markets_list: list[_Market] = []
        self._by_product_id: dict[int, _Market] = {}
        self._restoring = True  # markets made now start where their replay began, primed by _catch_up
        self._joined = clock.joined
        for sym in symbols:
            self.market(sym)  # unknown symbols refused here, before anything starts
        for spec in self.engine.specs():  # products of a restored account keep their markets
            self.market(spec.symbol)
        self._restoring = False
        self._catch_up(clock.next_bar)
        if settings.state_file:
            # Fold the journal of the last run into a snapshot, then journal from empty (the save
            # empties it). A snapshot that cannot be written (disk full) leaves the journal as it
            # is, with this run's events after it: replay is idempotent, nothing is lost.
            self._journal_fd = os.open(_journal_path(settings.state_file),
                                       os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._saved_revision = -1
            self.save_account()
        self._rng = random.Random(settings.seed)
        self._windows: dict[str, tuple[float, int]] = {}  # key or ip -> (window start, used)
        self._engine_ops: dict[int, tuple[int, int]] = {}  # product_id -> (wall second, ops)
        self.ws = WsHub(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.rest_url = ""
        self.ws_url = ""
        self.public_ws_url = ""  # the compact public channels, as India's public host serves them
        self.port = 0
        self.ticks_replayed = 0
        self.requests_served = 0  # REST requests answered, any status
        self.requests_refused = 0  # of which 4xx/5xx (auth, validation, rejections, limits, faults)

    # ---- markets ----------------------------------------------------------------------------
    def market(self, symbol: str, *, may_list: bool = True) -> _Market:
        """The market for `symbol`, creating a SYN_NNNN one on first reference.
        Raises UnknownSymbolError naming the close matches."""
        m = self.markets.get(symbol)
        if m is not None:
            return m
        resolve_paper_symbol(symbol)
        if not may_list or _PUBLIC_CALLER.get():
            raise VenueError("invalid_contract", {"symbol": symbol, "message":
                             f"{symbol} is not listed; an authenticated request lists a new paper product"}, 404)
        if len(self._markets_list) >= self.settings.max_symbols:
            raise VenueError("invalid_contract", {"symbol": symbol, "message":
                             f"the paper venue already lists {self.settings.max_symbols} products"})
        if self._restoring:
            joined = self._joined.get(symbol, 0)  # replayed up to now by _catch_up
        else:
            joined = self._next_bar  # joins the lockstep at the next bar; its history ends here
        start = self._start_ts + BAR_SECONDS * joined
        m = _Market(symbol, start, self.settings.history_bars, self.settings.seed, joined)
        self.engine.add_product(m.spec)
        if not self._restoring:
            self.engine.on_market_trade(symbol, m.last_close(), 0, self.market_us)  # prime the touch
        self.markets[symbol] = m
        self._markets_list.append(m)
        self._by_product_id[m.spec.product_id] = m
        return m

    def _load_account(self) -> MatchingEngine:
        def clock() -> int:
            return self.market_us
        path = self.settings.state_file
        journal: list[Event] = []
        try:
            if path and os.path.exists(_journal_path(path)):
                with open(_journal_path(path), "rb") as fh:
                    journal = decode_journal(fh.read())
            if path and os.path.exists(path):
                with open(path, "rb") as fh:
                    data = fh.read()
                return MatchingEngine.restore(data, clock=clock, journal=journal)
        except ValueError as exc:
            # refuse rather than silently start a fresh account over a trader's history
            raise ValueError(f"paper account file {path} (or its .journal) is unreadable ({exc}); move "
                             "them away to start a fresh account") from None
        return MatchingEngine.fresh(initial_balance_usd=self.settings.initial_balance_usd,
                                    default_leverage=self.settings.leverage, clock=clock, journal=journal)

    def journal(self, events: list[Event]) -> None:
        """Append drained events to the account journal; called before any client sees them, so
        a crash can lose nothing a client was told (a snapshot is only written every few
        seconds). One write() per drain; no fsync: this survives a killed process, not a lost
        machine, which is enough for a paper account."""
        if self._journal_fd is None:
            return
        if events:
            self._unjournaled.append(encode_journal_entry(events))
        if self._unjournaled:  # also with no new events: a disk with room again is noticed
            self.flush_journal()

    def flush_journal(self) -> bool:
        """Write what the journal still owes; True when nothing is left. A failed write (disk
        full) keeps the bytes for the next try and never raises: the events happened, and a
        client asking about them must get the truth, not a 500."""
        while self._unjournaled and self._journal_fd is not None:
            line = self._unjournaled[0]
            try:
                n = os.write(self._journal_fd, line)
            except OSError as exc:
                self._storage_failed(f"account journal not written ({exc})")
                return False
            if n < len(line):  # a short write on a filling disk: the rest follows next time
                self._unjournaled[0] = line[n:]
                continue
            self._unjournaled.popleft()
        self._storage_ok()
        return True

    def _storage_failed(self, why: str) -> None:
        if not self.storage_error:
            log.error("paper venue: %s; order actions are refused until it can be written", why)
        self.storage_error = why

    def _storage_ok(self) -> None:
        if self.storage_error:
            log.warning("paper venue: account storage writable again; order actions accepted")
        self.storage_error = ""

    def save_account(self, *, final: bool = False) -> bool:
        """Write the account to `state_file` if it changed, or its market clock if that moved
        and was last written CLOCK_SAVE_INTERVAL_S ago (or this is the `final` save at stop),
        atomically, mode 0600; then empty the journal it now contains. True if written."""
        path = self.settings.state_file
        if not path:
            return False
        clock_due = self._next_bar != self._saved_next_bar and (
            final or time.monotonic() - self._clock_saved_at >= CLOCK_SAVE_INTERVAL_S)
        if self.engine.revision == self._saved_revision and not clock_due and os.path.exists(path):
            return False
        revision, next_bar = self.engine.revision, self._next_bar
        try:
            _write_private(Path(path), _with_clock(self.engine.snapshot(), self.market_clock()))
        except OSError as exc:  # disk full: snapshot, clock and journal stay as they were, retried later
            self._storage_failed(f"account snapshot not written ({exc})")
            return False
        self._saved_revision, self._saved_next_bar = revision, next_bar
        self._clock_saved_at = time.monotonic()
        if self._journal_fd is not None:
            # A crash between the write above and this truncate replays the journal onto the
            # new snapshot: harmless, replay is idempotent. What the journal still owed is in
            # the snapshot now.
            self._unjournaled.clear()
            os.ftruncate(self._journal_fd, 0)
            self._storage_ok()
        return True

    async def _saver(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_save_interval_s)
            self.save_account()

    def _catch_up(self, next_bar: int) -> None:
        """Replay every market up to lockstep bar `next_bar` (where the market clock resumes),
        so candles have no hole, then trade each at its close at the resumed time: resting
        orders the market ran through while the venue was away fill now, never in the past."""
        # the next bar to replay starts now; markets created before it begins join at it
        self.market_us = (self._start_ts + BAR_SECONDS * next_bar) * 1_000_000
        for m in self._markets_list:
            bars = next_bar - m.joined
            if bars > LIVE_BARS_KEPT:
                m.replay.seek(bars - LIVE_BARS_KEPT)
            r = m.spec.round_price
            while m.replay.bar_index < bars:
                t, o, h, low, c, v = m.replay.next_bar()
                m.live.append((t, r(o), r(h), r(low), r(c), v))
            self.engine.on_market_trade(m.symbol, m.last_close(), 0, self.market_us)

    def market_clock(self) -> MarketClock:
        """The replay clock as saved with the account."""
        return MarketClock(origin_ts=self._start_ts, next_bar=self._next_bar, run_wall=self._run_wall,
                           run_bars=self._run_bars,
                           joined={m.symbol: m.joined for m in self._markets_list if m.joined})

    def _saved_clock(self) -> MarketClock | None:
        """The market clock saved with the account (None: a new account, or one saved before
        the clock was; its fills still bound the resumed clock)."""
        path = self.settings.state_file
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path, "rb") as fh:
                return msgspec.json.decode(fh.read(), type=_SavedClock).market_clock
        except (msgspec.DecodeError, OSError):
            return None  # _load_account refuses an unreadable file with the reason

    def _market_by_product_id(self, product_id: int) -> _Market:
        m = self._by_product_id.get(product_id)
        if m is not None:
            return m
        if product_id >= SYNTHETIC_ID_BASE:
            return self.market(synthetic_symbol(product_id - SYNTHETIC_ID_BASE))
        raise VenueError("invalid_contract", {"product_id": product_id})

    def _symbol_market(self, symbol: str, status: int = 400) -> _Market:
        try:
            return self.market(symbol)
        except UnknownSymbolError as exc:
            raise VenueError("invalid_contract", {"symbol": symbol, "message": str(exc),
                                                  "close_matches": exc.close_matches}, status) from None

    def _product_from_body(self, body: Mapping[str, Any]) -> _Market:
        if body.get("product_id") is not None:
            pid = wire.int_field(body, "product_id")
            assert pid is not None
            return self._market_by_product_id(pid)
        sym = body.get("product_symbol")
        if isinstance(sym, str) and sym:
            return self._symbol_market(sym)
        raise bad_schema("product_id or product_symbol is required", "product_id")

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self._serve_http(self.settings.port)
        self.rest_url = f"http://{self.settings.host}:{self.port}"
        self.ws_url = f"ws://{self.settings.host}:{self.port}/ws"
        self.public_ws_url = f"ws://{self.settings.host}:{self.port}{PAPER_PUBLIC_PATH}"
        self._tasks.append(asyncio.create_task(self._replay_loop(), name="venue-replay"))
        if self.settings.fault_ws_drop_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._ws_dropper(), name="venue-ws-drop"))
        if self.settings.fault_restart_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._restarter(), name="venue-restarts"))
        if self.settings.state_file:
            self._tasks.append(asyncio.create_task(self._saver(), name="venue-save"))

    async def _restarter(self) -> None:
        while True:
            await asyncio.sleep(self.settings.fault_restart_interval_s)
            await self.restart(self.settings.fault_restart_down_s)

    async def _serve_http(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_json_http_errors])
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the real port when `port` is 0

    async def _close_http(self) -> None:
        await self.ws.drop_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, down_s: float = 0.5) -> None:
        """Fault injection: the venue goes away (sockets closed, connections refused) for
        `down_s`, then serves again on the same port with the same account, keys and market,
        which kept replaying meanwhile, as an exchange restart with persistent state would."""
        await self.go_down()
        await asyncio.sleep(down_s)
        await self.come_back()

    async def go_down(self) -> None:
        """First half of `restart`: close every socket and stop listening (replay continues)."""
        await self._close_http()

    async def come_back(self) -> None:
        """Second half of `restart`: listen again on the same port."""
        if self._runner is None:
            await self._serve_http(self.port)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self._close_http()
        self.ws.publish_engine_events()  # nothing drained may miss the final snapshot
        self.save_account(final=True)
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    async def _ws_dropper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.fault_ws_drop_interval_s)
            await self.ws.drop_all()

    async def _replay_loop(self) -> None:
        """ONE timer for every symbol. Each quarter-bar tick of all markets is spread over the
        quarter in REPLAY_GROUPS sub-steps (markets i, i+G, i+2G, ... together): real symbols do
        not all trade at the same instant, and a lockstep burst would make hundreds of bots wake
        at once and queue on the cores."""
        loop = asyncio.get_running_loop()
        step = self.settings.bar_seconds / 4
        due = loop.time()
        if self.settings.clock == "wall":
            # line the replay up with the wall clock: bar T's tick k fires at T + 15k s, so the
            # quarters of the bar already past are replayed at once, and a market clock resumed
            # ahead of the wall (saved during this minute) waits for it
            delay = wall_replay_delay(self.market_us, time.time())
            lead = self.market_us / 1e6 - time.time()
            if lead > BAR_SECONDS:
                log.warning("the paper market's saved clock is %.0f s ahead of the wall (saved by a replay-clock "
                            "run); on the wall clock it keeps that lead rather than run backwards", lead)
            if delay > 0:
                await asyncio.sleep(delay)
            due = loop.time() + min(0.0, delay)
        k = 0
        while True:
            groups = max(1, min(REPLAY_GROUPS, len(self._markets_list)))
            for g in range(groups):
                due += step / groups
                self._replay_step(k, g, groups)
                delay = due - loop.time()
                if delay < -4 * step:
                    due = loop.time()  # far behind (suspended, overloaded): skip ahead, never burst
                    delay = 0.0
                await asyncio.sleep(max(0.0, delay))
            k = (k + 1) % 4

    def _replay_step(self, k: int, group: int = 0, groups: int = 1) -> None:
        markets = self._markets_list[group::groups]
        if k == 0:
            self._bars_started = True
            for m in markets:
                m.begin_bar()
            if group == 0 and self._markets_list:
                self._lockstep_bar_ts = self._markets_list[0].bar[0]
                self._next_bar = (self._lockstep_bar_ts - self._start_ts) // BAR_SECONDS + 1
        bar_ts = self._lockstep_bar_ts if self._markets_list else self.market_us // 1_000_000
        self.market_us = bar_ts * 1_000_000 + k * (BAR_SECONDS // 4) * 1_000_000
        ts = self.market_us
        trade_subs = [c for c in self.ws.clients if "all_trades" in c.subs]
        candle_subs = [c for c in self.ws.clients if "candlestick_1m" in c.subs and not c.compact]
        market_plan = self.ws.market_plan()
        for m in markets:
            if m.bar[0] != bar_ts:  # created mid-bar: joins the lockstep at the next bar
                continue
            price = m.ticks[k]
            size = m.tick_size
            self.engine.on_market_trade(m.symbol, price, size, ts)
            # tick rule: an uptick was a buyer lifting the offer, a downtick a seller hitting the bid
            buyer = "taker" if price >= m.last_close() else "maker"
            seller = "maker" if buyer == "taker" else "taker"
            f = m.forming
            if f is None:
                m.forming = [price, price, price, price, float(size) * m.spec.contract_value]
            else:
                f[1] = max(f[1], price)
                f[2] = min(f[2], price)
                f[3] = price
                f[4] += size * m.spec.contract_value
            m.recent.append((price, size, ts, buyer))
            if trade_subs:
                frame = dumps({"type": "all_trades", "symbol": m.symbol, "product_id": m.spec.product_id,
                                "price": wire.s(dec(price)), "size": size,
                                "buyer_role": buyer, "seller_role": seller, "timestamp": ts})
                for c in trade_subs:
                    if c.wants("all_trades", m.symbol):
                        c.send(frame)
            if candle_subs:
                frame = dumps(self._candle_frame(m, ts))
                for c in candle_subs:
                    if c.wants("candlestick_1m", m.symbol):
                        c.send(frame)
            if market_plan:
                self.ws.publish_market(m, market_plan, (price, size, ts, buyer), bar_closed=k == 3)
            if k == 3:
                fo = m.forming
                assert fo is not None
                m.live.append((m.bar[0], fo[0], fo[1], fo[2], fo[3], fo[4]))
                m.forming = None
                ticker_subs = [c for c in self.ws.clients if c.wants("v2/ticker", m.symbol)]
                if ticker_subs:
                    frame = dumps({**self._ticker(m), "type": "v2/ticker"})
                    for c in ticker_subs:
                        c.send(frame)
        if group == groups - 1:
            self.ticks_replayed += 1
        self.ws.publish_engine_events()

    def _candle_frame(self, m: _Market, ts: int) -> dict[str, Any]:
        f = m.forming
        o, h, low, c, v = (f if f is not None else (None, None, None, None, 0.0))
        return {"type": "candlestick_1m", "symbol": m.symbol, "resolution": "1m",
                "candle_start_time": m.bar[0] * 1_000_000, "open": o, "high": h, "low": low, "close": c,
                "volume": v, "timestamp": ts, "last_updated": ts}

    # ---- HTTP plumbing ----------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router
        pub, priv = self._public, self._private
        r.add_get("/v2/products", pub(self._products))
        r.add_get("/v2/products/{symbol}", pub(self._product))
        r.add_get("/v2/tickers", pub(self._tickers))
        r.add_get("/v2/tickers/{symbol}", pub(self._ticker_one))
        r.add_get("/v2/l2orderbook/{symbol}", pub(self._l2))
        r.add_get("/v2/trades/{symbol}", pub(self._trades))
        r.add_get("/v2/history/candles", pub(self._candles))
        r.add_get("/v2/settings", pub(self._settings))
        r.add_get("/v2/assets", pub(self._assets))
        r.add_get("/v2/indices", pub(self._indices))
        r.add_post("/v2/orders", priv(self._place))
        r.add_put("/v2/orders", priv(self._edit))
        r.add_delete("/v2/orders", priv(self._cancel))
        r.add_get("/v2/orders", priv(self._open_orders))
        r.add_post("/v2/orders/batch", priv(self._batch_create))
        r.add_put("/v2/orders/batch", priv(self._batch_edit))
        r.add_delete("/v2/orders/batch", priv(self._batch_cancel))
        r.add_delete("/v2/orders/all", priv(self._cancel_all))
        r.add_get("/v2/orders/history", priv(self._order_history))
        r.add_get("/v2/orders/client_order_id/{coid}", priv(self._order_by_coid))
        r.add_get("/v2/orders/{order_id}", priv(self._order_by_id))
        r.add_get("/v2/positions", priv(self._position))
        r.add_get("/v2/positions/margined", priv(self._margined))
        r.add_get("/v2/wallet/balances", priv(self._balances))
        r.add_get("/v2/wallet/transactions", priv(self._wallet_transactions))
        r.add_post("/v2/positions/change_margin", priv(self._change_margin))
        r.add_get("/v2/fills", priv(self._fills))
        r.add_get("/v2/products/{product_id}/orders/leverage", priv(self._get_leverage))
        r.add_post("/v2/products/{product_id}/orders/leverage", priv(self._set_leverage))
        r.add_get("/ws", self.ws.handle)
        r.add_get(PAPER_PUBLIC_PATH, self.ws.handle_public)

    def _public(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            return await self._serve(request, handler, private=False)
        return wrapped

    def _private(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            return await self._serve(request, handler, private=True)
        return wrapped

    async def _serve(self, request: web.Request, handler: Handler, *, private: bool) -> web.Response:
        st = self.settings
        public = _PUBLIC_CALLER.set(not private)
        try:
            return await self._serve_as(request, handler, private=private)
        finally:
            _PUBLIC_CALLER.reset(public)

    async def _serve_as(self, request: web.Request, handler: Handler, *, private: bool) -> web.Response:
        st = self.settings
        try:
            raw = await request.read()
            if st.fault_latency_ms > 0:
                await asyncio.sleep(st.fault_latency_ms / 1000.0)
            key = self._authenticate(request, raw) if private else None
            if not private and request.headers.get("api-key"):
                with contextlib.suppress(_Unauthorized, VenueError):  # a public route, signed anyway
                    self._authenticate(request, raw)
                    _PUBLIC_CALLER.set(False)
            self._charge(key or f"ip:{request.remote}", endpoint_weight(request.method, request.path))
            if st.fault_429_probability and self._rng.random() < st.fault_429_probability:
                raise _RateLimited(1000, {"fault_injection": True})
            if st.fault_5xx_probability and self._rng.random() < st.fault_5xx_probability:
                return self._count(_err("unavailable", {"fault_injection": True}, 503))
            body = self._json_body(raw)
            if private and request.method != "GET" and not self.flush_journal():
                # Refused before anything is done: an action the account cannot record is one a
                # crash would silently undo.
                raise VenueError("unavailable", {"message": "the paper account cannot be written "
                                                 f"({self.storage_error}); nothing was done"}, 503)
            response = await handler(request, body)
        except web.HTTPRequestEntityTooLarge:
            return self._count(_err("request_entity_too_large", {"max_bytes": MAX_BODY_BYTES}, 413))
        except _Unauthorized:
            return self._count(web.Response(body=b'{"error":"unauthorized","success":false}', status=401,
                                            content_type="application/json"))
        except _RateLimited as exc:
            return self._count(_err("rate_limit_exceeded", exc.context, 429,
                                    {"X-RATE-LIMIT-RESET": str(exc.reset_ms)}))
        except VenueError as exc:
            response = _err(exc.code, exc.context, exc.status)
        except UnknownSymbolError as exc:
            response = _err("invalid_contract", {"symbol": exc.symbol, "message": str(exc),
                                                 "close_matches": exc.close_matches}, 404)
        except Exception:  # a venue bug: answer like Delta's 500, keep serving, leave a trace
            log.exception("venue: %s %s failed", request.method, request.path)
            response = _err("internal_server_error", {}, 500)
        # state may have changed (fills, cancels): push the private events right away
        self.ws.publish_engine_events()
        self._count(response)
        return response

    def _count(self, response: web.Response) -> web.Response:
        self.requests_served += 1
        if response.status >= 400:
            self.requests_refused += 1
        return response

    @staticmethod
    def _json_body(raw: bytes) -> dict[str, Any]:
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):  # nested a thousand deep: junk
            raise bad_schema("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise bad_schema("body must be a JSON object")
        return body

    def _authenticate(self, request: web.Request, raw: bytes) -> str:
        h = request.headers
        key, ts, sig = h.get("api-key"), h.get("timestamp"), h.get("signature")
        if not key and not sig and not ts:
            raise _Unauthorized()
        if key != self.api_key:
            raise VenueError("invalid_api_key", {}, 401)
        now = time.time()
        try:
            ts_val = int(ts or "")
        except ValueError:
            raise VenueError("invalid_signature", {"message": "timestamp must be epoch seconds"}, 401) from None
        if abs(now - ts_val) > SIGNATURE_WINDOW_S:
            raise VenueError("expired_signature", {"request_time": ts_val, "server_time": int(now)}, 401)
        path, _, query = request.raw_path.partition("?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VenueError("invalid_signature", {}, 401) from None
        if not sig or not verify(self.api_secret, sig, request.method, ts or "", path,
                                 "?" + query if query else "", text):
            raise VenueError("invalid_signature", {}, 401)
        return key

    def _charge(self, who: str, weight: int) -> None:
        """Delta's fixed window: `rate_limit_units` per `rate_limit_window_s`, refilled at once."""
        now = time.monotonic()
        window = self.settings.rate_limit_window_s
        start, used = self._windows.get(who, (now, 0))
        if now - start >= window:
            start, used = now, 0
        if used + weight > self.settings.rate_limit_units:
            reset_ms = max(1, math.ceil((start + window - now) * 1000))
            raise _RateLimited(reset_ms, {"limit": self.settings.rate_limit_units, "used": used})
        if len(self._windows) > 10_000 and who not in self._windows:
            self._windows.clear()  # bounded: only loopback callers exist, so this is a flood
        self._windows[who] = (start, used + weight)

    def _engine_op(self, product_id: int, n: int = 1) -> None:
        second = int(time.monotonic())
        sec, ops = self._engine_ops.get(product_id, (second, 0))
        if sec != second:
            sec, ops = second, 0
        if ops + n > self.settings.engine_ops_per_s:
            raise _RateLimited(1000 - int((time.monotonic() % 1) * 1000),
                               {"limit": self.settings.engine_ops_per_s, "scope": "matching_engine",
                                "product_id": product_id})
        self._engine_ops[product_id] = (sec, ops + n)

    def _maybe_reject(self) -> None:
        p = self.settings.fault_reject_probability
        if p and self._rng.random() < p:
            raise VenueError("risk_limits_breached", {"fault_injection": True})

    # ---- public endpoints -------------------------------------------------------------------
    async def _products(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        items = [wire.product_json(m.spec, self.engine.leverage(m.spec.product_id)) for m in self._markets_list]
        return _ok(items, {"after": None, "before": None, "limit": 1000, "total_count": len(items)})

    async def _product(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self._symbol_market(request.match_info["symbol"], 404)
        return _ok(wire.product_json(m.spec, self.engine.leverage(m.spec.product_id)))

    def _ticker(self, m: _Market) -> dict[str, Any]:
        pid = m.spec.product_id
        bid, ask = self.engine.touch(pid)
        last = self.engine.last_price(pid)
        open_, high, low, base_volume = _day_stats(m, self.market_us // 1_000_000)
        if open_ is None:
            open_ = high = low = float(last or 0)
        contracts = base_volume / m.spec.contract_value
        turnover = base_volume * float(last or 0)
        mark = wire.s(last)
        return {
            "symbol": m.symbol, "product_id": pid, "contract_type": m.spec.contract_type,
            "open": open_, "high": high, "low": low, "close": float(last or 0),
            "mark_price": mark, "spot_price": mark, "mark_change_24h": "0", "mark_vol": "0",
            "oi": "0", "oi_value": "0", "oi_value_symbol": "USD", "oi_value_usd": "0", "oi_contracts": "0",
            "oi_change_usd_6h": "0", "mark_basis": "0",
            "price_band": {"lower_limit": wire.s(bid * Decimal("0.975")), "upper_limit": wire.s(ask * Decimal("1.025"))},
            "quotes": {"best_bid": wire.s(bid), "best_ask": wire.s(ask), "bid_size": str(m.tick_size),
                       "ask_size": str(m.tick_size), "ask_iv": None, "bid_iv": None,
                       "impact_mid_price": wire.s((bid + ask) / 2), "mark_iv": None},
            # Delta's samples: `size` in contracts, `volume` in the underlying, `turnover` in the quote
            "greeks": None, "size": int(contracts), "volume": base_volume, "turnover": turnover,
            "turnover_symbol": "USD", "turnover_usd": turnover,
            "funding_rate": "0", "timestamp": self.market_us,
        }

    async def _tickers(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok([self._ticker(m) for m in self._markets_list])

    async def _ticker_one(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok(self._ticker(self._symbol_market(request.match_info["symbol"], 404)))

    def book(self, m: _Market, depth: int) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
        """The book as clients see it: the synthetic touch (one replayed tick's size each side)
        plus our own resting orders. (bids best first, asks best first), `depth` levels each."""
        pid = m.spec.product_id
        bid, ask = self.engine.touch(pid)
        levels: dict[str, dict[Decimal, int]] = {"buy": {bid: m.tick_size}, "sell": {ask: m.tick_size}}
        for o in self.engine.open_orders([pid]):
            if o.state != "open":
                continue  # an untriggered stop is not in the book
            assert o.limit_price is not None
            side = levels[o.side]
            side[o.limit_price] = side.get(o.limit_price, 0) + o.unfilled_size
        bids = sorted(levels["buy"].items(), reverse=True)[:depth]
        asks = sorted(levels["sell"].items())[:depth]
        return bids, asks

    async def _l2(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self._symbol_market(request.match_info["symbol"], 404)
        depth = _query_int(request, "depth", 20, 1, 100)
        assert depth is not None
        bids, asks = self.book(m, depth)
        out: dict[str, Any] = {"symbol": m.symbol, "last_updated_at": self.market_us}
        for side, rows_in in (("buy", bids), ("sell", asks)):
            cum = 0
            rows = []
            for px, size in rows_in:
                cum += size
                rows.append({"price": wire.s(px), "size": size, "depth": str(cum)})
            out[side] = rows
        return _ok(out)

    async def _trades(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self._symbol_market(request.match_info["symbol"], 404)
        rows = [{"buyer_role": b, "seller_role": "maker" if b == "taker" else "taker",
                 "price": wire.s(dec(p)), "size": sz, "symbol": m.symbol, "timestamp": ts}
                for p, sz, ts, b in reversed(m.recent)]
        return _ok(rows)  # live shape: a flat array, newest first

    async def _candles(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        q = request.query
        res = q.get("resolution", "")
        if res not in RESOLUTIONS:
            raise bad_schema(f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
        sym = q.get("symbol", "")
        if not sym:
            raise bad_schema("symbol is required", "symbol")
        start = _query_int(request, "start", None, 0, 10**11)
        end = _query_int(request, "end", None, 0, 10**11)
        assert start is not None and end is not None
        series, _, base = sym.rpartition(":")  # MARK:<sym>, FUNDING:<sym> as on Delta
        if series not in ("", "MARK", "FUNDING"):
            raise VenueError("invalid_contract", {"symbol": sym, "message": f"unknown series {series!r}"})
        m = self._symbol_market(base)
        step = RESOLUTIONS[res]
        bars = _bars_between(m, start - start % step, end)
        if step != 60:
            bars = wire.aggregate_bars(bars, step)
        bars = bars[-MAX_CANDLES:]
        if series == "FUNDING":  # the paper venue charges no funding (its tickers say funding_rate 0)
            bars = [(t, 0.0, 0.0, 0.0, 0.0, 0.0) for t, *_ in bars]
        # MARK: the paper mark price is the last trade (tickers' mark_price), so its bars are the trades'
        return _ok([{"time": t, "open": o, "high": h, "low": low, "close": c, "volume": v}
                    for t, o, h, low, c, v in bars])

    async def _settings(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok({"server_time": int(time.time() * 1_000_000), "paper": True,
                    "market_time": self.market_us})

    async def _assets(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok(wire.assets_json(m.spec for m in self._markets_list))

    async def _indices(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok([wire.index_json(m.spec) for m in self._markets_list])

    # ---- private endpoints ------------------------------------------------------------------
    async def _place(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self._product_from_body(body)
        req = wire.order_request(body, m.spec.product_id)
        self._engine_op(m.spec.product_id)
        self._maybe_reject()
        return _ok(wire.order_json(self.engine.place_order(req)))

    async def _edit(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        oid = wire.int_field(body, "id")
        assert oid is not None
        return _ok(wire.order_json(self._edit_one(oid, body)))

    def _edit_one(self, oid: int, body: Mapping[str, Any], *, batch: bool = False) -> Any:
        existing = self.engine.order(oid)
        if existing is None or existing.state not in ("open", "pending"):
            raise VenueError("open_order_not_found", {"id": oid}, 404)
        if batch:  # Delta batches are limit orders only
            if existing.state == "pending":
                raise bad_schema(f"order {oid} is a pending stop order: edit it with PUT /v2/orders", "id")
            if body.get("stop_price") not in (None, ""):
                raise bad_schema("stop_price is not allowed in a batch edit", "stop_price")
        self._engine_op(existing.product_id)
        post = wire.flag(body, "post_only", existing.post_only) if "post_only" in body else None
        return self.engine.edit_order(oid, size=wire.int_field(body, "size", required=False),
                                      limit_price=wire.price_field(body, "limit_price"), post_only=post,
                                      stop_price=wire.price_field(body, "stop_price"))

    async def _cancel(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        oid = wire.int_field(body, "id", required=False)
        coid = body.get("client_order_id")
        pid = wire.int_field(body, "product_id", required=False)
        order = self.engine.cancel_order(order_id=oid, client_order_id=coid if isinstance(coid, str) else None,
                                         product_id=pid)
        return _ok(wire.order_json(order))

    async def _cancel_all(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """With any of the three cancel_* flags in the body only the kinds flagged true are
        cancelled (an absent one counts as false); with none of them, every kind is (the api
        spec's reading; sources disagree on the server default, so clients send all three)."""
        pid = wire.int_field(body, "product_id", required=False)
        if pid is not None:
            self._market_by_product_id(pid)
        keys = ("cancel_limit_orders", "cancel_stop_orders", "cancel_reduce_only_orders")
        given = any(k in body for k in keys)
        limit, stop, reduce_only = (wire.flag(body, k) if given else True for k in keys)
        self.engine.cancel_all(pid, limit_orders=limit, stop_orders=stop, reduce_only_orders=reduce_only)
        return _ok({})  # recorded live answer (CCXT cancelAllOrders sample): {"result":{},"success":true}

    def _batch_market(self, body: Mapping[str, Any]) -> tuple[_Market, list[Any]]:
        m = self._product_from_body(body)
        orders = body.get("orders")
        if not isinstance(orders, list) or not orders:
            raise bad_schema("orders must be a non-empty list", "orders")
        if len(orders) > MAX_BATCH:
            raise bad_schema(f"at most {MAX_BATCH} orders per batch, got {len(orders)}", "orders")
        if not all(isinstance(o, dict) for o in orders):
            raise bad_schema("each order must be an object", "orders")
        return m, orders

    @staticmethod
    def _batch_answer(items: Sequence[Any], one: Callable[[Any], Any]) -> web.Response:
        """Delta's batch semantics: on partial failure only the processed orders come back; if
        none were, the first error is the answer (so a lone post-only reject still says why)."""
        done, first_error = [], None
        for item in items:
            try:
                done.append(wire.order_json(one(item)))
            except VenueError as exc:
                first_error = first_error or exc
        if not done and first_error is not None:
            raise first_error
        return _ok(done)

    async def _batch_create(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m, items = self._batch_market(body)
        pid = m.spec.product_id
        reqs = [wire.order_request({**o, "time_in_force": "gtc"}, pid, stops_allowed=False) for o in items]
        self._engine_op(pid, len(reqs))

        def place(req: Any) -> Any:
            self._maybe_reject()
            return self.engine.place_order(req)
        return self._batch_answer(reqs, place)

    async def _batch_edit(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m, items = self._batch_market(body)

        def edit(item: Mapping[str, Any]) -> Any:
            oid = wire.int_field(item, "id")
            assert oid is not None
            existing = self.engine.order(oid)
            if existing is not None and existing.product_id != m.spec.product_id:
                raise bad_schema("all orders in a batch must be on the same product", "product_id")
            return self._edit_one(oid, item, batch=True)
        return self._batch_answer(items, edit)

    async def _batch_cancel(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m, items = self._batch_market(body)

        def cancel(item: Mapping[str, Any]) -> Any:
            coid = item.get("client_order_id")
            return self.engine.cancel_order(order_id=wire.int_field(item, "id", required=False),
                                            client_order_id=coid if isinstance(coid, str) else None,
                                            product_id=m.spec.product_id)
        return self._batch_answer(items, cancel)

    def _product_ids(self, request: web.Request, key: str = "product_ids") -> list[int] | None:
        raw = request.query.get(key)
        if not raw:
            return None
        try:
            ids = [int(x) for x in raw.split(",") if x]
        except ValueError:
            raise bad_schema(f"{key} must be comma-separated integers", key) from None
        if len(ids) > 10:
            raise bad_schema(f"at most 10 {key}", key)
        return ids

    async def _open_orders(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        states = _csv_choice(request, "states", ("open", "pending"))
        kinds = _order_kinds(request)
        live = [o for o in self.engine.open_orders(self._product_ids(request))
                if o.state in states and wire.order_kind(o) in kinds]
        orders = sorted(_time_filter(request, live, "created_at"), key=lambda o: -o.id)
        items, meta = _page(request, [(o.id, o) for o in orders], default_size=100, max_size=1000)
        return _ok([wire.order_json(o) for o in items], meta)

    async def _order_history(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        kinds = _order_kinds(request)
        done = [o for o in self.engine.order_history(self._product_ids(request)) if wire.order_kind(o) in kinds]
        orders = sorted(_time_filter(request, done, "created_at"), key=lambda o: -o.id)
        items, meta = _page(request, [(o.id, o) for o in orders], default_size=50, max_size=50)
        return _ok([wire.order_json(o) for o in items], meta)

    async def _order_by_id(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        try:
            oid = int(request.match_info["order_id"])
        except ValueError:
            raise bad_schema("order id must be an integer", "order_id") from None
        o = self.engine.order(oid)
        if o is None:
            raise VenueError("open_order_not_found", {"id": oid}, 404)
        return _ok(wire.order_json(o))

    async def _order_by_coid(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        coid = request.match_info["coid"]
        o = self.engine.order_by_client_id(coid)
        if o is None:
            raise VenueError("open_order_not_found", {"client_order_id": coid}, 404)
        return _ok(wire.order_json(o))

    async def _position(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        raw = request.query.get("product_id")
        if raw:
            try:
                pid = int(raw)
            except ValueError:
                raise bad_schema("product_id must be an integer", "product_id") from None
            pos = self.engine.position(self._market_by_product_id(pid).spec.product_id)
            return _ok({"size": pos.size, "entry_price": wire.s(pos.entry_price), "timestamp": self.market_us})
        und = request.query.get("underlying_asset_symbol")
        if not und:
            raise bad_schema("product_id is required", "product_id")
        out = [{"product_id": m.spec.product_id, "product_symbol": m.symbol,
                "size": self.engine.position(m.spec.product_id).size,
                "entry_price": wire.s(self.engine.position(m.spec.product_id).entry_price)}
               for m in self._markets_list if m.spec.underlying_asset == und]
        return _ok(out)

    async def _margined(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        wanted = self._product_ids(request)
        out = []
        for pos in self.engine.positions():
            if wanted is not None and pos.product_id not in wanted:
                continue
            pid = pos.product_id
            out.append(wire.position_json(pos, self.engine.product(pid), self.engine.position_margin(pid),
                                          self.engine.last_price(pid), self.engine.unrealized_pnl(pid)))
        return _ok(out)

    async def _balances(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        w = self.engine.wallet()
        return _ok([wire.wallet_json(w)], wire.wallet_meta(w))

    async def _fills(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        wanted = self._product_ids(request)
        fills = [f for f in reversed(self.engine.fills) if wanted is None or f.product_id in wanted]
        fills = _time_filter(request, fills, "timestamp")
        items, meta = _page(request, [(f.seq, f) for f in fills], default_size=50, max_size=50)
        return _ok([wire.fill_json(f, self.engine.product(f.product_id), self.engine.order(f.order_id))
                    for f in items], meta)

    async def _wallet_transactions(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """The USD wallet's ledger, derived from the fill history (see wire.wallet_transactions)."""
        assets = self._product_ids(request, "asset_ids")
        kinds = _csv_choice(request, "transaction_types", ("cashflow", "commission", "deposit", "funding"))
        start = _query_int(request, "start_time", 0, 0, 10**17)
        end = _query_int(request, "end_time", 10**17, 0, 10**17)
        e = self.engine
        complete = not e.fills or e.fills[0].seq == 1
        entries = wire.wallet_transactions(reversed(e.fills), e.balance, e.initial_balance,
                                           self._start_ts * 1_000_000, complete=complete,
                                           start_us=start or 0, end_us=end)
        usd = assets is None or wire.USD_ASSET["id"] in assets  # the one asset with a ledger here
        keyed = ((k, (k, t)) for k, t in entries if usd and t.kind in kinds)
        items, meta = _page(request, keyed, default_size=50, max_size=50)
        return _ok([wire.transaction_json(k, t) for k, t in items], meta)

    async def _change_margin(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self._product_from_body(body)
        raw = body.get("delta_margin")
        if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise bad_schema("delta_margin is required: a signed decimal string", "delta_margin")
        try:
            delta = Decimal(str(raw))
        except ArithmeticError:
            raise bad_schema("delta_margin must be a signed decimal string", "delta_margin") from None
        if not delta.is_finite():
            raise bad_schema("delta_margin must be a signed decimal string", "delta_margin")
        pid = m.spec.product_id
        pos = self.engine.change_margin(pid, delta)
        return _ok(wire.position_json(pos, m.spec, self.engine.position_margin(pid), self.engine.last_price(pid),
                                      self.engine.unrealized_pnl(pid)))

    def _leverage_json(self, pid: int) -> dict[str, Any]:
        return {"leverage": wire.s(self.engine.leverage(pid)), "order_margin": wire.s(self.engine.order_margin(pid)),
                "product_id": pid, "margin_mode": "isolated", "user_id": wire.USER_ID, "index_symbol": None}

    def _path_product(self, request: web.Request) -> int:
        try:
            pid = int(request.match_info["product_id"])
        except ValueError:
            raise bad_schema("product_id must be an integer", "product_id") from None
        return self._market_by_product_id(pid).spec.product_id

    async def _get_leverage(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return _ok(self._leverage_json(self._path_product(request)))

    async def _set_leverage(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        pid = self._path_product(request)
        raw = body.get("leverage")
        if raw is None or isinstance(raw, bool):
            raise bad_schema("leverage is required", "leverage")
        try:
            lev = Decimal(str(raw))
        except ArithmeticError:
            raise bad_schema("leverage must be a number", "leverage") from None
        if not lev.is_finite():
            raise bad_schema("leverage must be a number", "leverage")
        self.engine.set_leverage(pid, lev)
        return _ok(self._leverage_json(pid))

# ---- pure helpers -------------------------------------------------------------------------------

@web.middleware
async def _json_http_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Unknown paths and methods answer in Delta's envelope, not aiohttp's text page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
        return _err(code, {"path": request.path}, exc.status)


def _time_filter(request: web.Request, items: list[Any], attr: str) -> list[Any]:
    """start_time / end_time query filters, in µs like Delta's."""
    start = _query_int(request, "start_time", 0, 0, 10**17)
    end = _query_int(request, "end_time", 10**17, 0, 10**17)
    if start == 0 and end == 10**17:
        return items
    return [x for x in items if start <= getattr(x, attr) <= end]  # type: ignore[operator]


def _csv_choice(request: web.Request, key: str, allowed: Sequence[str]) -> set[str]:
    """A comma-separated query filter over `allowed` (absent or empty: all of them)."""
    raw = request.query.get(key, "")
    picked = {x.strip() for x in raw.split(",") if x.strip()}
    bad = picked - set(allowed)
    if bad:
        raise bad_schema(f"{key} must be a comma-separated subset of {','.join(allowed)}; "
                         f"got {','.join(sorted(bad))[:60]}", key)
    return picked or set(allowed)


def _order_kinds(request: web.Request) -> set[str]:
    """GET /v2/orders `order_types`: market, limit, stop_market, stop_limit; all_stop = both stops."""
    kinds = _csv_choice(request, "order_types", ("market", "limit", "stop_market", "stop_limit", "all_stop"))
    if "all_stop" in kinds:
        kinds |= {"stop_market", "stop_limit"}
    return kinds


def _query_int(request: web.Request, key: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        if default is None:
            raise bad_schema(f"{key} is required", key)
        return default
    try:
        val = int(raw)
    except ValueError:
        raise bad_schema(f"{key} must be an integer", key) from None
    if not lo <= val <= hi:
        raise bad_schema(f"{key} must be within [{lo}, {hi}]", key)
    return val


def _page(request: web.Request, keyed: Iterable[tuple[int, Any]], *, default_size: int,
          max_size: int) -> tuple[list[Any], dict[str, Any]]:
    size = _query_int(request, "page_size", default_size, 1, 10**6)
    assert size is not None
    cursors = []
    for name in ("after", "before"):
        raw = request.query.get(name)
        try:
            cursors.append(int(raw) if raw else None)
        except ValueError:
            raise bad_schema(f"{name} must be a cursor from a previous page", name) from None
    # Delta: a page_size above the maximum returns the maximum
    return wire.page_newest_first(keyed, after=cursors[0], before=cursors[1], size=min(size, max_size))


def _bars_between(m: _Market, start: int, end: int) -> list[tuple[int, float, float, float, float, float]]:
    """History bars, then completed live bars, then the forming one, with start <= time <= end."""
    h = m.history
    out: list[tuple[int, float, float, float, float, float]] = []
    ts = h.ts
    lo = int(ts.searchsorted(start, "left"))
    hi = int(ts.searchsorted(end, "right"))
    for i in range(lo, hi):
        out.append((int(ts[i]), float(h.open[i]), float(h.high[i]), float(h.low[i]), float(h.close[i]),
                    float(h.volume[i])))
    out.extend(b for b in m.live if start <= b[0] <= end)
    f = m.forming
    if f is not None and start <= m.bar[0] <= end:
        out.append((m.bar[0], f[0], f[1], f[2], f[3], f[4]))
    return out


def _day_stats(m: _Market, now_s: int) -> tuple[float | None, float, float, float]:
    """Rolling 24 h (open, high, low, volume): numpy over history, a loop over live bars only."""
    start = now_s - 86_400 + BAR_SECONDS
    h = m.history
    lo = int(h.ts.searchsorted(start, "left"))
    open_: float | None = float(h.open[lo]) if lo < len(h) else None
    high = float(h.high[lo:].max()) if lo < len(h) else -math.inf
    low = float(h.low[lo:].min()) if lo < len(h) else math.inf
    volume = float(h.volume[lo:].sum()) if lo < len(h) else 0.0
    for t, o, hi_, lo_, _, v in m.live:
        if t < start:
            continue
        if open_ is None:
            open_ = o
        high, low, volume = max(high, hi_), min(low, lo_), volume + v
    f = m.forming
    if f is not None:
        if open_ is None:
            open_ = f[0]
        high, low, volume = max(high, f[1]), min(low, f[2]), volume + f[4]
    return open_, high, low, volume


class _SavedClock(msgspec.Struct):
    """The one key of the saved account the venue reads itself (the engine ignores it)."""
    market_clock: MarketClock | None = None


def _with_clock(snapshot: bytes, clock: MarketClock) -> bytes:
    """The engine's snapshot (a JSON object) with the market clock as one more key, so the
    account and its clock are written together, atomically, in one file."""
    if not snapshot.endswith(b"}"):
        raise ValueError("the engine snapshot is not a JSON object")
    return snapshot[:-1] + b',"market_clock":' + msgspec.json.encode(clock) + b"}"


def _newest_event_us(engine: MatchingEngine) -> int:
    """The newest fill or order time the account holds (the journal may be ahead of the saved
    clock after a kill): the resumed clock starts after it."""
    newest = engine.fills[-1].timestamp if engine.fills else 0
    for o in engine.open_orders(None):
        newest = max(newest, o.updated_at, o.created_at)
    history = engine.order_history(None)
    if history:
        newest = max(newest, max(o.updated_at for o in history))
    return newest


def _journal_path(state_file: str) -> str:
    return state_file + ".journal"


def _write_private(path: Path, data: bytes) -> None:
    """Atomic write of a file only its owner may read (it holds secrets or the account)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)  # in case a stale tmp pre-existed with a wider mode
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written copy only takes the space a retry needs
        raise


def write_venue_json(run_dir: Path, venue: PaperVenue) -> Path:
    """<run dir>/venue.json, created with mode 0600 (it holds the paper secret)."""
    path = Path(run_dir) / "venue.json"
    _write_private(path, json.dumps({"rest_url": venue.rest_url, "ws_url": venue.ws_url,
                                     "public_ws_url": venue.public_ws_url,
                                     "api_key": venue.api_key, "api_secret": venue.api_secret}).encode())
    return path


def venue_main(port: int, run_dir: str | None, symbols: list[str],
               settings: VenueSettings | None = None) -> int:
    """Blocking entry for `orchestrate venue --port P --run-dir DIR`. Returns an exit code.
    With a run dir, the paper account lives in <run dir>/paper-account.json (unless the settings
    name another file), so running the venue again on that dir continues the same account."""
    base = settings or VenueSettings()
    settings = msgspec.structs.replace(base, port=port)
    if run_dir and settings.state_file is None:
        settings = msgspec.structs.replace(settings, state_file=str(Path(run_dir) / "paper-account.json"))
    try:
        venue = PaperVenue(settings, symbols or list(PAPER_PRODUCTS))
    except (UnknownSymbolError, ValueError) as exc:
        print(f"venue: {exc}", flush=True)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await venue.start()
        if run_dir:
            path = write_venue_json(Path(run_dir), venue)
            print(f"venue: paper key and secret written to {path} (mode 0600)", flush=True)
        # The ready line comes last: whoever waits for it can read venue.json at once.
        print(f"venue: REST {venue.rest_url}  websocket {venue.ws_url}  symbols {','.join(symbols)}", flush=True)
        try:
            await stop.wait()
        finally:
            await venue.stop()

    asyncio.run(run())
    return 0


__all__ = ["PaperVenue", "VenueSettings", "venue_main", "write_venue_json"]
