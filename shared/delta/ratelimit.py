"""One weighted request budget per Delta account (api spec §7), and one for public calls.

Delta gives each account 10,000 weight units per fixed 5-minute window, refilled at once when the
window ends; heavier endpoints cost more. Unauthenticated (public) requests are limited per IP,
separately. A 429 carries X-RATE-LIMIT-RESET (ms until requests are accepted again) and blocks
only the bucket that earned it: a flood of public reads from our IP must not stop order actions.
`RequestBudget` is the pure bookkeeping (injectable clock, no I/O); `AccountRateLimiter` puts an
asyncio queue in front of it with lanes: cancels and risk actions first, then order placement
and edits, then reads, and keeps the last `reserve` units of every window for risk actions so a
burst of new orders can never leave a bot unable to pull its quotes.

Our window starts at our first request, not at Delta's (unknown) boundary, so the two can be out
of phase; the 429 handling is what keeps us honest when they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import heapq
import itertools
import re
import time
from collections.abc import Callable, Iterator, Sequence
from enum import IntEnum

import msgspec

from shared.delta.constants import MAX_BATCH

WINDOW_S = 300.0
CAPACITY = 10_000
RESERVE_SHARE = 0.05  # of each window only cancels/risk actions may spend: 500 units = 100 cancels
UNKNOWN_RESET_BLOCK_S = 2.0  # 429 without a usable X-RATE-LIMIT-RESET header
ORDER_WEIGHT = 5  # one place, edit or cancel (POST|PUT|DELETE /v2/orders)
BATCH_WEIGHT = 25  # one POST|PUT|DELETE /v2/orders/batch, whatever its size (up to 50 orders)


class Priority(IntEnum):
    """Lower goes first."""

    RISK = 0  # cancels, cancel-all, reduce-only exits, leverage/margin fixes
    NEW_ORDER = 1  # placing and editing orders: a bot's quotes must not queue behind reads
    READ = 2  # reconciliation and market-data reads


class LimiterBusy(RuntimeError):
    """The waiting queue is full: the caller must shed load rather than queue without bound."""


class BudgetSnapshot(msgspec.Struct, frozen=True):
    used: int
    capacity: int
    window_ends_in_s: float
    blocked_for_s: float


_WEIGHT_3 = re.compile(
    r"^GET /v2/(products(/[^/]+)?|l2orderbook/.+|tickers(/.+)?|orders|positions(/margined)?"
    r"|wallet/balances|history/candles|orders/\d+|orders/client_order_id/.+)$")
_WEIGHT_10 = re.compile(r"^GET /v2/(orders/history|fills|wallet/transactions)$")


def endpoint_weight(method: str, path: str) -> int:
    """Delta's documented weight for a request (path without query, including /v2).

    Order lookups by id are not in Delta's table; they are charged like the open-orders list (3)
    because over-counting only costs throughput, while under-counting earns a 429.
    """
    method = method.upper()
    path = path.split("?", 1)[0].rstrip("/")
    key = f"{method} {path}"
    if path == "/v2/orders/batch":
        return BATCH_WEIGHT
    if path in ("/v2/orders", "/v2/orders/all") and method in ("POST", "PUT", "DELETE"):
        return ORDER_WEIGHT
    if path == "/v2/positions/change_margin" and method == "POST":
        return 5
    if _WEIGHT_10.match(key):
        return 10
    if _WEIGHT_3.match(key):
        return 3
    return 1


def batch_pays(orders: int) -> bool:
    """Whether `orders` actions of one kind (places, edits or cancels on one product) go as one
    batch call rather than one call each: when the batch costs no more of the account's budget
    than the single calls would (25 units against 5 an order: from 5 orders on). A tie goes to
    the batch: one round trip and one request to sign instead of five. Fewer than 5 go singly,
    at once, so a bot amending one take-profit does not pay 25 units for it."""
    return 2 <= orders and BATCH_WEIGHT <= orders * ORDER_WEIGHT


def order_units(orders: int) -> int:
    """The units `orders` actions of one kind on one product cost, sent as batch_pays says:
    full batches of 50, and the rest in one batch or singly."""
    full, rest = divmod(orders, MAX_BATCH)
    return full * BATCH_WEIGHT + (BATCH_WEIGHT if batch_pays(rest) else rest * ORDER_WEIGHT)


# --- what the budget is spent on -------------------------------------------------------------
#
# The units a request costs are charged to a kind a trader recognises: the order actions by their
# route, the reads by what they were for (the same GET /v2/wallet/balances is a bot's
# reconciliation or the gateway's equity poll). The caller names the purpose with `charged_to`;
# the client reads it where it charges (a ContextVar: it follows the request into gather's tasks).

PURPOSE = contextvars.ContextVar[str]("rate_purpose", default="")
ORDER_KINDS_BY_ROUTE = {
    ("POST", "/v2/orders"): "place", ("PUT", "/v2/orders"): "amend", ("DELETE", "/v2/orders"): "cancel",
    ("POST", "/v2/orders/batch"): "batch place", ("PUT", "/v2/orders/batch"): "batch amend",
    ("DELETE", "/v2/orders/batch"): "batch cancel", ("DELETE", "/v2/orders/all"): "cancel",
}
# The kinds: order actions (single and batch); fill read (the gateway's reads of new fills);
# reconcile (a bot's full read: position, orders, fills, balance; at start and after a position
# doubt); resync (a bot's regular or after-refusal re-read: position, orders, balance); ws resync
# (a symbol's orders read again after the socket lost events); account poll (the gateway's
# equity and positions for the account's risk limits); order lookup (one order by id); dead-man,
# funding, ticker poll (a quiet symbol's ticker), other.
SPEND_KINDS = ("place", "batch place", "amend", "batch amend", "cancel", "batch cancel", "fill read", "reconcile",
               "resync", "ws resync", "account poll", "order lookup", "dead-man", "funding", "ticker poll", "other")


@contextlib.contextmanager
def charged_to(purpose: str) -> Iterator[None]:
    """Requests made inside (and in tasks started inside) are charged to `purpose`."""
    token = PURPOSE.set(purpose)
    try:
        yield
    finally:
        PURPOSE.reset(token)


def spend_kind(method: str, path: str, purpose: str = "") -> str:
    """The kind a request's units are charged to: an order action by its route (whatever asked
    for it: a reconciliation never places), any other request by its purpose, else by its route."""
    method = method.upper()
    path = path.split("?", 1)[0].rstrip("/")
    kind = ORDER_KINDS_BY_ROUTE.get((method, path))
    if kind is not None:
        return kind
    if method == "GET" and path.startswith("/v2/orders/") and path != "/v2/orders/history":
        return "order lookup"  # one order by id: a fill's or an uncertain place's, whoever asked
    if purpose:
        return purpose
    if path == "/v2/fills":
        return "fill read"
    if "heartbeat" in path:
        return "dead-man"
    return "other"


class IntentCharge(msgspec.Struct):
    """One order intent against the rate budget: the seconds its requests waited for budget in
    all (the client adds to it), and whether quotes of it were refused for want of budget."""

    waited_s: float = 0.0
    refused: bool = False


class IntentBudgetTally(msgspec.Struct):
    """The account-wide tally of order intents against the rate budget: how many there were, how
    many waited for budget (how long in all, the longest), how many had quotes refused because
    the budget would not be there in time."""

    intents: int = 0
    waited: int = 0
    wait_s: float = 0.0
    wait_max_s: float = 0.0
    refused: int = 0

    def add(self, charge: IntentCharge) -> None:
        self.intents += 1
        if charge.waited_s > WAITED_S:
            self.waited += 1
            self.wait_s += charge.waited_s
            self.wait_max_s = max(self.wait_max_s, charge.waited_s)
        if charge.refused:
            self.refused += 1


WAITED_S = 0.001  # an intent whose requests waited longer than this for budget in all has "waited"
# The intent a request is made for (set per intent by the gateway; the client adds its budget
# wait to it). gather'ed tasks copy the context, so they share the one IntentCharge.
INTENT_CHARGE = contextvars.ContextVar[IntentCharge | None]("intent_charge", default=None)


class RequestBudget:
    """Fixed-window weight accounting plus 429 blocking. All times are from `clock` (seconds)."""

    def __init__(self, capacity: int = CAPACITY, window_s: float = WINDOW_S, *,
                 reserve: int | None = None) -> None:
        if reserve is None:
            reserve = int(capacity * RESERVE_SHARE)
        if capacity <= 0 or window_s <= 0 or not 0 <= reserve < capacity:
            raise ValueError("need capacity > 0, window_s > 0 and 0 <= reserve < capacity")
        self.capacity = capacity
        self.window_s = window_s
        self.reserve = reserve
        self._window_start: float | None = None
        self._used = 0
        self._blocked_until = float("-inf")

    def _roll(self, now: float) -> None:
        if self._window_start is None or now >= self._window_start + self.window_s:
            self._window_start = now
            self._used = 0

    def wait_time(self, weight: int, priority: Priority, now: float) -> float:
        """Seconds until a request of this weight and priority may go (0.0 = now)."""
        if weight > self.capacity:
            raise ValueError(f"weight {weight} exceeds the whole window capacity {self.capacity}")
        if now < self._blocked_until:
            return self._blocked_until - now
        self._roll(now)
        limit = self.capacity if priority == Priority.RISK else self.capacity - self.reserve
        if self._used + weight <= limit:
            return 0.0
        assert self._window_start is not None
        return max(self._window_start + self.window_s - now, 1e-6)

    def consume(self, weight: int, now: float) -> None:
        self._roll(now)
        self._used += weight

    def on_rate_limited(self, reset_ms: int | None, now: float) -> None:
        """The server said 429: nothing goes until its reset, whatever our own count says."""
        block = UNKNOWN_RESET_BLOCK_S if reset_ms is None else max(reset_ms, 0) / 1000.0
        self._blocked_until = max(self._blocked_until, now + block)

    def snapshot(self, now: float) -> BudgetSnapshot:
        self._roll(now)
        assert self._window_start is not None
        return BudgetSnapshot(used=self._used, capacity=self.capacity,
                              window_ends_in_s=self._window_start + self.window_s - now,
                              blocked_for_s=max(0.0, self._blocked_until - now))


class AccountRateLimiter:
    """Asyncio gate in front of a RequestBudget: highest priority first, FIFO within a class."""

    def __init__(self, budget: RequestBudget | None = None, *, max_waiting: int = 1_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget or RequestBudget()
        self.max_waiting = max_waiting
        self._clock = clock
        self._heap: list[tuple[int, int, int]] = []  # (priority, arrival, weight)
        self._arrivals = itertools.count()
        self._changed: asyncio.Condition | None = None

    @property
    def waiting(self) -> int:
        return len(self._heap)

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:  # created lazily so the limiter binds to the running loop
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self, weight: int, priority: Priority = Priority.READ) -> None:
        if weight > self.budget.capacity:
            raise ValueError(f"weight {weight} exceeds capacity {self.budget.capacity}")
        if len(self._heap) >= self.max_waiting:
            raise LimiterBusy(f"{len(self._heap)} requests already waiting for rate budget")
        entry = (int(priority), next(self._arrivals), weight)
        cond = self._cond()
        async with cond:
            heapq.heappush(self._heap, entry)
            cond.notify_all()  # a more urgent arrival must be seen by the current head's timer
            try:
                while True:
                    timeout: float | None = None
                    if self._heap[0] == entry:
                        now = self._clock()
                        timeout = self.budget.wait_time(weight, priority, now)
                        if timeout <= 0:
                            heapq.heappop(self._heap)
                            self.budget.consume(weight, now)
                            cond.notify_all()
                            return
                    try:
                        await asyncio.wait_for(cond.wait(), timeout)
                    except TimeoutError:
                        pass
            except BaseException:
                if entry in self._heap:
                    self._heap.remove(entry)
                    heapq.heapify(self._heap)
                    cond.notify_all()
                raise

    async def on_rate_limited(self, reset_ms: int | None) -> None:
        self.budget.on_rate_limited(reset_ms, self._clock())
        cond = self._cond()
        async with cond:
            cond.notify_all()

    def wait_time(self, weight: int, priority: Priority) -> float:
        """Seconds a request of this weight and priority would wait for budget if it were next
        (requests already waiting go first, so the real wait may be longer)."""
        return self.budget.wait_time(weight, priority, self._clock())

    def snapshot(self) -> BudgetSnapshot:
        return self.budget.snapshot(self._clock())


# --- a fair share of the budget per symbol ------------------------------------------------------
#
# Without shares the account's window went to whichever bots asked first: at 100 symbols on a 30x
# paper market the first grids and flips spent all 10,000 units in about a minute, and for the
# other four no bot could move a quote (loadtest, 2026-11-30). Each symbol's quotes (entries,
# take-profits and their amends, and the cancels of a re-grid) now draw on its own bucket,
# refilled at its share of the window's quote units; protective orders (stops, reduce-only exits,
# flattens) and intents that only cancel draw on no share: safety never waits behind grid churn.

QUOTE_SHARE = 0.5  # of each window for the bots' quotes; the rest: reads (reconciliations, fills,
# the equity poll) and the reserve. 100 symbols: 50 units each per 5 min, a full flip (cancel 5 +
# place 5 in two batch calls) or ten single amends.
FLIP_UNITS = 2 * BATCH_WEIGHT  # a bucket always holds at least one full flip, whatever the count
MAX_RETRY_AFTER_S = 60.0  # the longest a bot is told to hold its quotes before asking again


class SymbolShares:
    """Per-symbol token buckets of quote units (pure bookkeeping: times from the caller, seconds).

    A symbol's bucket holds max(its share of the window's quote units, FLIP_UNITS), starts full (its
    first grid), and refills continuously at its share per window. Quotes go only when the bucket
    holds their units; cancels are charged when they go, even into debt (they are never held back:
    they reduce exposure), so a bot that cancels pays for it with its next quotes."""

    def __init__(self, symbols: int, capacity: int = CAPACITY, window_s: float = WINDOW_S,
                 share: float = QUOTE_SHARE) -> None:
        if symbols < 1 or capacity <= 0 or window_s <= 0 or not 0 < share <= 1:
            raise ValueError("need symbols >= 1, capacity > 0, window_s > 0 and 0 < share <= 1")
        per_window = capacity * share / symbols
        self.rate_per_s = per_window / window_s
        self.burst = max(per_window, float(FLIP_UNITS))
        self._tokens: dict[str, tuple[float, float]] = {}  # symbol -> (units, at); one per symbol served

    def units(self, symbol: str, now: float) -> float:
        tokens, at = self._tokens.get(symbol, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate_per_s)

    def wait_s(self, symbol: str, units: int, now: float) -> float:
        """Seconds until the symbol's bucket holds `units` (0.0: now). More than the bucket can
        ever hold waits for a full bucket (one batch of up to 50 orders costs 25: never more
        than a flip's worth from one intent of one product)."""
        need = min(float(units), self.burst) - self.units(symbol, now)
        return 0.0 if need <= 0 else need / self.rate_per_s

    def charge(self, symbol: str, units: int, now: float) -> None:
        self._tokens[symbol] = (self.units(symbol, now) - units, now)


# Quotes that would wait longer than this for the account's rate budget are not sent: a bot gives
# up on an unanswered intent after 15 s (workers/worker.py) and reads the venue back, so orders
# sent minutes later, when the 5-minute window refills, would be stale ones.
INTENT_BUDGET_WAIT_S = 5.0


def retry_after_s(wait_s: float) -> float:
    """How long a bot whose quotes were refused for budget holds them before planning again."""
    return min(max(wait_s, 0.0), MAX_RETRY_AFTER_S)


def quote_verdict(share_wait_s: float, budget_wait_s: float, pace_wait: float = 0.0,
                  fair_wait_s: float = 0.0) -> tuple[str | None, float]:
    """Whether an intent's quotes go: (None, 0.0) to send them; else the refusal's code
    ("rate_budget_share": the symbol's share would not hold them now; "rate_budget_pace": the
    account's window would be spent ahead of an even pace (pace_wait_s); "rate_budget_spent": the
    account's window would not have them within INTENT_BUDGET_WAIT_S) and how long the bot holds
    them before it plans again. Held by the pace, a bot waits at least `fair_wait_s` (the time its
    share takes to earn these units): the pace frees a few units a second for every bot at once,
    and a hold of only the pace's own wait had 100 bots asking again every second or two for the
    same few units (9,206 refused orders in a minute and a half)."""
    if budget_wait_s > INTENT_BUDGET_WAIT_S:
        return "rate_budget_spent", retry_after_s(budget_wait_s)
    if share_wait_s > 0:
        return "rate_budget_share", retry_after_s(max(share_wait_s, pace_wait))
    if pace_wait > 0:
        return "rate_budget_pace", retry_after_s(max(pace_wait, fair_wait_s))
    return None, 0.0


# Quotes keep the account's window on an even pace, so it lasts the whole 5 minutes: at 100
# symbols on the 30x paper market the bots asked for ~50 units a second against the 33 the window
# gives, and a window spent after 3 minutes leaves every bot's reads and quotes waiting for the
# next. PACE_SLACK_SHARE of the window may go ahead of the pace: the start-up's reconciliations
# and first grids (100 symbols: 1,900 + ~3,000 units in the first 20 s).
PACE_SLACK_SHARE = 0.4


def pace_wait_s(used: int, units: int, elapsed_s: float, *, capacity: int = CAPACITY, reserve: int | None = None,
                window_s: float = WINDOW_S, slack_share: float = PACE_SLACK_SHARE) -> float:
    """Seconds until spending `units` more (on top of `used`, `elapsed_s` into the window) keeps
    the window's spend within an even pace: the slack at once, then the rest of the window's
    spendable units (capacity less the reserve) evenly to its end, so the last minute has its
    share too. 0.0: now; beyond what the window can spend at all: its end."""
    if reserve is None:
        reserve = int(capacity * RESERVE_SHARE)
    spendable = capacity - reserve
    slack = min(capacity * slack_share, spendable)
    need = used + units
    if need <= slack + (spendable - slack) * min(elapsed_s, window_s) / window_s:
        return 0.0
    if need > spendable:
        return max(window_s - elapsed_s, 1e-6)
    return max((need - slack) * window_s / (spendable - slack) - elapsed_s, 1e-6)


# --- fill reads ---------------------------------------------------------------------------------

FILL_READ_GAP_S = 1.0  # between two fill reads: the trades of a burst (and of many bots) share one
FILL_POLL_S = 3.0  # a read at least this often while the account socket is down...
FILL_POLL_SOCKET_UP_S = 15.0  # ...and while it is up (each of our trades on it wakes a read)


def fill_read_wait(now: float, last_read: float, *, woken: bool, socket_up: bool) -> float:
    """Seconds until the next read of the account's fills (0.0: now). A trade heard on the socket
    wakes a read, but no sooner than FILL_READ_GAP_S after the last one: one account-wide read
    (10 units) serves every trade since, however many bots they belong to. Without a wake-up the
    fills are polled anyway (a quiet socket is never read as "no fills"): every FILL_POLL_S while
    the socket is down, every FILL_POLL_SOCKET_UP_S while it is up (at 3 s that poll alone spent a
    tenth of the account's budget)."""
    due = last_read + (FILL_READ_GAP_S if woken else FILL_POLL_SOCKET_UP_S if socket_up else FILL_POLL_S)
    return max(0.0, due - now)


def resync_phase_s(interval_s: float, symbol: str, symbols: Sequence[str]) -> float:
    """When, within its re-read interval, a symbol's regular re-read of orders and balance falls.

    Workers start within seconds of each other, so without a phase every bot's regular re-read
    comes due in the same few seconds (100 bots x 9 units at launch + 90 s: 900 units in one burst,
    quotes refused behind it). Spread by the symbol's place in the run, the re-reads cost the same
    units evenly over the interval. A symbol not in the run (a test) takes phase 0."""
    if symbol not in symbols or len(symbols) < 2:
        return 0.0
    return interval_s * symbols.index(symbol) / len(symbols)

