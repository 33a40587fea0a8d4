"""The paper venue's websocket side: connections, key-auth, subscriptions, snapshots and the
fan-out of private order/position/fill events (public frames are built by the replay loop in
venue.py and handed to `WsClient.send`).

Every connection has a bounded send queue drained by its own writer task; a client that falls
that far behind is closed with 1008 rather than allowed to grow the venue's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web

from shared.delta.auth import WS_AUTH_PATH, verify
from shared.matching import FillEvent, OrderEvent, PositionEvent, VenueError, dec
from shared.matching import protocol as wire
from shared.products import UnknownSymbolError

if TYPE_CHECKING:
    from workers.venue import PaperVenue

SIGNATURE_WINDOW_S = 5
PUBLIC_CHANNELS = ("v2/ticker", "all_trades", "candlestick_1m")
PRIVATE_CHANNELS = ("orders", "positions", "user_trades", "margins")


def dumps(obj: Any) -> str:
    return msgspec.json.encode(obj).decode()


class WsClient:
    """One websocket connection: a bounded send queue drained by its own writer task."""

    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
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

    def __init__(self, venue: PaperVenue) -> None:
        self.venue = venue
        self.clients: set[WsClient] = set()
        self._order_seq: dict[str, int] = {}  # symbol -> last seq_no on the orders channel
        self._trade_seq = 0

    # ---- private events ---------------------------------------------------------------------
    def publish_engine_events(self) -> None:
        events = self.venue.engine.drain_events()
        self.venue.journal(events)  # durable before any client can see them (or kept for a retry)
        if not events:
            return
        authed = [c for c in self.clients if c.authed]
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

    # ---- connections ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        if len(self.clients) >= self.venue.settings.ws_max_connections:
            body = {"success": False, "error": {"code": "rate_limit_exceeded", "context": {
                "limit": self.venue.settings.ws_max_connections, "scope": "websocket"}}}
            return web.Response(body=msgspec.json.encode(body), status=429, content_type="application/json",
                                headers={"X-RATE-LIMIT-RESET": "5000"})
        ws = web.WebSocketResponse(max_msg_size=1 << 16)
        await ws.prepare(request)
        client = WsClient(ws, self.venue.settings.ws_send_queue)
        self.clients.add(client)
        writer = asyncio.create_task(self._writer(client))
        try:
            async for msg in ws:
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
        if kind in ("key-auth", "auth"):
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
        if name not in PUBLIC_CHANNELS + PRIVATE_CHANNELS:
            return {"name": name, "error": f"subscription forbidden on {name}. Unknown channel"}
        if name in PRIVATE_CHANNELS and not client.authed:
            return {"name": name, "error": f"subscription forbidden on {name}. Unauthorized user"}
        if name == "margins":
            symbols = ["all"]  # an account channel: Delta takes no symbols for it
        if not isinstance(symbols, list) or not symbols:
            return None  # Delta: most channels send nothing without symbols
        good: list[str] = []
        for sym in symbols:
            if sym in ("all", "perpetual_futures"):  # every product here is a perpetual
                good.append("all")
                continue
            try:
                # Bounded by what is listed: an anonymous socket cannot make the venue list (and
                # replay) a new market per junk symbol it sends.
                self.venue.market(str(sym), may_list=client.authed)
                good.append(str(sym))
            except UnknownSymbolError as exc:
                return {"name": name, "symbols": [sym], "error": str(exc)}
            except VenueError as exc:
                return {"name": name, "symbols": [sym], "error": str(exc.context.get("message", exc.code))}
        client.subs.setdefault(name, set()).update(good)
        added.append((name, good))
        return None

    def _snapshots(self, client: WsClient, name: str, symbols: list[str]) -> None:
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
                                    "meta": {"seq_no": self._order_seq.get(sym, 0), "timestamp": self.venue.market_us}}))
            elif name == "positions":
                positions = [p for p in self.venue.engine.positions() if sym == "all" or p.symbol == sym]
                client.send(dumps({"type": "positions", "action": "snapshot", "success": True, "result": [
                    {"symbol": p.symbol, "product_id": p.product_id, "size": p.size,
                     "entry_price": wire.s(p.entry_price), "margin": wire.s(self.venue.engine.position_margin(p.product_id)),
                     "auto_topup": False, "updated_at": str(p.updated_at)} for p in positions]}))
