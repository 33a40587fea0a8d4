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
  /ws      see ws.py; /public: the compact public channels (India's public host)
The recorded Delta samples these shapes are held to: tests/fixtures/delta (contract suite).
Auth order: no headers -> 401 {"error":"unauthorized"}; wrong key -> invalid_api_key; timestamp
outside 5 s -> expired_signature {request_time, server_time}; signature over the exact bytes
received -> invalid_signature. Rate limits: weighted fixed window per key (per IP when public),
and 500 engine ops/s per product (cancels exempt); both answer 429 + X-RATE-LIMIT-RESET (ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import signal
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from shared.config import BarSeconds, Port
from shared.delta.constants import PAPER_PUBLIC_PATH
from shared.market_clock import CLOCKS, MarketClock
from shared.marketdata import (
    BAR_SECONDS,
)
from shared.matching.engine import Event
from shared.products import (
    PAPER_PRODUCTS,
    UnknownSymbolError,
)
from workers.venue.account import AccountStore, write_private
from workers.venue.faults import FaultModel
from workers.venue.guard import (
    MAX_BODY_BYTES,
    EngineOpsLimit,
    Guard,
)
from workers.venue.market import Market, MarketReplay
from workers.venue.rest import VENUE, rest_routes
from workers.venue.ws import WsHub

log = logging.getLogger(__name__)



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


Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.Response]]


class PaperVenue:
    def __init__(self, settings: VenueSettings, symbols: Sequence[str], *, api_key: str | None = None,
                 api_secret: str | None = None) -> None:
        """Keys are generated per run unless given (a supervisor that restarts the venue keeps
        them, so clients find the same account credentials again)."""
        self.settings = settings
        self.api_key = api_key or secrets.token_hex(16)
        self.api_secret = api_secret or secrets.token_hex(32)
        self.account = AccountStore(settings.state_file)
        self.replay = MarketReplay(settings, self.account, symbols)
        self.engine = self.replay.engine
        self.account.open_journal(self.engine, self.replay.market_clock(), self.replay._next_bar)
        self.faults = FaultModel(settings)
        self.guard = Guard(self, rate_limit_units=settings.rate_limit_units,
                           rate_limit_window_s=settings.rate_limit_window_s)
        self.engine_ops = EngineOpsLimit(settings.engine_ops_per_s)
        self.ws = WsHub(self)
        self.replay.ws = self.ws
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.rest_url = ""
        self.ws_url = ""
        self.public_ws_url = ""  # the compact public channels, as India's public host serves them
        self.port = 0

    @property
    def requests_served(self) -> int:
        """REST requests answered, any status."""
        return self.guard.requests_served

    @property
    def requests_refused(self) -> int:
        """Of which 4xx/5xx (auth, validation, rejections, limits, faults)."""
        return self.guard.requests_refused

    def publish_engine_events(self) -> None:
        self.ws.publish_engine_events()

    # ---- the market (market.py), as the hub and the handlers see it --------------------------
    @property
    def market_us(self) -> int:
        return self.replay.market_us

    @property
    def markets(self) -> dict[str, Market]:
        return self.replay.markets

    @property
    def _markets_list(self) -> list[Market]:
        return self.replay._markets_list

    @property
    def _start_ts(self) -> int:
        return self.replay._start_ts

    @property
    def ticks_replayed(self) -> int:
        return self.replay.ticks_replayed

    def market(self, symbol: str, *, may_list: bool = True) -> Market:
        return self.replay.market(symbol, may_list=may_list)

    def ticker(self, m: Market) -> dict[str, Any]:
        return self.replay.ticker(m)

    def book(self, m: Market, depth: int) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
        return self.replay.book(m, depth)

    def candle_frame(self, m: Market, ts: int) -> dict[str, Any]:
        return self.replay.candle_frame(m, ts)

    def market_clock(self) -> MarketClock:
        return self.replay.market_clock()

    @property
    def storage_error(self) -> str:
        """Why the account cannot be written ("" when fine): order actions answer 503 meanwhile."""
        return self.account.storage_error

    def journal(self, events: list[Event]) -> None:
        self.account.journal(events)

    def flush_journal(self) -> bool:
        return self.account.flush()

    def save_account(self, *, final: bool = False) -> bool:
        return self.account.save(self.engine, self.replay.market_clock(), self.replay._next_bar, final=final)

    async def _saver(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state_save_interval_s)
            self.save_account()

    # ---- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        await self._serve_http(self.settings.port)
        self.rest_url = f"http://{self.settings.host}:{self.port}"
        self.ws_url = f"ws://{self.settings.host}:{self.port}/ws"
        self.public_ws_url = f"ws://{self.settings.host}:{self.port}{PAPER_PUBLIC_PATH}"
        self._tasks.append(asyncio.create_task(self.replay.run(), name="venue-replay"))
        for name, loop in self.faults.timers(self.ws.drop_all, self.restart):
            self._tasks.append(asyncio.create_task(loop(), name=name))
        if self.settings.state_file:
            self._tasks.append(asyncio.create_task(self._saver(), name="venue-save"))

    async def _serve_http(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=self.guard.middlewares)
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
        self.account.close()

    # ---- HTTP -------------------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        app[VENUE] = self
        app.router.add_routes(rest_routes)
        app.router.add_get("/ws", self.ws.handle)
        app.router.add_get(PAPER_PUBLIC_PATH, self.ws.handle_public)

def write_venue_json(run_dir: Path, venue: PaperVenue) -> Path:
    """<run dir>/venue.json, created with mode 0600 (it holds the paper secret)."""
    path = Path(run_dir) / "venue.json"
    write_private(path, json.dumps({"rest_url": venue.rest_url, "ws_url": venue.ws_url,
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
