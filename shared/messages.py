"""Wire messages between processes: immutable msgspec Structs, msgpack-encoded, versioned.

Every message carries a protocol version `v` and explicit timestamps: `*_ns` fields from
`time.perf_counter_ns()` (CLOCK_MONOTONIC on Linux, comparable across processes on one box) for
latency, `*_ts` fields in epoch seconds or microseconds for market time. A message that fails to
decode is dropped and counted by `MessageCodec`, never raised into a process loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from .latency import TickHops
from .products import ProductSpec
from .trading.orders import OpenOrder
from .trading.pnl import Fill

PROTOCOL_VERSION = 1
log = logging.getLogger(__name__)


class Msg(msgspec.Struct, frozen=True, tag_field="t", kw_only=True):
    v: int = PROTOCOL_VERSION


# --- market data: gateway -> workers (PUB/SUB, topic = symbol + b"\0") -------------------------


class Tick(Msg, tag="tick", frozen=True):
    symbol: str
    epoch: int  # the publishing gateway's start id: seq restarts with a new epoch
    seq: int  # per-symbol, from the gateway; a gap means lost ticks
    price: float
    size: float
    exch_ts_us: int  # market time of the trade
    sent_ns: int  # gateway publish time (monotonic)


class Candle(Msg, tag="candle", frozen=True):
    """A bar from the exchange's candle channel (authoritative OHLCV for its minute)."""
    symbol: str
    start_ts: int  # epoch seconds, bar open time
    open: float
    high: float
    low: float
    close: float
    volume: float
    sent_ns: int


# --- history: worker <-> gateway (DEALER/ROUTER) ------------------------------------------------


class HistoryRequest(Msg, tag="hist_req", frozen=True):
    symbol: str
    bars: int
    sent_ns: int


class HistoryReply(Msg, tag="hist_rep", frozen=True):
    """Bars as raw float64 bytes (once per worker start, not on the hot path)."""
    symbol: str
    n: int
    ts: bytes
    open: bytes
    high: bytes
    low: bytes
    close: bytes
    volume: bytes
    error: str = ""


# --- signals: worker <-> pool member (DEALER/ROUTER); prices stay in shared memory --------------


class SignalRequest(Msg, tag="sig_req", frozen=True):
    symbol: str
    slot: int  # ring slot of the symbol
    seq: int  # worker's request sequence number
    bar_count: int  # bars in the ring when asked (the pool reads at least this far)
    tick_recv_ns: int  # when the worker received the tick that triggered this request
    sent_ns: int


class SignalReply(Msg, tag="sig_rep", frozen=True):
    symbol: str
    seq: int
    bar_count: int
    bar_ts: float
    direction: str  # UP | DOWN | NONE
    confidence: float
    votes: dict[str, str]
    close: float
    atr14: float
    rsi14: float
    valid: bool
    reason: str
    batch_size: int  # how many requests the pool served in the same pass
    compute_ns: int  # time the pool spent in the batch
    sent_ns: int
    read_ns: int = 0  # when the pool read the request (0: not said), for the per-hop breakdown


# --- orders: worker <-> gateway (DEALER/ROUTER), account events gateway -> worker (PUB) ---------


class NewOrderSpec(msgspec.Struct, frozen=True, kw_only=True):
    client_order_id: str
    side: str
    price: float
    size: int
    order_type: str = "limit_order"
    reduce_only: bool = False
    post_only: bool = False
    trail_amount: float = 0.0  # a stop_market_order trailing the market by this distance (0: fixed at price)


class AmendSpec(msgspec.Struct, frozen=True, kw_only=True):
    order_id: int
    price: float  # the limit price, or the trigger price of a stop
    size: int  # total size after the edit (Delta's rule)
    order_type: str = "limit_order"  # stop_market_order: `price` is the stop price
    trailing: bool = False  # a trailing stop: only `size` is sent (its price is the exchange's)


class AccountRequest(Msg, tag="acct_req", frozen=True):
    symbol: str
    include_fills: bool  # True for a full reconciliation (start, reconnect); False: orders + balance
    sent_ns: int
    fills_since_us: int = 0  # with include_fills: only fills from here (the venue's clock); 0 = all


class AccountSnapshot(Msg, tag="acct", frozen=True):
    """What the exchange says: the worker reconciles against this before it trades."""
    symbol: str
    product: ProductSpec | None
    open_orders: list[OpenOrder]  # the domain order (shared.trading.orders.OpenOrder), as the bot takes it
    fills: list[Fill]  # the symbol's fills, as the ledger and PnL take them (shared.trading.pnl.Fill)
    available_balance: float
    equity: float
    error: str = ""
    # The venue's position in the product (whole account, contracts), read before the orders
    # and fills; None if not read. The bot's own comes from its fills: the two are compared.
    venue_position: int | None = None


class OrderIntents(Msg, tag="intents", frozen=True):
    symbol: str
    seq: int
    product_id: int
    cancel: list[int]
    amend: list[AmendSpec]
    place: list[NewOrderSpec]
    sent_ns: int


