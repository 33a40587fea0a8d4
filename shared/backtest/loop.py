"""The backtest loop: the product's own parts, driven tick by tick over historical candles.

One process, no sockets, no sleeps, no wall clock in any decision:
- market: `market.replay_bars` gives every bar's four trades exactly as the paper venue replays
  them (prices on the tick grid, nearer extreme first, trade size from the bar's volume); several
  symbols advance in lockstep by bar time, trade k of every bar at bar open + 15 k s, as on the
  venue's single replay timer;
- signals: the pool's `SignalEngine`, asked at every trade with the window the worker's ring
  would hold (the closed bars before it and the forming bar so far: never a later price);
- decisions: the worker's `TradingBot` (`plan`, `halt_plan`, `on_fill`, `on_order`) fed the
  events the venue publishes, and the supervisor's `risk.evaluate` on the account's equity;
- exchange: the paper venue's `MatchingEngine`; an order batch sent at trade t reaches the
  engine just before trade t + `latency_ticks`, in the gateway's order (cancels, amends, places),
  and the bot sends nothing else while a batch is on its way (the worker waits for its answer).

Differences from a live paper run (each a wall-clock effect of the live processes, replaced by
the market clock here; tests/orchestrator/test_backtest_parity_e2e.py holds the fills equal to a
paper run's where they are made deterministic, and says how):
- (no longer one: the churn limiter and the grid anchor's time run on market time in the worker too);
- the available balance sizing a grid is the engine's at the decision, plus the margin of the
  bot's own resting entries (sizing.grid_sizing_balance; live: the last account re-read, every
  15 wall seconds, i.e. every 15 market minutes at 60x, with the entries resting then);
- the account risk rules are checked at each bar's last trade (live: once a wall second);
- every trade gets a signal and the order round trip is exactly `latency_ticks` trades (live:
  trades arriving while a signal request or an order batch is in flight are folded, and a
  round trip takes however many trades the wall clock allows).

Wake-ups: with the signal series (`iter_series`) the bot is only asked when something it reacts to
changed (see `_quiet`); tests/shared/backtest/test_skip.py runs the same data waking at every
trade and gets the same fills, orders and figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

import msgspec
import numpy as np

from ..config import Config
from ..delta.constants import TRAILING_STOP_ORDER_TYPE, signed_trail_amount
from ..funding import FUNDING_INTERVAL_S  # Delta's 8 h, one home with the paper venue's
from ..marketdata import BAR_SECONDS, Candles, find_gaps
from ..matching.engine import FillEvent, MatchingEngine, Order, OrderEvent, OrderRequest, dec, money
from ..matching.errors import VenueError
from ..products import ProductSpec
from ..signals import strategies as st
from ..signals.engine import BarWindow, SignalEngine
from ..signals.series import SignalSeries, iter_series
from ..symbol_settings import symbol_settings
from ..trading import client_order_id as coid
from ..trading import halt as halt_rule
from ..trading import risk as account_risk
from ..trading.bot import TradingBot
from ..trading.grid import GridAnchor, GridConfig, protective_stop, stop_trigger
from ..trading.orders import OpenOrder, Side
from ..trading.pnl import Fill as LedgerFill
from ..trading.reconcile import tokens_at
from ..trading.sizing import balance_range_for_size, contracts_per_level, entry_margin_held
from .market import TICK_SECONDS, TICKS_PER_BAR, ReplayedBars, replay_bars
from .result import BacktestResult, Figures, FillRecord, Timeline
from .reuse import BacktestReuse
from .series_ahead import SeriesAhead

MAX_FILLS_KEPT = 100_000  # fills listed in the result (the figures count every fill)
TIMELINE_PRICE_POINTS = 5_000
TIMELINE_ORDERS_MAX = 20_000  # resting-order lives kept per symbol for the plots
TIMELINE_STOPS_MAX = 20_000
EQUITY_POINTS = 5_000
ENGINE_HISTORY = 1_000  # closed orders and fills the engine keeps for queries (we keep our own)
MAX_GAPS_LISTED = 100
DECIMALS_KEPT = 4_096  # order prices whose Decimal is remembered
PROGRESS_EVERY_BARS = 4_096
CHUNK_BARS = 8_192  # the hot loop reads prices and signals as Python lists, this many bars at a time
# ... but the signals helper's first chunk of each symbol is this long (see series_ahead): the run
# starts once every symbol has one, and a short first chunk is soon computed
FIRST_CHUNK_BARS = 2_048
INF = math.inf
DAYS_PER_YEAR = 365.0


class BacktestError(ValueError):
    """Bad backtest input; the message names the symbol, option or range at fault."""


def default_warmup_bars(cfg: Config) -> int:
    """Closed bars the signal engine needs before its votes mean anything: its `min_bars`, and
    enough for the slowest timeframe's EMA to be ready (the multi-timeframe vote abstains until
    then)."""
    s = cfg.signal
    return max(s.min_bars, max(s.timeframes) * (s.mtf_ema_period + 1))


@dataclass
class _Batch:
    """An order batch on its way to the venue."""

    due: int  # the symbol's trade number it reaches the engine at (before that trade)
    cancel: list[int]
    amend: list[tuple[int, int, float, str, bool]]  # order id, total size, price, bot order type, trailing
    # coid, side, price, size, order type, reduce-only, trail distance (0: not a trailing stop)
    place: list[tuple[str, Side, float, int, str, bool, float]]


@dataclass
class _Symbol:
    symbol: str
    spec: ProductSpec
    bars: ReplayedBars
    first: int  # index of the first traded bar
    last: int  # index of the last traded bar (inclusive)
    bot: TradingBot
    window: int
    wh: np.ndarray | None = None  # per-trade engine only: working high/low/close (see run_trade)
    wl: np.ndarray | None = None
    wc: np.ndarray | None = None
    funding_ts: np.ndarray | None = None
    funding_rate: np.ndarray | None = None
    trade_no: int = 0
    batch: _Batch | None = None
    flatten_sent: bool = False
    last_sig: tuple[bool, str, float, float, float] | None = None
    last_i: int = 0
    last_price: float = math.nan
    realised: float = 0.0
    fees: float = 0.0
    funding: float = 0.0
    position: int = 0
    entry: float = 0.0  # engine's average entry of the position (float copy)
    fills: int = 0
    placed: int = 0
    amended: int = 0
    cancelled: int = 0
    bars_in_market: int = 0
    bars_done: int = 0
    peak: float = 0.0
    max_dd: float = 0.0
    day: int = -1
    day_equity: list[float] = field(default_factory=list)
    last_eq: float = 0.0
    # order id -> (from, side, price, purpose)
    lives: dict[int, tuple[float, str, float, str]] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=Timeline)
    stop_price: float = 0.0
    lives_seen: int = 0  # order lives ended so far; the timeline keeps every life_stride-th
    life_stride: int = 1
    stop_seen: int = 0
    stop_stride: int = 1
    gaps: list[tuple[float, float]] = field(default_factory=list)
    # wake-up state, recomputed after every trade the bot was asked at (see _Run.settle)
    wake_all: bool = True
    dirty: bool = True  # something happened the bot has not planned on yet
    lo: float = -INF  # a trade at or below this can fill or trigger something of ours
    hi: float = INF
    cool_end: float = INF
    gap: float = 0.0  # largest distance of a kept entry/take-profit from its wanted price
    stop_rest: float = 0.0  # our resting stop's trigger (0: none to watch)
    stop_long: bool = False  # the stop protects a long position (it sells)
    anchor_code: int = 0
    anchor_price: float = 0.0  # the grid's hysteresis band (re-anchor outside it)
    band: float = 0.0
    # (bar, trade, ts_us) of the last skipped trade, replayed to the venue before the next call
    stale: tuple[int, int, int] | None = None
    # The pool's answers, one chunk of at most CHUNK_BARS bars at a time (memory bounded by the chunk):
    grid: GridConfig | None = None
    chunks: Iterator[SignalSeries] | None = None
    series: SignalSeries | None = None  # the current chunk, bars [c0, c0 + CHUNK_BARS)
    c0: int = -(1 << 62)  # first bar of the current chunk (none loaded yet)
    cn: int = 0  # its bars (CHUNK_BARS but for the helper's shorter first chunk and the last)
    # ... and what the wake-up rules read from it, as Python lists indexed (bar - c0) x 4 + trade:
    cpx: list[float] = field(default_factory=list)
    cstrong: list[int] = field(default_factory=list)  # UP/DOWN code where a valid signal could anchor a grid, else 0
    ctol: list[float] = field(default_factory=list)  # the re-grid tolerance (regrid_fraction x grid step)
    catr: list[float] = field(default_factory=list)
    cvalid: list[bool] = field(default_factory=list)  # ... and the pool's answer at each trade (see sig)
    cdirection: list[int] = field(default_factory=list)  # vote codes (st.VOTE_NAMES gives the words)
    cconfidence: list[float] = field(default_factory=list)
    # ... and per bar of the chunk (index bar - c0), for the whole-bar test (`_Run.bar_quiet`):
    blo: list[float] = field(default_factory=list)  # lowest and highest trade price (NaN ignored)
    bhi: list[float] = field(default_factory=list)
    bcodes: list[int] = field(default_factory=list)  # strong codes in the bar: 1 UP, 2 DOWN, 3 both, 0 none
    btol: list[float] = field(default_factory=list)  # smallest re-grid tolerance (NaN ignored)
    bamin: list[float] = field(default_factory=list)  # smallest and largest ATR (NaN ignored)
    bamax: list[float] = field(default_factory=list)
    quiet_bar: int = -1  # the bar every trade of which was found quiet at the bar's start
    money_rev: int = 0  # bumped by each fill and funding payment (realised, fees, funding, position move)
    money_seen: int = -1  # money_rev at the last bar end that updated the figures below
    planned_avail: float = math.nan  # the available balance the last plan sized its grid from
    # (planned_avail, anchor, its contracts per level, lowest and highest balance known to give the
    # same, which of its ends sizing.balance_range_for_size has widened yet: 1 low, 2 high)
    planned_size: tuple[float, Any, int, float, float, int] = (math.nan, None, -1, math.nan, math.nan, 0)
    held_of: tuple[int, float] = (-1, 0.0)  # (bot.book_revision, margin of its resting entries then)
    tags: coid.OwnedTags = field(init=False)  # our client order ids' tags (coid.decode as a mapping)

    def __post_init__(self) -> None:
        self.tags = coid.owned_tags(self.bot.bot_id, self.symbol)

    def sig(self, i: int, k: int) -> tuple[bool, str, float, float, float]:
        self.chunk_for(i)
        j = (i - self.c0) * TICKS_PER_BAR + k
        return self.cvalid[j], st.VOTE_NAMES[self.cdirection[j]], self.cconfidence[j], self.cpx[j], self.catr[j]

    def chunk_for(self, i: int) -> None:
        """Make the chunk holding bar i current (bars only move forward)."""
        if 0 <= i - self.c0 < self.cn:
            return
        assert self.chunks is not None and i > self.c0
        while not 0 <= i - self.c0 < self.cn:
            self.series = next(self.chunks)
            self.c0 = 0 if self.c0 < 0 else self.c0 + self.cn
            self.cn = len(self.series.bar_ts)
        sr, g = self.series, self.grid
        assert sr is not None and g is not None
        up_down = (sr.direction == st.UP) | (sr.direction == st.DOWN)
        strong = sr.valid & (sr.confidence >= g.min_confidence) & up_down
        price = self.bars.ticks[self.c0:self.c0 + self.cn]
        if g.spacing_mode == "fixed":
            step = price * g.width
        else:
            step = np.minimum(np.maximum(sr.atr14 * g.atr_multiple, price * g.spacing_floor), price * g.spacing_cap)
        codes = np.where(strong, sr.direction, 0)
        tol = g.regrid_fraction * step
        self.cpx = price.ravel().tolist()
        self.cstrong = codes.ravel().tolist()
        self.ctol = tol.ravel().tolist()
        self.catr = sr.atr14.ravel().tolist()
        self.cvalid = sr.valid.ravel().tolist()
        self.cdirection = sr.direction.ravel().tolist()  # (named when read: a few trades in a hundred)
        self.cconfidence = sr.confidence.ravel().tolist()
        # fmin/fmax skip NaN as the per-trade comparisons do (a NaN price or tolerance wakes nothing)
        self.blo = _across_bar(np.fmin, price).tolist()
        self.bhi = _across_bar(np.fmax, price).tolist()
        self.bcodes = (_across_bar(np.logical_or, codes == st.UP)
                       + 2 * _across_bar(np.logical_or, codes == st.DOWN)).tolist()
        self.btol = _across_bar(np.fmin, tol).tolist()
        self.bamin = _across_bar(np.fmin, sr.atr14).tolist()
        self.bamax = _across_bar(np.fmax, sr.atr14).tolist()


def _across_bar(f: np.ufunc, a: np.ndarray) -> np.ndarray:
    """`f.reduce(a, axis=1)` over a bar's trades (a: n_bars x TICKS_PER_BAR), in the same order,
    column by column: a reduce along so short an axis costs ~20x more (~2 ms of each chunk)."""
    out: np.ndarray = f(a[:, 0], a[:, 1])
    for k in range(2, a.shape[1]):
        out = f(out, a[:, k])
    return out


def _thin_append(items: list[Any], item: Any, seen: int, stride: int, cap: int) -> int:
    """Keep every `stride`-th of a stream in `items`, at most `cap` of them: when full, every
    other kept item goes and the stride doubles, so the plot covers the whole run evenly (not
    just its start). Returns the stride to use from now on."""
    if seen % stride:
        return stride
    items.append(item)
    if len(items) >= cap:
        del items[1::2]
        stride *= 2
    return stride


def _bot_order(symbol: str, o: Order) -> OpenOrder:
    """The engine's order as the bot sees it (the gateway's `order_view`): a stop is a
    stop-market order priced at its trigger."""
    if o.stop_order_type:
        kind, price = "stop_market_order", float(o.stop_price or 0)
    else:
        kind, price = "limit_order", float(o.limit_price or 0)
    return OpenOrder(order_id=o.id, symbol=symbol, side=o.side, price=price, size=o.size,
                     unfilled_size=o.unfilled_size, client_order_id=o.client_order_id,
                     order_type=kind, reduce_only=o.reduce_only,  # type: ignore[arg-type]  # kind: one of the two above
                     trailing=o.trail_amount is not None)


class _Run:
    def __init__(self, cfg: Config, syms: list[_Symbol], balance_usd: float, latency_ticks: int) -> None:
        self.cfg = cfg
        self.syms = syms
        self.by_symbol = {s.symbol: s for s in syms}
        self.latency = latency_ticks
        self.balance0 = balance_usd
        self.clock_us = 0
        self.engine = MatchingEngine(initial_balance_usd=balance_usd, default_leverage=cfg.market.leverage,
                                     clock=lambda: self.clock_us, history_limit=ENGINE_HISTORY)
        for s in syms:
            self.engine.add_product(s.spec)
        self.engine.drain_events()
        self.signals = SignalEngine(cfg.signal, seed=cfg.market.seed)
        self.risk_state: account_risk.AccountRiskState | None = None
        self.halted = ""
        self.halted_ts = 0.0
        self.fill_records: list[FillRecord] = []
        self.fills_dropped = 0
        self.peak = balance_usd
        self.max_dd = 0.0
        self.day = -1
        self.day_equity: list[float] = []
        self.equity_points: list[tuple[float, float]] = []
        self.last_equity = balance_usd
        self.bars = 0
        self.risk_key: tuple[float, int, float] | None = None
        self.revision_seen = -1
        self.skip = False
        self.money_rev = 0  # bumped with every symbol's money_rev
        self.decimals: dict[float, Decimal] = {}  # order prices' exact decimals (bounded: cleared when full)
        self.balance_of = (-1, balance_usd)  # (money_rev, balance_now) last computed
        self.wakes = 0  # bumped when a symbol is woken by another's doing (resize_check, funding)

    # --- the venue side ---------------------------------------------------------------------

    def feed_events(self) -> None:
        """What the venue publishes after each call, as the worker hears it."""
        for ev in self.engine.drain_events():
            if isinstance(ev, OrderEvent):  # (the usual event: tested first)
                o = ev.order
                s = self.by_symbol[o.symbol]
                seen = _bot_order(s.symbol, o)
                s.bot.on_order(seen, o.state)
                self.track_order(s, o, seen.price)
                s.dirty = True
            elif isinstance(ev, FillEvent):
                f = ev.fill
                s = self.by_symbol[f.symbol]
                self.on_fill(s, f)
                s.dirty = True

    def on_fill(self, s: _Symbol, f: Any) -> None:
        price = float(f.price)
        fee = float(f.commission)
        realised = float(f.realized_pnl)
        s.fills += 1
        s.money_rev += 1
        self.money_rev += 1
        s.realised += realised
        s.fees += fee
        pos = self.engine.position(s.spec.product_id)
        s.position = pos.size
        s.entry = float(pos.entry_price) if pos.entry_price is not None else 0.0
        ts = f.timestamp / 1e6
        fill = LedgerFill(fill_id=f.id, symbol=s.symbol, side=f.side, size=f.size, price=repr(price),
                          fee=repr(fee), contract_value=repr(s.spec.contract_value), ts=ts,
                          client_order_id=f.client_order_id or "", order_id=str(f.order_id), role=f.role)
        s.bot.on_fill(fill)
        if len(self.fill_records) < MAX_FILLS_KEPT:
            self.fill_records.append(FillRecord.of(fill, realised))
        else:
            self.fills_dropped += 1

    def track_order(self, s: _Symbol, o: Order, price: float) -> None:
        """Each resting order's life for the plots: from when it rests at a price (the bot's view
        of it, `_bot_order`: the trigger of a stop, else the limit) to when it leaves the book or
        moves."""
        ts = self.clock_us / 1e6
        live = o.state in ("open", "pending")
        known = s.lives.get(o.id)
        if known is not None and (not live or known[2] != price):
            self.close_life(s, o.id, ts)
            known = None
        if live and known is None and price > 0:
            tag = s.tags[o.client_order_id]
            if tag is not None:
                s.lives[o.id] = (ts, o.side, price, tag.purpose)
        if o.stop_order_type:
            stop = price if live else 0.0
            if stop != s.stop_price:
                s.stop_price = stop
                s.stop_stride = _thin_append(s.timeline.stop, (ts, stop), s.stop_seen, s.stop_stride,
                                             TIMELINE_STOPS_MAX)
                s.stop_seen += 1

    def close_life(self, s: _Symbol, order_id: int, ts: float) -> None:
        start, side, price, purpose = s.lives.pop(order_id)
        s.life_stride = _thin_append(s.timeline.orders, (start, ts, side, price, purpose), s.lives_seen,
                                     s.life_stride, TIMELINE_ORDERS_MAX)
        s.lives_seen += 1
        s.timeline.orders_dropped = s.lives_seen - len(s.timeline.orders)

    def deliver(self, s: _Symbol) -> bool:
        """The batch reaches the venue: the gateway's order (cancels, amends, places); a refused
        item makes the worker re-read the open orders (and retry a refused flatten). True when
        the venue took every item."""
        b = s.batch
        assert b is not None
        s.batch = None
        e = self.engine
        pid = s.spec.product_id
        errors = False
        cancelled: list[int] = []
        for oid in b.cancel:
            try:
                e.cancel_order(order_id=oid, product_id=pid)
                s.cancelled += 1
                cancelled.append(oid)
            except VenueError as exc:
                if exc.code == "open_order_not_found":
                    cancelled.append(oid)  # already gone (filled or cancelled): the same outcome
                else:
                    errors = True
        self.feed_events()
        s.bot.on_cancelled(cancelled)
        for oid, size, price, kind, trailing in b.amend:
            stop = kind.startswith("stop_")
            try:  # the gateway's rule: a trailing stop's price is the venue's, only its size is edited
                e.edit_order(oid, size=size, limit_price=None if stop else self.price(price),
                             stop_price=self.price(price) if stop and not trailing else None)
                s.amended += 1
            except VenueError:
                errors = True
            self.feed_events()
        for cid, side, price, size, kind, reduce_only, trail in b.place:
            if kind == "stop_market_order" and trail > 0:
                req = OrderRequest(product_id=pid, side=side, size=size, order_type="market_order",
                                   reduce_only=reduce_only, client_order_id=cid,
                                   stop_order_type=TRAILING_STOP_ORDER_TYPE,
                                   trail_amount=dec(signed_trail_amount(side, trail)),
                                   stop_trigger_method=s.bot.grid.stop_trigger_method)
            elif kind == "stop_market_order":
                req = OrderRequest(product_id=pid, side=side, size=size, order_type="market_order",
                                   reduce_only=reduce_only, client_order_id=cid, stop_order_type="stop_loss_order",
                                   stop_price=self.price(price), stop_trigger_method=s.bot.grid.stop_trigger_method)
            else:
                # kind: the bot's limit/market order types, which the engine takes as they are
                req = OrderRequest(product_id=pid, side=side, size=size, order_type=kind,  # type: ignore[arg-type]
                                   limit_price=None if kind == "market_order" else self.price(price),
                                   reduce_only=reduce_only, client_order_id=cid)
            try:
                e.place_order(req)
                s.placed += 1
            except VenueError:
                errors = True
            self.feed_events()
        if errors:
            s.bot.resync_orders([_bot_order(s.symbol, o) for o in e.open_orders([pid])])
            s.flatten_sent = False
        return not errors

    def price(self, x: float) -> Decimal:
        """`dec(x)`, remembered: a grid sends the same few prices over and over."""
        d = self.decimals.get(x)
        if d is None:
            if x <= 0.0:  # (0.0 and -0.0 are one key with two reprs; the venue refuses both anyway)
                return dec(x)
            if len(self.decimals) >= DECIMALS_KEPT:
                self.decimals.clear()
            d = self.decimals[x] = dec(x)
        return d

    # --- the worker side --------------------------------------------------------------------

    def signal(self, s: _Symbol, i: int) -> tuple[bool, str, float, float, float]:
        """(valid, direction, confidence, close, atr14) the pool would answer at this trade."""
        lo = max(0, i + 1 - s.window)
        b = s.bars
        assert s.wh is not None and s.wl is not None and s.wc is not None
        # (volume: the engine reads none; the ring's would be the trades' sizes)
        r = self.signals.evaluate(BarWindow(s.symbol, i + 1, b.ts[lo:i + 1], b.open[lo:i + 1], s.wh[lo:i + 1],
                                            s.wl[lo:i + 1], s.wc[lo:i + 1], b.volume[lo:i + 1]))
        return r.valid, r.direction, r.confidence, r.indicators.close, r.indicators.atr14

    def decide(self, s: _Symbol, sig: tuple[bool, str, float, float, float], ts: float) -> None:
        """The worker's make_intents, minus the sockets."""
        if s.batch is not None:
            return
        bot = s.bot
        valid, direction, confidence, close, atr = sig
        due = s.trade_no + self.latency
        if self.halted:
            ho = halt_rule.halt_orders(account_halt=True, flatten_on_halt=self.cfg.risk.flatten_on_halt)
            hp = bot.halt_plan(halted=ho.halted, flatten_on_halt=ho.flatten, cancel_requested=ho.cancel_requested,
                               flatten_sent=s.flatten_sent, price=close)
            if hp.empty:
                return
            place = []
            if hp.flatten is not None:
                f = hp.flatten
                place.append((f.client_order_id, f.side, f.price, f.size, "market_order", True, 0.0))
                s.flatten_sent = True
            s.batch = _Batch(due, list(hp.cancel), [], place)
            return
        if not valid:
            return
        avail = self.sizing_balance(s)
        s.planned_avail = avail
        plan = bot.plan(now=ts, price=close, atr=atr, direction=direction, confidence=confidence,
                        available_balance=avail, allow_new_entries=True, market_ts=ts)
        if math.isfinite(close) and close > 0 and math.isfinite(atr) and atr > 0:
            s.dirty = False  # the plan saw everything that happened
        if plan.empty:
            return
        s.batch = _Batch(
            due, [c.order_id for c in plan.to_cancel],
            [(a.order_id, a.size, a.price, a.desired.order_type, a.desired.trail > 0) for a in plan.to_amend],
            [(p.client_order_id, p.order.side, p.order.price, p.order.size, p.order.order_type, p.order.reduce_only,
              p.order.trail) for p in plan.to_place])

    def available(self) -> float:
        return float(self.engine.available_balance())

    def sizing_balance(self, s: _Symbol, available: float | None = None) -> float:
        """What the symbol's grid is sized from (sizing.grid_sizing_balance): the bot's book is the
        engine's, its events drained after every call."""
        bot = s.bot
        if s.held_of[0] != bot.book_revision:
            # (the add-back moves only with the symbol's own book, the account's balance with everyone's)
            s.held_of = (bot.book_revision, entry_margin_held(bot.open_orders.values(), s.spec, bot_id=bot.bot_id,
                                                              symbol=s.symbol))
        return (self.available() if available is None else available) + s.held_of[1]

    def resize_check(self, acting: _Symbol) -> None:
        """The account's available balance is shared: an order or fill of one symbol can change
        another's grid size. Wake a symbol whose size would now differ (the only use a plan makes
        of the balance)."""
        if self.engine.revision == self.revision_seen:
            return
        self.revision_seen = self.engine.revision
        if len(self.syms) == 1:
            return
        account = self.available()
        for s in self.syms:
            a = s.bot.anchor
            if s is acting or s.wake_all or a is None:
                continue
            avail = self.sizing_balance(s, account)
            if avail == s.planned_avail:
                continue
            r = s.bot.risk  # the symbol's own (its [symbols.SYMBOL.risk] over [risk])
            self.planned_size(s, a)
            sized = s.planned_size
            # The size never falls as the balance rises: between two balances that gave the
            # plan's size, every balance gives it.
            if sized[3] <= avail <= sized[4]:
                continue
            above = avail > sized[4]
            end = 2 if above else 1
            if not sized[5] & end and sized[2] >= 0:
                # that end worked out once the size is asked about beyond it (most plans never are)
                _, lo, hi = balance_range_for_size(sized[0], a.price, s.spec, risk_percentage=r.risk_percentage,
                                                   min_balance=r.min_balance, low=not above, high=above)
                sized = s.planned_size = (sized[0], a, sized[2], min(sized[3], lo), max(sized[4], hi), sized[5] | end)
                if sized[3] <= avail <= sized[4]:
                    continue
            now = contracts_per_level(avail, a.price, s.spec, risk_percentage=r.risk_percentage,
                                      min_balance=r.min_balance)
            if now == sized[2]:
                s.planned_size = (sized[0], a, now, min(sized[3], avail), max(sized[4], avail), sized[5])
            else:
                s.dirty = s.wake_all = True
                self.wakes += 1

    # --- wake-ups ------------------------------------------------------------------------------

    def settle(self, s: _Symbol, ts: float) -> None:
        """After the bot was asked: which later trades could change what it does. Until one of
        them, a trade only moves the venue's last price (replayed before the next call) and the
        signal (read from the series when the bot is next asked). Anything unusual wakes it at
        every trade (`wake_all`); each rule here is a reason `plan` or the venue would act."""
        bot = s.bot
        grid = bot.grid
        bucket = bot.bucket
        # the bucket as a plan at this trade reads it (after a plan here: as it left it); one that
        # is full now reads full at any later plan (the refill clamps), so skipping is exact
        if (not self.skip or s.batch is not None or bool(self.halted) or s.dirty
                or (bucket is not None and tokens_at(bucket, ts) < bucket.capacity)):
            # asked at every trade until a plan settles it anew: nothing below would be read
            # (the rules are only consulted while wake_all is False); half of all calls, with a
            # batch on its way
            s.wake_all = True
            return
        wake_all = False
        s.cool_end = INF
        if bot.stopped_out_at is not None and bot.stopped_out_at + grid.stop_cooldown_s > ts:
            s.cool_end = bot.stopped_out_at + grid.stop_cooldown_s
        lo, hi = -INF, INF
        ours: dict[tuple[str, str, int], OpenOrder] = {}
        tags = s.tags
        for o in bot.open_orders.values():
            if o.order_type == "stop_market_order":
                if o.side == "sell":
                    lo = max(lo, o.price)
                else:
                    hi = min(hi, o.price)
                venue_order = self.engine.order(o.order_id) if o.trailing else None
                if venue_order is not None and venue_order.trail_extreme is not None:
                    # a trailing stop moves with every new extreme: the venue must see each one
                    if o.side == "sell":
                        hi = min(hi, float(venue_order.trail_extreme))
                    else:
                        lo = max(lo, float(venue_order.trail_extreme))
            elif o.side == "buy":
                lo = max(lo, o.price)
            else:
                hi = min(hi, o.price)
            tag = tags[o.client_order_id]
            if tag is None or o.symbol != s.symbol or tag.side != o.side:
                continue
            key = (tag.side, tag.purpose, tag.level)
            if key in ours:
                wake_all = True
            ours[key] = o
        anchor = bot.anchor
        if anchor is None and any(key[1] == "entry" for key in ours):
            wake_all = True
        gap = 0.0
        stop_rest = 0.0
        wanted = {d.key: d for d in bot.desired}
        if wanted.keys() != ours.keys():
            wake_all = True
        else:
            for key, d in wanted.items():
                o = ours[key]
                if (o.unfilled_size != d.size or o.order_type != d.order_type or o.reduce_only != d.reduce_only
                        or o.trailing != (d.trail > 0)):
                    wake_all = True
                elif d.purpose == "stop":
                    stop_rest = 0.0 if o.trailing else o.price  # a trailing one is never amended on price
                else:
                    gap = max(gap, abs(o.price - d.price))
        if s.position:
            lo, hi = self.liquidation_bounds(s, lo, hi)
        if anchor is not None:
            s.anchor_code = 1 if anchor.direction == "UP" else 2 if anchor.direction == "DOWN" else 0
            s.anchor_price, s.band = anchor.price, grid.regrid_fraction * anchor.step
        else:
            s.anchor_code = 0
        s.lo, s.hi, s.gap, s.stop_rest = lo, hi, gap, stop_rest if bot.stop_edge is not None else 0.0
        s.stop_long = bot.position is not None and bot.position.contracts > 0
        s.wake_all = wake_all

    def liquidation_bounds(self, s: _Symbol, lo: float, hi: float) -> tuple[float, float]:
        """Widened by a margin: waking early is harmless, the engine decides the liquidation."""
        pos = self.engine.position(s.spec.product_id)
        if pos.entry_price is None or pos.size == 0:
            return lo, hi
        a = abs(pos.size) * s.spec.contract_value
        pm = float(self.engine.position_margin(s.spec.product_id))
        entry = float(pos.entry_price)
        rate = min(s.spec.maintenance_margin, 1.0 / (2.0 * float(self.engine.leverage(s.spec.product_id))))
        if pos.size > 0:
            return max(lo, (a * entry - pm) / (a * (1.0 - rate)) * 1.001), hi
        return lo, min(hi, (pm + a * entry) / (a * (1.0 + rate)) * 0.999)

    def quiet_after_delivery(self, s: _Symbol, i: int, k: int, ts: float) -> bool:
        """Whether the plan at this trade, the one right after our batch was taken as sent,
        would change nothing, so it need not be made: the book is the one the last plan wanted
        (settle), this trade wakes nothing (must_wake), and the grid's size is unchanged by the
        margin the batch now holds (the plan sizes from the available balance). Otherwise the
        bot is asked as usual."""
        if not self.skip or self.halted or s.dirty or s.bot.holdings.held or s.position:
            # holding: the take-profits' and the stop's prices read the levels, which the
            # batch's own entries and amends have just changed; only a plan can say
            return False
        self.settle(s, ts)
        if s.wake_all or self.must_wake(s, i, k, ts):
            return False
        a = s.bot.anchor
        if a is None:
            return True
        n = self.planned_size(s, a)
        avail = self.sizing_balance(s)
        if s.planned_size[3] <= avail <= s.planned_size[4]:
            return True  # a balance known to give the plan's size
        r = s.bot.risk
        return contracts_per_level(avail, a.price, s.spec, risk_percentage=r.risk_percentage,
                                   min_balance=r.min_balance) == n

    def planned_size(self, s: _Symbol, a: GridAnchor) -> int:
        """Contracts per level of the symbol's last plan (-1: none sized yet)."""
        sized = s.planned_size
        if sized[0] != s.planned_avail and sized[1] is a and sized[3] <= s.planned_avail <= sized[4]:
            # a new plan's balance inside the range known to give this anchor's size: the same size
            sized = s.planned_size = (s.planned_avail, a, sized[2], sized[3], sized[4], sized[5])
        elif sized[0] != s.planned_avail or sized[1] is not a:
            r = s.bot.risk
            sized = s.planned_size = (s.planned_avail, a, contracts_per_level(
                s.planned_avail, a.price, s.spec, risk_percentage=r.risk_percentage,
                min_balance=r.min_balance) if math.isfinite(s.planned_avail) else -1,
                s.planned_avail, s.planned_avail, 0)
        return sized[2]

    def must_wake(self, s: _Symbol, i: int, k: int, ts: float) -> bool:
        """Whether this trade could change anything the bot or the venue does (see settle)."""
        r = i - s.c0
        if not 0 <= r < s.cn:
            s.chunk_for(i)
            r = i - s.c0
        j = r * TICKS_PER_BAR + k
        price = s.cpx[j]
        if price <= s.lo or price >= s.hi or ts >= s.cool_end:
            return True
        if s.cool_end == INF:
            code = s.cstrong[j]
            if code and (s.anchor_code == 0 or code != s.anchor_code and s.bot.grid.mode == "directional"
                         or abs(price - s.anchor_price) > s.band):  # grid.needs_regrid's own expression
                return True
        tol = s.ctol[j]
        if s.gap > 0.0 and s.gap > tol - 1e-9:
            return True
        return bool(s.stop_rest) and self.stop_moves(s, j)

    def stop_moves(self, s: _Symbol, j: int) -> bool:
        """Whether the protective stop a plan at trade j (chunk index) would want is off our
        resting one by more than the re-grid tolerance (a plan would amend it)."""
        atr = s.catr[j]
        edge = s.bot.stop_edge
        if edge is not None and atr > 0:
            g = s.bot.grid
            if g.stops and g.stop_kind != "trailing":  # (only the trigger to compare)
                trigger = stop_trigger(1 if s.stop_long else -1, edge, atr, s.spec, g)
                return abs(trigger - s.stop_rest) > s.ctol[j] - 1e-9
            want = protective_stop(1 if s.stop_long else -1, edge, atr, s.spec, g, s.cpx[j])
            if want is not None and abs(want.price - s.stop_rest) > s.ctol[j] - 1e-9:
                return True
        return False

    def bar_quiet(self, s: _Symbol, i: int, bar_ts: float) -> bool:
        """Whether `must_wake` is False at every trade of bar i, from the bar's extremes: True
        only when it is (each test is must_wake's own over the bar's lowest/highest price, last
        trade time, strong codes and smallest tolerance); False when some trade may wake."""
        r = i - s.c0
        if not 0 <= r < s.cn:
            s.chunk_for(i)
            r = i - s.c0
        if s.blo[r] <= s.lo or s.bhi[r] >= s.hi or bar_ts + (TICKS_PER_BAR - 1) * TICK_SECONDS >= s.cool_end:
            return False
        if s.cool_end == INF:
            codes = s.bcodes[r]
            if codes:
                if s.anchor_code == 0 or codes != s.anchor_code and s.bot.grid.mode == "directional":
                    return False
                # abs(price - anchor) > band at some trade: its price is above or below the anchor
                if s.bhi[r] - s.anchor_price > s.band or s.anchor_price - s.blo[r] > s.band:
                    return False
        if s.gap > 0.0 and s.gap > s.btol[r] - 1e-9:
            return False
        if s.stop_rest:
            if self.stop_stays(s, r):
                return True
            j = r * TICKS_PER_BAR
            for k in range(TICKS_PER_BAR):
                if self.stop_moves(s, j + k):
                    return False
        return True

    def stop_stays(self, s: _Symbol, r: int) -> bool:
        """True when `stop_moves` is False at every trade of bar r (chunk index), from the
        triggers at the bar's smallest and largest ATR alone: the trigger is monotone in the ATR,
        so every trade's lies between those two, no farther from our resting stop than the
        farther of them, and every trade's tolerance is at least the bar's smallest. False: the
        bar must be checked trade by trade."""
        edge = s.bot.stop_edge
        g = s.bot.grid
        amin, amax = s.bamin[r], s.bamax[r]
        if edge is None or not g.stops or g.stop_kind == "trailing" or not amin > 0:
            return False  # (a trade's ATR that is NaN or not > 0 is skipped by stop_moves: NaN min, all were)
        try:
            t1 = stop_trigger(1 if s.stop_long else -1, edge, amin, s.spec, g)
            t2 = stop_trigger(1 if s.stop_long else -1, edge, amax, s.spec, g)
        except ValueError:
            return False  # (stop_moves raises at that trade, if no earlier one wakes first)
        limit = s.btol[r] - 1e-9
        return abs(t1 - s.stop_rest) <= limit and abs(t2 - s.stop_rest) <= limit

    # --- the supervisor side ----------------------------------------------------------------

    def equity(self) -> float:
        eq = self.balance_now()
        for s in self.syms:
            if s.position:
                eq += s.position * s.spec.contract_value * (s.last_price - s.entry)
        return eq

    def balance_now(self) -> float:
        rev, balance = self.balance_of
        if rev != self.money_rev:
            balance = self.balance0 + sum(s.realised - s.fees + s.funding for s in self.syms)
            self.balance_of = (self.money_rev, balance)
        return balance

    def check_risk(self, ts: float, eq: float) -> None:
        if self.risk_state is None:
            # The run's day starts at the starting balance: the first bar's own move is checked too.
            self.risk_state = account_risk.initial_state(self.balance0, ts)
        # The same equity and notional on the same UTC day decide the same (evaluate is pure and
        # only its updated_ts would move): skip the call, as flat stretches are most of a run.
        key = (eq, account_risk.utc_day(ts),
               sum(abs(s.position) * s.spec.contract_value * s.last_price for s in self.syms if s.position))
        if key == self.risk_key and not self.halted:
            return
        self.risk_key = key
        notional = {s.symbol: abs(s.position) * s.spec.contract_value * s.last_price if s.position else 0.0
                    for s in self.syms}
        snap = account_risk.AccountSnapshot(ts=ts, equity=eq, position_notional=notional)
        decision, self.risk_state = account_risk.evaluate(self.risk_state, snap, self.cfg.risk)
        if decision.halted and not self.halted:
            self.halted = decision.reason
            self.halted_ts = ts
            # The supervisor's halt reaches every worker at once, and each acts on it with its
            # last signal, not at its next trade.
            for s in self.syms:
                sig = s.sig(s.last_i, TICKS_PER_BAR - 1) if s.chunks is not None else s.last_sig
                if sig is not None:
                    self.decide(s, sig, ts)
                    self.settle(s, ts)

    def charge_funding_due(self, syms: Sequence[_Symbol], ts: float, funding_period: int) -> int:
        """At the first trade of a new funding interval, every funded symbol pays or receives the
        interval boundary's funding; returns the interval `ts` is in (the caller's new period)."""
        period = int(ts // FUNDING_INTERVAL_S)
        if period != funding_period:
            if funding_period >= 0:
                for s in syms:
                    if s.funding_ts is not None:
                        self.charge_funding(s, period * FUNDING_INTERVAL_S)
        return period

    def charge_funding(self, s: _Symbol, boundary: float) -> None:
        """Funding at an interval boundary: positive rate = longs pay shorts, on the notional at
        the last trade."""
        assert s.funding_ts is not None and s.funding_rate is not None
        j = int(np.searchsorted(s.funding_ts, boundary, side="right")) - 1
        if j < 0 or not s.position or not math.isfinite(s.last_price):
            return
        rate = float(s.funding_rate[j])
        amount = -s.position * s.spec.contract_value * s.last_price * rate
        d = money(dec(amount))
        self.engine.balance += d  # the wallet pays or receives it, as Delta's does
        s.funding += float(d)
        s.money_rev += 1
        self.money_rev += 1
        for other in self.syms:  # the available balance every bot sizes from changed
            other.dirty = other.wake_all = True
        self.wakes += 1


def _check_inputs(data: Mapping[str, Candles], specs: Mapping[str, ProductSpec], balance_usd: float,
                  latency_ticks: int, start_ts: float | None, end_ts: float | None) -> None:
    if not data:
        raise BacktestError("no data: give at least one symbol's candles")
    for sym in data:
        if sym not in specs:
            raise BacktestError(f"{sym}: no product spec "
                                f"(give --spec {sym}=contract_value:tick_size:maker_fee:taker_fee)")
    if not (math.isfinite(balance_usd) and balance_usd > 0):
        raise BacktestError(f"balance must be > 0 USD, got {balance_usd!r}")
    if latency_ticks < 1:
        raise BacktestError("latency_ticks must be >= 1 (an order cannot fill on the trade it was decided on), "
                            f"got {latency_ticks}")
    if start_ts is not None and end_ts is not None and start_ts > end_ts:
        raise BacktestError(f"--from ({start_ts:.0f}) is after --to ({end_ts:.0f})")
    for sym, c in data.items():
        if len(c) == 0:
            raise BacktestError(f"{sym}: no bars")
        ts = np.asarray(c.ts)
        if len(ts) > 1 and not np.all(np.diff(ts) > 0):
            bad = int(np.flatnonzero(np.diff(ts) <= 0)[0]) + 1
            raise BacktestError(f"{sym}: bar {bad} (ts {int(ts[bad])}) is not after the bar before it")


def _daily_sharpe(day_equity: list[float], start_equity: float) -> float:
    """Mean over standard deviation of daily returns, times sqrt(365); 0 below two days."""
    if len(day_equity) < 2:
        return 0.0
    eq = np.array([start_equity, *day_equity])
    rets = np.diff(eq) / np.where(eq[:-1] != 0, eq[:-1], 1.0)
    sd = float(np.std(rets, ddof=1))
    if not sd > 0:
        return 0.0
    return round(float(np.mean(rets)) / sd * math.sqrt(DAYS_PER_YEAR), 6)


def _r(x: float, places: int = 8) -> float:
    return round(float(x), places)


def run_backtest(cfg: Config, data: Mapping[str, Candles], *, specs: Mapping[str, ProductSpec],
                 balance_usd: float, start_ts: float | None = None, end_ts: float | None = None,
                 warmup_bars: int | None = None, funding: Mapping[str, Candles] | None = None,
                 latency_ticks: int = 1, progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, signals_ahead: bool = False,
                 _wake_every_trade: bool = False, _per_trade_engine: bool = False,
                 reuse: BacktestReuse | None = None) -> BacktestResult:
    """Replay each symbol's candles (bar open times, epoch s; 1m bars) through the paper venue's
    tick path, the pool's SignalEngine, the worker's TradingBot, the supervisor's account risk
    rules and the paper venue's MatchingEngine.

    `start_ts`/`end_ts` (inclusive bar open times) pick the traded range; the `warmup_bars` bars
    before it feed the indicators and trade nothing (None: `default_warmup_bars`).
    `funding[symbol]` is a FUNDING:<symbol> series (rate per funding interval in `close`, positive
    = longs pay shorts), charged at each 8 h boundary; without one, funding is zero and the
    result says so. An order sent at trade t rests from trade t + `latency_ticks` (>= 1).
    `progress(done, total)` is called now and then with bars done; `should_stop()` True ends the
    run early with what it had (`interrupted`). Raises BacktestError for bad input.
    `signals_ahead`: compute the signal series in a helper process, a chunk ahead of the loop
    (`series_ahead`; the same results, the wall time of the signals mostly hidden on a second
    core; off where processes are the caller's to place, as in an optimize study's workers).
    `reuse` keeps the replayed bars and signal series for later runs on the same data (an
    optimizer's trials; see `reuse.BacktestReuse`); the result is the same without it.

    Test hooks: `_wake_every_trade` asks the bot at every trade (the reference the wake-up rules
    are held to); `_per_trade_engine` also asks the SignalEngine itself at every trade instead of
    reading `iter_series` (the reference the series is held to)."""
    t0 = time.perf_counter()
    _check_inputs(data, specs, balance_usd, latency_ticks, start_ts, end_ts)
    warm = default_warmup_bars(cfg) if warmup_bars is None else int(warmup_bars)
    if warm < 0:
        raise BacktestError(f"--warmup-bars must be >= 0, got {warm}")
    if warm > cfg.market.window_bars - 1:
        # The pool reads window_bars bars (the forming one included) at its first request: more
        # warm-up than that is history the live engine never sees.
        raise BacktestError(f"--warmup-bars {warm}: the signal engine reads at most market.window_bars - 1 = "
                            f"{cfg.market.window_bars - 1} closed bars (raise market.window_bars, up to 8192)")
    funding = funding or {}
    for sym in funding:
        if sym not in data:
            raise BacktestError(f"FUNDING:{sym} given without {sym}'s candles")
    syms: list[_Symbol] = []
    for sym in sorted(data):
        c = data[sym]
        ts = np.asarray(c.ts, dtype=np.int64)
        first = int(np.searchsorted(ts, start_ts, side="left")) if start_ts is not None else warm
        last = int(np.searchsorted(ts, end_ts, side="right")) - 1 if end_ts is not None else len(ts) - 1
        if start_ts is not None and (first >= len(ts) or start_ts < ts[0] - BAR_SECONDS):
            raise BacktestError(f"{sym}: --from {start_ts:.0f} is outside the data ({int(ts[0])}..{int(ts[-1])})")
        if end_ts is not None and (last < 0 or end_ts > ts[-1] + BAR_SECONDS):
            raise BacktestError(f"{sym}: --to {end_ts:.0f} is outside the data ({int(ts[0])}..{int(ts[-1])})")
        if first > last:
            raise BacktestError(f"{sym}: no bars to trade after {warm} warm-up bars ({len(ts)} bars in the data)")
        if first < warm:
            raise BacktestError(f"{sym}: {warm} warm-up bars wanted before the first traded bar, the data has "
                                f"{first} (lower --warmup-bars or start later)")
        lo = first - warm
        sl = c.slice(lo, last + 1)
        bars = (replay_bars(sl, specs[sym], warm) if reuse is None else
                reuse.bars(c, lo, last + 1, warm, specs[sym], partial(replay_bars, sl, specs[sym], warm)))
        mine = symbol_settings(cfg, sym)  # the worker's own rule: [symbols.SYMBOL.*] over [grid]/[risk]
        bot = TradingBot(symbol=sym, product=specs[sym], grid=mine.grid, risk=mine.risk, bot_id=cfg.run.bot_id)
        bot.reconcile_from([], [], [])
        s = _Symbol(symbol=sym, spec=specs[sym], bars=bars, first=warm, last=last - lo, bot=bot,
                    window=cfg.market.window_bars,
                    peak=balance_usd, last_eq=balance_usd)
        # the command's warnings and the report read the same gaps: from the first missing bar
        s.gaps = [(float(g.from_ts), float(g.seconds))
                  for g in find_gaps(bars.ts[warm:], BAR_SECONDS)[:MAX_GAPS_LISTED]]
        if sym in funding:
            f = funding[sym]
            s.funding_ts = np.asarray(f.ts, dtype=np.float64)
            s.funding_rate = np.asarray(f.close, dtype=np.float64)
        syms.append(s)
    run = _Run(cfg, syms, balance_usd, latency_ticks)
    run.skip = not (_wake_every_trade or _per_trade_engine)
    ahead: SeriesAhead | None = None
    if not _per_trade_engine:
        if signals_ahead and any(len(s.bars.ts) > CHUNK_BARS for s in syms):  # one chunk each: nothing to hide
            try:
                ahead = SeriesAhead(cfg.signal, cfg.market.seed, CHUNK_BARS, {s.symbol: _series_input(s) for s in syms},
                                    first_bars=FIRST_CHUNK_BARS)
            except OSError:  # no process to be had (EAGAIN, ENOMEM): the same series in this process, slower
                ahead = None
        for s in syms:
            attach_series(cfg, s, ahead, reuse)
    try:
        return _replay(run, syms, cfg, t0, warm, funding, latency_ticks, progress, should_stop, _per_trade_engine)
    finally:
        if ahead is not None:
            ahead.close()


def _replay(run: _Run, syms: list[_Symbol], cfg: Config, t0: float, warm: int, funding: Mapping[str, Candles],
            latency_ticks: int, progress: Callable[[int, int], None] | None,
            should_stop: Callable[[], bool] | None, _per_trade_engine: bool) -> BacktestResult:
    """The bars of every symbol in one lockstep clock, then the result."""
    # Every symbol's bars in one lockstep clock (bar open times), as the venue's replay timer.
    clock = np.unique(np.concatenate([s.bars.ts[s.first:s.last + 1] for s in syms]))
    total = len(clock)
    points_every = max(1, math.ceil(total / EQUITY_POINTS))
    ptr = {s.symbol: s.first for s in syms}
    # every symbol trades every bar of the clock (the usual case): bar n is index first + n
    aligned = all(s.last - s.first + 1 == total and np.array_equal(s.bars.ts[s.first:s.last + 1], clock)
                  for s in syms)
    interrupted = False
    funding_period = -1
    done = 0
    skip = run.skip
    funded = any(s.funding_ts is not None for s in syms)
    last_trade = (TICKS_PER_BAR - 1) * TICK_SECONDS
    for n_bar, bar_ts in enumerate(clock.tolist()):
        if should_stop is not None and n_bar % 256 == 0 and should_stop():
            interrupted = True
            break
        if aligned:
            active = [(s, s.first + n_bar) for s in syms]
        else:
            active = []
            for s in syms:
                i = ptr[s.symbol]
                if i <= s.last and s.bars.ts[i] == bar_ts:
                    active.append((s, i))
                    ptr[s.symbol] = i + 1
        # A bar no trade of which wakes any symbol is skipped whole (what the trade-by-trade loop
        # below does with it: count the trades, keep the last as the venue's stale price);
        # the funding clock must not move in it.
        all_quiet = skip and (not funded or int(bar_ts // FUNDING_INTERVAL_S) == funding_period
                              == int((bar_ts + last_trade) // FUNDING_INTERVAL_S))
        if skip:
            for s, i in active:
                if not s.wake_all and run.bar_quiet(s, i, bar_ts):
                    s.quiet_bar = n_bar
                else:
                    all_quiet = False
        if all_quiet:
            run.clock_us = clock_us = int(bar_ts + last_trade) * 1_000_000
            for s, i in active:
                s.trade_no += TICKS_PER_BAR
                s.stale = (i, TICKS_PER_BAR - 1, clock_us)
        else:
            # Where the trade-by-trade pass over every symbol below starts: (trade k0, symbol p0).
            k0 = p0 = 0
            quiet = [s for s, _ in active if s.quiet_bar == n_bar] if skip else []
            if quiet:
                # The symbols found quiet for the whole bar take no part in it (each symbol's own
                # skip) unless something wakes one of them mid-bar (another symbol's order moving
                # the shared balance, funding): the others trade here, and at a wake the pass
                # below goes on from that trade and symbol, as if it had run from the start.
                busy = [(p, s, i) for p, (s, i) in enumerate(active) if s.quiet_bar != n_bar]
                wakes = run.wakes
                k0 = TICKS_PER_BAR  # (no wake: the whole bar is done here)
                for k in range(TICKS_PER_BAR):
                    ts = bar_ts + k * TICK_SECONDS
                    run.clock_us = int(ts) * 1_000_000
                    if funded:
                        funding_period = run.charge_funding_due(syms, ts, funding_period)
                    if run.wakes != wakes and any(q.wake_all for q in quiet):
                        k0 = k
                        break
                    for p, s, i in busy:
                        s.trade_no += 1
                        if not s.wake_all and not run.must_wake(s, i, k, ts):
                            s.stale = (i, k, run.clock_us)
                            continue
                        s.quiet_bar = -1
                        run_trade(run, s, i, k, ts, _per_trade_engine)
                        if run.wakes != wakes:
                            wakes = run.wakes
                            if any(q.wake_all for q in quiet):
                                k0, p0 = k, p + 1
                                break
                    if k0 < TICKS_PER_BAR:
                        break
                # the quiet symbols' skipped trades: every one before k0, and k0's for those before p0
                for p, (s, i) in enumerate(active):
                    if s.quiet_bar == n_bar:
                        n = k0 + (p < p0)
                        if n:
                            s.trade_no += n
                            s.stale = (i, n - 1, int(bar_ts + (n - 1) * TICK_SECONDS) * 1_000_000)
                if k0 == TICKS_PER_BAR:
                    run.clock_us = int(bar_ts + last_trade) * 1_000_000
            for k in range(k0, TICKS_PER_BAR):
                ts = bar_ts + k * TICK_SECONDS
                run.clock_us = int(ts) * 1_000_000
                if funded:
                    funding_period = run.charge_funding_due(syms, ts, funding_period)
                for s, i in (active[p0:] if k == k0 else active):
                    s.trade_no += 1
                    # quiet_bar: found quiet at the bar's start, and nothing woke it since
                    if skip and not s.wake_all and (s.quiet_bar == n_bar or not run.must_wake(s, i, k, ts)):
                        s.stale = (i, k, run.clock_us)
                        continue
                    s.quiet_bar = -1  # asked: its wake-up state is settled anew
                    run_trade(run, s, i, k, ts, _per_trade_engine)
        for s, i in active:
            r = i - s.c0
            # the bar's close is its last trade, in the chunk when one is loaded
            s.last_price = (s.cpx[r * TICKS_PER_BAR + TICKS_PER_BAR - 1] if 0 <= r < s.cn
                            else float(s.bars.close[i]))
            s.last_i = i
            s.bars_done += 1
            if s.position:
                s.bars_in_market += 1
        # one equity for both: a halt's decisions only queue batches, so nothing moves it in between
        eq = run.equity()
        run.check_risk(bar_ts + (TICKS_PER_BAR - 1) * TICK_SECONDS, eq)
        account_bar_end(run, bar_ts, n_bar, points_every, eq)
        done = n_bar + 1
        if progress is not None and done % PROGRESS_EVERY_BARS == 0:
            progress(done, total)
    if progress is not None:
        progress(done, total)
    for s in syms:
        for oid in list(s.lives):
            run.close_life(s, oid, run.clock_us / 1e6)
    return _result(run, syms, cfg, done, total, warm, funding, latency_ticks, interrupted, time.perf_counter() - t0,
                   float(clock[0]), float(clock[done - 1]) if done else float(clock[0]))


def _series_input(s: _Symbol) -> tuple[Candles, np.ndarray]:
    """What `iter_series` reads for the symbol: its bars (warm-up included) and trade prices."""
    b = s.bars
    return Candles(b.ts.astype(np.int64), b.open, b.high, b.low, b.close, b.volume), b.ticks


def attach_series(cfg: Config, s: _Symbol, ahead: SeriesAhead | None = None,
                  reuse: BacktestReuse | None = None) -> None:
    """The pool's answers at every trade of the symbol, read chunk by chunk (warm-up included,
    as the engine is called from the first bar); from the helper process when there is one, or
    from the optimizer's kept series (`reuse`) when the same data and signal table ran before."""
    s.grid = s.bot.grid
    if ahead is not None:
        s.chunks = ahead.chunks(s.symbol)
        return

    def make() -> Iterator[SignalSeries]:
        candles, ticks = _series_input(s)
        return iter_series(cfg.signal, s.symbol, candles, ticks=ticks, seed=cfg.market.seed, chunk_bars=CHUNK_BARS)

    s.chunks = make() if reuse is None else reuse.series(s.bars, cfg.signal, cfg.market.seed, make)


def run_trade(run: _Run, s: _Symbol, i: int, k: int, ts: float, per_trade_engine: bool) -> None:
    """One replayed trade of one symbol: the batch due now reaches the venue, the trade matches
    our book, the worker's bar ring takes the trade, the pool answers, the bot decides."""
    b = s.bars
    if per_trade_engine:
        price = float(b.ticks[i, k])
    else:
        r = i - s.c0
        if not 0 <= r < s.cn:
            s.chunk_for(i)
            r = i - s.c0
        j = r * TICKS_PER_BAR + k
        price = s.cpx[j]  # (the chunk's copy of b.ticks[i, k])
    e = run.engine
    if s.stale is not None:
        # the trades skipped since the bot was last asked changed nothing but the venue's last
        # price: the last of them is replayed now, before anything meets the book
        si, sk, sts = s.stale
        e.on_market_trade(s.symbol, float(b.ticks[si, sk]), int(b.trade_size[si]), sts)
        run.feed_events()
        s.stale = None
    as_planned = False
    if s.batch is not None and s.batch.due <= s.trade_no:
        dirty, fills = s.dirty, s.fills
        if run.deliver(s) and s.fills == fills:
            # every item taken and nothing filled: the venue's answers are the book the plan
            # that sent the batch foresaw, nothing it has not planned on
            s.dirty, as_planned = dirty, True
    e.on_market_trade(s.symbol, price, int(b.trade_size[i]), run.clock_us)
    run.feed_events()
    s.last_price = price
    if per_trade_engine:
        # the worker's ring (the three are set together): bar i's entries hold the forming bar while it forms
        if s.wh is None or s.wl is None or s.wc is None:
            s.wh, s.wl, s.wc = b.high.copy(), b.low.copy(), b.close.copy()
        s.wh[i] = max(b.ticks[i, :k + 1])
        s.wl[i] = min(b.ticks[i, :k + 1])
        s.wc[i] = price
        sig = run.signal(s, i)
    else:
        sig = (s.cvalid[j], st.VOTE_NAMES[s.cdirection[j]], s.cconfidence[j], price, s.catr[j])  # s.sig(i, k)
    s.last_sig = sig
    if as_planned and run.quiet_after_delivery(s, i, k, ts):
        run.resize_check(s)
        return
    run.decide(s, sig, ts)
    run.settle(s, ts)
    run.resize_check(s)


def account_bar_end(run: _Run, bar_ts: float, n_bar: int, points_every: int, eq: float) -> None:
    day = int(bar_ts // 86_400)
    # The same equity on the same day leaves the peak, drawdown and day figures as they are
    # (each was already taken with it): only the equity points move.
    if eq != run.last_equity or day != run.day:
        run.peak = max(run.peak, eq)
        if run.peak > 0:
            run.max_dd = max(run.max_dd, (run.peak - eq) / run.peak)
        if day != run.day:
            if run.day >= 0:
                run.day_equity.append(run.last_equity)
            run.day = day
        run.last_equity = eq
    if n_bar % points_every == 0:
        run.equity_points.append((bar_ts, _r(eq, 6)))
    for s in run.syms:
        # likewise a flat symbol with no fill or funding since the last bar end, on the same day
        if not s.position and s.money_seen == s.money_rev and day == s.day:
            continue
        s.money_seen = s.money_rev
        seq = run.balance0 + s.realised - s.fees + s.funding
        if s.position:
            seq += s.position * s.spec.contract_value * (s.last_price - s.entry)
        s.peak = max(s.peak, seq)
        if s.peak > 0:
            s.max_dd = max(s.max_dd, (s.peak - seq) / s.peak)
        if day != s.day:
            if s.day >= 0:
                s.day_equity.append(s.last_eq)
            s.day = day
        s.last_eq = seq


def _result(run: _Run, syms: list[_Symbol], cfg: Config, done: int, total: int, warm: int,
            funding: Mapping[str, Candles], latency: int, interrupted: bool, elapsed: float,
            first_ts: float, last_ts: float) -> BacktestResult:
    if run.day >= 0:
        run.day_equity.append(run.last_equity)
    per: dict[str, Figures] = {}
    timeline: dict[str, Timeline] = {}
    hours = max(done, 1) / 60.0
    for s in syms:
        unreal = s.position * s.spec.contract_value * (s.last_price - s.entry) if s.position else 0.0
        net = s.realised + unreal - s.fees + s.funding
        if s.day >= 0:
            s.day_equity.append(s.last_eq)
        orders = s.placed + s.amended + s.cancelled
        per[s.symbol] = Figures(
            net_pnl=_r(net), realised_pnl=_r(s.realised), unrealised_pnl=_r(unreal), fees=_r(s.fees),
            funding=_r(s.funding), return_pct=_r(net / run.balance0 * 100, 6),
            max_drawdown_pct=_r(s.max_dd * 100, 6), sharpe=_daily_sharpe(s.day_equity, run.balance0),
            fills=s.fills, orders_placed=s.placed, orders_amended=s.amended, orders_cancelled=s.cancelled,
            time_in_market_pct=_r(s.bars_in_market / max(s.bars_done, 1) * 100, 6), position=s.position,
            orders_per_hour=_r(orders / max(s.bars_done / 60.0, 1 / 60.0), 4))
        b = s.bars
        lo, hi = s.first, s.first + s.bars_done
        stride = max(1, math.ceil((hi - lo) / TIMELINE_PRICE_POINTS))
        tl = s.timeline
        tl.price = [(t, c) for t, c in zip(b.ts[lo:hi:stride].tolist(), b.close[lo:hi:stride].tolist(), strict=True)]
        timeline[s.symbol] = tl
    tot = [v for v in per.values()]
    net = sum(v.net_pnl for v in tot)
    summary = Figures(
        net_pnl=_r(net), realised_pnl=_r(sum(v.realised_pnl for v in tot)),
        unrealised_pnl=_r(sum(v.unrealised_pnl for v in tot)), fees=_r(sum(v.fees for v in tot)),
        funding=_r(sum(v.funding for v in tot)), return_pct=_r(net / run.balance0 * 100, 6),
        max_drawdown_pct=_r(run.max_dd * 100, 6), sharpe=_daily_sharpe(run.day_equity, run.balance0),
        fills=sum(v.fills for v in tot), orders_placed=sum(v.orders_placed for v in tot),
        orders_amended=sum(v.orders_amended for v in tot), orders_cancelled=sum(v.orders_cancelled for v in tot),
        time_in_market_pct=_r(sum(s.bars_in_market for s in syms) / max(sum(s.bars_done for s in syms), 1) * 100, 6),
        position=None,
        orders_per_hour=_r(sum(v.orders_placed + v.orders_amended + v.orders_cancelled for v in tot) / hours, 4))
    effective = {"grid": msgspec.to_builtins(cfg.grid), "risk": msgspec.to_builtins(cfg.risk),
                 "signal": msgspec.to_builtins(cfg.signal),
                 "market": {"leverage": cfg.market.leverage, "window_bars": cfg.market.window_bars,
                            "seed": cfg.market.seed},
                 "bot_id": cfg.run.bot_id,
                 "symbols": {s.symbol: msgspec.to_builtins(cfg.symbols[s.symbol]) for s in syms
                             if s.symbol in cfg.symbols}}
    return BacktestResult(
        symbols=[s.symbol for s in syms], bars=sum(s.bars_done for s in syms), elapsed_s=round(elapsed, 3),
        summary=summary, per_symbol=per, fills=run.fill_records, equity=run.equity_points, timeline=timeline,
        funding_source={s.symbol: ("series" if s.symbol in funding else "none") for s in syms},
        config=effective, warmup_bars=warm, interrupted=interrupted, start_ts=first_ts, end_ts=last_ts,
        balance_usd=run.balance0, latency_ticks=latency, halted=run.halted, halted_ts=run.halted_ts,
        fills_dropped=run.fills_dropped, gaps={s.symbol: s.gaps for s in syms if s.gaps})

