"""Gateway, exchange mode: the one owner of the account's Delta session (paper venue or live).

One REST client (one weighted rate limiter for the account) and the account's websocket
(orders, user_trades). Market data comes from the venue's public host where it has one (India
since 2026-04-17, and the paper venue's /public path, so every paper run takes the live India
path): compact `trades` there; where the venue has none (Global), or the public host refuses
`trades`, from legacy `all_trades` on the main socket. A symbol the public host goes quiet on
is taken from `all_trades` on the main socket until the public host speaks again; a symbol quiet
on its feeding socket is polled over REST. Publishes ticks, order updates and fills to workers by
symbol; answers history, account snapshot and order-intent requests; sends fills to the supervisor
for the SQLite ledger.

Fills come from REST `/v2/fills` (the ledger with commissions), fetched when the websocket says a
trade of ours happened and polled every few seconds anyway: a quiet socket is never read as "no
fills". They are read in the venue's own order, newest page back to the fills already known
(shared/trading/fill_cursor.py), never by time: no clock can make the gateway skip one. A REST
fill names its order only by order_id; the gateway adds the order's client order id (the bots'
name for it) from a bounded map or a lookup (shared/delta/client_ids.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypedDict

import aiohttp
import msgspec
import numpy as np
import zmq
import zmq.asyncio

from shared.config import secrets_from_env
from shared.delta.client_ids import ClientIds, order_id_number
from shared.delta.constants import TRAILING_STOP_ORDER_TYPE, signed_trail_amount
from shared.delta.errors import DeltaError, OrderNotFound, RateLimited, ResponseShapeError
from shared.delta.history_reads import HISTORY_BUDGET_WAIT_S, ReadAskers, venue_clock_us
from shared.delta.models import Fill as DeltaFill
from shared.delta.models import Order, WalletBalance
from shared.delta.order_reading import UNDOCUMENTED_ANSWER, OrderRereads, UndocumentedOrder, read_ours_tolerantly
from shared.delta.ratelimit import (
    INTENT_CHARGE,
    PACE_SLACK_SHARE,
    IntentBudgetTally,
    IntentCharge,
    LimiterBusy,
    Priority,
    SymbolShares,
    charged_to,
    endpoint_weight,
    fill_read_wait,
    order_units,
    pace_wait_s,
    quote_verdict,
)
from shared.delta.rest import MAX_IDS_PER_QUERY, DeltaRestClient, NewOrder, OrderEdit
from shared.delta.venues import resolve_venue
from shared.delta.ws import (
    Connected,
    DeltaWebSocket,
    Disconnected,
    OrderSnapshot,
    OrderUpdate,
    Subscribed,
    TradeEvent,
    UserTrade,
)
from shared.latency import LatencyHistogram
from shared.marketdata import BAR_SECONDS
from shared.messages import (
    AccountRequest,
    AccountSnapshot,
    FillEvent,
    GatewayFigures,
    HistoryReply,
    HistoryRequest,
    IntentResult,
    MessageCodec,
    NewOrderSpec,
    OrderEvent,
    OrderIntents,
    OrderRecord,
    Tick,
    topic,
)
from shared.products import ProductSpec, UnknownSymbolError
from shared.symbol_settings import symbol_settings
from shared.trading import client_order_id as coid
from shared.trading.fill_cursor import FillScan, KnownFills
from shared.trading.orders import ORDER_KINDS, ORDER_STATES, SIDES, OpenOrder
from shared.trading.pnl import Fill

from .gateway import MarketDataOut
from .gateway_deadman import DeadmanKeeper, operator_stopped
from .gateway_funding import FundingReader
from .gateway_resync import REST_FAILURES, Resyncer
from .runtime import (
    ChildSpec,
    LoopLagMonitor,
    LoopSocket,
    gateway_sockets,
    heartbeat_socket,
    install_stop_signals,
    leave_interrupt_to_supervisor,
    run_until_stopped,
    send_heartbeat,
    send_nowait,
    supervisor_alive,
)

log = logging.getLogger("gateway")
ACCOUNT_POLL_S = 2.0
BALANCES_REUSE_S = 2.5  # a bot's regular re-read takes the equity poll's balances up to this old
SEEN_FILLS_MAX = 50_000
EMPTY_LEDGER_HISTORY_S = 60.0  # live, empty ledger: fills older than this at start are history
MAX_INFLIGHT_REQUESTS = 16  # per lane, executed at once (below the rate limiter's waiting bound)
# The read lanes (history, account) execute fewer at once: the venue answers requests in the order
# they arrive, so at start-up (every bot's history and reconciliation at once) an order request
# queued behind 32 reads waited for all of them. Reads are bound by the venue's and the gateway's
# CPU, not by how many are in flight, so fewer at once costs them little.
MAX_INFLIGHT_READS = 4
MAX_QUEUED_REQUESTS = 5_000  # worker requests accepted and waiting for a lane
REREAD_POLL_S = 0.2  # how often orders in doubt are looked at for a read back (order_reading.OrderRereads)
LOOKUP_ATTEMPTS = 3  # fill polls a fill waits on a failing order lookup before it is stored without
LOOKUPS_FAILING_MAX = 1_000
ORDER_PATH_LOG_S = 30.0  # how often the gateway logs where an order intent's time went
HISTORY_RETRY_MIN_S = 0.25  # a history read refused for budget goes again no sooner than this


def bot_kind_and_price(order_type: str | None, stop_order_type: str | None, limit_price: float | None,
                       stop_price: float | None) -> tuple[str, float]:
    """Delta marks a stop by `stop_order_type` on a market or limit order; the bots name the
    kinds apart, and a stop's price is its trigger (edited by stop_price)."""
    if not stop_order_type:
        return order_type or "limit_order", float(limit_price or 0.0)
    limit = order_type == "limit_order" or (order_type is None and limit_price is not None)
    return ("stop_limit_order" if limit else "stop_market_order"), float(stop_price or 0.0)


def domain_order(o: Order | OrderUpdate, symbol: str, known_client_order_id: str | None = None) -> OpenOrder:
    """Delta's wire order (a REST order or an orders-channel update) as the trading library's
    OpenOrder: the one place an order is mapped (the worker, the bot and the order ledger take it
    as is). The channel does not repeat `order_type` or `reduce_only` on every update
    (UNCONFIRMED), so a stop is recognised by its stop fields. An answer without a side or a
    client order id (an update may leave out what did not change: UNCONFIRMED) keeps the order:
    `known_client_order_id` (what the gateway learned for it) stands in for the id, and a client
    order id in our scheme names the side. ValueError for an order no OpenOrder can hold
    (no side to be found, a kind or state Delta does not document): the caller drops and counts
    it, so one odd order never costs the worker the rest of its message. An order of ours is never
    dropped: UndocumentedOrder carries its nearest safe reading."""
    if isinstance(o, Order):
        order_id, state, trailing = o.id, o.state or "open", o.trail_amount is not None
    else:
        order_id = o.order_id or 0
        state = o.state or ("cancelled" if o.action == "delete" else "open")
        trailing = o.trail_amount is not None or o.trail_extreme is not None
    kind, price = bot_kind_and_price(o.order_type, o.stop_order_type, o.limit_price, o.stop_price)
    cid = o.client_order_id or known_client_order_id or None
    side = o.side if o.side in SIDES else (tag.side if (tag := coid.parse(cid)) is not None else None)
    if side is None:
        raise ValueError(f"order {order_id}: side {o.side!r} and no client order id of ours to tell it")
    undocumented = None if kind in ORDER_KINDS and state in ORDER_STATES else coid.parse(cid)
    if undocumented is not None:  # ours: never dropped, read at the nearest safe reading (order_reading.py)
        kind, state = read_ours_tolerantly(kind, state, purpose=undocumented.purpose, deleted=not isinstance(
            o, Order) and o.action == "delete", has_limit_price=o.limit_price is not None)
    if kind not in ORDER_KINDS:
        raise ValueError(f"order {order_id}: order type {kind!r} is none Delta documents")
    if state not in ORDER_STATES:
        raise ValueError(f"order {order_id}: state {state!r} is none Delta documents")
    view = OpenOrder(order_id=int(order_id), symbol=symbol, side=side, price=price,
                     size=int(o.size or 0), unfilled_size=int(o.unfilled_size or 0), client_order_id=cid,
                     order_type=kind, reduce_only=bool(o.reduce_only), trailing=trailing,
                     state=state)
    if undocumented is not None:
        raise UndocumentedOrder(f"order {order_id} ({cid}): Delta says order type {o.order_type!r}, stop "
                                f"{o.stop_order_type!r}, state {o.state!r}", view)
    return view