class IntentResult(Msg, tag="intent_res", frozen=True):
    symbol: str
    seq: int
    cancelled: list[int]
    amended: list[OpenOrder]
    placed: list[OpenOrder]
    errors: list[str]  # "client_order_id or order id: delta_code: message"
    sent_ns: int
    # Of the errors, those the gateway refused without sending (the account's rate budget or the
    # symbol's share of it would not be there in time): the venue's state is known for them; and
    # how long the bot should hold such quotes before it plans them again.
    unsent: int = 0
    retry_after_s: float = 0.0

    @property
    def reached_venue(self) -> bool:
        """Whether the venue answered any of it (else the gateway refused it all unsent): only
        such an intent's round trip is an order intent -> ack."""
        return not self.unsent or bool(self.cancelled or self.amended or self.placed) or len(self.errors) > self.unsent

    @property
    def venue_state_uncertain(self) -> bool:
        """Whether an action failed at the venue (or its outcome is unknown): read it back."""
        return len(self.errors) > self.unsent


class OrderEvent(Msg, tag="order_ev", frozen=True):
    symbol: str
    order: OpenOrder
    sent_ns: int
    # The gateway's read back of an order in doubt (GET by id), not the socket's word: only a read
    # back may say an order the bot waits fills for still rests (an amend's answer can be older).
    read_back: bool = False


class OrderRecord(Msg, tag="order_rec", frozen=True):
    """Gateway -> supervisor: one order event for the SQLite ledger (what we asked, what the
    exchange answered, what it did later), so `history` can explain every fill and refusal."""
    ts: float  # epoch seconds, when the gateway learned it
    symbol: str
    event: str  # placed | amended | cancelled | rejected | triggered | closed | ...
    client_order_id: str
    order_id: str
    side: str
    price: str  # limit or stop price as sent/reported
    size: int
    detail: str  # Delta's error code and message for a rejection, the order type, the reason


class FillEvent(Msg, tag="fill_ev", frozen=True):
    symbol: str
    fill: Fill  # the domain fill: its contract_value (from the venue's product spec) rides in it
    sent_ns: int


class Funding(msgspec.Struct, frozen=True, kw_only=True):
    """One funding payment on a symbol's position, as the venue's wallet ledger booked it: the
    one form funding takes past the exchange edge (gateway -> supervisor -> SQLite, status,
    history). `funding_id` is the venue's transaction id: the ledger keeps each once."""
    funding_id: str
    symbol: str
    amount: str  # decimal string, as booked: + received, - paid
    ts: float  # epoch seconds of the funding time (the venue's clock)


class FundingRecord(Msg, tag="funding_rec", frozen=True):
    """Gateway -> supervisor: a funding payment for the SQLite ledger."""
    funding: Funding
    sent_ns: int


# --- supervision: every process -> supervisor (PUSH/PULL) --------------------------------------


class WorkerFigures(msgspec.Struct, frozen=True, kw_only=True, tag="worker"):
    state: str
    last_price: float
    bar_count: int
    ticks: int
    ticks_dropped: int
    signals: int
    ticks_unchanged: int = 0  # ticks that moved only the bar's volume: no signal was asked for them
    ticks_late: int = 0  # repeated or older sequence numbers, and ticks older than the bar (not applied)
    plans_skipped: int = 0  # signals on which the trading plan would have changed nothing: not made
    signal: str
    confidence: float
    votes: dict[str, str]
    atr14: float
    tick_to_signal_p50_us: float
    tick_to_signal_p99_us: float
    tick_to_signal_p999_us: float
    tick_to_signal_count: int
    loop_lag_ms: float
    malformed: int
    first_signal_mono_ns: int  # 0 until the first valid signal
    tick_hops: TickHops = TickHops()  # where tick-to-signal time goes, by hop (counters since start)
    position: float = 0.0
    open_orders: int = 0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    order_rtt_p50_us: float = float("nan")
    order_rtt_p99_us: float = float("nan")
    # intents sent in the start-up minute (workers/worker.py LATENCY_WARMUP_S), apart from the above
    order_rtt_startup_p50_us: float = float("nan")
    order_rtt_startup_p99_us: float = float("nan")
    order_errors: int = 0
    trading: str = ""  # why the bot is or is not trading (reconciling, paused, halted, ...)
    note: str = ""
    stop_price: float = float("nan")  # trigger of the protective stop resting on the venue, NaN if none
    flatten: str = ""  # an operator's flatten: its progress ("" when none was asked)
    # For the dashboard's chart (shared/trading/book_view.py): entry prices of the grid the bot wants
    # now, and its resting orders as (side, purpose, price, unfilled contracts); bounded there.
    grid_levels: tuple[float, ...] = ()
    resting_orders: tuple[tuple[str, str, float, int], ...] = ()


