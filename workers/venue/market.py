"""The paper venue's market: the shared market replay (shared.marketdata.ReplayMarket) driven
for every listed symbol on one timer, the market clock, and what the market looks like to a
client (ticker, book, candles), on the product's tick grid.

Clocks: auth windows and /v2/settings use the wall clock. Everything the market says (trade,
candle, order and fill timestamps) is on the market clock, an explicit choice (`clock`):
"replay" starts at the wall clock and runs 60 / bar_seconds times faster (timestamps run ahead
of now, so clients that check freshness against their own clock will reject them); "wall"
replays the candles' shape at real time, one bar per wall minute lined up with the minute, so
every timestamp is now (within a quarter bar). Bars built from trades line up with the candles
either way. The market clock is part of the paper account (saved with it) and never runs
backwards: a restarted venue continues it (shared/market_clock.py says where, in either mode).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from shared.arrivals import LOCKSTEP_GROUPS, SEND_WINDOW_S, quarter_phases, send_order, symbol_key
from shared.funding import FundingRates, load_series
from shared.market_clock import MarketClock, resume_clock, wall_replay_delay
from shared.marketdata import (
    BAR_SECONDS,
    Candles,
    ReplayMarket,
    candle_ticks,
    synthetic_candles,
)
from shared.matching import VenueError, bad_schema, dec
from shared.matching import protocol as wire
from shared.products import (
    SYNTHETIC_ID_BASE,
    ProductSpec,
    UnknownSymbolError,
    is_synthetic,
    resolve_paper_symbol,
    synthetic_symbol,
)
from workers.venue.account import AccountStore, newest_event_us
from workers.venue.funding import VenueFunding
from workers.venue.guard import PUBLIC_CALLER
from workers.venue.ws import WsHub, dumps

log = logging.getLogger("workers.venue")

RECENT_TRADES = 50
# Completed live bars kept for /v2/history/candles and the ticker's 24 h stats: a bot's window
# (1024) and a day (1440) with room. As tuples a bar costs ~230 B, so this is ~1 MB a symbol;
# 20,000 (the old bound) grew the venue ~36 MB/h at 50 symbols up to ~230 MB, 1.4 GB at 300.
LIVE_BARS_KEPT = 4_096
SYNTHETIC_LIVE_BARS = 2_880  # two days of live bars before a synthetic series wraps (rescaled)


class Market:
    """One symbol's replay: the current bar, its forming candle, completed bars, recent trades."""

    __slots__ = ("symbol", "spec", "replay", "history", "live", "bar", "ticks", "tick_size",
                 "forming", "recent", "tick_no", "joined")

    def __init__(self, symbol: str, start_ts: int, history_bars: int, seed: int, joined: int = 0, *,
                 spec: ProductSpec | None = None, files: Mapping[str, str] | None = None,
                 live_history: Candles | None = None) -> None:
        """`files`: symbol -> candle file to replay ([market.data]); else the shipped or synthetic
        series. `live_history`: a live-prices market (no replay): the source's recent bars, as they are."""
        self.symbol = symbol
        self.joined = joined  # lockstep index of this market's first live bar
        self.spec = spec or resolve_paper_symbol(symbol)
        self.replay: ReplayMarket | None
        if live_history is not None:
            self.replay = None
        elif is_synthetic(symbol) and not (files and symbol in files):
            # Shorter than ReplayMarket.for_symbol's 20k-bar draw (about 1 MB a symbol): hundreds
            # of load-test symbols must stay cheap. Same seed and symbol -> same series here.
            candles = synthetic_candles(symbol, history_bars + SYNTHETIC_LIVE_BARS, seed)
            self.replay = ReplayMarket(symbol, candles, start_ts, history_bars)
        else:
            self.replay = ReplayMarket.for_symbol(symbol, start_ts, history_bars, seed, files)
        # Prices on the product's tick grid everywhere (history, trades, candles), as on an
        # exchange; the shipped series carry finer prices than Delta's ticks.
        h = live_history if self.replay is None else self.replay.history()
        assert h is not None
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
        assert self.replay is not None  # live-prices markets take their bars from trades
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



class MarketSettings(Protocol):
    bar_seconds: float
    clock: str
    arrivals: str
    history_bars: int
    seed: int
    max_symbols: int
    data: dict[str, str]
    products: dict[str, ProductSpec]
    initial_balance_usd: float
    leverage: float
    start_ts: float | None
    funding_interval_s: int
    funding_series: dict[str, str]
    hold_replay_file: str | None


