"""One symbol's trading decisions as a pure state machine: the bot worker feeds it what the
exchange says (a reconciliation snapshot, fills, order updates, signals) and sends whatever
plan it returns. No I/O, no clocks of its own, so paper, live, backtests and tests share it.

The cycle (see tests/shared/trading/test_bot_cycle.py for the invariants it keeps):
signal -> grid anchor (hysteresis) -> entries sized from the available balance -> levels derived
from our fills and resting orders -> protective stop for the position -> symbol caps -> reconcile
against the book -> churn limit.

The protective stop (grid.stops) is one reduce-only stop-market order for the bot's whole
position, stop_atr_multiple x ATR beyond the grid's outermost level on the position's side (held
or resting). It moves only when the change exceeds the re-grid tolerance, like every other order.
After it fires, no new entries for grid.stop_cooldown_s of market time: re-entering straight into
the move that stopped us out is the thing a stop exists to prevent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import msgspec

from ..products import ProductSpec
from . import client_order_id as coid
from .checkpoint import FillCheckpoint, baseline_position
from .grid import GridAnchor, GridConfig, desired_grid, grid_step, next_anchor, protective_stop
from .levels import Level, LevelHoldings, desired_book, hold_fill, levels_from_book
from .orders import DesiredOrder, OpenOrder, Side
from .pnl import Fill, Position, apply_fill, flat_position, unrealised
from .reconcile import ChurnBucket, ReconcilePlan, limit_plan, new_bucket, reconcile
from .risk import RiskConfig, limit_desired
from .sizing import contracts_per_level

MAX_SEEN_FILLS = 10_000  # fill ids remembered to drop replays (bounded)


class FlattenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """A market order closing the bot's own position, reduce-only so it can never flip it."""

    client_order_id: str
    side: Side
    size: int
    price: float  # the price the decision saw (a market order fills at the touch)


class HaltPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What a halted (or operator-cancelled) bot sends: cancels, and at most one flatten."""

    cancel: tuple[int, ...] = ()
    flatten: FlattenOrder | None = None

    @property
    def empty(self) -> bool:
        return not self.cancel and self.flatten is None


@dataclass(slots=True)
class _Quiet:
    """What a plan that wanted nothing saw (TradingBot.plan_unchanged compares with it). Made at
    every such plan, so it only keeps references: the rest is worked out when first asked."""
    state: tuple[object, ...]  # TradingBot._state at the plan
    allow: bool  # new entries allowed (as asked, and no stop cool-down running)
    balance: float  # the available balance the grid was sized from
    level_step: float  # the step levels were priced with when it moves with the price (no anchor), else 0
    stop: DesiredOrder | None  # the protective stop wanted
    book: list[OpenOrder]  # the orders it reconciled against...
    desired: tuple[DesiredOrder, ...]  # ...and what it wanted
    gap: float | None = None  # largest distance of a kept fixed-price order from its wanted price


@dataclass
class TradingBot:
    symbol: str
    product: ProductSpec
    grid: GridConfig
    risk: RiskConfig
    bot_id: str
    holdings: LevelHoldings = field(default_factory=LevelHoldings)
    position: Position | None = None
    anchor: GridAnchor | None = None
    generation: int = 0
    bucket: ChurnBucket | None = None
    open_orders: dict[int, OpenOrder] = field(default_factory=dict)
    seen_fills: dict[str, None] = field(default_factory=dict)
    reconciled: bool = False
    last_step: float = 0.0
    stopped_out_at: float | None = None  # venue clock (epoch s) of our newest stop fill
    # Net contracts of the foreign fills on our product (a trader's manual ones) we have seen:
    # the venue's account-wide position should be our position plus these.
    foreign_contracts: int = 0
    # What the last plan wanted, and the grid edge its stop hangs from (None: no stop wanted):
    # a backtest reads them to know which later prices could change the plan.
    desired: tuple[DesiredOrder, ...] = ()
    stop_edge: float | None = None
    # (anchor, size, grid, product, entries) of the last grid built (see _grid_entries)
    _entries_memo: tuple[GridAnchor, int, GridConfig, ProductSpec, tuple[DesiredOrder, ...]] | None = \
        field(default=None, repr=False, compare=False)
    # Contracts of fills applied, by client order id (bounded like seen_fills), and our orders
    # the exchange closed with more filled than that: their fills are on their way (the orders
    # channel can beat the fills read), and until they land the book is not planned on (a level
    # whose order just filled would look free and be entered again).
    fill_contracts: dict[str, int] = field(default_factory=dict)
    awaiting_fills: dict[str, int] = field(default_factory=dict)
    # What the last plan saw when it changed nothing (see `plan_unchanged`); None: it changed something.
    _quiet: _Quiet | None = field(default=None, repr=False, compare=False)
    _asks_unchanged: bool = field(default=False, repr=False, compare=False)  # a caller uses plan_unchanged
    # Bumped whenever `open_orders` may have changed: a caller keeping a figure of the book (the
    # backtest's margin of our resting entries, read for every symbol at every order action)
    # knows when to work it out again.
    book_revision: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.position is None:
            self.position = flat_position(self.symbol, repr(self.product.contract_value))

    # --- what the exchange says ---------------------------------------------------------------

    def reconcile_from(self, open_orders: list[OpenOrder], fills: list[Fill], sent_ids: list[str],
                       *, checkpoint: FillCheckpoint | None = None) -> None:
        """Start (or restart after a reconnect) from the exchange's view: every own fill the venue
        reports rebuilds holdings and position; the generation continues past every id seen on
        the exchange and in `sent_ids` (what the store recorded as sent, which includes orders
        since cancelled), so a restarted bot does not reuse a client order id. With a
        `checkpoint`, `fills` are those since it: the bot was flat there, its PnL before it is
        the checkpoint's baseline, and fills it already counted are skipped. If our newest fill
        is a stop, its cool-down runs on."""
        self.holdings = LevelHoldings()
        cv = repr(self.product.contract_value)
        self.position = (baseline_position(self.symbol, cv, checkpoint) if checkpoint is not None
                         else flat_position(self.symbol, cv))
        skip = set(checkpoint.skip_fill_ids) if checkpoint is not None else set()
        self.foreign_contracts = checkpoint.foreign_contracts if checkpoint is not None else 0
        self.seen_fills.clear()
        self.fill_contracts.clear()
        step = self.last_step or self.product.tick_size * 10
        newest_ours: tuple[coid.OrderTag, Fill] | None = None
        for f in sorted(fills, key=lambda f: (f.ts, f.fill_id)):
            if f.fill_id in skip:
                self.seen_fills[f.fill_id] = None  # counted in the baseline; a replay stays ignored
            else:
                self._apply_fill(f, step)
            tag = coid.decode(f.client_order_id, bot_id=self.bot_id, symbol=self.symbol)
            newest_ours = (tag, f) if tag is not None else newest_ours
        if newest_ours is not None and newest_ours[0].purpose == "stop":
            self.stopped_out_at = max(self.stopped_out_at or 0.0, newest_ours[1].ts)
        self.open_orders = {o.order_id: o for o in open_orders}
        self.book_revision += 1
        self.awaiting_fills.clear()  # every fill the exchange reports was just read
        ids = [o.client_order_id for o in open_orders] + [f.client_order_id for f in fills] + sent_ids
        seen = coid.generation_after(ids, bot_id=self.bot_id, symbol=self.symbol)
        # A reconnect keeps a generation that ran past every id still visible (cancelled orders).
        self.generation = coid.ahead(seen, self.generation) if self.reconciled else seen
        self.anchor = None
        self.reconciled = True

    def on_fill(self, fill: Fill) -> bool:
        """Apply one of our fills; False for a replay or a foreign fill. Our stop's fill starts
        the re-entry cool-down at its own (venue) time."""
        if fill.fill_id in self.seen_fills or fill.symbol != self.symbol:
            return False
        # The take-profit sits one step of the grid the entry came from: the anchor's (the entries
        # were priced with it), not whatever step the latest tick's ATR gave.
        step = self.anchor.step if self.anchor is not None else (self.last_step or self.product.tick_size * 10)
        self._apply_fill(fill, step)
        tag = coid.decode(fill.client_order_id, bot_id=self.bot_id, symbol=self.symbol)
        if tag is not None and tag.purpose == "stop":
            self.stopped_out_at = max(self.stopped_out_at or 0.0, fill.ts)
            self.anchor = None  # the next grid is built around the price after the cool-down
        return True

    def _apply_fill(self, fill: Fill, step: float) -> None:
        self.seen_fills[fill.fill_id] = None
        if len(self.seen_fills) > MAX_SEEN_FILLS:
            self.seen_fills.pop(next(iter(self.seen_fills)))
        cid = fill.client_order_id
        got = self.fill_contracts.pop(cid, 0) + fill.size
        self.fill_contracts[cid] = got  # (re-inserted: the newest stay when trimmed)
        if len(self.fill_contracts) > MAX_SEEN_FILLS:
            self.fill_contracts.pop(next(iter(self.fill_contracts)))
        if got >= self.awaiting_fills.get(cid, got + 1):
            del self.awaiting_fills[cid]
        if coid.decode(fill.client_order_id, bot_id=self.bot_id, symbol=self.symbol) is None:
            # a trader's manual fill: not ours to manage, but the venue's position shows it
            self.foreign_contracts += fill.size if fill.side == "buy" else -fill.size
            return
        self.holdings = hold_fill(self.holdings, fill, bot_id=self.bot_id, symbol=self.symbol, grid_step=step)
        assert self.position is not None
        self.position = apply_fill(self.position, fill)

    def on_order(self, order: OpenOrder, state: str, *, read_back: bool = False) -> None:
        self.book_revision += 1
        if state in ("open", "pending") and order.unfilled_size > 0:
            known = self.open_orders.get(order.order_id)
            if known is not None and (known.order_type, known.reduce_only, known.trailing) != (
                    order.order_type, order.reduce_only, order.trailing):
                # An order's type, reduce-only flag and trailing never change; an update that does
                # not repeat them (the orders channel may not) must not make reconcile replace it.
                # Trailing is only ever seen when true (its fields present), so either view saying
                # so is right.
                order = msgspec.structs.replace(order, order_type=known.order_type, reduce_only=known.reduce_only,
                                                trailing=known.trailing or order.trailing)
            self.open_orders[order.order_id] = order
            cid = order.client_order_id
            if (read_back and cid in self.awaiting_fills
                    and order.size - order.unfilled_size <= self.fill_contracts.get(cid, 0)):
                # The venue, read back by id, says it still rests with nothing more filled than we
                # have. Only a read back: an amend's answer, sent before the order closed filled,
                # can arrive after the socket's close, and must not drop the fills on their way.
                del self.awaiting_fills[cid]
        else:
            gone = self.open_orders.pop(order.order_id, None)
            filled = order.size - order.unfilled_size
            cid = order.client_order_id or (gone.client_order_id if gone is not None else None)
            if (gone is not None and state == "closed" and cid
                    and coid.decode(cid, bot_id=self.bot_id, symbol=self.symbol) is not None
                    and filled > self.fill_contracts.get(cid, 0)):
                self.awaiting_fills[cid] = filled
            elif cid in self.awaiting_fills and filled <= self.fill_contracts.get(cid, 0):
                # A later word on an order whose fills we wait for (the gateway's read back of an end
                # the socket told in an undocumented word: cancelled, or closed with less filled)
                # says they are all in: plan again now, not at the next regular re-read.
                del self.awaiting_fills[cid]

    def on_cancelled(self, order_ids: list[int]) -> None:
        """Our cancels the exchange confirmed (or found already gone)."""
        self.book_revision += 1
        for oid in order_ids:
            self.open_orders.pop(oid, None)

    def resync_orders(self, open_orders: list[OpenOrder], *, keep_awaited: bool = False) -> None:
        """The exchange's open orders replace our view of the book (a periodic or after-error
        re-read; fills and holdings are untouched). Fills still awaited are given up on: the
        book is planned on again (a lost fill must not stop the bot; the periodic re-read bounds
        how long one can), unless `keep_awaited` (the caller knows they are on their way)."""
        self.open_orders = {o.order_id: o for o in open_orders}
        self.book_revision += 1
        if not keep_awaited:
            self.awaiting_fills.clear()

    def cooldown_left(self, market_ts: float) -> float:
        """Seconds before new entries are allowed again after our stop fired (0 when free).
        Market time (the venue's clock, e.g. the last trade's): a paper market replayed at 60x
        sits out 15 market minutes, not 15 wall minutes (15 market hours)."""
        if self.stopped_out_at is None:
            return 0.0
        return max(0.0, self.stopped_out_at + self.grid.stop_cooldown_s - market_ts)

    # --- decisions ----------------------------------------------------------------------------

    def plan(self, *, now: float, price: float, atr: float, direction: str, confidence: float,
             available_balance: float, allow_new_entries: bool, market_ts: float | None = None) -> ReconcilePlan:
        """The orders to place, amend and cancel now. With `allow_new_entries` False (paused,
        halted, below min balance) only take-profits of filled levels stay wanted. `now` is our
        clock (the churn limiter's); `market_ts` the venue's (the stop cool-down's; default now)."""
        if not self.reconciled or self.awaiting_fills:
            return ReconcilePlan()
        if not (math.isfinite(price) and price > 0 and math.isfinite(atr) and atr > 0):
            return ReconcilePlan()
        step = grid_step(price, atr, self.grid)
        self.last_step = step
        if self.bucket is None:
            self.bucket = new_bucket(self.grid.max_actions_per_minute, now)
        if self.cooldown_left(now if market_ts is None else market_ts) > 0:
            allow_new_entries = False
        entries: tuple[DesiredOrder, ...] = ()
        if allow_new_entries:
            if direction in ("UP", "DOWN"):
                self.anchor = next_anchor(self.anchor, direction, confidence, price, atr, self.grid, now)  # type: ignore[arg-type]  # narrowed to UP/DOWN by the test above
            # A signal without a direction holds the grid like a weak one (grid.next_anchor's
            # rule): cancelling it on every NONE and re-placing it on the next UP cost a full
            # grid of cancels and places every few bars (backtest: ~6,000 a symbol-month).
            if self.anchor is not None:
                size = contracts_per_level(available_balance, self.anchor.price, self.product,
                                           risk_percentage=self.risk.risk_percentage,
                                           min_balance=self.risk.min_balance)
                if size > 0:
                    entries = self._grid_entries(size, atr)
        else:
            self.anchor = None
        book = list(self.open_orders.values())
        # A resting entry's level belongs to the grid it was priced in: the anchor's step, not
        # this tick's (which moves with every price and would move the stop's edge with it).
        level_step = self.anchor.step if self.anchor is not None else step
        levels = levels_from_book(self.holdings, book, bot_id=self.bot_id, symbol=self.symbol,
                                  grid_step=level_step, ts=now)
        long_held = sum(n for (side, _), n in self.holdings.held.items() if side == "buy")
        short_held = sum(n for (side, _), n in self.holdings.held.items() if side == "sell")
        assert self.position is not None
        book_wanted = desired_book(entries, levels, self.product)
        stop = self._protective_stop(levels, entries, atr, price)
        if stop is not None:
            book_wanted = (*book_wanted, stop)
        desired = limit_desired(book_wanted, self.position.contracts,
                                self.risk, long_held=long_held, short_held=short_held)
        self.desired = desired
        # A fresh generation for each plan that places something (placements never reuse an id);
        # a plan that places nothing leaves it, so the ids do not depend on how often we decided.
        generation = coid.next_generation(self.generation)
        plan = reconcile(desired, book, bot_id=self.bot_id, symbol=self.symbol, generation=generation,
                         price_tolerance=self.grid.regrid_fraction * step)
        wanted_nothing = plan.empty
        plan, self.bucket = limit_plan(plan, self.bucket, now, reference_price=price)
        if plan.to_place:
            self.generation = generation
        self._quiet = None
        # (recorded only for a caller that asks plan_unchanged: the backtest has its own skipping)
        if wanted_nothing and self._asks_unchanged and self.bucket.tokens >= self.bucket.capacity:
            self._quiet = _Quiet(state=self._state(book), allow=allow_new_entries, balance=available_balance,
                                 level_step=level_step if levels and self.anchor is None else 0.0, stop=stop,
                                 book=book, desired=desired)
        return plan

    # --- skipping a plan that would change nothing -----------------------------------------------

    def _state(self, book: list[OpenOrder]) -> tuple[object, ...]:
        """Everything of the bot's own a plan reads, by identity: the structs are immutable and
        replaced on change, so an equal tuple means nothing the plan reads has moved."""
        return (self.holdings, self.position, self.anchor, self.stopped_out_at, self.grid, self.risk, self.product,
                self.reconciled, self.generation, *book)

    def _largest_gap(self, q: _Quiet) -> float:
        """How far the plan's kept fixed-price orders sit from their wanted prices (each of ours
        is the one wanted for its key: the plan wanted nothing); inf if that does not hold."""
        gap = 0.0
        wanted = {d.key: d for d in q.desired}
        for o in q.book:
            tag = coid.decode(o.client_order_id, bot_id=self.bot_id, symbol=self.symbol)
            if tag is None or o.symbol != self.symbol or tag.side != o.side:
                continue
            d = wanted.get((tag.side, tag.purpose, tag.level))
            if d is None:
                return math.inf
            if not o.trailing:
                gap = max(gap, abs(o.price - d.price))
        return gap

    def plan_unchanged(self, *, now: float, price: float, atr: float, direction: str, confidence: float,
                       available_balance: float, allow_new_entries: bool, market_ts: float | None = None) -> bool:
        """True when `plan` with these arguments would change nothing: it would return an empty
        plan and leave the bot as the last plan left it (its grid step is brought up to date here,
        the one thing a plan always writes). Then the caller need not plan. Asked only after a plan
        that wanted nothing; anything the plan reacts to wakes it: our orders, fills or position
        changed, the signal re-anchors (a strong one past the hysteresis band), the cool-down
        starts or ends, the balance changes the grid's size, a resting order drifts past the
        re-grid tolerance, or the protective stop's price moves. A full churn bucket stays full,
        so skipping its refill changes nothing. tests/shared/trading/test_bot_skip.py drives
        a bot that skips beside one that plans every time and gets the same plans."""
        self._asks_unchanged = True
        q = self._quiet
        if q is None or self.awaiting_fills:
            return False
        if not (math.isfinite(price) and price > 0 and math.isfinite(atr) and atr > 0):
            return False  # (plan's own early return: nothing to skip)
        book = list(self.open_orders.values())
        state = q.state
        mine = self._state(book)
        if len(state) != len(mine) or any(a is not b for a, b in zip(state, mine, strict=True)):
            return False
        allow = allow_new_entries and not self.cooldown_left(now if market_ts is None else market_ts) > 0
        if allow != q.allow:
            return False
        step = grid_step(price, atr, self.grid)
        a = self.anchor
        if allow:
            if direction in ("UP", "DOWN") and next_anchor(a, direction, confidence, price, atr,  # type: ignore[arg-type]  # narrowed to UP/DOWN
                                                           self.grid, now) is not a:
                return False
            if a is not None and available_balance != q.balance:
                r = self.risk
                sized = (contracts_per_level(available_balance, a.price, self.product,
                                             risk_percentage=r.risk_percentage, min_balance=r.min_balance),
                         contracts_per_level(q.balance, a.price, self.product, risk_percentage=r.risk_percentage,
                                             min_balance=r.min_balance))
                if sized[0] != sized[1]:
                    return False
        if q.level_step and step != q.level_step:
            return False  # levels priced with this price's step (no anchor) would move
        if q.gap is None:
            q.gap = self._largest_gap(q)  # (book and wants unchanged since the plan: the state says so)
        if q.gap and not q.gap <= self.grid.regrid_fraction * step + 1e-12:
            return False  # reconcile's own test (_matches): a kept order would be amended
        if q.stop is not None:
            assert self.position is not None and self.stop_edge is not None
            if protective_stop(self.position.contracts, self.stop_edge, atr, self.product, self.grid, price) != q.stop:
                return False
        self.last_step = step
        return True

    def _grid_entries(self, size: int, atr: float) -> tuple[DesiredOrder, ...]:
        """The anchor's entries: the same anchor, size and settings give the same grid (atr is
        only checked, the anchor's step prices it), so it is built once, not at every plan."""
        a = self.anchor
        assert a is not None
        memo = self._entries_memo
        if memo is not None and memo[0] is a and memo[1] == size and memo[2] is self.grid and memo[3] is self.product:
            return memo[4]
        entries = desired_grid(a.direction, a.confidence, a.price, atr, self.product, size, self.grid, step=a.step)
        self._entries_memo = (a, size, self.grid, self.product, entries)
        return entries

    def _protective_stop(self, levels: dict[tuple[Side, int], Level], entries: tuple[DesiredOrder, ...],
                         atr: float, price: float) -> DesiredOrder | None:
        """The stop sits beyond the outermost level of the grid each held level came from
        (level k of n at price p with step s implies a grid reaching p -/+ (n - k) x s), so it
        neither hugs a filled level when the signal flips and the rest of that grid is cancelled,
        nor moves after a restart; resting and wanted entries of the position's side count too."""
        assert self.position is not None
        contracts = self.position.contracts
        self.stop_edge = None
        if not self.grid.stops or contracts == 0:
            return None
        side: Side = "buy" if contracts > 0 else "sell"  # the entry side that built the position
        sign = -1.0 if side == "buy" else 1.0  # outward from the price, the way losses grow
        n = self.grid.levels
        reach = [lv.entry_price + sign * max(0, n - lv.level) * lv.grid_step
                 for (s, _), lv in levels.items() if s == side and lv.entry_price > 0]
        if entries and self.anchor is not None:
            reach += [e.price + sign * max(0, n - e.level) * self.anchor.step for e in entries if e.side == side]
        if reach:
            edge = min(reach) if side == "buy" else max(reach)
        else:  # a position no level explains (levels rebuilt from a partial history)
            edge = float(self.position.average_entry)
        self.stop_edge = edge
        return protective_stop(contracts, edge, atr, self.product, self.grid, price)

    def halt_plan(self, *, halted: bool, flatten_on_halt: bool, cancel_requested: bool, flatten_sent: bool,
                  price: float) -> HaltPlan:
        """The orders of a halted bot (account risk limit) or of an operator's cancel: cancel every
        resting order we own, except that a halt which does not flatten keeps the protective stop
        (it must not unprotect the position); a halt with `flatten_on_halt` also closes the
        bot's position at market, once (`flatten_sent`: one is already on its way)."""
        flatten = halted and flatten_on_halt
        cancel = self.cancel_all_plan(keep_stops=halted and not flatten and not cancel_requested)
        assert self.position is not None
        contracts = self.position.contracts
        order: FlattenOrder | None = None
        if flatten and contracts and not flatten_sent:
            side: Side = "sell" if contracts > 0 else "buy"
            self.generation = coid.next_generation(self.generation)
            order = FlattenOrder(
                client_order_id=coid.encode(bot_id=self.bot_id, symbol=self.symbol, side=side, purpose="stop",
                                            level=0, generation=self.generation),
                side=side, size=abs(contracts), price=price)
        return HaltPlan(cancel=tuple(cancel), flatten=order)

    def cancel_all_plan(self, *, keep_stops: bool = False) -> list[int]:
        """Every resting order we own (for stop --cancel-orders and risk halts). `keep_stops`
        leaves the protective stop: a halt that does not flatten must not unprotect the position."""
        out = []
        for o in self.open_orders.values():
            tag = coid.decode(o.client_order_id, bot_id=self.bot_id, symbol=self.symbol)
            if tag is not None and not (keep_stops and tag.purpose == "stop" and o.reduce_only):
                out.append(o.order_id)
        return out

    # --- figures ------------------------------------------------------------------------------

    def pnl(self, mark: float) -> tuple[float, float, float]:
        """(realised, unrealised at mark, fees) of the bot's own fills."""
        assert self.position is not None
        unreal = unrealised(self.position, repr(mark)) if math.isfinite(mark) and mark > 0 else 0
        return float(self.position.realised), float(unreal), float(self.position.fees)

    def resting_stop_price(self) -> float:
        """Trigger price of our protective stop on the book, NaN when none rests."""
        for o in self.open_orders.values():
            tag = coid.decode(o.client_order_id, bot_id=self.bot_id, symbol=self.symbol)
            if tag is not None and tag.purpose == "stop" and o.is_stop:
                return o.price
        return math.nan

    def owned_open_orders(self) -> int:
        return len(self.cancel_all_plan())