class PoolFigures(msgspec.Struct, frozen=True, kw_only=True, tag="pool"):
    requests: int
    batches: int
    max_batch: int
    symbols: int
    busy_fraction: float
    malformed: int


class GatewayFigures(msgspec.Struct, frozen=True, kw_only=True, tag="gateway"):
    ticks_published: int
    symbols: int
    source: str
    requests: int
    malformed: int
    equity: float = float("nan")  # account equity (wallet balance + unrealised), exchange mode
    position_notional: dict[str, float] = {}  # symbol -> |position| notional at the last trade
    rest_errors: int = 0
    note: str = ""
    storage_error: str = ""  # the paper venue: why its account journal cannot be written ("" when it can)
    ws_down_s: float = 0.0  # how long the account websocket has been disconnected (0: connected)
    rate_budget_left: float = float("nan")  # units left in the account's rate window
    rate_budget_capacity: float = float("nan")  # units in the window (Delta: 10,000 per 5 min)
    deadman: str = ""  # the dead-man switch: off | not armed | armed | failing | lapsed ("" not reported)
    deadman_expires_in_s: float = float("nan")  # until the exchange cancels the orders unless renewed
    loop_lag_ms: float = float("nan")  # the gateway's event-loop lag, max since its last heartbeat
    orders_dropped: int = 0  # venue orders no OpenOrder can hold (no side, unknown type or state), not passed on
    # The account's rate budget since the gateway started: units spent by what they bought
    # (shared/delta/ratelimit.spend_kind), requests waiting for budget now, and the order intents:
    # how many, how many waited for budget (seconds in all, the longest), how many had quotes refused.
    rate_units_by_kind: dict[str, int] = {}
    rate_requests_waiting: int = 0
    intents: int = 0
    intents_budget_waited: int = 0
    intents_budget_wait_s: float = 0.0
    intents_budget_wait_max_s: float = 0.0
    intents_budget_refused: int = 0


class RLTable(Msg, tag="rl_table", frozen=True):
    """Pool -> supervisor: a symbol's learned Q-table, persisted in SQLite."""
    symbol: str
    table: bytes
    sent_ns: int


class Heartbeat(Msg, tag="hb", frozen=True):
    kind: str  # worker | pool | gateway | venue
    name: str  # symbol for workers, pool-0.., gateway
    pid: int
    sent_ns: int
    figures: WorkerFigures | PoolFigures | GatewayFigures | None = None


# --- control: supervisor -> worker (PUB, topic = symbol + b"\0" or b"*\0") ---------------------


class Control(Msg, tag="ctl", frozen=True):
    """Supervisor -> workers. `reason` says why (shown in status)."""
    command: str  # pause | resume | halt | clear_halt | flatten | cancel_orders
    symbol: str
    sent_ns: int
    reason: str = ""


Message = (Tick | Candle | HistoryRequest | HistoryReply | SignalRequest | SignalReply | Heartbeat
           | Control | AccountRequest | AccountSnapshot | OrderIntents | IntentResult | OrderEvent
           | FillEvent | RLTable | OrderRecord | FundingRecord)


# Built once at import: the first decoder of the Message union costs ~2 ms of CPU (msgspec reads
# every struct's annotations, then caches them on the classes), and the forkserver imports this
# module before it forks, so every child's own codec starts from the cache (0.02 ms) instead of
# paying it again at each of 1,000 worker starts.
_WARM_DECODER = msgspec.msgpack.Decoder(Message)


class MessageCodec:
    """One encoder/decoder per process. Malformed input is dropped and counted; a summary is
    logged at most once per minute so a flood cannot flood the log too."""

    def __init__(self, owner: str, log_interval_s: float = 60.0) -> None:
        self._enc = msgspec.msgpack.Encoder()
        self._dec = msgspec.msgpack.Decoder(Message)
        self.owner = owner
        self.malformed = 0
        self._logged_at = 0.0
        self._since_log = 0
        self._last_error = ""
        self._log_interval_s = log_interval_s

    def encode(self, msg: Msg) -> bytes:
        return self._enc.encode(msg)

    def decode(self, data: bytes) -> Any | None:
        try:
            msg = self._dec.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._count(str(exc))
            return None
        if msg.v != PROTOCOL_VERSION:
            self._count(f"protocol version {msg.v}, expected {PROTOCOL_VERSION}")
            return None
        return msg

    def _count(self, error: str) -> None:
        self.malformed += 1
        self._since_log += 1
        self._last_error = error[:200]
        now = time.monotonic()
        if now - self._logged_at >= self._log_interval_s:
            log.warning("%s: dropped %d malformed message(s) (total %d); last: %s",
                        self.owner, self._since_log, self.malformed, self._last_error)
            self._logged_at = now
            self._since_log = 0


def topic(symbol: str) -> bytes:
    # NUL-terminated so SUB prefix matching cannot confuse BTCUSD with BTCUSDT.
    return symbol.encode() + b"\0"


ALL_TOPIC = b"*\0"