class MarketReplay:
    """Every listed market, replayed in lockstep on one timer, and the account's engine they
    trade against (loaded from `account`, on this replay's market clock)."""

    ws: WsHub  # given by the app once the hub exists: the replay publishes trades, candles, tickers

    def __init__(self, settings: MarketSettings, account: AccountStore, symbols: Sequence[str],
                 live_history: Mapping[str, Candles] | None = None) -> None:
        """`live_history`: live prices (workers/venue/live_feed.py drives the market, no replay):
        each symbol's recent bars from the source; only these symbols can be listed."""
        self.settings = settings
        self.live_history = live_history
        now = time.time()
        run_wall = settings.start_ts if settings.start_ts is not None else now
        saved_clock = account.saved_clock()
        self._start_ts = saved_clock.origin_ts if saved_clock else int(run_wall) - int(run_wall) % BAR_SECONDS
        self.market_us = self._start_ts * 1_000_000
        self.engine = account.load(initial_balance_usd=settings.initial_balance_usd,
                                   leverage=settings.leverage, clock=lambda: self.market_us)
        clock = resume_clock(saved_clock, run_wall=run_wall, now_wall=now, bar_seconds=settings.bar_seconds,
                             newest_event_us=newest_event_us(self.engine), clock=settings.clock)
        self._start_ts, self._run_wall, self._run_bars = clock.origin_ts, clock.run_wall, clock.run_bars
        self._next_bar = clock.next_bar  # lockstep index of the next bar to begin
        self.market_us = clock.market_us
        self._bars_started = False
        self._lockstep_bar_ts = 0
        self._arrival_keys = np.zeros(0, dtype=np.uint64)  # each market's arrival stream, listing order
        self._arrival_symbols: tuple[str, ...] = ()  # the markets those keys are for
        self.markets: dict[str, Market] = {}
        self._markets_list: list[Market] = []
        self._by_product_id: dict[int, Market] = {}
        self._restoring = True  # markets made now start where their replay began, primed by catch_up
        self._joined = clock.joined
        for sym in symbols:
            self.market(sym)  # unknown symbols refused here, before anything starts
        for spec in self.engine.specs():  # products of a restored account keep their markets
            try:
                self.market(spec.symbol)
            except (UnknownSymbolError, VenueError):
                # a [market.data] symbol this run's config no longer has, or one the live-prices
                # feed does not carry: its position and orders stay in the account, unpriced
                log.warning("the paper account holds %s but this run has no market for it; it is not traded "
                            "(add it to run.symbols or [market.data] to price it again)", spec.symbol)
        self._restoring = False
        self.funding = VenueFunding(FundingRates(settings.seed, load_series(settings.funding_series)),
                                    settings.funding_interval_s, self._start_ts)
        # Funding times the account already passed count as settled, charged or not: those up to
        # its newest event, and up to the bar the saved clock had begun (or now, for a new account).
        floor = newest_event_us(self.engine)
        if saved_clock is not None:
            floor = max(floor, saved_clock.market_us - BAR_SECONDS * 1_000_000)
        else:
            floor = max(floor, clock.market_us)
        self.engine.settle_funding_before(floor)
        self.catch_up(clock.next_bar)
        self.ticks_replayed = 0

    @property
    def listed(self) -> list[Market]:
        """Every market, in listing order (the order products and tickers are served in)."""
        return self._markets_list

    @property
    def origin_ts(self) -> int:
        """Epoch s of the account's first replayed bar (the wallet ledger's opening)."""
        return self._start_ts

    @property
    def next_bar(self) -> int:
        """Lockstep index of the next bar to begin (saved with the account as its clock)."""
        return self._next_bar

    def market(self, symbol: str, *, may_list: bool = True) -> Market:
        """The market for `symbol`, creating a SYN_NNNN one on first reference.
        Raises UnknownSymbolError naming the close matches."""
        m = self.markets.get(symbol)
        if m is not None:
            return m
        spec = resolve_paper_symbol(symbol, self.settings.products)
        if not may_list or PUBLIC_CALLER.get():
            raise VenueError("invalid_contract", {"symbol": symbol, "message":
                             f"{symbol} is not listed; an authenticated request lists a new paper product"}, 404)
        if self.live_history is not None and symbol not in self.live_history:
            raise VenueError("invalid_contract", {"symbol": symbol, "message":
                             f"{symbol} is not among the live-prices symbols"}, 404)
        if len(self._markets_list) >= self.settings.max_symbols:
            raise VenueError("invalid_contract", {"symbol": symbol, "message":
                             f"the paper venue already lists {self.settings.max_symbols} products"})
        if self._restoring:
            joined = self._joined.get(symbol, 0)  # replayed up to now by catch_up
        else:
            joined = self._next_bar  # joins the lockstep at the next bar; its history ends here
        start = self._start_ts + BAR_SECONDS * joined
        if self.live_history is not None:
            m = Market(symbol, start, self.settings.history_bars, self.settings.seed, joined, spec=spec,
                       live_history=self.live_history[symbol])
        else:
            m = Market(symbol, start, self.settings.history_bars, self.settings.seed, joined, spec=spec,
                       files=self.settings.data)
        self.engine.add_product(m.spec)
        if not self._restoring:
            self.engine.on_market_trade(symbol, m.last_close(), 0, self.market_us)  # prime the touch
        self.markets[symbol] = m
        self._markets_list.append(m)
        self._by_product_id[m.spec.product_id] = m
        return m

    def catch_up(self, next_bar: int) -> None:
        """Replay every market up to lockstep bar `next_bar` (where the market clock resumes),
        so candles have no hole, then trade each at its close at the resumed time: resting
        orders the market ran through while the venue was away fill now, never in the past."""
        # the next bar to replay starts now; markets created before it begins join at it
        self.market_us = (self._start_ts + BAR_SECONDS * next_bar) * 1_000_000
        self.settle_funding()  # funding times missed while away, on the positions held meanwhile
        for m in self._markets_list:
            if m.replay is None:  # live prices: the feed's next trade is its market
                self.engine.on_market_trade(m.symbol, m.last_close(), 0, self.market_us)
                continue
            bars = next_bar - m.joined
            if bars > LIVE_BARS_KEPT:
                m.replay.seek(bars - LIVE_BARS_KEPT)
            r = m.spec.round_price
            while m.replay.bar_index < bars:
                t, o, h, low, c, v = m.replay.next_bar()
                m.live.append((t, r(o), r(h), r(low), r(c), v))
            self.engine.on_market_trade(m.symbol, m.last_close(), 0, self.market_us)

    def settle_funding(self) -> None:
        """Charge or pay funding for every funding time the market clock has passed."""
        # a generator: settle() returns before reading it unless a funding time is due
        self.funding.settle(self.engine, ((m.symbol, m.spec.product_id) for m in self._markets_list),
                            self.market_us)

    def funding_rate(self, m: Market) -> tuple[Decimal, int, int]:
        """The rate the next funding time will charge, in percent (as tickers quote it:
        UNCONFIRMED), that time (µs) and the interval (s)."""
        nxt = self.funding.next_time(self.market_us)
        return self.funding.rate(m.symbol, nxt) * 100, nxt, self.funding.interval_s

    def market_clock(self) -> MarketClock:
        """The replay clock as saved with the account."""
        return MarketClock(origin_ts=self._start_ts, next_bar=self._next_bar, run_wall=self._run_wall,
                           run_bars=self._run_bars,
                           joined={m.symbol: m.joined for m in self._markets_list if m.joined})

    def market_by_product_id(self, product_id: int) -> Market:
        m = self._by_product_id.get(product_id)
        if m is not None:
            return m
        if product_id >= SYNTHETIC_ID_BASE:
            return self.market(synthetic_symbol(product_id - SYNTHETIC_ID_BASE))
        raise VenueError("invalid_contract", {"product_id": product_id})

    def symbol_market(self, symbol: str, status: int = 400) -> Market:
        try:
            return self.market(symbol)
        except UnknownSymbolError as exc:
            raise VenueError("invalid_contract", {"symbol": symbol, "message": str(exc),
                                                  "close_matches": exc.close_matches}, status) from None

    def product_from_body(self, body: Mapping[str, Any]) -> Market:
        if body.get("product_id") is not None:
            pid = wire.int_field(body, "product_id")
            assert pid is not None
            return self.market_by_product_id(pid)
        sym = body.get("product_symbol")
        if isinstance(sym, str) and sym:
            return self.symbol_market(sym)
        raise bad_schema("product_id or product_symbol is required", "product_id")

    async def run(self) -> None:
        """ONE timer for every symbol. Tick k of a bar is sent in the bar's k-th quarter of wall
        time, where in it is the arrival model (shared/arrivals.py, `arrivals`): "independent",
        each symbol's tick at its own seeded time, the venue waking at the next due tick and
        sending every tick due within SEND_WINDOW_S together; "lockstep", all markets in
        LOCKSTEP_GROUPS bursts (the market-wide burst case)."""
        loop = asyncio.get_running_loop()
        step = self.settings.bar_seconds / 4
        hold = self.settings.hold_replay_file
        if hold is not None:
            # Test only: the market stands still (no trade, no clock) until released, so bots that
            # are reconciled by then see every live bar from the first (tests/orchestrator/
            # test_backtest_parity_e2e.py). The file is polled: the wait is a test's start-up only.
            log.info("replay held until %s exists", hold)
            while not os.path.exists(hold):
                await asyncio.sleep(0.02)
        due = loop.time()
        if self.settings.clock == "wall":
            # line the replay up with the wall clock: bar T's quarter k starts at T + 15k s, so the
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
            if self.settings.arrivals == "lockstep":
                groups = max(1, min(LOCKSTEP_GROUPS, len(self._markets_list)))
                for g in range(groups):
                    due += step / groups
                    self._replay_step(k, g, groups)
                    due = await self._sleep_until(loop, due, step)
            else:
                await self._independent_quarter(loop, k, due, step)
                due = await self._sleep_until(loop, due + step, step)
            k = (k + 1) % 4

    @staticmethod
    async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float, step: float) -> float:
        delay = due - loop.time()
        if delay < -4 * step:
            due = loop.time()  # far behind (suspended, overloaded): skip ahead, never burst
            delay = 0.0
        await asyncio.sleep(max(0.0, delay))
        return due

    async def _independent_quarter(self, loop: asyncio.AbstractEventLoop, k: int, start: float,
                                   step: float) -> None:
        """Quarter k of the bar from loop time `start`: each market's tick at its own due time."""
        self._begin_quarter(k, self._markets_list)
        markets = list(self._markets_list)  # listed during the quarter: they join at the next bar
        symbols = tuple(m.symbol for m in markets)
        if symbols != self._arrival_symbols:  # (a delisting plus a listing keeps the count, not the symbols)
            self._arrival_keys = np.array([symbol_key(self.settings.seed, s) for s in symbols], dtype=np.uint64)
            self._arrival_symbols = symbols
        phases = quarter_phases("independent", self._arrival_keys, self._lockstep_bar_ts // BAR_SECONDS, k)
        order = send_order(phases)
        due = [start + float(phases[i]) * step for i in order]
        i, n = 0, len(order)
        while i < n:
            delay = due[i] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            j = bisect.bisect_right(due, loop.time() + SEND_WINDOW_S, i + 1)
            self._send_ticks(k, [markets[x] for x in order[i:j]])
            i = j
        self.ticks_replayed += 1

    def _begin_quarter(self, k: int, markets: Sequence[Market], first: bool = True) -> None:
        """The quarter's market clock; at a bar's first quarter `markets` begin their bar and
        funding due by then is settled (`first`: the quarter's first group)."""
        if k == 0:
            self._bars_started = True
            for m in markets:
                m.begin_bar()
            if first and self._markets_list:
                self._lockstep_bar_ts = self._markets_list[0].bar[0]
                self._next_bar = (self._lockstep_bar_ts - self._start_ts) // BAR_SECONDS + 1
        bar_ts = self._lockstep_bar_ts if self._markets_list else self.market_us // 1_000_000
        self.market_us = bar_ts * 1_000_000 + k * (BAR_SECONDS // 4) * 1_000_000
        if k == 0 and first:
            self.settle_funding()  # before this bar trades, on the positions held into it

    def _replay_step(self, k: int, group: int = 0, groups: int = 1) -> None:
        """Lockstep: quarter k's ticks of markets group, group + groups, ... at one instant."""
        markets = self._markets_list[group::groups]
        self._begin_quarter(k, markets, first=group == 0)
        self._send_ticks(k, markets)
        if group == groups - 1:
            self.ticks_replayed += 1

    def _send_ticks(self, k: int, markets: Sequence[Market]) -> None:
        """Quarter k's tick of each of `markets`, sent at this instant, then the account's events."""
        bar_ts = self._lockstep_bar_ts if self._markets_list else self.market_us // 1_000_000
        ts = self.market_us
        trade_subs = [c for c in self.ws.clients if "all_trades" in c.subs]
        candle_subs = [c for c in self.ws.clients if "candlestick_1m" in c.subs and not c.compact]
        market_plan = self.ws.market_plan()
        for m in markets:
            if m.bar[0] != bar_ts:  # created mid-bar: joins the lockstep at the next bar
                continue
            price = m.ticks[k]
            # tick rule: an uptick was a buyer lifting the offer, a downtick a seller hitting the bid
            buyer = "taker" if price >= m.last_close() else "maker"
            self._trade(m, price, m.tick_size, ts, buyer, trade_subs, candle_subs, market_plan, k == 3)
        self.ws.publish_engine_events()

    def live_trade(self, m: Market, price: float, size: int, ts: int, buyer: str) -> None:
        """One trade of the live-prices feed: the market clock moves to its time (never back), a
        trade in a new minute closes the forming bar, and the trade meets our book as a replayed
        one does (fills, stops, frames to every subscriber)."""
        self.market_us = ts = max(self.market_us, ts)
        minute = ts // 1_000_000 // BAR_SECONDS * BAR_SECONDS
        closed = m.forming is not None and m.bar[0] != minute
        if closed:
            fo = m.forming
            assert fo is not None
            m.live.append((m.bar[0], fo[0], fo[1], fo[2], fo[3], fo[4]))
            m.forming = None
            self._publish_ticker(m)
        if m.forming is None:
            m.bar = (minute, price, price, price, price, 0.0)
        m.tick_size = max(1, size)
        trade_subs = [c for c in self.ws.clients if "all_trades" in c.subs]
        candle_subs = [c for c in self.ws.clients if "candlestick_1m" in c.subs and not c.compact]
        self._trade(m, price, max(1, size), ts, buyer, trade_subs, candle_subs, self.ws.market_plan(), False,
                    bar_closed=closed)
        self.ticks_replayed += 1
        self.ws.publish_engine_events()

    def _publish_ticker(self, m: Market) -> None:
        ticker_subs = [c for c in self.ws.clients if c.wants("v2/ticker", m.symbol)]
        if ticker_subs:
            frame = dumps({**self.ticker(m), "type": "v2/ticker"})
            for c in ticker_subs:
                c.send(frame)

    def _trade(self, m: Market, price: float, size: int, ts: int, buyer: str, trade_subs: list[Any],
               candle_subs: list[Any], market_plan: Any, last_of_bar: bool, *, bar_closed: bool = False) -> None:
        """One market trade: our book meets it, the forming bar takes it, subscribers hear it;
        `last_of_bar` (a replay's fourth tick) closes the bar after it."""
        self.engine.on_market_trade(m.symbol, price, size, ts)
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
            frame = dumps(self.candle_frame(m, ts))
            for c in candle_subs:
                if c.wants("candlestick_1m", m.symbol):
                    c.send(frame)
        if market_plan:
            self.ws.publish_market(m, market_plan, (price, size, ts, buyer), bar_closed=last_of_bar or bar_closed)
        if last_of_bar:
            fo = m.forming
            assert fo is not None
            m.live.append((m.bar[0], fo[0], fo[1], fo[2], fo[3], fo[4]))
            m.forming = None
            self._publish_ticker(m)

    def candle_frame(self, m: Market, ts: int) -> dict[str, Any]:
        f = m.forming
        o, h, low, c, v = (f if f is not None else (None, None, None, None, 0.0))
        return {"type": "candlestick_1m", "symbol": m.symbol, "resolution": "1m",
                "candle_start_time": m.bar[0] * 1_000_000, "open": o, "high": h, "low": low, "close": c,
                "volume": v, "timestamp": ts, "last_updated": ts}

    def ticker(self, m: Market) -> dict[str, Any]:
        pid = m.spec.product_id
        bid, ask = self.engine.touch(pid)
        last = self.engine.last_price(pid)
        open_, high, low, base_volume = day_stats(m, self.market_us // 1_000_000)
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
            "price_band": {"lower_limit": wire.s(bid * Decimal("0.975")),
                           "upper_limit": wire.s(ask * Decimal("1.025"))},
            "quotes": {"best_bid": wire.s(bid), "best_ask": wire.s(ask), "bid_size": str(m.tick_size),
                       "ask_size": str(m.tick_size), "ask_iv": None, "bid_iv": None,
                       "impact_mid_price": wire.s((bid + ask) / 2), "mark_iv": None},
            # Delta's samples: `size` in contracts, `volume` in the underlying, `turnover` in the quote
            "greeks": None, "size": int(contracts), "volume": base_volume, "turnover": turnover,
            "turnover_symbol": "USD", "turnover_usd": turnover,
            "funding_rate": wire.s(self.funding_rate(m)[0]), "timestamp": self.market_us,
        }

    def book(self, m: Market, depth: int) -> tuple[list[tuple[Decimal, int]], list[tuple[Decimal, int]]]:
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


def bars_between(m: Market, start: int, end: int) -> list[tuple[int, float, float, float, float, float]]:
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


def day_stats(m: Market, now_s: int) -> tuple[float | None, float, float, float]:
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
