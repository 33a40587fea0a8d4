"""The gateway's REST side of the websocket: what it reads back when the socket lost something, and
while a symbol is quiet on it. One home for both (the decisions in shared/delta/resync.py).

- A socket that dropped (`Disconnected`): when it is back (`Connected`), before it resubscribes
  (the client awaits this handler), the trades each symbol it feeds missed meanwhile are read from
  REST (`/v2/trades/{symbol}`, newer than the last one heard) and handed on as ticks, oldest
  first: the bots' tick stream has no hole (as far as the venue's recent-trades list reaches, 50
  trades on the paper venue). The main socket dropping also means order events and fills may
  have been missed: every symbol's orders are read again and the fill reader is woken.
- `SequenceGap` (a symbol's order events skipped a number): that symbol's open orders are read
  and handed to its worker, and the fill reader is woken. `DataGap`: the same for every symbol.
- A symbol quiet on its feeding socket (the client's quiet timer): its ticker is polled over REST
  every second and handed on as a tick, so a quiet socket never freezes the bots' view.
Each per-symbol read counts as a resync; the gateway's status note shows the counts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from shared.delta.errors import DeltaError
from shared.delta.ratelimit import LimiterBusy
from shared.delta.resync import MarketTrade, ResyncBook
from shared.delta.ws import Connected, DataGap, DeltaWebSocket, Disconnected, SequenceGap
from shared.messages import OrderEvent, Tick, topic

if TYPE_CHECKING:
    from .gateway_exchange import ExchangeGateway

log = logging.getLogger("gateway")
QUIET_POLL_S = 1.0  # the tightest ticker poll the rate budget allows for many symbols
RESYNC_POLL_S = 0.2  # how soon a gap's order read starts (coalescing a burst of gaps)
# A read that may work later: the venue's errors, the network, and our own limiter's full queue
# (LimiterBusy: shed now, read again at the next turn; a background loop must not die of it).
REST_FAILURES = (TimeoutError, DeltaError, OSError, LimiterBusy)


class Resyncer:
    def __init__(self, gw: ExchangeGateway) -> None:
        self.gw = gw
        self.book = ResyncBook(gw.spec.symbols)
        self._gap: set[int] = set()  # id() of sockets that dropped and have not been read back yet
        self.polled_ticks = 0

    # ---- websocket events (awaited inline by the socket's own task) ---------------------------
    async def on_event(self, socket: DeltaWebSocket | None, ev: Any) -> None:
        if socket is None:
            return
        gw = self.gw
        if isinstance(ev, Disconnected):
            self._gap.add(id(socket))
            orders = socket is gw.ws
            self.book.on_disconnected(gw.products if orders else ())
            if orders:
                gw.fill_wakeup.set()
        elif isinstance(ev, Connected) and id(socket) in self._gap:
            self._gap.discard(id(socket))
            if gw.market_ws is not None:
                await self.read_missed_trades([s for s in gw.products if gw.feed_of(s) is socket])
        elif isinstance(ev, SequenceGap):
            log.warning("%s: %s sequence gap (expected %d, got %d); reading its orders again", ev.symbol,
                        ev.channel, ev.expected, ev.got)
            self.book.on_sequence_gap(ev.symbol)
            gw.fill_wakeup.set()
        elif isinstance(ev, DataGap):
            log.warning("websocket dropped %d events; reading every symbol's orders again", ev.dropped)
            self.book.on_data_gap()
            gw.fill_wakeup.set()

    async def read_missed_trades(self, symbols: Sequence[str]) -> None:
        """Trades of `symbols` the feed missed while its socket was down, as ticks, oldest first."""
        for sym in symbols:
            try:
                recent = await self.gw.rest.get_recent_trades(sym)
            except REST_FAILURES as exc:
                self.gw.rest_errors += 1
                log.warning("%s: missed trades not read back after a reconnect: %s", sym, exc)
                continue
            self.book.resyncs += 1
            missed = self.book.missed(sym, [MarketTrade(int(t.timestamp), float(t.price), float(t.size))
                                            for t in recent if isinstance(t.timestamp, int)])
            for t in missed:
                await self.publish_tick(sym, t.price, t.size, t.ts_us)
            if missed:
                log.info("%s: %d trades missed while the socket was down handed on from REST", sym, len(missed))

    # ---- ticks from REST ----------------------------------------------------------------------
    async def publish_tick(self, sym: str, price: float, size: float, ts_us: int) -> None:
        gw = self.gw
        gw.seqs[sym] += 1
        gw.marks[sym] = price
        tick = Tick(symbol=sym, epoch=gw.epoch, seq=gw.seqs[sym], price=price, size=size, exch_ts_us=ts_us,
                    sent_ns=time.perf_counter_ns())
        await gw.pub.send_multipart((topic(sym), gw.codec.encode(tick)))

    async def quiet_loop(self) -> None:
        """While the feeding socket is quiet for a symbol, its ticker every second, as a tick."""
        gw = self.gw
        while True:
            await asyncio.sleep(QUIET_POLL_S)
            if gw.market_ws is None:
                continue
            await gw.public_quiet_check()
            for sym in [s for s in gw.products if gw.feed_of(s).is_stale(s)]:
                try:
                    t = await gw.rest.get_ticker(sym)
                except REST_FAILURES as exc:
                    gw.rest_errors += 1
                    log.warning("%s: ticker poll failed while the socket is quiet: %s", sym, exc)
                    continue
                if t.close is None or not t.close > 0:
                    continue
                self.polled_ticks += 1
                await self.publish_tick(sym, float(t.close), 0.0, int(t.timestamp or time.time() * 1e6))

    # ---- orders after a gap -------------------------------------------------------------------
    async def loop(self) -> None:
        """Per-symbol order reads for the gaps the socket reported (coalesced)."""
        while True:
            await asyncio.sleep(RESYNC_POLL_S)
            for sym, reason in self.book.take():
                await self.read_orders(sym, reason)

    async def read_orders(self, sym: str, reason: str) -> None:
        """The symbol's open orders, handed to its worker as order events (the states a missed
        event would have said). An order that ended unheard is not among them: the worker's
        regular account read (every 15 s) and the fill reader settle it."""
        gw = self.gw
        spec = gw.products.get(sym)
        if spec is None:
            return
        try:
            orders = await gw.rest.get_open_orders([spec.product_id])
        except REST_FAILURES as exc:
            gw.rest_errors += 1
            self.book.pending.setdefault(sym, reason)  # read again at the next round
            log.warning("%s: orders not read again after a %s: %s", sym, reason, exc)
            await asyncio.sleep(1.0)
            return
        self.book.resyncs += 1
        for o in orders:
            gw.client_ids.learn(o.id, o.client_order_id)
            if (order := gw.read_order(sym, o)) is not None:  # the gateway's one mapping of an order
                await gw.pub.send_multipart((topic(sym), gw.codec.encode(
                    OrderEvent(symbol=sym, order=order, sent_ns=time.perf_counter_ns()))))

    def note(self) -> str:
        return self.book.note()