def domain_fill(f: DeltaFill, symbol: str, contract_value: float) -> Fill:
    """Delta's wire fill as the trading library's Fill: the one place a fill is mapped (worker,
    ledger, PnL, dashboard and alerts take this as is). ValueError for a fill no book can hold
    (no id, a side other than buy/sell, size or price not > 0)."""
    ts_us = f.created_us or 0
    if f.side not in ("buy", "sell"):
        raise ValueError(f"fill {f.id}: side must be buy or sell, got {f.side!r}")
    return Fill(fill_id=str(f.id), symbol=symbol, order_id=str(f.order_id or ""),
                client_order_id=f.client_order_id or "", side="buy" if f.side == "buy" else "sell", size=int(f.size),
                price=repr(float(f.price)), fee=repr(float(f.commission or 0.0)),
                contract_value=repr(contract_value), role=f.role or "", ts=ts_us / 1e6)


async def _many(call: Awaitable[list[Order | DeltaError] | Order], n: int = 1) -> list[Order | Exception]:
    """The per-order results of a call for `n` orders (a single order's call: n = 1), or its
    one failure (a refusal, a bad argument, a full rate-limiter queue) as every order's result."""
    try:
        got = await call
    except Exception as exc:
        return [exc] * n
    return [got] if isinstance(got, Order) else list(got)


def _err_text(key: str, exc: BaseException) -> str:
    code = getattr(exc, "code", type(exc).__name__)
    return f"{key}: {code}: {str(exc)[:160]}"


class LinkFigures(TypedDict):
    """The gateway's part of GatewayFigures for the supervisor's alerts and metrics."""
    ws_down_s: float
    rate_budget_left: float
    rate_budget_capacity: float
    rate_units_by_kind: dict[str, int]  # the account's units spent since start, by what they bought
    rate_requests_waiting: int  # requests waiting for budget now
    intents: int  # order intents executed since start; of them, those that waited for budget
    intents_budget_waited: int
    intents_budget_wait_s: float
    intents_budget_wait_max_s: float
    intents_budget_refused: int  # ...and those whose quotes were refused: the budget would come too late


