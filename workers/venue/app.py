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
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from shared.config import BarSeconds, Port
from shared.delta.constants import CANDLE_RESOLUTION_S as RESOLUTIONS
from shared.delta.constants import MAX_BATCH, PAPER_PUBLIC_PATH
from shared.delta.constants import MAX_CANDLES_PER_CALL as MAX_CANDLES
from shared.market_clock import CLOCKS, MarketClock
from shared.marketdata import (
    BAR_SECONDS,
)
from shared.matching import VenueError, bad_schema, dec
from shared.matching import protocol as wire
from shared.matching.engine import Event
from shared.products import (
    PAPER_PRODUCTS,
    UnknownSymbolError,
)
from workers.venue.account import AccountStore, write_private
from workers.venue.faults import FaultModel
from workers.venue.guard import (
    BODY,
    MAX_BODY_BYTES,
    EngineOpsLimit,
    Guard,
    RestHandler,
    ok,
    private,
    public,
)
from workers.venue.market import Market, MarketReplay, bars_between
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

    # ---- HTTP plumbing ----------------------------------------------------------------------
    def _routes(self, app: web.Application) -> None:
        r = app.router

        def pub(handler: Handler) -> RestHandler:
            async def wrapped(request: web.Request) -> web.Response:
                return await handler(request, request[BODY])
            return public(wrapped)

        def priv(handler: Handler) -> RestHandler:
            async def wrapped(request: web.Request) -> web.Response:
                return await handler(request, request[BODY])
            return private(wrapped)
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

    # ---- public endpoints -------------------------------------------------------------------
    async def _products(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        items = [wire.product_json(m.spec, self.engine.leverage(m.spec.product_id)) for m in self._markets_list]
        return ok(items, {"after": None, "before": None, "limit": 1000, "total_count": len(items)})

    async def _product(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self.replay.symbol_market(request.match_info["symbol"], 404)
        return ok(wire.product_json(m.spec, self.engine.leverage(m.spec.product_id)))

    async def _tickers(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok([self.ticker(m) for m in self._markets_list])

    async def _ticker_one(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok(self.ticker(self.replay.symbol_market(request.match_info["symbol"], 404)))

    async def _l2(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self.replay.symbol_market(request.match_info["symbol"], 404)
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
        return ok(out)

    async def _trades(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self.replay.symbol_market(request.match_info["symbol"], 404)
        rows = [{"buyer_role": b, "seller_role": "maker" if b == "taker" else "taker",
                 "price": wire.s(dec(p)), "size": sz, "symbol": m.symbol, "timestamp": ts}
                for p, sz, ts, b in reversed(m.recent)]
        return ok(rows)  # live shape: a flat array, newest first

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
        m = self.replay.symbol_market(sym)
        step = RESOLUTIONS[res]
        bars = bars_between(m, start - start % step, end)
        if step != 60:
            bars = wire.aggregate_bars(bars, step)
        bars = bars[-MAX_CANDLES:]
        return ok([{"time": t, "open": o, "high": h, "low": low, "close": c, "volume": v}
                    for t, o, h, low, c, v in bars])

    async def _settings(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok({"server_time": int(time.time() * 1_000_000), "paper": True,
                    "market_time": self.market_us})

    async def _assets(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok(wire.assets_json(m.spec for m in self._markets_list))

    async def _indices(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok([wire.index_json(m.spec) for m in self._markets_list])

    # ---- private endpoints ------------------------------------------------------------------
    async def _place(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self.replay.product_from_body(body)
        req = wire.order_request(body, m.spec.product_id)
        self.engine_ops.charge(m.spec.product_id)
        self.faults.maybe_reject()
        return ok(wire.order_json(self.engine.place_order(req)))

    async def _edit(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        oid = wire.int_field(body, "id")
        assert oid is not None
        return ok(wire.order_json(self._edit_one(oid, body)))

    def _edit_one(self, oid: int, body: Mapping[str, Any], *, batch: bool = False) -> Any:
        existing = self.engine.order(oid)
        if existing is None or existing.state not in ("open", "pending"):
            raise VenueError("open_order_not_found", {"id": oid}, 404)
        if batch:  # Delta batches are limit orders only
            if existing.state == "pending":
                raise bad_schema(f"order {oid} is a pending stop order: edit it with PUT /v2/orders", "id")
            if body.get("stop_price") not in (None, ""):
                raise bad_schema("stop_price is not allowed in a batch edit", "stop_price")
        self.engine_ops.charge(existing.product_id)
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
        return ok(wire.order_json(order))

    async def _cancel_all(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        """With any of the three cancel_* flags in the body only the kinds flagged true are
        cancelled (an absent one counts as false); with none of them, every kind is (the api
        spec's reading; sources disagree on the server default, so clients send all three)."""
        pid = wire.int_field(body, "product_id", required=False)
        if pid is not None:
            self.replay.market_by_product_id(pid)
        keys = ("cancel_limit_orders", "cancel_stop_orders", "cancel_reduce_only_orders")
        given = any(k in body for k in keys)
        limit, stop, reduce_only = (wire.flag(body, k) if given else True for k in keys)
        self.engine.cancel_all(pid, limit_orders=limit, stop_orders=stop, reduce_only_orders=reduce_only)
        return ok({})  # recorded live answer (CCXT cancelAllOrders sample): {"result":{},"success":true}

    def _batch_market(self, body: Mapping[str, Any]) -> tuple[Market, list[Any]]:
        m = self.replay.product_from_body(body)
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
        return ok(done)

    async def _batch_create(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m, items = self._batch_market(body)
        pid = m.spec.product_id
        reqs = [wire.order_request({**o, "time_in_force": "gtc"}, pid, stops_allowed=False) for o in items]
        self.engine_ops.charge(pid, len(reqs))

        def place(req: Any) -> Any:
            self.faults.maybe_reject()
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
        return ok([wire.order_json(o) for o in items], meta)

    async def _order_history(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        kinds = _order_kinds(request)
        done = [o for o in self.engine.order_history(self._product_ids(request)) if wire.order_kind(o) in kinds]
        orders = sorted(_time_filter(request, done, "created_at"), key=lambda o: -o.id)
        items, meta = _page(request, [(o.id, o) for o in orders], default_size=50, max_size=50)
        return ok([wire.order_json(o) for o in items], meta)

    async def _order_by_id(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        try:
            oid = int(request.match_info["order_id"])
        except ValueError:
            raise bad_schema("order id must be an integer", "order_id") from None
        o = self.engine.order(oid)
        if o is None:
            raise VenueError("open_order_not_found", {"id": oid}, 404)
        return ok(wire.order_json(o))

    async def _order_by_coid(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        coid = request.match_info["coid"]
        o = self.engine.order_by_client_id(coid)
        if o is None:
            raise VenueError("open_order_not_found", {"client_order_id": coid}, 404)
        return ok(wire.order_json(o))

    async def _position(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        raw = request.query.get("product_id")
        if raw:
            try:
                pid = int(raw)
            except ValueError:
                raise bad_schema("product_id must be an integer", "product_id") from None
            pos = self.engine.position(self.replay.market_by_product_id(pid).spec.product_id)
            return ok({"size": pos.size, "entry_price": wire.s(pos.entry_price), "timestamp": self.market_us})
        und = request.query.get("underlying_asset_symbol")
        if not und:
            raise bad_schema("product_id is required", "product_id")
        out = [{"product_id": m.spec.product_id, "product_symbol": m.symbol,
                "size": self.engine.position(m.spec.product_id).size,
                "entry_price": wire.s(self.engine.position(m.spec.product_id).entry_price)}
               for m in self._markets_list if m.spec.underlying_asset == und]
        return ok(out)

    async def _margined(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        wanted = self._product_ids(request)
        out = []
        for pos in self.engine.positions():
            if wanted is not None and pos.product_id not in wanted:
                continue
            pid = pos.product_id
            out.append(wire.position_json(pos, self.engine.product(pid), self.engine.position_margin(pid),
                                          self.engine.last_price(pid), self.engine.unrealized_pnl(pid)))
        return ok(out)

    async def _balances(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        w = self.engine.wallet()
        return ok([wire.wallet_json(w)], wire.wallet_meta(w))

    async def _fills(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        wanted = self._product_ids(request)
        fills = [f for f in reversed(self.engine.fills) if wanted is None or f.product_id in wanted]
        fills = _time_filter(request, fills, "timestamp")
        items, meta = _page(request, [(f.seq, f) for f in fills], default_size=50, max_size=50)
        return ok([wire.fill_json(f, self.engine.product(f.product_id), self.engine.order(f.order_id))
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
        return ok([wire.transaction_json(k, t) for k, t in items], meta)

    async def _change_margin(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        m = self.replay.product_from_body(body)
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
        return ok(wire.position_json(pos, m.spec, self.engine.position_margin(pid), self.engine.last_price(pid),
                                      self.engine.unrealized_pnl(pid)))

    def _leverage_json(self, pid: int) -> dict[str, Any]:
        return {"leverage": wire.s(self.engine.leverage(pid)), "order_margin": wire.s(self.engine.order_margin(pid)),
                "product_id": pid, "margin_mode": "isolated", "user_id": wire.USER_ID, "index_symbol": None}

    def _path_product(self, request: web.Request) -> int:
        try:
            pid = int(request.match_info["product_id"])
        except ValueError:
            raise bad_schema("product_id must be an integer", "product_id") from None
        return self.replay.market_by_product_id(pid).spec.product_id

    async def _get_leverage(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return ok(self._leverage_json(self._path_product(request)))

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
        return ok(self._leverage_json(pid))

# ---- pure helpers -------------------------------------------------------------------------------

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
