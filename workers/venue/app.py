"""The paper venue's composition root: builds the pieces, wires them into one aiohttp app, and
runs their lifecycle (start, the fault restarts, stop with a final save).

The pieces (one kind of knowledge each): settings.py (VenueSettings), account.py (snapshot +
journal: AccountStore), market.py (the market replay and clock: MarketReplay), faults.py
(FaultModel), guard.py (auth, rate limits, envelopes as middlewares), rest.py (the REST v2
handlers on a RouteTableDef), ws.py (the websocket hub, /ws and the compact /public path). The
trading logic is in shared/matching (engine + wire shapes); Delta's constants in
shared/delta/constants.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import secrets
import signal
import socket
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from shared.delta.constants import PAPER_PUBLIC_PATH
from shared.market_clock import MarketClock
from shared.matching.engine import Event
from shared.products import PAPER_PRODUCTS, UnknownSymbolError
from workers.venue.account import AccountStore, write_private
from workers.venue.deadman import DEADMAN, VenueDeadman, deadman_routes
from workers.venue.faults import FaultModel
from workers.venue.guard import MAX_BODY_BYTES, EngineOpsLimit, Guard
from workers.venue.live_feed import LiveFeed
from workers.venue.market import Market, MarketReplay
from workers.venue.rest import VENUE, rest_routes
from workers.venue.settings import VenueSettings
from workers.venue.ws import WsHub


class PaperVenue:
    def __init__(self, settings: VenueSettings, symbols: Sequence[str], *, api_key: str | None = None,
                 api_secret: str | None = None, live: LiveFeed | None = None,
                 listener: socket.socket | None = None) -> None:
        """Keys are generated per run unless given (a supervisor that restarts the venue keeps
        them, so clients find the same account credentials again). `live`: a prepared live-prices
        feed drives the market instead of the replay (its specs list the products). `listener`: a
        bound socket to serve on instead of binding `settings.port` (the supervisor holds the
        embedded venue's for the whole run, so its port is never free for another program)."""
        self._listener = listener
        if live is not None:
            settings = msgspec.structs.replace(settings, products={**settings.products, **live.specs})
        self.settings = settings
        self.live = live
        self.api_key = api_key or secrets.token_hex(16)
        self.api_secret = api_secret or secrets.token_hex(32)
        self.account = AccountStore(settings.state_file)
        self.replay = MarketReplay(settings, self.account, symbols, live.history if live is not None else None)
        self.engine = self.replay.engine
        self.account.open_journal(self.engine, self.replay.market_clock(), self.replay.next_bar)
        self.faults = FaultModel(settings)
        self.guard = Guard(self, rate_limit_units=settings.rate_limit_units,
                           rate_limit_window_s=settings.rate_limit_window_s)
        self.engine_ops = EngineOpsLimit(settings.engine_ops_per_s)
        self.ws = WsHub(self)
        self.replay.ws = self.ws
        self.deadman = VenueDeadman(self, settings.state_file)  # Delta's heartbeat endpoints
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
    def _start_ts(self) -> int:
        return self.replay.origin_ts

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

    def funding_rate(self, m: Market) -> tuple[Decimal, int, int]:
        return self.replay.funding_rate(m)

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
        return self.account.save(self.engine, self.replay.market_clock(), self.replay.next_bar, final=final)

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
        market = self.live.run(self.replay) if self.live is not None else self.replay.run()
        self._tasks.append(asyncio.create_task(market, name="venue-live-prices" if self.live else "venue-replay"))
        self._tasks.append(asyncio.create_task(self.deadman.run(), name="venue-deadman"))
        for name, loop in self.faults.timers(self.ws.drop_all, self.restart):
            self._tasks.append(asyncio.create_task(loop(), name=name))
        if self.settings.state_file:
            self._tasks.append(asyncio.create_task(self._saver(), name="venue-save"))

    async def _serve_http(self, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=self.guard.middlewares)
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        # A served socket is closed with its site: a copy, so the held one serves again after go_down.
        site: web.BaseSite = web.SockSite(self._runner, self._listener.dup()) if self._listener is not None \
            else web.TCPSite(self._runner, self.settings.host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._close_http()
            if exc.errno == errno.EADDRINUSE:
                raise VenuePortInUse(f"{self.settings.host}:{port} is already in use") from None
            raise
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
        app[DEADMAN] = self.deadman
        app.router.add_routes(deadman_routes)
        app.router.add_get("/ws", self.ws.handle)
        app.router.add_get(PAPER_PUBLIC_PATH, self.ws.handle_public)


class VenuePortInUse(OSError):
    """The venue's port is taken by another program (or another venue)."""


def write_venue_json(run_dir: Path, venue: PaperVenue) -> Path:
    """<run dir>/venue.json, created with mode 0600 (it holds the paper secret)."""
    path = Path(run_dir) / "venue.json"
    write_private(path, json.dumps({"rest_url": venue.rest_url, "ws_url": venue.ws_url,
                                    "public_ws_url": venue.public_ws_url,
                                    "api_key": venue.api_key, "api_secret": venue.api_secret}).encode())
    return path


def read_venue_json(run_dir: Path) -> dict[str, str]:
    """What `write_venue_json` wrote: the running venue's URLs and key. ValueError, saying what to
    do, when there is none or it cannot be read."""
    path = Path(run_dir) / "venue.json"
    try:
        doc = json.loads(path.read_text())
        if not all(isinstance(doc.get(k), str) and doc[k] for k in ("rest_url", "api_key", "api_secret")):
            raise ValueError("rest_url, api_key or api_secret missing")
    except (OSError, ValueError) as exc:
        raise ValueError(f"no paper venue found through {path} ({exc}); start one first: "
                         f"orchestrate venue --run-dir {run_dir}") from None
    return {k: str(v) for k, v in doc.items()}


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

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await venue.start()
        except VenuePortInUse as exc:
            await venue.stop()  # the account file is closed as it was found
            print(f"orchestrate venue: --port {port}: {exc} (another venue or program listens there); "
                  "pick another port, or --port 0 for any free one", file=sys.stderr, flush=True)
            return 2
        if run_dir:
            path = write_venue_json(Path(run_dir), venue)
            print(f"venue: paper key and secret written to {path} (mode 0600)", flush=True)
        # The ready line comes last: whoever waits for it can read venue.json at once.
        print(f"venue: REST {venue.rest_url}  websocket {venue.ws_url}  symbols {','.join(symbols)}", flush=True)
        try:
            await stop.wait()
        finally:
            await venue.stop()
        return 0

    return asyncio.run(run())


__all__ = ["PaperVenue", "VenuePortInUse", "VenueSettings", "read_venue_json", "venue_main", "write_venue_json"]