class ExchangeGateway:
    def __init__(self, spec: ChildSpec, conn: dict[str, str]) -> None:
        self.spec = spec
        self.cfg = spec.config
        self.codec = MessageCodec(spec.name)
        self.conn = conn
        self.rest = DeltaRestClient(conn["rest_url"], conn["api_key"], conn["api_secret"])
        self.ws: DeltaWebSocket | None = None
        self.public_ws: DeltaWebSocket | None = None  # the venue's public host, if it has one
        self.market_ws: DeltaWebSocket | None = None  # whichever socket feeds the trades now
        self.market_channel = ""  # "trades@public" or "all_trades" (status)
        self.public_closing: asyncio.Task[None] | None = None
        self.refusals_logged: set[str] = set()  # "socket:channel" refused, said once
        self.legacy_for: set[str] = set()  # symbols on all_trades while the public host is quiet on them
        self.products: dict[str, ProductSpec] = {}
        self.by_product: dict[int, str] = {}
        self.seqs: dict[str, int] = collections.defaultdict(int)
        self.epoch = time.time_ns()
        # Fills the ledger has (the newest the store held at start) or was handed since.
        self.known_fills = KnownFills(reversed(spec.stored_fill_ids))  # oldest first: evicted first
        self.fill_floor_us: int | None = None
        self.fills_unread = 0  # fills a scan could not reach (beyond its page bound), logged
        self.position_unreadable: set[str] = set()  # symbols whose position read failed (logged once)
        self.fill_wakeup = asyncio.Event()
        self.ticks = 0
        self.requests = 0
        self.rest_errors = 0
        self.equity = math.nan
        self.position_notional: dict[str, float] = {}
        self.available = math.nan
        self.balances_read: tuple[float, list[WalletBalance]] = (-math.inf, [])  # (monotonic, the equity poll's)
        # The account's orders or fills changed (an intent executed, an order event or a fill heard) at
        # this monotonic time, and order intents executing now: balances read before are not reused.
        self.account_changed_at = -math.inf
        self.intents_executing = 0
        self.marks: dict[str, float] = {}
        self.records_dropped = 0
        self.orders_dropped = 0  # venue orders no OpenOrder can hold (domain_order), not handed on
        self.orders_undocumented: collections.Counter[str] = collections.Counter()  # ours, by symbol
        self.rereads = OrderRereads()  # ours the socket reported in an undocumented state: read back (reread_loop)
        # A cancel is heard twice (REST answer, orders channel), in either order: record it once.
        self.cancels_recorded: collections.OrderedDict[int, None] = collections.OrderedDict()
        # Delta's REST fills name only their order_id; the bots know their fills by client order id.
        self.client_ids = ClientIds()
        self.fills_unresolved = 0  # fills handed on without a client order id (order not found)
        self.ws_down_since: float | None = None  # monotonic time the account socket dropped (alerts)
        self.lookups_failing: collections.OrderedDict[str, int] = collections.OrderedDict()  # order id -> polls
        self.funding: FundingReader | None = None  # the wallet ledger's funding entries (after start)
        # Where an order intent's time goes, per hop: worker -> gateway until its execution
        # starts (ZeroMQ, the request loop, the orders lane), and the execution (rate limiter,
        # HTTP to the venue and back); the worker's order_rtt is the whole round trip.
        self.intent_wait = LatencyHistogram()
        self.intent_exec = LatencyHistogram()
        self.intent_hop = LatencyHistogram()  # worker sent -> the gateway's request loop read it
        self.intent_lane = LatencyHistogram()  # read -> a slot in the orders lane
        self.order_path_logged = time.monotonic()
        self.intent_budget = IntentBudgetTally()  # order intents that waited for, or were refused, rate budget
        self.shares = SymbolShares(max(1, len(spec.symbols)))  # each symbol's share of the budget for quotes
        self.pace_slack_share = PACE_SLACK_SHARE  # of the window quotes may spend ahead of an even pace
        self.refusals_unsent = 0  # quotes refused unsent since start (logged at 1, 2, 4, 8...)
        self.refusals_logged_at = 0
        self.resync = Resyncer(self)  # what the socket lost, read back over REST (workers/gateway_resync.py)
        # Start-up history (shared/delta/history_reads.py): one read per symbol for every worker
        # asking, the venue's clock from the newest trade heard (exchange µs, monotonic s); and a
        # bot's repeated account read joins its read still waiting for a slot.
        self.history_askers = ReadAskers(max(1, len(spec.symbols)))
        self.account_askers = ReadAskers(max(1, 2 * len(spec.symbols)))  # a full read and a re-read a bot
        self.trade_heard: tuple[int, float] | None = None
        self.history_budget_waits = 0  # history reads refused for budget that waited and went again

    async def start(self, pub: MarketDataOut | zmq.asyncio.Socket, sup: zmq.Socket) -> None:
        self.pub, self.sup = pub, sup
        self.products = await self.rest.resolve_symbols(self.spec.symbols)
        self.by_product = {p.product_id: s for s, p in self.products.items()}
        # Fills newer than those in our ledger are news, including those made while we were
        # down (take-profits resting overnight). With an empty ledger on a live account, fills
        # older than a minute are history the workers read in their reconciliation (a live
        # venue's clock is the wall's); a paper account lives in the run dir with its ledger,
        # so there every fill is news. The store drops repeats by id.
        if not self.spec.stored_fill_ids and self.spec.venue_access is None:
            self.fill_floor_us = int((time.time() - EMPTY_LEDGER_HISTORY_S) * 1e6)
        self.funding = FundingReader(self.rest.get_wallet_transactions_page, sup, self.codec, self.by_product,
                                     self.spec.stored_funding_ids, live=self.spec.venue_access is None,
                                     stored_fill_ids=self.spec.stored_fill_ids)
        stale_s = max(10.0, 10 * self.cfg.market.bar_seconds)
        self.ws = DeltaWebSocket(self.conn["ws_url"], self.conn["api_key"], self.conn["api_secret"],
                                 on_event=self.on_main_event, stale_after_s=stale_s)
        public = self.conn.get("public_ws_url")
        if public:
            self.public_ws = DeltaWebSocket(public, on_event=self.on_public_event, stale_after_s=stale_s)
            await self.public_ws.subscribe("trades", list(self.spec.symbols))
            self.market_ws, self.market_channel = self.public_ws, "trades@public"
        else:
            await self.ws.subscribe("all_trades", list(self.spec.symbols))
            self.market_ws, self.market_channel = self.ws, "all_trades"
        await self.ws.subscribe("orders", ["all"])
        await self.ws.subscribe("user_trades", ["all"])
        await self.ws.start()
        if self.public_ws is not None:
            await self.public_ws.start()

    async def stop(self) -> None:
        if self.public_ws is not None:
            await self.public_ws.stop()
        if self.ws is not None:
            await self.ws.stop()
        await self.rest.close()

    # --- websocket events -----------------------------------------------------------------

    async def on_public_event(self, ev: Any) -> None:
        """The public host's events. If it refuses `trades`, say so once in the venue's words and
        take the trades from the legacy channel on the main socket instead."""
        await self.resync.on_event(self.public_ws, ev)
        if isinstance(ev, Subscribed):
            self.log_refusals("public", ev)
            refused = next((c for c in ev.channels if c.get("name") == "trades" and c.get("error")), None)
            if refused is not None and self.market_ws is self.public_ws and self.ws is not None:
                log.warning("taking trades from all_trades on the main socket instead")
                self.market_ws, self.market_channel = self.ws, "all_trades (public refused trades)"
                await self.ws.subscribe("all_trades", list(self.spec.symbols))
                if self.public_ws is not None:  # not from inside its own callback: in a task
                    self.public_closing = asyncio.create_task(self.public_ws.stop())
            return
        if self.market_ws is not self.public_ws:
            return
        if isinstance(ev, TradeEvent) and ev.symbol in self.legacy_for:
            return  # all_trades feeds it until public_quiet_check hands it back
        await self.on_ws_event(ev)

    async def on_main_event(self, ev: Any) -> None:
        """The main socket's events; its trades count only where it feeds the symbol."""
        if isinstance(ev, Connected | Disconnected):
            self.ws_down_since = None if isinstance(ev, Connected) else self.ws_down_since or time.monotonic()
        await self.resync.on_event(self.ws, ev)
        if (isinstance(ev, TradeEvent) and self.market_ws is self.public_ws
                and ev.symbol not in self.legacy_for):
            return
        await self.on_ws_event(ev)

    async def public_quiet_check(self) -> None:
        """Symbols the public host went quiet on move to all_trades on the main socket (the
        subscription stays; the public host takes them back once it speaks again)."""
        pub = self.public_ws
        if pub is None or self.market_ws is not pub or self.ws is None:
            return
        quiet = [s for s in self.products if pub.is_stale(s) and s not in self.legacy_for]
        if quiet:
            log.warning("public socket quiet on %s; all_trades on the main socket takes over", ",".join(quiet))
            self.legacy_for.update(quiet)
            await self.ws.subscribe("all_trades", quiet)
        back = [s for s in self.legacy_for if not pub.is_stale(s)]
        if back:
            log.info("public socket speaks again on %s", ",".join(back))
            self.legacy_for.difference_update(back)

    def log_refusals(self, socket: str, ev: Subscribed) -> None:
        """A channel the venue refused, logged once per socket and channel in the venue's words."""
        for c in ev.channels:
            key = f"{socket}:{c.get('name')}"
            if c.get("error") and key not in self.refusals_logged:
                self.refusals_logged.add(key)
                log.warning("%s socket refused %s: %s", socket, c.get("name"), str(c.get("error"))[:200])

    async def on_ws_event(self, ev: Any) -> None:
        if isinstance(ev, Subscribed):
            self.log_refusals("main", ev)
        elif isinstance(ev, TradeEvent):
            if ev.from_snapshot or ev.symbol not in self.products:
                return
            self.seqs[ev.symbol] += 1
            self.marks[ev.symbol] = ev.price
            if ev.exchange_ts_us:
                self.trade_heard = (int(ev.exchange_ts_us), time.monotonic())
            self.resync.book.heard(ev.symbol, int(ev.exchange_ts_us or ev.received_ts_us))
            tick = Tick(symbol=ev.symbol, epoch=self.epoch, seq=self.seqs[ev.symbol], price=ev.price,
                        size=float(ev.size), exch_ts_us=int(ev.exchange_ts_us or ev.received_ts_us),
                        sent_ns=time.perf_counter_ns())
            await self.pub.send_multipart((topic(ev.symbol), self.codec.encode(tick)))
            self.ticks += 1
        elif isinstance(ev, OrderUpdate):
            self.account_changed_at = time.monotonic()
            self.client_ids.learn(ev.order_id, ev.client_order_id)
            sym = ev.symbol or self.by_product.get(ev.product_id or -1, "")
            if sym not in self.products or ev.order_id is None:
                return
            view = self.read_order(sym, ev)
            if view is None:
                return
            await self.pub.send_multipart((topic(sym), self.codec.encode(
                OrderEvent(symbol=sym, order=view, sent_ns=time.perf_counter_ns()))))
            if view.state == "closed" and view.unfilled_size < view.size:
                # The bot waits for this order's fills before it plans again (its stop included):
                # read them now, not at the next poll, should the trade's own event be missing.
                self.fill_wakeup.set()
            # Creations are recorded from the REST answer (with what we sent); the channel adds
            # what only the venue knows: triggers, fills, its own cancels.
            if view.state == "cancelled":
                self.record_cancel(sym, view, ev.reason or ev.action)
            elif ev.action == "update" and ev.reason in (None, "stop_update"):
                pass  # the echo of our own edit, recorded as "amended" from the REST answer
            elif ev.action != "create":
                event = "triggered" if ev.reason == "stop_trigger" else view.state
                self.record(sym, event, view, detail=ev.reason or ev.action)
        elif isinstance(ev, OrderSnapshot):  # the open orders at (re)subscription
            for o in ev.orders:
                self.client_ids.learn(o.id, o.client_order_id)
        elif isinstance(ev, UserTrade):
            self.account_changed_at = time.monotonic()
            self.client_ids.learn(ev.order_id, ev.client_order_id)
            self.fill_wakeup.set()

    # --- fills ----------------------------------------------------------------------------

    async def fill_loop(self) -> None:
        """Reads the account's fills when a trade of ours is heard, paced so one read serves a
        burst of them (every bot's), and polls them anyway (ratelimit.fill_read_wait)."""
        last = -math.inf
        while True:
            up = self.ws_down_since is None
            try:
                await asyncio.wait_for(self.fill_wakeup.wait(),
                                       timeout=fill_read_wait(time.monotonic(), last, woken=False, socket_up=up))
            except TimeoutError:
                pass
            if self.fill_wakeup.is_set():  # let a burst of trades land in one request
                await asyncio.sleep(max(0.05, fill_read_wait(time.monotonic(), last, woken=True, socket_up=up)))
            self.fill_wakeup.clear()  # (a trade heard during the read wakes the next one)
            last = time.monotonic()
            await self.read_fills()

    async def read_fills(self) -> int:
        """One read of every product's new fills. Up to 10 products: one query naming them;
        beyond that, one query for the whole account (fills of products not ours are passed
        over), not one per 10 products: at 10 units a page, 100 products read every 3 s in
        10 queries would spend all of Delta's 10,000 units per 5 minutes on this alone."""
        if len(self.by_product) > MAX_IDS_PER_QUERY:
            return await self.read_new_fills(None)
        return await self.read_new_fills(sorted(self.by_product))

    async def read_new_fills(self, product_ids: Sequence[int] | None) -> int:
        """Read the venue's fills of up to 10 products (None: the account's) newest first, back
        to the ones we know, and hand the unknown ones on, oldest first. Returns how many were
        handed on. A read that fails midway hands on nothing: the next one reads the same fills
        again."""
        scan: FillScan[DeltaFill] = FillScan(self.known_fills, fill_id=lambda f: str(f.id),
                                             ts_us=lambda f: f.created_us, floor_us=self.fill_floor_us)
        after: str | None = None
        try:
            while True:
                page, after = await self.rest.get_fills_page(product_ids, after=after)
                if scan.take(page, more=after is not None):
                    break
        except REST_FAILURES as exc:
            self.rest_errors += 1
            log.warning("fills poll failed: %s", exc)
            return 0
        if scan.truncated:
            self.fills_unread += 1
            log.error("fills: read %d pages without reaching a fill the ledger has; older fills of products "
                      "%s are not read into the ledger (the venue still has them)", scan.pages, product_ids or "(all)")
        handed = 0
        for f in scan.news():
            if not await self.hand_on(f):
                break  # not known, so the next read hands it (and every newer one) on again
            handed += 1
        return handed

    async def hand_on(self, f: DeltaFill) -> bool:
        """One new fill to its worker and to the ledger; False if the supervisor is not taking
        fills now (then it stays unknown and is read again)."""
        fid = str(f.id)
        sym = f.product_symbol or self.by_product.get(f.product_id or -1, "")
        if sym not in self.products:
            self.known_fills.add(fid)
            return True
        try:
            f = await self.with_client_id(f)
        except REST_FAILURES as exc:
            # A lookup that may succeed soon (timeout, rate limit, 5xx): read the fill again at the
            # next poll rather than store it as a stranger's; after LOOKUP_ATTEMPTS, store it.
            self.rest_errors += 1
            key = str(f.order_id)
            tries = self.lookups_failing.pop(key, 0) + 1
            if tries < LOOKUP_ATTEMPTS:
                self.lookups_failing[key] = tries
                while len(self.lookups_failing) > LOOKUPS_FAILING_MAX:
                    self.lookups_failing.popitem(last=False)
                log.warning("fill %s: its order %s could not be looked up (%s); read again at the next poll",
                            fid, f.order_id, exc)
                return False
            f = self.unresolved(f, f"lookup failed {tries} times: {exc}")
        try:
            fill = domain_fill(f, sym, self.products[sym].contract_value)
        except ValueError as exc:  # reading it again cannot mend it: said, and left on the venue's ledger
            log.error("fill %s not handed on: %s", fid, exc)
            self.known_fills.add(fid)
            return True
        msg = self.codec.encode(FillEvent(symbol=sym, fill=fill, sent_ns=time.perf_counter_ns()))
        if not send_nowait(self.sup, msg):
            log.error("supervisor not taking fills; fill %s not stored yet (read again at the next poll)", fid)
            return False
        await self.pub.send_multipart((topic(sym), msg))  # the bots drop a repeat by id
        self.known_fills.add(fid)
        self.account_changed_at = time.monotonic()
        return True

    async def with_client_id(self, f: DeltaFill) -> DeltaFill:
        """The fill with its order's client order id, which Delta's REST fill lacks: from what
        the answers and channels taught us, else looked up by order id (and remembered). A fill
        whose order the venue does not know is handed on all the same (the ledger keeps every
        fill), without one: counted and logged. Raises what a failed lookup raised."""
        if f.client_order_id:  # the paper venue once sent it; the user_trades channel does
            self.client_ids.learn(f.order_id, f.client_order_id)
            return f
        coid = self.client_ids.get(f.order_id)
        if coid is None:
            coid = await self.look_up_client_id(f.order_id)
        if coid is None:
            return self.unresolved(f, "the venue does not know the order")
        self.lookups_failing.pop(str(f.order_id), None)
        return msgspec.structs.replace(f, client_order_id=coid) if coid else f

    def unresolved(self, f: DeltaFill, why: str) -> DeltaFill:
        self.fills_unresolved += 1
        log.error("fill %s of order %s handed on without a client order id (%s); %d so far",
                  f.id, f.order_id, why, self.fills_unresolved)
        return f

    async def look_up_client_id(self, order_id: object) -> str | None:
        """Ask the venue which client order id an order carries (GET /v2/orders/{id}, charged to
        the account's rate budget): an order placed before this gateway started, or forgotten.
        None if the venue does not know it (not remembered: a later fill of it asks again)."""
        oid = order_id_number(order_id)
        if oid is None:
            return ""  # a settlement fill's order_id is a UUID: no order of anyone's
        try:
            o = await self.rest.get_order(oid)
        except OrderNotFound:
            return None
        self.client_ids.learn(o.id, o.client_order_id)
        return o.client_order_id or ""

    async def reread_loop(self) -> None:
        """Our orders the socket reported in an undocumented state, read back (order_reading.OrderRereads)."""
        while True:
            await asyncio.sleep(REREAD_POLL_S)
            await self.reread_due()

    async def reread_due(self) -> int:
        """Read back the orders in doubt that are due, each to its worker as an order event in the
        venue's documented words (the tolerant reading was a guess: a deleted order read as
        closed may have been cancelled, one read as resting may have filled). Returns how many
        were handed on. A failed read is tried again later (bounded); an order the venue does not
        know is left to the bot's regular re-read."""
        handed = 0
        for oid, sym in self.rereads.take(time.monotonic()):
            try:
                o = await self.rest.get_order(oid)
            except OrderNotFound:
                continue
            except REST_FAILURES as exc:
                self.rest_errors += 1
                self.rereads.doubt(oid, sym, time.monotonic())
                log.warning("%s: order %s in doubt not read back yet: %s", sym, oid, exc)
                continue
            self.client_ids.learn(o.id, o.client_order_id)
            view = self.read_order(sym, o)
            if view is None:
                continue
            await self.pub.send_multipart((topic(sym), self.codec.encode(
                OrderEvent(symbol=sym, order=view, sent_ns=time.perf_counter_ns(), read_back=True))))
            if view.state == "closed" and view.unfilled_size < view.size:
                self.fill_wakeup.set()  # the bot waits for its fills
            handed += 1
        return handed

    async def stale_poll_loop(self) -> None:
        """While the websocket is quiet for a symbol, its REST ticker as ticks (workers/gateway_resync.py)."""
        await self.resync.quiet_loop()

    async def account_loop(self) -> None:
        while True:
            try:
                asked = time.monotonic()  # (the venue's answer may include anything before this, no more)
                balances = await self.rest.get_wallet_balances()
                self.balances_read = (asked, balances)
                positions = await self.rest.get_margined_positions()
            except REST_FAILURES as exc:
                self.rest_errors += 1
                log.warning("account poll failed: %s", exc)
                await asyncio.sleep(ACCOUNT_POLL_S)
                continue
            usd = next((b for b in balances if b.asset_symbol in ("USD", "USDT")), None)
            unreal = sum(float(p.unrealized_pnl or 0.0) for p in positions)
            notional: dict[str, float] = {}
            for p in positions:
                sym = p.product_symbol or self.by_product.get(p.product_id or -1, "")
                spec = self.products.get(sym)
                mark = self.marks.get(sym, float(p.entry_price or 0.0))
                if spec is not None:
                    notional[sym] = spec.notional(int(p.size), mark)
            if usd is not None:
                self.equity = usd.balance + unreal
                self.available = usd.available_balance
            self.position_notional = notional
            await asyncio.sleep(ACCOUNT_POLL_S)

    # --- requests from workers ------------------------------------------------------------

    async def handle(self, msg: Any) -> Any:
        self.requests += 1
        if isinstance(msg, HistoryRequest):
            return await self.history(msg)
        if isinstance(msg, AccountRequest):
            with charged_to("reconcile" if msg.include_fills else "resync"):
                return await self.account(msg)
        if isinstance(msg, OrderIntents):
            self.intents_executing += 1
            try:
                return await self.execute(msg)
            finally:
                self.intents_executing -= 1
                self.account_changed_at = time.monotonic()
        return None

    async def serve_history(self, asker: bytes, req: HistoryRequest, lane: asyncio.Semaphore,
                            answer: Callable[[bytes, Any], Awaitable[None]]) -> None:
        """A worker's ask for its history: one read per symbol however many ask (a worker's repeat
        after 30 s without an answer joins the read it is waiting for), in `lane`, and its answer
        to every asker (shared/delta/history_reads.py)."""
        await self.serve_read(self.history_askers, f"{req.symbol}/{req.bars}", asker, req, lane, answer,
                              join_under_way=True)

    async def serve_account(self, asker: bytes, req: AccountRequest, lane: asyncio.Semaphore,
                            answer: Callable[[bytes, Any], Awaitable[None]]) -> None:
        """A bot's account read: its repeat (no answer in 30 s: the read waits for a slot or for
        budget) joins the read still waiting for a slot, not one under way (that one may predate
        the bot's last orders)."""
        await self.serve_read(self.account_askers, f"{req.symbol}/{req.include_fills}/{req.fills_since_us}",
                              asker, req, lane, answer, join_under_way=False)

    async def serve_read(self, askers: ReadAskers, key: str, asker: bytes, req: Any, lane: asyncio.Semaphore,
                         answer: Callable[[bytes, Any], Awaitable[None]], *, join_under_way: bool) -> None:
        if not askers.ask(key, asker):
            return
        answered: list[bytes] | None = None
        try:
            async with lane:
                if not join_under_way:
                    answered = askers.take(key, asker)
                reply = await self.handle(req)
        finally:
            if answered is None:  # done (or given up while waiting for a slot): nobody else joins it
                answered = askers.take(key, asker)
        for who in answered:
            await answer(who, reply)

    async def history(self, req: HistoryRequest) -> HistoryReply:
        def empty(err: str) -> HistoryReply:
            return HistoryReply(symbol=req.symbol, n=0, ts=b"", open=b"", high=b"", low=b"", close=b"",
                                volume=b"", error=err)
        if req.symbol not in self.products:
            return empty(f"gateway does not serve {req.symbol}")
        deadline = time.monotonic() + HISTORY_BUDGET_WAIT_S
        bar_s = self.cfg.market.bar_seconds
        ticker_clock: tuple[int, float] | None = None  # kept while the candles wait for budget
        while True:
            try:
                # The venue's own clock, not ours (the paper venue's market runs faster than the
                # wall): the newest trade heard when it is fresh, else the venue's ticker.
                now = time.monotonic()
                venue_us = venue_clock_us(self.trade_heard, now, bar_s) or venue_clock_us(ticker_clock, now, bar_s)
                if venue_us is None:
                    ticker = await self.rest.get_ticker(req.symbol)
                    # the client normalised the time to int µs (or None) when it decoded the ticker
                    if isinstance(ticker.timestamp, int):
                        ticker_clock, venue_us = (ticker.timestamp, time.monotonic()), ticker.timestamp
                end = int((venue_us or time.time() * 1e6) / 1e6) + 2 * BAR_SECONDS
                start = end - (req.bars + 2) * BAR_SECONDS
                candles = await self.rest.get_candles(req.symbol, "1m", start, end)
                break
            except (RateLimited, LimiterBusy) as exc:
                # Refused for want of budget, before the venue did anything: wait for the budget and
                # go again in turn, rather than answer an error the worker would repeat in 2 s.
                wait = max(self.rest.public_limiter.wait_time(endpoint_weight("GET", "/v2/history/candles"),
                                                              Priority.READ), HISTORY_RETRY_MIN_S)
                if time.monotonic() + wait > deadline:
                    self.rest_errors += 1
                    return empty(f"candles: {type(exc).__name__}: {exc}")
                self.history_budget_waits += 1
                await asyncio.sleep(wait)
            except Exception as exc:  # venue down, a bad answer...: the worker asks again
                self.rest_errors += 1
                return empty(f"candles: {type(exc).__name__}: {exc}")
        rows = [(c.time / 1e6, c.open, c.high, c.low, c.close, c.volume) for c in candles
                if isinstance(c.time, int)  # get_candles keeps only bars with a time, in µs
                and c.open is not None and c.close is not None and c.high is not None and c.low is not None]
        rows = rows[-req.bars:]
        arr = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        cols = [np.ascontiguousarray(arr[:, i]) for i in range(6)]
        return HistoryReply(symbol=req.symbol, n=len(rows), ts=cols[0].tobytes(), open=cols[1].tobytes(),
                            high=cols[2].tobytes(), low=cols[3].tobytes(), close=cols[4].tobytes(),
                            volume=cols[5].tobytes())

    async def account(self, req: AccountRequest) -> AccountSnapshot:
        spec = self.products.get(req.symbol)
        if spec is None:
            return AccountSnapshot(symbol=req.symbol, product=None, open_orders=[], fills=[],
                                   available_balance=0.0, equity=0.0, error=f"gateway does not serve {req.symbol}")
        try:
            # The position first: every fill in it is then in the fills read after it, so a full
            # reconciliation's comparison of the two is not fooled by a fill made meanwhile.
            venue_position = await self.venue_position(req.symbol, spec.product_id)
            orders = await self.rest.get_open_orders([spec.product_id])
            fills = (await self.rest.get_fills([spec.product_id], start_time=req.fills_since_us or None)
                     if req.include_fills else [])
            balances = self.recent_balances() if not req.include_fills else None
            if balances is None:
                balances = await self.rest.get_wallet_balances()
            for o in orders:
                self.client_ids.learn(o.id, o.client_order_id)
            fills = [await self.with_client_id(f) for f in fills]  # a failed lookup fails the read
            # a fill no book can hold fails it too: the bot must not trade on a position it cannot count
            mapped = [domain_fill(f, req.symbol, spec.contract_value) for f in fills]
        except Exception as exc:  # the worker does not trade until a read succeeds, and asks again
            self.rest_errors += 1
            return AccountSnapshot(symbol=req.symbol, product=spec, open_orders=[], fills=[],
                                   available_balance=0.0, equity=0.0,
                                   error=f"reconciliation read failed: {type(exc).__name__}: {exc}")
        usd = next((b for b in balances if b.asset_symbol in ("USD", "USDT")), None)
        return AccountSnapshot(
            symbol=req.symbol, product=spec, open_orders=self.read_orders(req.symbol, orders),
            fills=mapped,
            available_balance=usd.available_balance if usd else 0.0,
            equity=usd.balance if usd else 0.0, venue_position=venue_position)

    def recent_balances(self) -> list[WalletBalance] | None:
        """The account's balances as the equity poll read them, if no older than BALANCES_REUSE_S:
        a bot's regular re-read takes them from there instead of reading them again (3 of its 9
        units; 100 symbols: a tenth of the account's budget). A full reconciliation reads its own.
        Never when the account's orders or fills changed since that read asked (or an order intent
        is executing): the bot sizes its grid from this balance plus the margin of its resting
        entries (sizing.grid_sizing_balance), so a balance from before its grid was placed, beside
        the fresh book, counted that margin twice and sized the grid too large."""
        at, balances = self.balances_read
        if self.intents_executing or at <= self.account_changed_at:
            return None
        return balances if time.monotonic() - at <= BALANCES_REUSE_S else None

    async def venue_position(self, symbol: str, product_id: int) -> int | None:
        """The account's position in the product; None (and said once) if the venue answers in a
        shape we cannot read, so the bots still trade, without the position check."""
        try:
            return int((await self.rest.get_position(product_id)).size)
        except ResponseShapeError as exc:
            if symbol not in self.position_unreadable:
                self.position_unreadable.add(symbol)
                log.error("%s: the venue's position cannot be read (%s); the bot trades without "
                          "checking its position against it", symbol, exc)
            return None

    async def execute(self, req: OrderIntents) -> IntentResult:
        started = time.perf_counter_ns()
        self.intent_wait.record((started - req.sent_ns) / 1000.0)
        charge = IntentCharge()
        token = INTENT_CHARGE.set(charge)  # the client adds this intent's waits for budget to it
        try:
            return await self.execute_intents(req)
        finally:
            INTENT_CHARGE.reset(token)
            self.intent_budget.add(charge)
            self.intent_exec.record((time.perf_counter_ns() - started) / 1000.0)
            if time.monotonic() - self.order_path_logged >= ORDER_PATH_LOG_S:
                self.log_order_path()

    def log_order_path(self) -> None:
        """One line: the hops of the order intents since the last line, p50/p99 in ms."""
        def ms(h: LatencyHistogram) -> str:
            return f"{h.percentile(50) / 1000:.1f}/{h.percentile(99) / 1000:.1f}"
        routes = {route: h for route, h in sorted(self.rest.latency.items()) if "/v2/orders" in route and h.total}
        empty = LatencyHistogram()

        def route_ms(route: str, h: LatencyHistogram) -> str:
            # HTTP round trip, then the rate-budget wait before it and the venue's own time in it
            wait = self.rest.budget_wait.get(route, empty)
            venue = self.rest.venue_time.get(route, empty)
            return (f"{route} {ms(h)} (n={h.total}; budget wait {ms(wait)}"
                    + (f", venue {ms(venue)}" if venue.total else "") + ")")
        http = ", ".join(route_ms(route, h) for route, h in routes.items())
        budget = self.rest.limiter.snapshot()
        spent: collections.Counter[str] = collections.Counter()
        for (route, _), n in self.rest.outcomes.items():
            method, _, path = route.partition(" ")
            spent[route] += n * endpoint_weight(method, path.replace("{id}", "0").replace("{coid}", "c"))
        top = ", ".join(f"{route} {units}" for route, units in spent.most_common(4))
        log.info("order path p50/p99 ms over %d intents: worker->gateway->start %s (hop %s, lane %s), execute %s; "
                 "HTTP %s; rate budget %d of %d used, window ends in %.0f s, %d requests waiting; units since "
                 "start: %s", self.intent_exec.total, ms(self.intent_wait), ms(self.intent_hop), ms(self.intent_lane),
                 ms(self.intent_exec), http or "none", budget.used, budget.capacity, budget.window_ends_in_s,
                 self.rest.limiter.waiting, top)
        for h in (self.intent_wait, self.intent_exec, self.intent_hop, self.intent_lane, *routes.values(),
                  *(self.rest.budget_wait.get(r, empty) for r in routes),
                  *(self.rest.venue_time.get(r, empty) for r in routes)):
            h.reset()
        self.order_path_logged = time.monotonic()

    async def execute_intents(self, req: OrderIntents) -> IntentResult:
        """One bot's actions of one cycle on its product: cancels first (risk first, frees
        margin), then amends, then new orders; within each kind, every order at once, in batch
        calls where Delta's batches take them and pay (shared/delta/ratelimit.batch_pays). Each
        order's outcome is its own: a rejected one is reported with Delta's code and the rest
        proceed.

        Quotes (entries, take-profits and their amends) go only within the symbol's share of the
        account's budget and when the account's budget is there within INTENT_BUDGET_WAIT_S
        (ratelimit.quote_verdict); otherwise they are refused unsent, with how long to hold them.
        Cancels always go (they reduce exposure; a re-grid's are charged to the share), and so do
        protective stops and reduce-only exits, at the head of the budget's queue."""
        pid = req.product_id
        errors: list[str] = []
        undocumented = self.orders_undocumented[req.symbol]
        cancelled: list[int] = []
        amended: list[OpenOrder] = []
        placed: list[OpenOrder] = []
        unsent = 0
        retry_after = 0.0
        quote_amends = [a for a in req.amend if not a.order_type.startswith("stop_")]
        quote_places = [p for p in req.place if not p.reduce_only]
        now = time.monotonic()
        if quote_amends or quote_places:
            units = sum(order_units(n) for n in (len(req.cancel), len(quote_amends), len(quote_places)))
            budget = self.rest.limiter.budget
            window = self.rest.limiter.snapshot()
            code, retry_after = quote_verdict(
                self.shares.wait_s(req.symbol, units, now),
                self.rest.limiter.wait_time(min(units, budget.capacity), Priority.NEW_ORDER),
                pace_wait_s(window.used, units, budget.window_s - window.window_ends_in_s, capacity=budget.capacity,
                            reserve=budget.reserve, window_s=budget.window_s, slack_share=self.pace_slack_share),
                units / self.shares.rate_per_s)
            self.shares.charge(req.symbol, order_units(len(req.cancel)), now)
            if code is None:
                self.shares.charge(req.symbol, units - order_units(len(req.cancel)), now)
            else:
                why = {"rate_budget_share": "the symbol's share of the account's rate budget is spent",
                       "rate_budget_pace": "the account's rate budget would be spent ahead of an even pace"}.get(
                           code, "the account's rate budget is spent")
                refused = RateLimited(code, message=f"not sent: {why}; hold for {retry_after:.1f} s")
                if (charge := INTENT_CHARGE.get()) is not None:
                    charge.refused = True
                for a in quote_amends:
                    errors.append(_err_text(str(a.order_id), refused))
                    self.record_refusal(req.symbol, "amend_rejected", "", str(a.order_id), refused)
                for p in quote_places:
                    errors.append(_err_text(p.client_order_id, refused))
                    self.record_refusal(req.symbol, "rejected", p.client_order_id, "", refused,
                                        side=p.side, price=p.price, size=p.size)
                unsent = len(errors)
                req = msgspec.structs.replace(req, amend=[a for a in req.amend if a not in quote_amends],
                                              place=[p for p in req.place if p not in quote_places])
        if req.cancel:
            for oid, r in zip(req.cancel, await self.rest.cancel_orders(pid, req.cancel), strict=True):
                if isinstance(r, Order):
                    cancelled.append(oid)
                    if (gone := self.read_order(req.symbol, r)) is not None:
                        self.record_cancel(req.symbol, gone, "cancelled_by_user")
                elif r.code == "open_order_not_found":
                    cancelled.append(oid)  # already gone (filled or cancelled): same outcome
                else:
                    errors.append(_err_text(str(oid), r))
                    self.record_refusal(req.symbol, "cancel_rejected", "", str(oid), r)
        if req.amend:
            # Delta's batch edit takes limit orders only; a stop's trigger is edited on its own.
            limits = [a for a in req.amend if not a.order_type.startswith("stop_")]
            stops = [a for a in req.amend if a.order_type.startswith("stop_")]
            edits = [OrderEdit(id=a.order_id, limit_price=a.price, size=a.size) for a in limits]
            parts = await asyncio.gather(
                _many(self.rest.edit_orders(pid, edits), len(edits)),
                # a trailing stop's price is the exchange's to move: only its size is edited
                *(_many(self.rest.edit_order(product_id=pid, order_id=a.order_id, size=a.size,
                                             stop_price=None if a.trailing else a.price, priority=Priority.RISK))
                  for a in stops))
            for a, res in zip([*limits, *stops], [x for part in parts for x in part], strict=True):
                if isinstance(res, Order):
                    if (edited := self.read_order(req.symbol, res)) is not None:
                        amended.append(edited)
                        self.record(req.symbol, "amended", edited, detail=a.order_type)
                elif isinstance(res, Exception):
                    errors.append(_err_text(str(a.order_id), res))
                    self.record_refusal(req.symbol, "amend_rejected", "", str(a.order_id), res)
        if req.place:
            # Delta's batch create takes GTC limit orders without reduce_only; the rest (stops,
            # market orders, reduce-only exits) go on their own.
            grid = [p for p in req.place if p.order_type == "limit_order" and not p.reduce_only]
            others = [p for p in req.place if not (p.order_type == "limit_order" and not p.reduce_only)]
            news = [NewOrder(size=p.size, side=p.side, limit_price=p.price,  # type: ignore[arg-type]  # bots send buy/sell
                             post_only=p.post_only, client_order_id=p.client_order_id) for p in grid]
            parts = await asyncio.gather(_many(self.rest.place_orders(pid, news), len(news)),
                                         *(_many(self.place(pid, p, req.symbol)) for p in others))
            for p, res in zip([*grid, *others], [x for part in parts for x in part], strict=True):
                if isinstance(res, Order):
                    if (view := self.read_order(req.symbol, res)) is not None:
                        placed.append(view)
                        self.record(req.symbol, "placed", view, detail=p.order_type)
                elif isinstance(res, Exception):
                    errors.append(_err_text(p.client_order_id, res))
                    self.record_refusal(req.symbol, "rejected", p.client_order_id, "", res,
                                        side=p.side, price=p.price, size=p.size)
        for e in errors[unsent:]:
            log.warning("%s: order rejected: %s", req.symbol, e)
        if self.orders_undocumented[req.symbol] != undocumented:  # the book is in doubt: the bot reads it back
            # (no rejection, not logged as one: read_order logged the answer itself)
            errors.append(f"{req.symbol}: {UNDOCUMENTED_ANSWER}: an order of ours in a kind or state Delta does not "
                          "document; read back before placing more")
        if unsent:
            self.refusals_unsent += unsent
            if self.refusals_unsent - unsent < self.refusals_logged_at * 2 or not self.refusals_logged_at:
                self.refusals_logged_at = self.refusals_unsent  # logged at 1, 2, 4, 8...: no flood at 100 bots
                log.warning("%s: quotes not sent (%d so far, all symbols): %s", req.symbol, self.refusals_unsent,
                            errors[0])
        return IntentResult(symbol=req.symbol, seq=req.seq, cancelled=cancelled, amended=amended, placed=placed,
                            errors=errors, sent_ns=time.perf_counter_ns(), unsent=unsent,
                            retry_after_s=retry_after if unsent else 0.0)

    async def place(self, product_id: int, p: NewOrderSpec, symbol: str = "") -> Order:
        """One new order in Delta's terms. A bot's stop_market_order is a market order with a
        stop-loss trigger at `price` (a protective stop: always reduce-only from the bots),
        triggered by the symbol's own grid.stop_trigger_method ([symbols.SYMBOL.grid] over [grid])."""
        if p.order_type == "stop_market_order" and p.trail_amount > 0:
            return await self.rest.place_order(
                # side: str on the wire (NewOrderSpec); the bots send only "buy"/"sell"
                product_id=product_id, size=p.size, side=p.side, order_type="market_order",  # type: ignore[arg-type]
                reduce_only=p.reduce_only, client_order_id=p.client_order_id,
                stop_order_type=TRAILING_STOP_ORDER_TYPE, trail_amount=signed_trail_amount(p.side, p.trail_amount),
                stop_trigger_method=symbol_settings(self.cfg, symbol).grid.stop_trigger_method)
        if p.order_type == "stop_market_order":
            return await self.rest.place_order(
                # side: str on the wire (NewOrderSpec); the bots send only "buy"/"sell"
                product_id=product_id, size=p.size, side=p.side, order_type="market_order",  # type: ignore[arg-type]
                reduce_only=p.reduce_only, client_order_id=p.client_order_id,
                stop_order_type="stop_loss_order", stop_price=p.price,
                stop_trigger_method=symbol_settings(self.cfg, symbol).grid.stop_trigger_method)
        return await self.rest.place_order(
            # side: str on the wire (NewOrderSpec); the bots send only "buy"/"sell"
            product_id=product_id, size=p.size, side=p.side,  # type: ignore[arg-type]
            limit_price=None if p.order_type == "market_order" else p.price, order_type=p.order_type,
            post_only=p.post_only, reduce_only=p.reduce_only, client_order_id=p.client_order_id)

    def read_order(self, symbol: str, o: Order | OrderUpdate) -> OpenOrder | None:
        """`domain_order` with the client order id this gateway learned for the order; an order
        no OpenOrder can hold is dropped, counted (orders_dropped) and logged (the first, then
        every 100th), never raised into the request or socket loop."""
        try:
            return domain_order(o, symbol, self.client_ids.get(o.id if isinstance(o, Order) else o.order_id))
        except UndocumentedOrder as exc:
            self.orders_undocumented[symbol] += 1
            if isinstance(o, OrderUpdate):  # the socket's word only: read the order back soon (reread_loop)
                self.rereads.doubt(exc.view.order_id, symbol, time.monotonic())
            if (n := self.orders_undocumented.total()) % 100 == 1:
                log.error("%s: %s; read as %s %s (%d so far)", symbol, exc, exc.view.order_type, exc.view.state, n)
            return exc.view
        except ValueError as exc:
            self.orders_dropped += 1
            if self.orders_dropped % 100 == 1:
                log.warning("%s: venue order not handed to the bot (%d so far): %s", symbol, self.orders_dropped, exc)
            return None

    def read_orders(self, symbol: str, orders: Sequence[Order]) -> list[OpenOrder]:
        return [view for o in orders if (view := self.read_order(symbol, o)) is not None]

    # --- the order ledger (supervisor -> SQLite) -------------------------------------------

    def record_cancel(self, symbol: str, view: OpenOrder, detail: str) -> None:
        if self.cancels_recorded.pop(view.order_id, 0) is None:
            return  # the other report of the same cancel came first
        self.cancels_recorded[view.order_id] = None
        while len(self.cancels_recorded) > SEEN_FILLS_MAX:  # bounded: an echo lost with a ws drop
            self.cancels_recorded.popitem(last=False)
        self.record(symbol, "cancelled", view, detail=detail)

    def record(self, symbol: str, event: str, view: OpenOrder, *, detail: str = "") -> None:
        # Every place, edit and cancel answer passes here: the orders whose fills we will read.
        self.client_ids.learn(view.order_id, view.client_order_id)
        self._push_record(OrderRecord(
            ts=time.time(), symbol=symbol, event=event, client_order_id=view.client_order_id or "",
            order_id=str(view.order_id), side=view.side, price=repr(view.price), size=view.size, detail=detail))

    def record_refusal(self, symbol: str, event: str, client_order_id: str, order_id: str, exc: Exception,
                       *, side: str = "", price: float = 0.0, size: int = 0) -> None:
        code = getattr(exc, "code", type(exc).__name__)
        self._push_record(OrderRecord(
            ts=time.time(), symbol=symbol, event=event, client_order_id=client_order_id, order_id=order_id,
            side=side, price=repr(price) if price else "", size=size, detail=f"{code}: {str(exc)[:200]}"))

    def _push_record(self, rec: OrderRecord) -> None:
        if not send_nowait(self.sup, self.codec.encode(rec)):
            # The venue keeps the order's truth; only our copy of the event is lost. Counted.
            self.records_dropped += 1

    def figures(self, lag_ms: float) -> GatewayFigures:
        return GatewayFigures(ticks_published=self.ticks, symbols=len(self.products), source="exchange",
                              requests=self.requests, malformed=self.codec.malformed, equity=self.equity,
                              position_notional=self.position_notional, rest_errors=self.rest_errors,
                              **self.link_figures(), loop_lag_ms=lag_ms, orders_dropped=self.orders_dropped,
                              note=f"{self.resync.polled_ticks} polled ticks"
                              + (f", {self.records_dropped} order records dropped" if self.records_dropped else "")
                              + (f", {self.orders_dropped} venue orders unreadable" if self.orders_dropped else "")
                              + (f", {n} answers of own orders in a kind or state Delta does not document"
                                 if (n := self.orders_undocumented.total()) else "")
                              + (f", {self.fills_unresolved} fills without their order"
                                 if self.fills_unresolved else "")
                              + (f", history: {self.history_askers.joined} repeat asks joined a read under way, "
                                 f"{self.history_budget_waits} reads waited for budget"
                                 if self.history_askers.joined or self.history_budget_waits else "")
                              + self.market_data_note() + self.resync.note())

    def link_figures(self) -> LinkFigures:
        """For the supervisor's alerts and metrics: how long the account socket has been down, the
        rate budget left in the account's window."""
        budget = self.rest.limiter.snapshot()
        down = time.monotonic() - self.ws_down_since if self.ws_down_since is not None else 0.0
        t = self.intent_budget
        return {"ws_down_s": down, "rate_budget_left": float(budget.capacity - budget.used),
                "rate_budget_capacity": float(budget.capacity),
                "rate_units_by_kind": dict(self.rest.units_spent), "rate_requests_waiting": self.rest.limiter.waiting,
                "intents": t.intents, "intents_budget_waited": t.waited, "intents_budget_wait_s": t.wait_s,
                "intents_budget_wait_max_s": t.wait_max_s, "intents_budget_refused": t.refused}

    def feed_of(self, symbol: str) -> DeltaWebSocket:
        """The socket whose trades feed `symbol` now."""
        assert self.market_ws is not None
        return self.ws if symbol in self.legacy_for and self.ws is not None else self.market_ws

    def market_data_note(self) -> str:
        """Which channel feeds the symbols' trades; those quiet on it are polled over REST."""
        stale = [s for s in self.products if self.market_ws is not None and self.feed_of(s).is_stale(s)]
        note = f", trades from {self.market_channel}" if self.market_channel else ""
        if self.legacy_for:
            quiet = ",".join(sorted(self.legacy_for)[:5])
            note += f"; all_trades for {len(self.legacy_for)} quiet on public ({quiet})"
        if stale:
            polled = ",".join(sorted(stale)[:5]) + ("..." if len(stale) > 5 else "")
            note += f"; REST ticker for {len(stale)} quiet ({polled})"
        return note


