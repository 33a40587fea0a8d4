"""The paper venue's websocket side: connections, key-auth, subscriptions, snapshots, the
fan-out of private order/position/fill events, and the book/mark/funding channels (trade, candle
and ticker frames are built by the replay loop in market.py and handed to `WsClient.send`).

Book channels (api spec §9.4, legacy names): `l1_orderbook`, `l2_orderbook` (<= 20 symbols, no
"all"), `l2_updates` (<= 100 symbols, no "all"; a snapshot then deltas numbered by
`sequence_no`, each with Delta's CRC32 `cs`), `mark_price` (symbols "MARK:<symbol>") and
`funding_rate` (always 0: the paper venue charges no funding). The book is the one REST
`l2orderbook` serves: the synthetic touch plus our resting orders; it is published after every
replayed tick and after every request that changed orders.

The public path (`/public`, India's public host since 2026-04-17, api spec §9.5) serves the
compact channels `trades`, `ticker`, `ob_l1`, `ob_l2` (top 15), `ob_updates`, `mark_price`,
`funding_rate`, `candlestick_1m` with their short keys; it has no private channels and no
auth, as the public host has none. One book sequence per symbol feeds l2_updates and ob_updates.

Bad input never drops the connection silently: a refused channel comes back in the
`subscriptions` list with Delta's `error` text, an unreadable frame gets an `error` frame.

Every connection has a bounded send queue drained by its own writer task; a client that falls
that far behind is closed with 1008 rather than allowed to grow the venue's memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

import msgspec
from aiohttp import WSMsgType, web

from shared.delta.auth import WS_AUTH_PATH, verify
from shared.delta.constants import (
    BOOK_CHANNELS,
    COMPACT_CHANNELS,
    PRIVATE_CHANNELS,
    PUBLIC_CHANNELS,
    SIGNATURE_WINDOW_S,
    TRAIL_EXTREME_FIELD,
)
from shared.delta.ws import l2_checksum
from shared.matching import (
    FillEvent,
    MatchingEngine,
    OrderEvent,
    PositionEvent,
    VenueError,
    dec,
)
from shared.matching import protocol as wire
from shared.products import UnknownSymbolError

# Delta's per-channel symbol limits; "all" is not served on the full-book channels (the compact
# ones are taken to match their legacy twins: UNCONFIRMED)
MAX_SYMBOLS = {"l2_orderbook": 20, "l2_updates": 100, "ob_l2": 20, "ob_updates": 100}
BOOK_DEPTH = 50  # levels per side on l2_orderbook / l2_updates / ob_updates
OB_L2_DEPTH = 15  # ob_l2 sends the top 15


MarketPlan = dict[tuple[str, bool], list["WsClient"]]


class HubSettings(Protocol):
    ws_max_connections: int
    ws_send_queue: int
    heartbeat_s: float


class HubVenue(Protocol):
    """What the hub needs from the venue it serves (given, never imported: no import circle)."""

    @property
    def settings(self) -> HubSettings: ...
    @property
    def engine(self) -> MatchingEngine: ...
    @property
    def markets(self) -> dict[str, Any]: ...
    @property
    def market_us(self) -> int: ...
    @property
    def api_key(self) -> str: ...
    @property
    def api_secret(self) -> str: ...

    def journal(self, events: list[Any]) -> None: ...
    def market(self, symbol: str, *, may_list: bool = True) -> Any: ...
    def book(self, m: Any, depth: int) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]: ...
    def candle_frame(self, m: Any, ts: int) -> dict[str, Any]: ...
    def ticker(self, m: Any) -> dict[str, Any]: ...
    def funding_rate(self, m: Any) -> tuple[Decimal, int, int]: ...


def dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


def _fan(clients: list[WsClient], frame: dict[str, Any]) -> None:
    text = dumps(frame)
    for c in clients:
        c.send(text)


def compact_ticker(t: Mapping[str, Any]) -> dict[str, Any]:
    """A REST/v2 ticker in the public host's compact `ticker` form (api spec §9.5)."""
    q, pb = t.get("quotes") or {}, t.get("price_band") or {}
    return {"type": "ticker", "sy": t["symbol"], "ts": t["timestamp"], "sp": t.get("spot_price"),
            "d": [{"s": t["symbol"], "i": t["product_id"], "m": t.get("mark_price"), "m24hc": t.get("mark_change_24h"),
                   "ohlc": [t.get("open"), t.get("high"), t.get("low"), t.get("close")],
                   "oi": [t.get("oi_contracts"), t.get("oi_change_usd_6h")],
                   "pb": [pb.get("lower_limit"), pb.get("upper_limit")],
                   "q": [q.get("best_ask"), q.get("ask_size"), q.get("best_bid"), q.get("bid_size"),
                         q.get("impact_mid_price")],
                   "qiv": [q.get("ask_iv"), q.get("bid_iv"), q.get("mark_iv")], "g": None,
                   "to": [t.get("turnover"), t.get("turnover_usd")]}]}


