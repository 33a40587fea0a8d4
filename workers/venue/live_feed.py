"""Live prices (`market.source = "live-prices"`): the paper venue's market is a Delta venue's public
feed, while orders, fills, positions and the account stay in our matching engine (freqtrade's
dry-run, on Delta, with the real book).

Before the venue starts, `prepare` reads from the source's public REST the product specs of the
symbols (its own `/v2/products`) and their recent 1m bars (so the bots are primed as on a replay).
Then `run` keeps one public socket (shared/delta/ws.py: reconnects, resubscribes) on the source's
trades and best bid/ask (shared/price_source.py says which channels on which host): each trade
goes through `MarketReplay.live_trade` exactly as a replayed trade would (fills, stops, candles,
frames to our clients), each book top becomes the engine's touch (marketable orders fill as taker
at the real bid/ask). Nothing is ever sent to the source but public reads and subscriptions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.delta.errors import DeltaError
from shared.delta.rest import DeltaRestClient
from shared.delta.resync import MarketTrade, ResyncBook
from shared.delta.ws import BookTop, Connected, DeltaWebSocket, Disconnected, Subscribed, TradeEvent
from shared.marketdata import BAR_SECONDS, Candles
from shared.price_source import PriceFeed
from shared.products import ProductSpec, UnknownSymbolError
from workers.venue.market import MarketReplay

log = logging.getLogger("workers.venue")

STALE_AFTER_S = 30.0  # a listed perpetual trades more often than this; longer is said in the note


def check_feed(feed: PriceFeed, symbols: Sequence[str]) -> str:
    """Before a live-prices run starts: "" if the source lists every symbol, else the problem in a
    line (an unknown symbol with its close matches, or a source that cannot be read)."""
    async def check() -> None:
        async with DeltaRestClient(feed.rest_url, venue_name=feed.venue) as rest:
            await rest.resolve_symbols(symbols)
    try:
        asyncio.run(check())
    except UnknownSymbolError as exc:
        return f"market.source 'live-prices': {exc}"
    except (DeltaError, OSError, TimeoutError) as exc:
        return f"market.source 'live-prices': cannot read the product list of {feed.venue} ({feed.rest_url}): {exc}"
    return ""


class LiveFeed:
    def __init__(self, feed: PriceFeed, history_bars: int) -> None:
        self.feed = feed
        self.history_bars = history_bars
        self.specs: dict[str, ProductSpec] = {}
        self.history: dict[str, Candles] = {}
        self.source_now_us = 0  # the source's clock when prepared (its ticker's time)
        self.trades = 0
        self.quotes = 0
        self.disconnects = 0
        self._refusals: set[str] = set()
        self._ws: DeltaWebSocket | None = None
        self._replay: MarketReplay | None = None
        self._rest: DeltaRestClient | None = None
        self.gaps: ResyncBook | None = None  # last trade heard per symbol; trades read back after a drop
        self._dropped = False

    async def prepare(self, symbols: Sequence[str]) -> None:
        """Specs and recent bars of `symbols` from the source. Raises UnknownSymbolError (close
        matches named) for a symbol it does not list, DeltaError/OSError when it cannot be read."""
        async with DeltaRestClient(self.feed.rest_url, venue_name=self.feed.venue) as rest:
            self.specs = await rest.resolve_symbols(symbols)
            for sym in symbols:
                ticker = await rest.get_ticker(sym)
                now_us = ticker.timestamp if isinstance(ticker.timestamp, int) else int(time.time() * 1e6)
                self.source_now_us = max(self.source_now_us, now_us)
                minute = now_us // 1_000_000 // BAR_SECONDS * BAR_SECONDS
                bars = await rest.get_candles(sym, "1m", minute - (self.history_bars + 1) * BAR_SECONDS,
                                              minute - BAR_SECONDS)  # closed bars only
                rows = [(c.time // 1_000_000, c.open, c.high, c.low, c.close, c.volume) for c in bars
                        if isinstance(c.time, int) and None not in (c.open, c.high, c.low, c.close)]
                if not rows:
                    raise ValueError(f"{self.feed.venue} has no 1m bars of {sym} before "
                                     f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(minute))} UTC")
                arr = np.asarray(rows[-self.history_bars:], dtype=np.float64)
                self.history[sym] = Candles(arr[:, 0].astype(np.int64),
                                            *(np.ascontiguousarray(arr[:, i]) for i in range(1, 6)))
        log.info("live prices from %s (%s): %s, %d bars of history each", self.feed.venue, self.feed.rest_url,
                 ",".join(symbols), self.history_bars)

    async def run(self, replay: MarketReplay) -> None:
        """Drive `replay`'s markets from the source's socket until cancelled."""
        self._replay = replay
        replay.market_us = max(replay.market_us, self.source_now_us)
        symbols = sorted(replay.markets)
        self.gaps = ResyncBook(symbols)
        ws = DeltaWebSocket(self.feed.ws_url, on_event=self.on_event, stale_after_s=STALE_AFTER_S)
        self._ws = ws
        self._rest = DeltaRestClient(self.feed.rest_url, venue_name=self.feed.venue)
        await ws.subscribe(self.feed.trades_channel, symbols)
        await ws.subscribe(self.feed.book_channel, symbols)
        await ws.start()
        try:
            await asyncio.Event().wait()
        finally:
            await ws.stop()
            await self._rest.close()

    async def on_event(self, ev: Any) -> None:
        replay = self._replay
        if replay is None:
            return
        if isinstance(ev, TradeEvent):
            m = replay.markets.get(ev.symbol)
            if m is None or ev.from_snapshot:
                return  # a snapshot's trades are history the bars already hold
            ts = ev.exchange_ts_us or ev.received_ts_us
            buyer = ev.buyer_role if ev.buyer_role in ("maker", "taker") else "taker"
            if self.gaps is not None:
                self.gaps.heard(ev.symbol, ts)
            replay.live_trade(m, ev.price, int(ev.size), ts, buyer)
            self.trades += 1
        elif isinstance(ev, Connected) and self._dropped:
            self._dropped = False
            await self.read_missed_trades(replay)
        elif isinstance(ev, BookTop):
            if ev.symbol in replay.markets:
                replay.engine.set_quote(ev.symbol, ev.best_bid, ev.best_ask)
                self.quotes += 1
        elif isinstance(ev, Subscribed):
            for c in ev.channels:
                name = str(c.get("name"))
                if c.get("error") and name not in self._refusals:
                    self._refusals.add(name)
                    log.warning("live prices: %s refused %s: %s", self.feed.venue, name, str(c.get("error"))[:200])
        elif isinstance(ev, Disconnected):
            self.disconnects += 1
            self._dropped = True
            for sym in replay.markets:  # a quote from before the gap may be far from the market now
                replay.engine.set_quote(sym, None, None)
            log.warning("live prices: %s socket lost (%s); reconnecting", self.feed.venue, ev.reason)

    async def read_missed_trades(self, replay: MarketReplay) -> None:
        """The source's trades made while its socket was down (its recent-trades list, newer than
        the last heard), through our market oldest first, before the socket resubscribes (the
        client awaits this): resting orders they cross fill, as they would have."""
        if self.gaps is None or self._rest is None:
            return
        for sym, m in replay.markets.items():
            try:
                recent = await self._rest.get_recent_trades(sym)
            except (DeltaError, OSError, TimeoutError) as exc:
                log.warning("live prices: %s trades missed while the socket was down not read back: %s", sym, exc)
                continue
            missed = self.gaps.missed(sym, [MarketTrade(int(t.timestamp), float(t.price), float(t.size))
                                            for t in recent if isinstance(t.timestamp, int)])
            for t in missed:
                replay.live_trade(m, t.price, int(t.size), t.ts_us, "taker")
                self.trades += 1

    def note(self) -> str:
        """For the venue's status line: the source, what it sent, symbols it is quiet on."""
        quiet = [s for s in (self._replay.markets if self._replay else ()) if self._ws and self._ws.is_stale(s)]
        return (f"live prices from {self.feed.venue}: {self.trades} trades, {self.quotes} quotes"
                + (f", {self.disconnects} reconnects ({self.gaps.recovered if self.gaps else 0} missed trades "
                   "read back)" if self.disconnects else "")
                + (f"; quiet on {','.join(sorted(quiet)[:5])}" if quiet else ""))