def charged(purpose: str, loop: Callable[[], Awaitable[None]]) -> Callable[[], Coroutine[Any, Any, None]]:
    """`loop` with the account's units it spends charged to `purpose` (ratelimit.spend_kind)."""
    async def run() -> None:
        with charged_to(purpose):
            await loop()
    return run


def request_lanes() -> dict[str, asyncio.Semaphore]:
    """How many workers' requests of each kind the gateway executes at once: reads
    MAX_INFLIGHT_READS, order intents MAX_INFLIGHT_REQUESTS, and as many again for the intents
    that protect (lane_of): a stop or a flatten never waits for a slot behind grid churn."""
    return {"market": asyncio.Semaphore(MAX_INFLIGHT_READS), "account": asyncio.Semaphore(MAX_INFLIGHT_READS),
            "orders": asyncio.Semaphore(MAX_INFLIGHT_REQUESTS), "protect": asyncio.Semaphore(MAX_INFLIGHT_REQUESTS)}


def lane_of(msg: Any) -> str:
    if isinstance(msg, OrderIntents):
        quotes = any(not p.reduce_only for p in msg.place) or any(not a.order_type.startswith("stop_")
                                                                 for a in msg.amend)
        return "orders" if quotes else "protect"  # only cancels, stops and reduce-only exits: protect
    return "market" if isinstance(msg, HistoryRequest) else "account"