class WsClient:
    """One websocket connection: a bounded send queue drained by its own writer task."""

    def __init__(self, ws: web.WebSocketResponse, queue_size: int, *, compact: bool = False) -> None:
        self.ws = ws
        self.compact = compact  # on the public path: compact channels only
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_size)
        self.subs: dict[str, set[str]] = {}
        self.authed = False
        self.heartbeat: asyncio.Task[None] | None = None
        self.too_slow = False

    def wants(self, channel: str, symbol: str) -> bool:
        syms = self.subs.get(channel)
        return syms is not None and (symbol in syms or "all" in syms)

    def send(self, frame: str) -> bool:
        if self.too_slow:
            return False
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            self.too_slow = True  # never grow without bound: the writer closes the socket
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.get_nowait()
                self.queue.put_nowait(None)
            return False


class WsHub:
    """All websocket connections of one venue."""

    def __init__(self, venue: HubVenue) -> None:
        self.venue = venue
        self.clients: set[WsClient] = set()
        self._order_seq: dict[str, int] = {}  # symbol -> last seq_no on the orders channel
        self._trade_seq = 0
        # symbol -> (sequence_no, bids, asks) last published on l2_updates; kept only while
        # someone is subscribed, so bounded by the venue's symbols
        self._books: dict[str, tuple[int, dict[str, str], dict[str, str]]] = {}
        self._tops: dict[str, tuple[str | None, ...]] = {}  # symbol -> last l1_orderbook top sent

    # ---- private events ---------------------------------------------------------------------
    def publish_engine_events(self) -> None:
        events = self.venue.engine.drain_events()
        self.venue.journal(events)  # durable before any client can see them (or kept for a retry)
        if not events:
            return
        authed = [c for c in self.clients if c.authed]
        plan = self.market_plan()
        if plan:  # our orders are in the book: an order change is a book change
            for sym in {ev.order.symbol for ev in events if isinstance(ev, OrderEvent)}:
                m = self.venue.markets.get(sym)
                if m is not None:
                    self.publish_market(m, plan)
        margin_subs = [c for c in authed if "margins" in c.subs]
        if margin_subs:  # one wallet update per batch of account changes
            w = self.venue.engine.wallet()
            frame = dumps({**wire.wallet_json(w), "type": "margins", "action": "update",
                           "timestamp": self.venue.market_us})
            for c in margin_subs:
                c.send(frame)
        for ev in events:
            if isinstance(ev, OrderEvent):
                o = ev.order
                seq = self._order_seq.get(o.symbol, 0) + 1
                self._order_seq[o.symbol] = seq
                targets = [c for c in authed if c.wants("orders", o.symbol)]
                if targets:
                    body = wire.order_json(o)
                    if o.trail_extreme is not None:  # documented on the channel's updates of trailing stops
                        body[TRAIL_EXTREME_FIELD] = wire.s(o.trail_extreme)
                    frame = dumps({**body, "type": "orders", "action": ev.action, "reason": ev.reason,
                                    "symbol": o.symbol, "order_id": o.id, "seq_no": seq,
                                    "timestamp": o.updated_at})
                    for c in targets:
                        c.send(frame)
            elif isinstance(ev, FillEvent):
                f = ev.fill
                self._trade_seq += 1
                targets = [c for c in authed if c.wants("user_trades", f.symbol)]
                if targets:
                    frame = dumps({"type": "user_trades", "symbol": f.symbol, "fill_id": f.id,
                                   "reason": "liquidation" if f.fill_type == "liquidation" else "normal",
                                    "product_id": f.product_id, "user_id": wire.USER_ID,
                                    "order_id": str(f.order_id), "side": f.side, "size": f.size,
                                    "price": wire.s(f.price), "role": f.role, "commission": wire.s(f.commission),
                                    "client_order_id": f.client_order_id, "timestamp": f.timestamp,
                                    "seq_no": self._trade_seq})
                    for c in targets:
                        c.send(frame)
            elif isinstance(ev, PositionEvent):
                pos = ev.position
                targets = [c for c in authed if c.wants("positions", pos.symbol)]
                if targets:
                    frame = dumps({"type": "positions", "action": "update", "reason": None,
                                    "symbol": pos.symbol, "product_id": pos.product_id, "size": pos.size,
                                    "margin": wire.s(self.venue.engine.position_margin(pos.product_id)),
                                    "entry_price": wire.s(pos.entry_price), "liquidation_price": None,
                                    "bankruptcy_price": None, "commission": wire.s(pos.commission),
                                    "timestamp": pos.updated_at})
                    for c in targets:
                        c.send(frame)

    # ---- book, mark price, funding; the public path's compact channels ------------------------
    def market_plan(self) -> MarketPlan:
        """Who takes which publish_market channel, (channel, compact) -> clients, made once per
        replay step so each market only looks at the channels someone follows."""
        plan: MarketPlan = {}
        for c in self.clients:
            for ch in c.subs:
                if ch in (COMPACT_CHANNELS if c.compact else BOOK_CHANNELS):
                    plan.setdefault((ch, c.compact), []).append(c)
        return plan

    def _levels(self, m: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        bids, asks = self.venue.book(m, BOOK_DEPTH)
        return ([(wire.s(p) or "0", str(q)) for p, q in bids], [(wire.s(p) or "0", str(q)) for p, q in asks])

    def publish_market(self, m: Any, plan: MarketPlan, trade: tuple[float, int, int, str] | None = None,
                       *, bar_closed: bool = False) -> None:
        """One market's frames after a replayed tick (`trade` = price, size, µs, buyer role) or an
        order change (no trade): book, mark and at bar close funding, in both dialects, plus the
        public path's compact trades, candles and (at bar close) ticker."""
        sym, mark_sym = m.symbol, f"MARK:{m.symbol}"
        ts = self.venue.market_us

        legacy: dict[str, list[WsClient]] = collections.defaultdict(list)
        compact: dict[str, list[WsClient]] = collections.defaultdict(list)
        for (ch, is_compact), clients in plan.items():
            key = mark_sym if ch == "mark_price" else sym
            (compact if is_compact else legacy)[ch] = [c for c in clients if c.wants(ch, key)]
        if trade is not None:
            price, size, t_us, buyer = trade
            if compact["trades"]:
                _fan(compact["trades"], {"type": "trades", "sy": sym, "p": wire.s(dec(price)), "s": size,
                                         "r": "t" if buyer == "taker" else "m", "t": t_us, "ts": t_us})
            if compact["candlestick_1m"]:
                c = self.venue.candle_frame(m, t_us)
                _fan(compact["candlestick_1m"], {"type": "candlestick_1m", "sy": sym, "res": "1m", "o": c["open"],
                                                 "h": c["high"], "l": c["low"], "c": c["close"], "v": c["volume"],
                                                 "ts": t_us})
        if bar_closed and compact["ticker"]:
            _fan(compact["ticker"], compact_ticker(self.venue.ticker(m)))
        books = (legacy["l2_updates"], legacy["l2_orderbook"], legacy["l1_orderbook"],
                 compact["ob_updates"], compact["ob_l2"], compact["ob_l1"])
        if any(books):
            bids, asks = self._levels(m)
            if legacy["l2_updates"] or compact["ob_updates"]:
                self._book_update(m, bids, asks, legacy["l2_updates"], compact["ob_updates"], ts)
            else:
                self._books.pop(sym, None)  # nobody follows the deltas: the next one starts afresh
            seq = self._books[sym][0] if sym in self._books else 0
            if legacy["l2_orderbook"]:
                _fan(legacy["l2_orderbook"], self._l2_frame(m, bids, asks, seq, ts))
            if compact["ob_l2"]:
                _fan(compact["ob_l2"], self._ob_l2_frame(m, bids, asks, ts))
            top = (bids[0][0] if bids else None, bids[0][1] if bids else None,
                   asks[0][0] if asks else None, asks[0][1] if asks else None)
            if (legacy["l1_orderbook"] or compact["ob_l1"]) and self._tops.get(sym) != top:
                self._tops[sym] = top
                if legacy["l1_orderbook"]:
                    _fan(legacy["l1_orderbook"], self._l1_frame(m, top, seq, ts))
                if compact["ob_l1"]:
                    _fan(compact["ob_l1"], self._ob_l1_frame(m, top, ts))
        if legacy["mark_price"]:
            _fan(legacy["mark_price"], self._mark_frame(m, ts))
        if compact["mark_price"]:
            _fan(compact["mark_price"], {"type": "mark_price", "sy": mark_sym,
                                         "p": wire.s(self.venue.engine.last_price(m.spec.product_id)), "ts": ts})
        if bar_closed and legacy["funding_rate"]:
            _fan(legacy["funding_rate"], self._funding_frame(m, ts))
        if bar_closed and compact["funding_rate"]:
            _fan(compact["funding_rate"], self._compact_funding(m, ts))

    def _book_update(self, m: Any, bids: list[tuple[str, str]], asks: list[tuple[str, str]],
                     legacy: list[WsClient], compact: list[WsClient], ts: int) -> None:
        """The change since the book last published, as one numbered delta on l2_updates and
        ob_updates alike (one sequence per symbol)."""
        state = self._books.get(m.symbol)
        new_bids, new_asks = dict(bids), dict(asks)
        if state is None:
            self._books[m.symbol] = (0, new_bids, new_asks)
            return  # subscribers got their snapshot when they subscribed
        seq, old_bids, old_asks = state

        def changed(old: dict[str, str], new: dict[str, str]) -> list[list[str]]:
            rows = [[p, q] for p, q in new.items() if old.get(p) != q]
            return rows + [[p, "0"] for p in old if p not in new]  # size "0" deletes the level
        d_bids, d_asks = changed(old_bids, new_bids), changed(old_asks, new_asks)
        if not d_bids and not d_asks:
            return
        seq += 1
        self._books[m.symbol] = (seq, new_bids, new_asks)
        cs = l2_checksum(asks, bids)
        if legacy:
            _fan(legacy, {"type": "l2_updates", "action": "update", "symbol": m.symbol, "bids": d_bids,
                          "asks": d_asks, "sequence_no": seq, "timestamp": ts, "cs": cs})
        if compact:
            _fan(compact, {"type": "ob_updates", "action": "update", "sy": m.symbol, "b": d_bids, "a": d_asks,
                           "seq": seq, "ts": ts, "cs": cs})

    def _book_snapshot(self, m: Any, client: WsClient) -> dict[str, Any]:
        """The l2_updates / ob_updates snapshot for a new subscriber, numbered so that the deltas
        everyone gets next follow it; those already subscribed are first brought up to now."""
        bids, asks = self._levels(m)
        others = [c for c in self.clients if c is not client
                  and c.wants("ob_updates" if c.compact else "l2_updates", m.symbol)]
        state = self._books.get(m.symbol)
        if state is not None and others:
            self._book_update(m, bids, asks, [c for c in others if not c.compact],
                              [c for c in others if c.compact], self.venue.market_us)
        else:
            self._books[m.symbol] = (0 if state is None else state[0] + 1, dict(bids), dict(asks))
        seq = self._books[m.symbol][0]
        b, a, cs = [list(x) for x in bids], [list(x) for x in asks], l2_checksum(asks, bids)
        if client.compact:
            return {"type": "ob_updates", "action": "snapshot", "sy": m.symbol, "b": b, "a": a, "seq": seq,
                    "ts": self.venue.market_us, "cs": cs}
        return {"type": "l2_updates", "action": "snapshot", "symbol": m.symbol, "bids": b, "asks": a,
                "sequence_no": seq, "timestamp": self.venue.market_us, "cs": cs}

    def _book_first_frame(self, client: WsClient, name: str, m: Any) -> None:
        """What a subscriber gets at once: the deltas' snapshot, or the channel's current frame."""
        ts = self.venue.market_us
        if name in ("l2_updates", "ob_updates"):
            client.send(dumps(self._book_snapshot(m, client)))
        elif name == "mark_price":
            client.send(dumps({"type": "mark_price", "sy": f"MARK:{m.symbol}", "ts": ts,
                               "p": wire.s(self.venue.engine.last_price(m.spec.product_id))}
                              if client.compact else self._mark_frame(m, ts)))
        elif name == "funding_rate":
            client.send(dumps(self._compact_funding(m, ts) if client.compact else self._funding_frame(m, ts)))
        elif name in ("l2_orderbook", "ob_l2", "l1_orderbook", "ob_l1"):
            bids, asks = self._levels(m)
            seq = self._books[m.symbol][0] if m.symbol in self._books else 0
            top = (bids[0][0] if bids else None, bids[0][1] if bids else None,
                   asks[0][0] if asks else None, asks[0][1] if asks else None)
            frame = {"l2_orderbook": lambda: self._l2_frame(m, bids, asks, seq, ts),
                     "ob_l2": lambda: self._ob_l2_frame(m, bids, asks, ts),
                     "l1_orderbook": lambda: self._l1_frame(m, top, seq, ts),
                     "ob_l1": lambda: self._ob_l1_frame(m, top, ts)}[name]()
            client.send(dumps(frame))

    @staticmethod
    def _l2_frame(m: Any, bids: list[tuple[str, str]], asks: list[tuple[str, str]], seq: int,
                  ts: int) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "l2_orderbook", "symbol": m.symbol, "product_id": m.spec.product_id}
        for side, rows in (("buy", bids), ("sell", asks)):
            cum, levels = 0, []
            for p, q in rows:
                cum += int(q)
                levels.append({"limit_price": p, "size": int(q), "depth": str(cum)})
            out[side] = levels
        out.update({"last_sequence_no": seq, "last_updated_at": ts, "timestamp": ts})
        return out

    @staticmethod
    def _ob_l2_frame(m: Any, bids: list[tuple[str, str]], asks: list[tuple[str, str]], ts: int) -> dict[str, Any]:
        return {"type": "ob_l2", "sy": m.symbol, "b": [list(x) for x in bids[:OB_L2_DEPTH]],
                "a": [list(x) for x in asks[:OB_L2_DEPTH]], "lts": ts, "ts": ts}

    @staticmethod
    def _l1_frame(m: Any, top: tuple[str | None, ...], seq: int, ts: int) -> dict[str, Any]:
        return {"type": "l1_orderbook", "symbol": m.symbol, "product_id": m.spec.product_id,
                "best_bid": top[0], "bid_qty": top[1], "best_ask": top[2], "ask_qty": top[3],
                "last_sequence_no": seq, "last_updated_at": ts, "timestamp": ts}

    @staticmethod
    def _ob_l1_frame(m: Any, top: tuple[str | None, ...], ts: int) -> dict[str, Any]:
        return {"type": "ob_l1", "sy": m.symbol, "bp": top[0], "bs": top[1], "ap": top[2], "as": top[3],
                "lts": ts, "ts": ts}

    def _mark_frame(self, m: Any, ts: int) -> dict[str, Any]:
        """The paper venue's mark is its last replayed trade (no separate index)."""
        pid = m.spec.product_id
        mark = self.venue.engine.last_price(pid)
        bid, ask = self.venue.engine.touch(pid)
        return {"type": "mark_price", "symbol": f"MARK:{m.symbol}", "product_id": pid, "price": wire.s(mark),
                "price_band": {"lower_limit": wire.s(bid * dec("0.975")), "upper_limit": wire.s(ask * dec("1.025"))},
                "best_bid": wire.s(bid), "best_ask": wire.s(ask), "bid_qty": str(m.tick_size),
                "ask_qty": str(m.tick_size), "bid_iv": None, "ask_iv": None, "delta": None, "gamma": None,
                "rho": None, "vega": None, "implied_volatility": None, "timestamp": ts}

    def _funding_frame(self, m: Any, ts: int) -> dict[str, Any]:
        """The next funding time's rate, in percent per interval (as numbers, like the
        recorded samples; units and types UNCONFIRMED)."""
        pct, nxt, interval_s = self.venue.funding_rate(m)
        rate = float(pct)
        return {"type": "funding_rate", "symbol": m.symbol, "product_id": m.spec.product_id,
                "funding_rate": rate, "funding_rate_8h": rate * 28_800 / interval_s, "predicted_funding_rate": rate,
                "next_funding_realization": nxt, "timestamp": ts}

    def _compact_funding(self, m: Any, ts: int) -> dict[str, Any]:
        pct, nxt, interval_s = self.venue.funding_rate(m)
        return {"type": "funding_rate", "sy": m.symbol, "fr": float(pct), "nfr": nxt, "fi": interval_s, "ts": ts}

    # ---- connections ------------------------------------------------------------------------
    async def handle_public(self, request: web.Request) -> web.StreamResponse:
        """The public path: compact market-data channels, no auth (India's public host)."""
        return await self.handle(request, compact=True)

    async def handle(self, request: web.Request, *, compact: bool = False) -> web.StreamResponse:
        if len(self.clients) >= self.venue.settings.ws_max_connections:
            body = {"success": False, "error": {"code": "rate_limit_exceeded", "context": {
                "limit": self.venue.settings.ws_max_connections, "scope": "websocket"}}}
            return web.Response(body=msgspec.json.encode(body), status=429, content_type="application/json",
                                headers={"X-RATE-LIMIT-RESET": "5000"})
        ws = web.WebSocketResponse(max_msg_size=1 << 16)
        await ws.prepare(request)
        client = WsClient(ws, self.venue.settings.ws_send_queue, compact=compact)
        self.clients.add(client)
        writer = asyncio.create_task(self._writer(client))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    client.send(dumps({"type": "error", "message": "bad frame: send JSON text frames"}))
                    continue
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    frame = json.loads(msg.data)
                    if not isinstance(frame, dict):
                        raise ValueError("frame must be a JSON object")
                    self._on_ws_frame(client, frame)
                except (ValueError, TypeError, RecursionError) as exc:  # junk nested past the parser's depth
                    client.send(dumps({"type": "error", "message": f"bad frame: {exc}"[:200]}))
        finally:
            await self.drop(client)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, client: WsClient) -> None:
        while True:
            frame = await client.queue.get()
            if frame is None or client.ws.closed:
                await client.ws.close(code=1008, message=b"client too slow")
                return
            try:
                await client.ws.send_str(frame)
            except (ConnectionError, RuntimeError):
                return

    async def drop(self, client: WsClient) -> None:
        self.clients.discard(client)
        if client.heartbeat is not None:
            client.heartbeat.cancel()
            client.heartbeat = None
        if not client.ws.closed:
            await client.ws.close()

    async def _heartbeats(self, client: WsClient) -> None:
        while True:
            await asyncio.sleep(self.venue.settings.heartbeat_s)
            client.send('{"type":"heartbeat"}')

    async def drop_all(self) -> None:
        for c in list(self.clients):
            await self.drop(c)

    def _on_ws_frame(self, client: WsClient, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        raw_payload = frame.get("payload")
        payload: dict[str, Any] = raw_payload if isinstance(raw_payload, dict) else {}
        if kind in ("key-auth", "auth") and client.compact:
            client.send(dumps({"type": kind, "success": False, "status_code": 400, "status": "not_supported",
                               "message": "the public socket has no private channels: authenticate on the "
                                          "main socket"}))
        elif kind in ("key-auth", "auth"):
            client.send(dumps(self._ws_auth(client, kind, payload)))
        elif kind == "unauth":
            client.authed = False
            for ch in PRIVATE_CHANNELS:
                client.subs.pop(ch, None)
            client.send(dumps({"type": "unauth", "success": True}))
        elif kind in ("subscribe", "unsubscribe"):
            channels = payload.get("channels")
            if not isinstance(channels, list):
                raise ValueError("payload.channels must be a list")
            added: list[tuple[str, list[str]]] = []
            errors = [self._subscribe(client, ch, kind == "subscribe", added) for ch in channels]
            listed: list[dict[str, Any]] = [{"name": n, "symbols": sorted(s)} for n, s in client.subs.items()]
            listed += [e for e in errors if e is not None]
            client.send(dumps({"type": "subscriptions", "channels": listed}))
            for name, symbols in added:  # snapshots follow the confirmation, as on Delta
                self._snapshots(client, name, symbols)
        elif kind == "enable_heartbeat":
            if client.heartbeat is None:
                client.heartbeat = asyncio.create_task(self._heartbeats(client))
        elif kind == "disable_heartbeat":
            if client.heartbeat is not None:
                client.heartbeat.cancel()
                client.heartbeat = None
        elif kind == "ping":
            client.send('{"type":"pong"}')
        else:
            raise ValueError(f"unknown type {str(kind)[:40]!r}")

    def _ws_auth(self, client: WsClient, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        key, sig, ts = payload.get("api-key"), payload.get("signature"), payload.get("timestamp")

        def fail(code: int, status: str, message: str) -> dict[str, Any]:
            return {"type": kind, "success": False, "status_code": code, "status": status, "message": message}

        if not key or not sig or ts is None or isinstance(ts, bool):
            return fail(400, "incomplete_payload", "api-key, signature and timestamp are required")
        ts_text = str(ts)
        try:
            ts_val = int(ts_text)
        except ValueError:
            return fail(400, "incomplete_payload", "timestamp must be epoch seconds")
        if abs(time.time() - ts_val) > SIGNATURE_WINDOW_S:
            return fail(408, "request_expired", "Timestamp header outside of allowed time window")
        if key != self.venue.api_key:
            return fail(404, "api_key_not_found", "api key not found")
        if not verify(self.venue.api_secret, str(sig), "GET", ts_text, WS_AUTH_PATH):
            return fail(401, "invalid_signature", "invalid signature")
        client.authed = True
        if kind == "auth":
            return {"type": "success", "message": "Authenticated"}
        return {"type": "key-auth", "success": True, "status_code": 200, "status": "authenticated"}

    def _subscribe(self, client: WsClient, ch: Any, add: bool,
                   added: list[tuple[str, list[str]]]) -> dict[str, Any] | None:
        if not isinstance(ch, dict) or not isinstance(ch.get("name"), str):
            raise ValueError("each channel needs a name")
        name = ch["name"]
        symbols = ch.get("symbols")
        if not add:
            if symbols is None:
                client.subs.pop(name, None)
            elif name in client.subs:
                client.subs[name].difference_update(symbols)
                if not client.subs[name]:
                    del client.subs[name]
            return None
        if client.compact and name in PRIVATE_CHANNELS:
            return {"name": name, "error": f"subscription forbidden on {name}. Private channels are on the "
                                           "main socket"}
        if name not in (COMPACT_CHANNELS if client.compact else PUBLIC_CHANNELS + PRIVATE_CHANNELS):
            return {"name": name, "error": f"subscription forbidden on {name}. Unknown channel"}
        if name in PRIVATE_CHANNELS and not client.authed:
            return {"name": name, "error": f"subscription forbidden on {name}. Unauthorized user"}
        if name == "margins":
            symbols = ["all"]  # an account channel: Delta takes no symbols for it
        if not isinstance(symbols, list) or not symbols:
            return None  # Delta: most channels send nothing without symbols
        limit = MAX_SYMBOLS.get(name)
        if limit is not None and len(set(symbols) | client.subs.get(name, set())) > limit:
            return {"name": name, "error": f"subscription forbidden on {name}. At most {limit} symbols"}
        good: list[str] = []
        for sym in symbols:
            if sym in ("all", "perpetual_futures"):  # every product here is a perpetual
                if limit is not None:
                    return {"name": name, "symbols": [sym],
                            "error": f"subscription forbidden on {name}. Symbol 'all' is not supported"}
                good.append("all")
                continue
            text = str(sym)
            if name == "mark_price" and not text.startswith("MARK:"):
                return {"name": name, "symbols": [sym],
                        "error": f"subscription forbidden on {name}. Symbols are MARK:<symbol>"}
            try:
                # Bounded by what is listed: an anonymous socket cannot make the venue list (and
                # replay) a new market per junk symbol it sends.
                self.venue.market(text.removeprefix("MARK:") if name == "mark_price" else text,
                                  may_list=client.authed)
                good.append(text)
            except UnknownSymbolError as exc:
                return {"name": name, "symbols": [sym], "error": str(exc)}
            except VenueError as exc:
                return {"name": name, "symbols": [sym], "error": str(exc.context.get("message", exc.code))}
        client.subs.setdefault(name, set()).update(good)
        added.append((name, good))
        return None

    def _snapshots(self, client: WsClient, name: str, symbols: list[str]) -> None:
        if name in BOOK_CHANNELS or name in ("ob_l1", "ob_l2", "ob_updates"):
            # as on Delta, "all" gets no snapshots (hundreds of symbols at once)
            markets = [] if "all" in symbols else [self.venue.markets[sym.removeprefix("MARK:")] for sym in symbols]
            for m in markets:
                self._book_first_frame(client, name, m)
            return
        for sym in symbols:
            m = self.venue.markets.get(sym)
            if name == "all_trades" and m is not None:
                trades = [{"buyer_role": b, "seller_role": "maker" if b == "taker" else "taker", "size": sz,
                           "price": wire.s(dec(p)), "timestamp": ts}
                          for p, sz, ts, b in m.recent]
                client.send(dumps({"type": "all_trades_snapshot", "symbol": sym, "trades": trades}))
            elif name == "orders":
                pids = None if sym == "all" else [self.venue.markets[sym].spec.product_id]
                client.send(dumps({"type": "orders", "action": "snapshot", "success": True, "symbol": sym,
                                    "result": [wire.order_json(o) for o in self.venue.engine.open_orders(pids)],
                                    "meta": {"seq_no": self._order_seq.get(sym, 0),
                                             "timestamp": self.venue.market_us}}))
            elif name == "positions":
                positions = [p for p in self.venue.engine.positions() if sym == "all" or p.symbol == sym]
                client.send(dumps({"type": "positions", "action": "snapshot", "success": True, "result": [
                    {"symbol": p.symbol, "product_id": p.product_id, "size": p.size,
                     "entry_price": wire.s(p.entry_price),
                     "margin": wire.s(self.venue.engine.position_margin(p.product_id)),
                     "auto_topup": False, "updated_at": str(p.updated_at)} for p in positions]}))
