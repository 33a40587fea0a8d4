"""Bot worker: one asyncio process per symbol.

Market data in (SUB) -> its shared-memory bar ring (sole writer) -> a signal request to its pool
member (DEALER; only {symbol, slot, seq, bar_count, timestamps} travel, prices stay in shared
memory) -> the reply, timed from tick receipt (tick_to_signal) -> the trading decision.
At most one signal request is in flight: ticks that arrive meanwhile are folded into the next
request (the ring already holds them), so a slow pool costs freshness, never an unbounded queue.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from typing import TypedDict

import numpy as np
import zmq

from shared.bars import apply_tick
from shared.delta.order_reading import is_undocumented_answer
from shared.delta.ratelimit import resync_phase_s
from shared.latency import HopMeter, LatencyHistogram, RollingHistogram
from shared.messages import (
    ALL_TOPIC,
    AccountRequest,
    AccountSnapshot,
    AmendSpec,
    Control,
    FillEvent,
    HistoryReply,
    HistoryRequest,
    IntentResult,
    MessageCodec,
    NewOrderSpec,
    OrderEvent,
    OrderIntents,
    SignalReply,
    SignalRequest,
    Tick,
    WorkerFigures,
    topic,
)
from shared.ring import BarRing
from shared.supervision import worker_heartbeat
from shared.symbol_settings import symbol_settings
from shared.trading import book_view
from shared.trading import flatten as flat
from shared.trading import halt as halt_rule
from shared.trading.bot import TradingBot
from shared.trading.position_check import PositionCheck, check_position
from shared.trading.sizing import grid_sizing_balance
from shared.transport import TICK_LINK_HANDOVER, TICK_LINK_HELLO, TickHandover, packet_path

from .runtime import (
    ChildSpec,
    DutyOnWake,
    LoopLagMonitor,
    LoopSocket,
    PacketLink,
    heartbeat_socket,
    install_stop_signals,
    run_event_loop,
    run_until_stopped,
    send_heartbeat,
    setup_logging,
    supervisor_alive,
)

log = logging.getLogger("worker")
SIGNAL_TIMEOUT_S = 2.0  # a pool member restart loses in-flight requests; ask again after this
INTENT_TIMEOUT_S = 15.0  # no answer to an order batch: reconcile from the exchange before more
RESYNC_INTERVAL_S = 15.0  # open orders and balance re-read from the exchange at least this often...
RESYNC_S_PER_SYMBOL = 0.9  # ...but slower with many symbols: a resync costs 9 of the account's
# 10,000 rate units per 5 min (orders, balance, position: 3 each), so N symbols resyncing every
# 0.9 N s use a third of the budget.
FILLS_AWAITED_MAX_S = 3.0  # a re-read waits at most this long for fills on their way (the fill read: 1 a second)
ACCOUNT_RETRY_S = 30.0  # one account request outstanding at a time; asked again after this long
ACCOUNT_ERROR_BACKOFF_S = 5.0  # ...or this long after an error reply
HISTORY_RETRY_S = 30.0  # ask the gateway for history again if it has not answered in this long
TICK_LINK_RETRY_S = 1.0  # a worker without its tick link tries to link again at most this often...
TICK_LINK_RETRY_MAX_S = 30.0  # ...doubling while the gateway takes no link (its bound, its descriptors)
LATE_TICKS_RELOAD = 20  # this many late ticks in a row: the market clock went back (venue restart)
# Late ticks right after a history load are the backlog queued behind it, not counted (caught_up)
# until a tick applies, or until this long after the load: a clock that went back between the
# history read and the first tick makes every tick late, and must still reload the history.
BACKLOG_GRACE_S = 5.0
# The first minute after a worker's first signal is start-up (hundreds of workers loading history
# and warming the pool at once queue behind each other): its latencies leave the status window
# when it ends, so a status p99 read later describes the steady state only.
LATENCY_WARMUP_S = 60.0


class TradingFigures(TypedDict, total=False):
    """The bot's part of the worker's heartbeat (fields of WorkerFigures)."""
    trading: str
    order_errors: int
    position: float
    open_orders: int
    realized_pnl: float
    unrealized_pnl: float
    fees: float
    stop_price: float
    order_rtt_p50_us: float
    order_rtt_p99_us: float
    order_rtt_startup_p50_us: float
    order_rtt_startup_p99_us: float
    flatten: str
    grid_levels: tuple[float, ...]
    resting_orders: tuple[tuple[str, str, float, int], ...]

class Worker:
    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.symbol = spec.name
        self.cfg = spec.config
        self.codec = MessageCodec(f"worker-{self.symbol}")
        self.ring = BarRing.attach(spec.ring_name)
        self.bars = self.ring.writer(spec.slot)
        self.latency = RollingHistogram(window_s=60.0, parts=6)
        self.state = "starting"
        self.paused = spec.paused
        self.last_price = math.nan
        self.market_ts = 0.0  # the venue's clock: time of the last trade seen (epoch s)
        self.ticks = 0
        self.ticks_dropped = 0
        self.ticks_late = 0
        self.ticks_unchanged = 0  # ticks that moved only the bar's volume: no signal asked
        self.last_seq = 0
        self.epoch = 0
        self.signals = 0
        self.last_signal: SignalReply | None = None
        self.first_signal_mono_ns = 0
        self.latency_warmed_up = False  # LATENCY_WARMUP_S since the first signal have passed
        self.req_seq = 0
        self.in_flight: tuple[int, int, float] | None = None  # (seq, tick_recv_ns, sent monotonic s)
        self.pending_tick_ns = 0  # receipt time of the oldest tick not yet covered by a request
        # the per-hop breakdown: that tick's gateway publish time, and the request's send time
        self.pending_published_ns = 0
        self.in_flight_hops = (0, 0)  # (published_ns, sent_ns) of the request in flight
        self.hops = HopMeter()
        self._leak: list[bytearray] = []
        self.late_streak = 0
        # Set by the first tick applied after a history load: before it, late ticks are the backlog
        # queued while the worker waited for its history (older than it), not a clock that went back.
        self.caught_up = False
        self.history_loaded_at = 0.0  # monotonic
        # trading
        self.trades = spec.config.market.through_venue
        self.bot: TradingBot | None = None
        self.trading = "reconciling" if self.trades else "signals only (replay source: no orders)"
        self.halted = spec.halted  # the account halt standing when we were started
        self.flatten: flat.FlattenProgress | None = None  # an operator's flatten of this symbol
        self.available_balance = math.nan
        self.intent_seq = 0
        self.intent_in_flight: tuple[int, int, float] | None = None  # (seq, sent_ns, sent monotonic)
        self.order_rtt = RollingHistogram(window_s=300.0, parts=5)
        # Intents sent in the start-up minute (LATENCY_WARMUP_S: the fleet's first grids, queued
        # behind every bot's history and reconciliation) are reported apart, like the ticks' warm-up.
        self.order_rtt_startup = LatencyHistogram()
        self.order_errors = 0
        self.quotes_held_until = 0.0  # monotonic: quotes refused unsent for rate budget wait till then
        self.held_position: object = None  # the bot's position when the hold began (a fill since ends it)
        self.cancel_requested = False
        self.flatten_sent = False
        self.needs_resync = False
        self.needs_full_reconcile = False
        self.resync_asked_at_seq = 0
        self.account_asked_at = 0.0  # monotonic time of the unanswered account request, 0 if none
        self.position_check = PositionCheck()  # the bot's position against the venue's
        self.read_all_fills = False  # the next full reconciliation ignores the restart checkpoint
        self.reading_all_fills = False  # ...and the one asked for now does
        # A fill landed (or its order's close beat it here) since the bot last planned: plan again
        # on the same trade once the fills are in and no batch is on its way, as the backtest
        # plans after the trade's fills (tests/orchestrator/test_backtest_parity_e2e.py).
        self.plan_again = False
        self.fills_awaited_since: float | None = None  # monotonic: since when the bot waits for fills (re-reads wait)
        self.plans_skipped = 0  # signals on which the bot's plan would have changed nothing (TradingBot.plan_unchanged)

    # --- market data -------------------------------------------------------------------------

    def on_tick(self, tick: Tick, recv_ns: int) -> bool:
        """Apply a tick to the ring; True when a signal should be requested."""
        if tick.epoch != self.epoch:
            # A restarted gateway numbers its ticks afresh: start counting gaps again, and rebuild
            # the view of our orders from the exchange (events may have been lost meanwhile).
            if self.epoch:
                self.needs_full_reconcile = True
            self.epoch, self.last_seq = tick.epoch, 0
        if self.last_seq and tick.seq > self.last_seq + 1:
            self.ticks_dropped += tick.seq - self.last_seq - 1
        if tick.seq <= self.last_seq:
            self.ticks_late += 1
            return False
        self.last_seq = tick.seq
        if not (tick.price > 0 and math.isfinite(tick.price)):
            self.codec.malformed += 1
            return False
        self.ticks += 1
        self.last_price = tick.price
        self.market_ts = tick.exch_ts_us / 1e6
        last = self.bars.last_bar()
        u = apply_tick(last, tick.price, tick.size, tick.exch_ts_us)
        if u.kind == "new":
            self.bars.append(u.ts, u.open, u.high, u.low, u.close, u.volume)
        elif u.kind == "update":
            self.bars.update_last(u.high, u.low, u.close, u.volume)
            if last is not None and (u.high, u.low, u.close) == last[2:5]:
                # A trade at the last price inside the bar's range moves only its volume, which no
                # strategy reads: no signal request (one message pair and a pool pass saved).
                self.late_streak, self.caught_up = 0, True
                self.ticks_unchanged += 1
                return False
        else:
            self.ticks_late += 1
            self.late_streak += self.caught_up or time.monotonic() - self.history_loaded_at > BACKLOG_GRACE_S
            return False
        self.late_streak = 0
        self.caught_up = True
        if self.pending_tick_ns == 0:
            self.pending_tick_ns = recv_ns
            self.pending_published_ns = tick.sent_ns
        return True

    def make_request(self) -> SignalRequest | None:
        if self.in_flight is not None or self.pending_tick_ns == 0:
            return None
        self.req_seq += 1
        req = SignalRequest(symbol=self.symbol, slot=self.spec.slot, seq=self.req_seq,
                            bar_count=self.bars.bar_count, tick_recv_ns=self.pending_tick_ns,
                            sent_ns=time.perf_counter_ns())
        self.in_flight = (self.req_seq, self.pending_tick_ns, time.monotonic())
        self.in_flight_hops = (self.pending_published_ns, req.sent_ns)
        self.pending_tick_ns = 0
        return req

    def on_signal(self, reply: SignalReply, recv_ns: int) -> None:
        if self.in_flight is None or reply.seq != self.in_flight[0]:
            return  # a stale reply to a request we already gave up on
        tick_ns = self.in_flight[1]
        self.in_flight = None
        if self.first_signal_mono_ns:
            # The first reply includes the pool's warm-up from the whole window (tens of ms, once per
            # start); it is reported as start-up time, not as tick-to-signal latency.
            if not self.latency_warmed_up and recv_ns - self.first_signal_mono_ns >= LATENCY_WARMUP_S * 1e9:
                self.latency_warmed_up = True
                self.latency.clear_window()
            self.latency.record((recv_ns - tick_ns) / 1000.0, time.monotonic())
            published_ns, asked_ns = self.in_flight_hops
            self.hops.record(published_ns=published_ns, tick_ns=tick_ns, asked_ns=asked_ns, pool_read_ns=reply.read_ns,
                             compute_ns=reply.compute_ns, replied_ns=reply.sent_ns, read_ns=recv_ns)
        self.signals += 1
        self.last_signal = reply
        if reply.valid and self.first_signal_mono_ns == 0:
            self.first_signal_mono_ns = recv_ns
            self.state = "running"
            log.info("%s: first signal %s (%.2f)", self.symbol, reply.direction, reply.confidence)

    def request_not_sent(self) -> None:
        """The request just made never left: its ticks are pending again, asked for at the next
        tick or housekeeping pass, timed from the same tick."""
        if self.in_flight is not None:
            if not self.pending_tick_ns:
                self.pending_tick_ns, self.pending_published_ns = self.in_flight[1], self.in_flight_hops[0]
            self.in_flight = None

    def check_timeout(self) -> None:
        if self.in_flight and time.monotonic() - self.in_flight[2] > SIGNAL_TIMEOUT_S:
            # The request (or its reply) was lost: ask again, timed from the same tick.
            if not self.pending_tick_ns:
                self.pending_tick_ns, self.pending_published_ns = self.in_flight[1], self.in_flight_hops[0]
            self.in_flight = None

    # --- history -----------------------------------------------------------------------------

    def load_history(self, reply: HistoryReply) -> None:
        if reply.error:
            raise RuntimeError(f"history for {self.symbol}: {reply.error}")
        cols = [np.frombuffer(b, dtype=np.float64) for b in
                (reply.ts, reply.open, reply.high, reply.low, reply.close, reply.volume)]
        if any(len(c) != reply.n for c in cols):
            raise RuntimeError(f"history for {self.symbol}: inconsistent column lengths")
        if reply.n and (not np.all(np.isfinite(cols[4])) or np.any(cols[4] <= 0)):
            raise RuntimeError(f"history for {self.symbol}: NaN or non-positive close")
        self.bars.load(*cols)
        self.caught_up, self.history_loaded_at = False, time.monotonic()
        if reply.n:
            self.last_price = float(cols[4][-1])

    # --- status ------------------------------------------------------------------------------

    def figures(self, loop_lag_ms: float) -> WorkerFigures:
        p50, p99, p999 = self.latency.percentiles(time.monotonic(), (50.0, 99.0, 99.9))
        if math.isfinite(p99):
            self.hops.slow_over_us = p99  # the next heartbeat's slow ticks: those at least this slow
        sig = self.last_signal
        return WorkerFigures(
            state="paused" if self.paused else self.state, last_price=self.last_price,
            bar_count=self.bars.bar_count, ticks=self.ticks, ticks_dropped=self.ticks_dropped,
            ticks_unchanged=self.ticks_unchanged, ticks_late=self.ticks_late, plans_skipped=self.plans_skipped,
            signals=self.signals, signal=sig.direction if sig else "NONE",
            confidence=sig.confidence if sig else 0.0, votes=dict(sig.votes) if sig else {},
            atr14=sig.atr14 if sig else math.nan,
            tick_to_signal_p50_us=p50, tick_to_signal_p99_us=p99, tick_to_signal_p999_us=p999,
            tick_to_signal_count=self.latency.lifetime.total, loop_lag_ms=loop_lag_ms, tick_hops=self.hops.figures(),
            malformed=self.codec.malformed, first_signal_mono_ns=self.first_signal_mono_ns,
            note=(sig.reason if sig and not sig.valid else ""), **self.trading_figures())

    def trading_figures(self) -> TradingFigures:
        out: TradingFigures = {"trading": self.state_of_trading(), "order_errors": self.order_errors}
        if self.bot is not None and self.bot.position is not None:
            realised, unreal, fees = self.bot.pnl(self.last_price)
            out["position"] = float(self.bot.position.contracts)
            out["open_orders"] = self.bot.owned_open_orders()
            out["realized_pnl"], out["unrealized_pnl"], out["fees"] = realised, unreal, fees
            out["stop_price"] = self.bot.resting_stop_price()
            out["grid_levels"] = book_view.grid_levels(self.bot.desired)
            out["resting_orders"] = book_view.resting_rows(self.bot.open_orders.values(), bot_id=self.bot.bot_id,
                                                           symbol=self.symbol)
        if self.order_rtt.lifetime.total:  # a bot that never sent an order has no window to read
            p50, p99 = self.order_rtt.percentiles(time.monotonic(), (50.0, 99.0))
        else:
            p50 = p99 = math.nan
        out["order_rtt_p50_us"], out["order_rtt_p99_us"] = p50, p99
        start_p50, start_p99 = self.order_rtt_startup.percentiles((50.0, 99.0))
        out["order_rtt_startup_p50_us"], out["order_rtt_startup_p99_us"] = start_p50, start_p99
        if self.flatten is not None:
            bot = self.bot
            out["flatten"] = flat.describe(
                self.flatten, own_orders=bot.owned_open_orders() if bot is not None else 0,
                bot_contracts=bot.position.contracts if bot is not None and bot.position is not None else 0)
        return out

    # --- an operator's flatten ------------------------------------------------------------------

    def start_flatten(self) -> bool:
        """Asked (again) to flatten: the symbol pauses; True when a new flatten starts."""
        self.paused = True
        bot = self.bot
        if not flat.starts_anew(self.flatten, bot_contracts=bot.position.contracts
                                if bot is not None and bot.position is not None else 0):
            return False
        self.flatten = flat.FlattenProgress(requested_ts=time.time())
        self.flatten_sent = False
        log.warning("%s: flattening: cancelling our orders, closing the position reduce-only at market", self.symbol)
        return True

    def flattening(self) -> bool:
        return self.flatten is not None and not self.flatten.done

    def flatten_needs_venue_read(self) -> bool:
        bot = self.bot
        if bot is None or bot.position is None:
            return False
        return flat.needs_venue_read(self.flatten, bot_contracts=bot.position.contracts,
                                     own_orders=bot.owned_open_orders())

    def state_of_trading(self) -> str:
        if self.halted:
            return f"halted: {self.halted}"
        if self.position_check.halted:
            return f"halted: {self.position_check.halted}"
        if self.position_check.doubtful and self.trading == "trading":
            return "re-reading fills: position differs from the venue's"
        if self.paused:
            return "paused"
        left = self.bot.cooldown_left(self.market_ts) if self.bot is not None and self.market_ts else 0.0
        if left > 0 and self.trading == "trading":
            return f"stopped out: no new entries for {left:.0f} s"
        return self.trading

    # --- trading -----------------------------------------------------------------------------

    def on_account(self, snap: AccountSnapshot, full: bool) -> None:
        on_way = False
        if not full and (self.intent_in_flight is not None or self.intent_seq != self.resync_asked_at_seq):
            # Orders were sent since we asked: this view may predate them (acting on it would place
            # them twice). Ask again when quiet.
            self.needs_resync = True
            return
        if snap.error or snap.product is None:
            self.trading = f"not trading: {snap.error or 'no product spec'}"
            return
        orders = snap.open_orders  # the gateway's domain orders, as the bot takes them
        # read with these orders resting: sized as if our own grid's entries were not (sizing.py)
        self.available_balance = grid_sizing_balance(snap.available_balance, orders, snap.product,
                                                     bot_id=self.cfg.run.bot_id, symbol=self.symbol)
        if full or self.bot is None:
            cfg = self.cfg
            if self.bot is None:
                mine = symbol_settings(cfg, self.symbol)  # [symbols.SYMBOL.*] over [grid]/[risk]
                self.bot = TradingBot(symbol=self.symbol, product=snap.product, grid=mine.grid, risk=mine.risk,
                                      bot_id=cfg.run.bot_id)
            fills = snap.fills
            cp = None if self.reading_all_fills else self.spec.fill_checkpoint
            self.bot.reconcile_from(orders, fills, list(self.spec.sent_client_order_ids), checkpoint=cp)
            if self.reading_all_fills:
                self.read_all_fills = self.reading_all_fills = False
            self.trading = "trading"
            log.info("%s: reconciled: %d open orders (%d ours), %d fills read%s, position %s", self.symbol,
                     len(orders), self.bot.owned_open_orders(), len(fills),
                     f" (since the checkpoint; {cp.fills} own fills before it)" if cp else "",
                     self.bot.position.contracts if self.bot.position else 0)
        else:
            # Fills of ours on their way (an order closed filled, its fills not read yet): the venue's
            # position holds them and the bot's not yet, so the position cannot be judged by this read
            # (the next one does); and the fills stay awaited, or the level would look free.
            on_way = self.fills_on_their_way(time.monotonic())
            self.bot.resync_orders(orders, keep_awaited=on_way)
        self.needs_resync = False
        if snap.venue_position is not None:
            if full or not on_way:
                self.compare_position(snap.venue_position, full)
            if self.flatten is not None and not self.flatten.done:
                own = self.bot.owned_open_orders()
                self.flatten = flat.on_venue_read(self.flatten, own_orders=own, venue_position=snap.venue_position,
                                                  foreign=self.bot.foreign_contracts, ts=time.time())
                if self.flatten.done:
                    log.warning("%s: flat: confirmed on the venue", self.symbol)
                elif flat.close_again(self.flatten, own_orders=own):
                    self.flatten_sent = False

    def compare_position(self, venue: int, full: bool) -> None:
        """The safety net (shared/trading/position_check.py): a difference makes the bot stop
        placing orders and re-read its fills; one that persists halts the symbol."""
        bot = self.bot
        assert bot is not None and bot.position is not None
        mine, foreign = bot.position.contracts, bot.foreign_contracts
        was = self.position_check
        self.position_check, verdict = check_position(was, bot=mine, foreign=foreign, venue=venue)
        if verdict == "agree":
            if was.halted:
                log.warning("%s: position agrees with the venue again (%+d); trading resumes", self.symbol, venue)
            return
        if verdict == "halt":
            if self.position_check.halted != was.halted:
                log.error("%s: halted: %s (after %d re-reads); entries cancelled, protective stop kept",
                          self.symbol, self.position_check.halted, self.position_check.mismatches - 1)
            return
        self.needs_full_reconcile = True
        self.read_all_fills = verdict == "reread_all"
        log.warning("%s: position differs from the venue's (bot %+d, manual %+d, venue %+d) at a %s resync; "
                    "re-reading %s", self.symbol, mine, foreign, venue, "full" if full else "periodic",
                    "every fill of the account" if self.read_all_fills else "fills")

    def on_fill_event(self, ev: FillEvent) -> None:
        if self.bot is not None and self.bot.on_fill(ev.fill):
            self.plan_again = True
        self.fills_settled()

    def fills_settled(self) -> None:
        """The wait for fills is over when none is awaited: the next wait is timed from its own
        start (FILLS_AWAITED_MAX_S), not from an earlier one the re-reads never saw end."""
        if self.bot is not None and not self.bot.awaiting_fills:
            self.fills_awaited_since = None

    def fills_on_their_way(self, now: float) -> bool:
        """Whether a regular re-read of the account waits: an order of ours closed filled and its
        fills are not read yet (bot.awaiting_fills), for at most FILLS_AWAITED_MAX_S. The venue's
        position holds those fills already and the bot's not yet: read then, the position check
        saw a difference, stopped the bot's orders and paid a full reconciliation (19 units) for
        fills on their way, and that reconciliation moved the client order ids one generation on
        (the parity e2e's `...Be01-6` against `...Be01-5`). The bot plans nothing meanwhile anyway."""
        bot = self.bot
        if bot is None or not bot.awaiting_fills:
            self.fills_awaited_since = None
            return False
        if self.fills_awaited_since is None:
            self.fills_awaited_since = now
        return now - self.fills_awaited_since < FILLS_AWAITED_MAX_S

    def plan_again_now(self) -> OrderIntents | None:
        """The plan a fill, the answer to a batch or an order event asked for (plan_again), made on
        the last signal."""
        if not self.plan_again or self.last_signal is None:
            return None
        return self.make_intents(self.last_signal)

    def on_order_event(self, ev: OrderEvent) -> None:
        if self.bot is not None:
            self.bot.on_order(ev.order, ev.order.state, read_back=ev.read_back)
        self.fills_settled()

    def make_intents(self, reply: SignalReply) -> OrderIntents | None:
        bot = self.bot
        if bot is None or self.intent_in_flight is not None or self.needs_resync:
            return None
        check = self.position_check
        standing = halt_rule.standing(
            account_halt=bool(self.halted), position_halt=bool(check.halted), position_doubtful=check.doubtful,
            cancel_requested=self.cancel_requested, flattening=self.flattening(),
            flatten_on_halt=self.cfg.risk.flatten_on_halt)
        if standing == "wait":
            return None
        now_ns = time.perf_counter_ns()
        if isinstance(standing, halt_rule.HaltOrders):
            halt = bot.halt_plan(halted=standing.halted, flatten_on_halt=standing.flatten,
                                 cancel_requested=standing.cancel_requested, flatten_sent=self.flatten_sent,
                                 price=reply.close)
            if halt.empty:
                return None
            cancel = list(halt.cancel)
            amend: list[AmendSpec] = []
            place: list[NewOrderSpec] = []
            if halt.flatten is not None:
                f = halt.flatten
                place.append(NewOrderSpec(client_order_id=f.client_order_id, side=f.side, price=f.price, size=f.size,
                                          order_type="market_order", reduce_only=True))
                self.flatten_sent = True
        else:
            if not reply.valid:
                return None
            if time.monotonic() < self.quotes_held_until and bot.position is self.held_position:
                # Held (the rate budget's share): the grid waits. A fill since the hold began lets
                # the plan out at once, for its protective stop and exits; the gateway still refuses
                # its quotes unsent while the share is spent, and sends the stop.
                return None
            if bot.awaiting_fills:
                self.plan_again = True  # an order of ours closed filled: plan once its fills are in
                return None
            self.plan_again = False
            # Decisions run on the market's clock (the time of the trade this reply answers), as in
            # the backtest: the churn limiter and the grid's anchor time then do not depend on the
            # replay speed or on how long a round trip took. Wall time stays for I/O timeouts.
            if bot.plan_unchanged(now=self.market_ts, price=reply.close, atr=reply.atr14, direction=reply.direction,
                                  confidence=reply.confidence, available_balance=self.available_balance,
                                  allow_new_entries=not self.paused, market_ts=self.market_ts):
                self.plans_skipped += 1  # nothing the plan reacts to moved: it would change nothing
                return None
            plan = bot.plan(now=self.market_ts, price=reply.close, atr=reply.atr14, direction=reply.direction,
                            confidence=reply.confidence, available_balance=self.available_balance,
                            allow_new_entries=not self.paused, market_ts=self.market_ts)
            if plan.empty:
                return None
            cancel = [c.order_id for c in plan.to_cancel]
            amend = [AmendSpec(order_id=a.order_id, price=a.price, size=a.size, order_type=a.desired.order_type,
                               trailing=a.desired.trail > 0)
                     for a in plan.to_amend]
            place = [NewOrderSpec(client_order_id=p.client_order_id, side=p.order.side, price=p.order.price,
                                  size=p.order.size, order_type=p.order.order_type, reduce_only=p.order.reduce_only,
                                  trail_amount=p.order.trail)
                     for p in plan.to_place]
        self.intent_seq += 1
        self.intent_in_flight = (self.intent_seq, now_ns, time.monotonic())
        return OrderIntents(symbol=self.symbol, seq=self.intent_seq, product_id=bot.product.product_id,
                            cancel=cancel, amend=amend, place=place, sent_ns=now_ns)

    def on_intent_result(self, res: IntentResult, recv_ns: int) -> None:
        if self.intent_in_flight is None or res.seq != self.intent_in_flight[0]:
            return
        sent_ns = self.intent_in_flight[1]
        if res.unsent:  # quotes the gateway refused unsent (rate budget): held, and no ack to time
            self.quotes_held_until = time.monotonic() + res.retry_after_s
            self.held_position = self.bot.position if self.bot is not None else None
        if not res.reached_venue:
            pass
        elif not self.first_signal_mono_ns or sent_ns - self.first_signal_mono_ns < LATENCY_WARMUP_S * 1e9:
            self.order_rtt_startup.record((recv_ns - sent_ns) / 1000.0)
        else:
            self.order_rtt.record((recv_ns - sent_ns) / 1000.0, time.monotonic())
        self.intent_in_flight = None
        bot = self.bot
        if bot is None:
            return
        bot.on_cancelled(list(res.cancelled))
        for o in (*res.amended, *res.placed):
            bot.on_order(o, o.state)
        if res.errors:
            self.order_errors += len(res.errors)
            for e in res.errors[res.unsent:]:  # (quotes refused unsent: the gateway logs those, throttled)
                if is_undocumented_answer(e):
                    log.warning("%s: book in doubt, reading it back: %s", self.symbol, e)
                else:
                    log.warning("%s: order rejected: %s", self.symbol, e)
            # What the exchange holds now is uncertain for the failed items: read it back (and
            # try a refused flatten again: reduce-only, so a repeat can never flip the position).
            # Quotes the gateway refused unsent changed nothing there: the next plan has them.
            self.needs_resync = self.needs_resync or res.venue_state_uncertain
            self.flatten_sent = False

    def check_intent_timeout(self) -> None:
        if self.intent_in_flight and time.monotonic() - self.intent_in_flight[2] > INTENT_TIMEOUT_S:
            log.warning("%s: no answer to order batch %d; reconciling", self.symbol, self.intent_in_flight[0])
            self.intent_in_flight = None
            self.needs_resync = True

    def leak(self, mb: float) -> None:
        """Test-only fault (config [testing], needs ORCHESTRATE_TEST_FAULTS=1)."""
        chunk = bytearray(int(mb * 1024 * 1024))
        chunk[::4096] = b"x" * len(chunk[::4096])  # touch every page so it counts as USS
        self._leak.append(chunk)


async def run(spec: ChildSpec) -> None:
    worker = Worker(spec)
    cfg = spec.config
    # Plain zmq sockets served by the loop's reader callbacks (LoopSocket), not zmq.asyncio.
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    codec = worker.codec

    gw_sock = ctx.socket(zmq.DEALER)
    gw_sock.setsockopt(zmq.LINGER, 0)
    gw_sock.connect(spec.endpoints.gateway)
    sub_sock = ctx.socket(zmq.SUB)
    sub_sock.setsockopt(zmq.LINGER, 0)
    sub_sock.setsockopt(zmq.RCVHWM, 10_000)
    sub_sock.connect(spec.endpoints.market_data)
    sub_sock.setsockopt(zmq.SUBSCRIBE, topic(worker.symbol))
    pool_url = spec.endpoints.pools[spec.endpoints.pool_for(worker.symbol)]
    ctl_sock = ctx.socket(zmq.SUB)
    ctl_sock.setsockopt(zmq.LINGER, 0)
    ctl_sock.connect(spec.endpoints.control)
    ctl_sock.setsockopt(zmq.SUBSCRIBE, topic(worker.symbol))
    ctl_sock.setsockopt(zmq.SUBSCRIBE, ALL_TOPIC)
    hb = heartbeat_socket(ctx, spec)
    gw, sub, ctl = (LoopSocket(x) for x in (gw_sock, sub_sock, ctl_sock))
    # Signal requests over a Unix SOCK_SEQPACKET link where the pool member is on this box (no
    # ZeroMQ I/O thread on either side: two wake-ups fewer per request here), else a DEALER.
    pool: PacketLink | LoopSocket
    if (link_path := packet_path(pool_url)) is not None:
        pool = PacketLink(link_path)
    else:
        pool_sock = ctx.socket(zmq.DEALER)
        pool_sock.setsockopt(zmq.LINGER, 0)
        pool_sock.connect(pool_url)
        pool = LoopSocket(pool_sock)

    # Ticks on a direct link from the gateway where it is on this box (runtime.TickLinks: no ZeroMQ
    # I/O thread wakes for them on either side), linked once the history is in: until then, and
    # whenever the link is down (the gateway restarting), they come on the SUB as before.
    tick_path = packet_path(spec.endpoints.market_data)
    tick_link = PacketLink(tick_path) if tick_path is not None else None
    handover = TickHandover()
    tick_link_retry_at, tick_link_backoff_s = 0.0, TICK_LINK_RETRY_S

    stop = asyncio.Event()
    install_stop_signals(stop)
    # No timer of its own: the housekeeping pass is the probe (DutyOnWake).
    lag = LoopLagMonitor()
    beat_s, beat_grace_s = worker_heartbeat(cfg.supervision)

    # History first, so the very first tick already has a full window behind it. Heartbeats run
    # meanwhile: with hundreds of symbols starting, the gateway serves history inside the
    # account's rate budget and a worker may wait well past the heartbeat timeout.
    async def early_heartbeats() -> None:
        while True:
            send_heartbeat(hb, codec, spec, worker.figures(lag.take_max_ms()))
            await lag.sleep(beat_s)

    beating = asyncio.create_task(early_heartbeats())
    worker.state = "loading history"
    try:
        asked = 0.0
        while not stop.is_set():
            if time.monotonic() - asked > HISTORY_RETRY_S:
                await gw.send(codec.encode(HistoryRequest(symbol=worker.symbol, bars=cfg.market.history_bars,
                                                          sent_ns=time.perf_counter_ns())))
                asked = time.monotonic()
            if not await gw.poll(1000):
                continue
            msg = codec.decode(await gw.recv())
            if not (isinstance(msg, HistoryReply) and msg.symbol == worker.symbol):
                continue
            if msg.error:
                log.warning("%s: history not available yet (%s); asking again", worker.symbol, msg.error)
                asked = time.monotonic() - HISTORY_RETRY_S + 2.0
                continue
            worker.load_history(msg)
            break
    finally:
        beating.cancel()
    if stop.is_set():
        return
    worker.state = "warming up"

    async def ask_account(full: bool) -> None:
        worker.resync_asked_at_seq = worker.intent_seq
        worker.account_asked_at = time.monotonic()
        if full:  # (read_all_fills is cleared once such a read succeeds, not when asked)
            worker.reading_all_fills = worker.read_all_fills
        cp = None if worker.reading_all_fills else worker.spec.fill_checkpoint
        await gw.send(codec.encode(AccountRequest(
            symbol=worker.symbol, include_fills=full, sent_ns=time.perf_counter_ns(),
            fills_since_us=int(cp.since_ts * 1e6) if full and cp is not None else 0)))

    reconcile_full = True
    if worker.trades:
        await ask_account(True)

    async def send_intents(reply: SignalReply) -> None:
        intents = worker.make_intents(reply)
        if intents is not None:
            await gw.send(codec.encode(intents))

    async def gateway_loop() -> None:
        nonlocal reconcile_full
        while True:
            payload = await gw.recv()
            recv_ns = time.perf_counter_ns()
            msg = codec.decode(payload)
            if isinstance(msg, AccountSnapshot):
                worker.on_account(msg, reconcile_full)
                if msg.error:
                    # Ask again after a pause, not at once: the gateway may be out of rate budget.
                    worker.account_asked_at = time.monotonic() - ACCOUNT_RETRY_S + ACCOUNT_ERROR_BACKOFF_S
                else:
                    worker.account_asked_at = 0.0
                    reconcile_full = False
            elif isinstance(msg, IntentResult):
                worker.on_intent_result(msg, recv_ns)
                if (again := worker.plan_again_now()) is not None:
                    await gw.send(codec.encode(again))
            elif isinstance(msg, HistoryReply):
                if msg.symbol == worker.symbol:
                    worker.load_history(msg)
                    worker.late_streak = 0
            elif msg is not None:
                codec.malformed += 1

    async def send_request() -> None:
        req = worker.make_request()
        if req is None:
            return
        if isinstance(pool, PacketLink):
            if not pool.send_nowait(codec.encode(req)):
                worker.request_not_sent()  # the pool member is not listening (yet): the next tick asks
        else:
            await pool.send(codec.encode(req))

    async def take_tick(tick: Tick, recv_ns: int) -> None:
        if worker.on_tick(tick, recv_ns):
            await send_request()
        elif worker.late_streak == LATE_TICKS_RELOAD:
            log.warning("%s: market clock went back (venue restarted?); reloading history", worker.symbol)
            await gw.send(codec.encode(HistoryRequest(symbol=worker.symbol, bars=cfg.market.history_bars,
                                                      sent_ns=time.perf_counter_ns())))

    def link_ticks(now: float) -> None:
        nonlocal tick_link_retry_at, tick_link_backoff_s
        if tick_link is None or tick_link.connected or now < tick_link_retry_at:
            return
        # A link the gateway closes unanswered (over its bound) must not become a reconnect storm:
        # each try without a handover doubles the wait, a handover resets it.
        tick_link_retry_at = now + tick_link_backoff_s
        tick_link_backoff_s = min(2 * tick_link_backoff_s, TICK_LINK_RETRY_MAX_S)
        tick_link.send_nowait(TICK_LINK_HELLO + topic(worker.symbol))  # (not listening: the SUB carries on)

    async def release_held(now: float) -> None:
        if handover.holding:
            for held, held_ns in handover.release((worker.epoch, worker.last_seq), now):
                await take_tick(held, held_ns)

    async def market_loop() -> None:
        link_ticks(time.monotonic())
        while True:
            _topic, payload = await sub.recv_multipart()
            recv_ns = time.perf_counter_ns()
            msg = codec.decode(payload)
            if isinstance(msg, Tick) and msg.symbol == worker.symbol:
                await take_tick(msg, recv_ns)
                await release_held(time.monotonic())
                link_ticks(time.monotonic())
            elif isinstance(msg, FillEvent) and msg.symbol == worker.symbol:
                worker.on_fill_event(msg)
                if worker.trades and (again := worker.plan_again_now()) is not None:
                    await gw.send(codec.encode(again))
            elif isinstance(msg, OrderEvent) and msg.symbol == worker.symbol:
                worker.on_order_event(msg)
                if worker.trades and (again := worker.plan_again_now()) is not None:
                    await gw.send(codec.encode(again))  # (a read back ended a wait for fills)
            elif msg is not None:
                codec.malformed += 1
            if duty.due(time.monotonic()):
                await housekeeping()

    async def tick_loop() -> None:
        nonlocal tick_link_backoff_s
        assert tick_link is not None
        while True:
            payload = await tick_link.recv()
            recv_ns = time.perf_counter_ns()
            now = time.monotonic()
            if payload.startswith(TICK_LINK_HANDOVER):  # a new link's first packet
                tick_link_backoff_s = TICK_LINK_RETRY_S
                last = codec.decode(payload[len(TICK_LINK_HANDOVER):]) if len(payload) > 1 else None
                handover.start(last if isinstance(last, Tick) and last.symbol == worker.symbol else None,
                               recv_ns, (worker.epoch, worker.last_seq), now)
                continue
            msg = codec.decode(payload)
            if isinstance(msg, Tick) and msg.symbol == worker.symbol:
                for tick, tick_ns in handover.on_link(msg, recv_ns, (worker.epoch, worker.last_seq), now):
                    await take_tick(tick, tick_ns)
            elif msg is not None:
                codec.malformed += 1
            if duty.due(now):
                await housekeeping()

    settle_s = cfg.testing.worker_settle_ms / 1000.0

    async def signal_loop() -> None:
        while True:
            payload = await pool.recv()
            recv_ns = time.perf_counter_ns()
            msg = codec.decode(payload)
            if isinstance(msg, SignalReply):
                worker.on_signal(msg, recv_ns)
                await send_request()
                if worker.trades:
                    if settle_s:  # test only: the venue's events of this trade are applied first
                        await asyncio.sleep(settle_s)
                    await send_intents(msg)
            elif msg is not None:
                codec.malformed += 1
            if duty.due(time.monotonic()):
                await housekeeping()

    async def control_loop() -> None:
        while True:
            _topic, payload = await ctl.recv_multipart()
            msg = codec.decode(payload)
            if not isinstance(msg, Control):
                continue
            if msg.command == "pause":
                worker.paused = True
            elif msg.command == "resume":
                worker.paused = False
                worker.flatten = None
            elif msg.command == "halt":
                if not worker.halted:
                    log.error("%s: halted by the supervisor: %s", worker.symbol, msg.reason)
                worker.halted = msg.reason or "account risk limit"
            elif msg.command == "clear_halt":
                if worker.halted:
                    log.warning("%s: account halt lifted (was: %s)", worker.symbol, worker.halted)
                    worker.halted = ""
                    worker.flatten_sent = worker.flattening() and worker.flatten_sent
                    worker.needs_resync = True  # trade again from the venue's view, not the halt's
            elif msg.command == "flatten":
                if not worker.start_flatten():
                    continue  # the supervisor's repeat of a flatten under way: nothing new
            elif msg.command == "cancel_orders":
                worker.cancel_requested = True
                worker.paused = True
            if worker.trades and worker.last_signal is not None and msg.command in ("halt", "cancel_orders", "flatten"):
                await send_intents(worker.last_signal)
            if msg.command != "halt":
                log.info("%s: control %s", worker.symbol, msg.command)

    # Housekeeping and the heartbeat ride on a tick's wake-up when one comes (DutyOnWake): a timer
    # of their own was a wake-up a second, a quarter of a worker's at 2 ticks/s.
    duty = DutyOnWake(beat_s, beat_grace_s, lag)
    leak_mb = cfg.testing.leak_mb_per_s if cfg.testing.leak_symbol in ("", worker.symbol) else 0.0
    resync_s = max(RESYNC_INTERVAL_S, RESYNC_S_PER_SYMBOL * len(cfg.run.symbols))
    next_resync = time.monotonic() + resync_s + resync_phase_s(resync_s, worker.symbol, cfg.run.symbols)
    last_pass = time.monotonic()

    async def housekeeping(on_timer: bool = False) -> None:
        nonlocal reconcile_full, next_resync, last_pass
        now = time.monotonic()
        duty.begin(now, on_timer=on_timer)  # first: a tick read while this pass awaits finds it not due
        if not supervisor_alive(spec.supervisor_pid):
            log.warning("supervisor gone; exiting")
            stop.set()
            return
        worker.check_timeout()
        await send_request()
        await release_held(now)  # a hold whose PUB ticks never came, with no tick since to end it
        link_ticks(now)
        if worker.trades:
            worker.check_intent_timeout()
            if worker.needs_full_reconcile:
                reconcile_full, worker.needs_full_reconcile = True, False
            if reconcile_full or worker.needs_resync or now >= next_resync:
                # Until the first reconciliation succeeds the bot does not trade; after it,
                # orders and balance are re-read regularly (the socket may have missed events).
                waiting = worker.account_asked_at and now - worker.account_asked_at < ACCOUNT_RETRY_S
                if not waiting and (reconcile_full or worker.intent_in_flight is None
                                    and not worker.fills_on_their_way(now)):
                    await ask_account(reconcile_full)
                    next_resync = now + resync_s
            elif (worker.cancel_requested or worker.flattening()) and worker.last_signal is not None:
                await send_intents(worker.last_signal)
            if worker.flatten_needs_venue_read():
                worker.needs_resync = True  # read back at the next pass: the venue confirms flat
        if leak_mb > 0:
            worker.leak(leak_mb * (now - last_pass))
        last_pass = now
        send_heartbeat(hb, codec, spec, worker.figures(lag.take_max_ms()))

    async def housekeeping_loop() -> None:
        await housekeeping(on_timer=True)  # at once: the early heartbeats have just stopped
        while True:
            await duty.wait_timer()
            await housekeeping(on_timer=True)

    try:
        await run_until_stopped([market_loop, signal_loop, control_loop, housekeeping_loop, gateway_loop,
                                 *([tick_loop] if tick_link is not None else [])], stop)
    finally:
        duty.close()
        for s in (gw, sub, pool, ctl, *([tick_link] if tick_link is not None else [])):
            s.close()
        ctx.destroy(linger=0)


def main(spec: ChildSpec) -> None:
    setup_logging(spec.run_dir, f"worker-{spec.name}")
    profile_dir = os.environ.get("ORCHESTRATE_PROFILE_DIR")
    try:
        if profile_dir:  # developer aid: cProfile each worker, dumped at a clean exit
            import cProfile
            # CPU time, not wall time: on a shared machine wall time charges preemption to whatever ran.
            prof = cProfile.Profile(time.process_time)
            try:
                prof.runcall(run_event_loop, run(spec))
            finally:
                prof.dump_stats(os.path.join(profile_dir, f"worker-{spec.name}.prof"))
        else:
            run_event_loop(run(spec))
    except Exception:
        log.exception("worker %s crashed", spec.name)
        raise
    os._exit(0)