def protective_first(req: OrderIntents) -> tuple[OrderIntents, OrderIntents] | None:
    """A mixed intent (quotes beside a stop, a stop's move or a reduce-only exit) in two parts:
    its protective orders, in the protect lane, and the rest (cancels, quotes) in the quotes' lane,
    in execute_intents' own order, both at once. Whole, its stop waited for a slot of the quotes'
    lane (16, each held up to INTENT_BUDGET_WAIT_S by quotes waiting for budget) and then behind
    its own cancels and quote amends. None: not mixed (lane_of's lane takes it)."""
    guard_amend = [a for a in req.amend if a.order_type.startswith("stop_")]
    guard_place = [p for p in req.place if p.reduce_only]
    if not (guard_amend or guard_place) or lane_of(req) == "protect":
        return None
    guard = msgspec.structs.replace(req, cancel=[], amend=guard_amend, place=guard_place)
    rest = msgspec.structs.replace(req, amend=[a for a in req.amend if a not in guard_amend],
                                   place=[p for p in req.place if p not in guard_place])
    return guard, rest


def joined(req: OrderIntents, guard: IntentResult | None, rest: IntentResult | None) -> IntentResult | None:
    """The two parts' results as the one answer the bot waits for (its seq, every order's outcome
    by its own id; the quotes refused unsent stay first among the errors, as IntentResult counts
    them). A part that failed in the gateway (logged) makes the bot read its book back."""
    if guard is None and rest is None:
        return None  # as for any failed request: the bot's intent timeout reads the venue back
    lost = [f"{req.symbol}: gateway_error: part of the order intent failed in the gateway; read back"]
    unsent = rest.unsent if rest is not None else 0
    errors = [*(rest.errors[:unsent] if rest is not None else []), *(guard.errors if guard is not None else lost),
              *(rest.errors[unsent:] if rest is not None else lost)]
    parts = [r for r in (guard, rest) if r is not None]
    return IntentResult(symbol=req.symbol, seq=req.seq, cancelled=[c for r in parts for c in r.cancelled],
                        amended=[o for r in parts for o in r.amended], placed=[o for r in parts for o in r.placed],
                        errors=list(dict.fromkeys(errors)),  # (an undocumented answer said by both parts: once)
                        sent_ns=parts[-1].sent_ns, unsent=unsent,
                        retry_after_s=rest.retry_after_s if rest is not None else 0.0)


async def serve_in_lanes(gw: ExchangeGateway, msg: Any, lanes: dict[str, asyncio.Semaphore]) -> Any | None:
    """A worker's request executed in its lane (request_lanes, lane_of); a mixed order intent's
    protective part in the protect lane beside the rest in the quotes' lane (protective_first),
    answered as one (joined). None if it failed (logged)."""
    asked = time.perf_counter_ns()

    async def in_lane(lane: str, msg: Any, hop: bool = True) -> Any | None:
        async with lanes[lane]:
            if isinstance(msg, OrderIntents):  # (both order lanes)
                if hop:
                    gw.intent_hop.record((asked - msg.sent_ns) / 1000.0)
                gw.intent_lane.record((time.perf_counter_ns() - asked) / 1000.0)
            try:
                return await gw.handle(msg)
            except Exception:  # one bad request must not take the account's only gateway down
                log.exception("request %s failed", type(msg).__name__)
                return None

    parts = protective_first(msg) if isinstance(msg, OrderIntents) else None
    if parts is None:
        return await in_lane(lane_of(msg), msg)
    # At once, each in its lane: the stop waits for no quote's slot or budget, and the quotes do not
    # wait for the stop's round trip (in one execution they went side by side too).
    guard, rest = await asyncio.gather(in_lane("protect", parts[0]), in_lane("orders", parts[1], hop=False))
    return joined(msg, guard, rest)


def connection(spec: ChildSpec) -> dict[str, str]:
    """Where the account lives: the paper venue child (address and key fixed by the supervisor),
    or a live Delta venue with the key from the environment (never from a file)."""
    if spec.venue_access is not None:
        a = spec.venue_access
        paper = resolve_venue("paper", rest_url=f"http://127.0.0.1:{a.port}", ws_url=f"ws://127.0.0.1:{a.port}/ws")
        return {"rest_url": paper.rest_url, "ws_url": paper.ws_url, "public_ws_url": paper.public_ws_url or "",
                "api_key": a.api_key, "api_secret": a.api_secret}
    secrets = secrets_from_env()
    if secrets is None:
        raise RuntimeError("live gateway needs DELTA_API_KEY and DELTA_API_SECRET")
    venue = resolve_venue(spec.config.run.venue)
    return {"rest_url": venue.rest_url, "ws_url": venue.ws_url, "public_ws_url": venue.public_ws_url or "",
            "api_key": secrets.api_key, "api_secret": secrets.api_secret}


async def run_exchange(spec: ChildSpec) -> int:
    cfg = spec.config
    ctx = zmq.asyncio.Context()
    pub, router = gateway_sockets(ctx, spec, sndhwm=100_000)
    hb = heartbeat_socket(ctx, spec)
    sup = ctx.socket(zmq.PUSH)  # fills for the ledger: not droppable like heartbeats
    sup.setsockopt(zmq.LINGER, 1000)
    sup.setsockopt(zmq.SNDHWM, 100_000)
    sup.connect(spec.endpoints.supervisor)
    stop = asyncio.Event()
    install_stop_signals(stop)
    leave_interrupt_to_supervisor()  # Ctrl-C: the supervisor's operator stop says when (dead-man off)
    lag = LoopLagMonitor()
    lag.start()

    gw = ExchangeGateway(spec, connection(spec))
    deadline = time.monotonic() + 30.0
    while True:
        try:
            await gw.start(MarketDataOut(pub), sup)  # plain sends on the asyncio socket (workers/gateway.py)
            break
        except UnknownSymbolError as exc:
            log.error("%s", exc)
            ctx.destroy(linger=0)
            await gw.stop()
            return 2
        except (TimeoutError, DeltaError, OSError, aiohttp.ClientError) as exc:
            # The paper venue may still be starting; a live venue may be briefly unreachable.
            if time.monotonic() > deadline or stop.is_set():
                raise
            log.warning("exchange not reachable yet (%s); retrying", exc)
            await asyncio.sleep(0.5)

    # Three lanes (request_lanes): history (what a bot needs for its first signal) is never stuck
    # behind account reads and orders that wait for rate budget, and order intents (cancels,
    # stops, quotes) never wait for a slot behind account reads. Waiting requests are cheap tasks,
    # bounded in number (MAX_QUEUED_REQUESTS).
    lanes = request_lanes()
    lane = lane_of
    # The workers' requests and the answers through the loop's reader callback on a plain socket
    # (runtime.LoopSocket, as the workers' end of the link), not zmq.asyncio's futures: a loop
    # iteration less for every request read, in a loop busy with every symbol's ticks.
    requests = LoopSocket(zmq.Socket.shadow(router.underlying))

    async def answer(ident: bytes, reply: Any) -> None:
        await requests.send_multipart((ident, gw.codec.encode(reply)))

    async def serve_one(ident: bytes, msg: Any) -> None:
        if isinstance(msg, HistoryRequest | AccountRequest):  # one read for every repeat of an ask
            try:
                if isinstance(msg, HistoryRequest):
                    await gw.serve_history(ident, msg, lanes[lane(msg)], answer)
                else:
                    await gw.serve_account(ident, msg, lanes[lane(msg)], answer)
            except Exception:  # one bad request must not take the account's only gateway down
                log.exception("request %s failed", type(msg).__name__)
            return
        reply = await serve_in_lanes(gw, msg, lanes)
        if reply is not None:
            await requests.send_multipart((ident, gw.codec.encode(reply)))

    async def request_loop() -> None:
        queued: set[asyncio.Task[None]] = set()
        while True:
            frames = await requests.recv_multipart()
            if len(frames) != 2:
                gw.codec.malformed += 1
                continue
            msg = gw.codec.decode(frames[1])
            if msg is None:
                continue
            if len(queued) >= MAX_QUEUED_REQUESTS:
                # Back-pressure: the rest waits in the ROUTER queue (bounded by its HWM).
                await asyncio.wait(queued, return_when=asyncio.FIRST_COMPLETED)
            t = asyncio.create_task(serve_one(frames[0], msg))
            queued.add(t)
            t.add_done_callback(queued.discard)

    async def heartbeat_loop() -> None:
        while not stop.is_set():
            if not supervisor_alive(spec.supervisor_pid):
                stop.set()
                return
            figures = gw.figures(lag.take_max_ms())
            if deadman is not None:  # the switch's state in the gateway's status note and metrics
                state, left = deadman.figures()
                figures = msgspec.structs.replace(figures, note=f"{figures.note}; {deadman.note()}",
                                                  deadman=state, deadman_expires_in_s=left)
            else:
                figures = msgspec.structs.replace(figures, deadman="off")
            send_heartbeat(hb, gw.codec, spec, figures)
            await asyncio.sleep(cfg.supervision.heartbeat_interval_s)

    # Delta's dead-man switch: renewed while this gateway lives (workers/gateway_deadman.py).
    deadman = DeadmanKeeper(gw.rest, cfg.deadman, cfg.run.bot_id, gw.products.values()) if cfg.deadman.enabled else None
    log.info("gateway up (exchange %s): %d symbols", gw.conn["rest_url"], len(gw.products))
    assert gw.funding is not None  # made by start()
    try:
        await run_until_stopped([request_loop, heartbeat_loop, charged("fill read", gw.fill_loop),
                                 charged("account poll", gw.account_loop), charged("ticker poll", gw.stale_poll_loop),
                                 charged("funding", gw.funding.loop)]
                                + ([charged("dead-man", deadman.loop)] if deadman is not None else [])
                                + [charged("ws resync", gw.resync.loop), charged("ws resync", gw.reread_loop)], stop)
        if deadman is not None and operator_stopped():  # the supervisor's word, never a bare signal
            await deadman.disable()
    finally:
        await gw.stop()
        ctx.destroy(linger=0)
    return 0


__all__ = ["run_exchange", "BAR_SECONDS"]
