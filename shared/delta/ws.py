"""Delta Exchange websocket client: auth, subscriptions, heartbeat, reconnect, staleness.

What it guarantees a trader's code (api spec §9):
- Frames become typed, immutable events (legacy and new compact public payloads alike).
- The connection is watched: `enable_heartbeat` after every connect, and if nothing at all
  arrives for `heartbeat_timeout_s` the socket is treated as dead and replaced.
- Reconnects back off exponentially with jitter up to a cap (Delta bans an IP after 150
  connection attempts in 5 minutes), and every subscription is sent again after each reconnect.
- Silence is never read as "no trades". Each subscribed symbol has a quiet timer: when a symbol
  has been silent longer than `stale_after_s` a `Stale` event is delivered (and `Fresh` when data
  resumes); `quiet_for(symbol)` answers at any time. A `Disconnected` event, a `SequenceGap` in
  a symbol's order events, or a `DataGap` when the bounded event queue had to drop, tells the
  consumer to reconcile from REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import msgspec

from shared.delta import auth, constants
from shared.delta.models import Order, Position, convert, to_micros

log = logging.getLogger(__name__)

PUBLIC_CHANNELS = frozenset(constants.PUBLIC_CHANNELS + constants.COMPACT_CHANNELS)
PRIVATE_CHANNELS = frozenset(constants.PRIVATE_CHANNELS + ("v2/user_trades",))
_RES_S = constants.WS_CANDLE_RESOLUTION_S


# ------------------------------------------------------------------------------------ events

class TickerEvent(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    product_id: int | None
    mark_price: float | None
    close: float | None
    best_bid: float | None
    best_ask: float | None
    spot_price: float | None
    exchange_ts_us: int | None
    received_ts_us: int


class CandleEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A forming or closed bar. OHLC None = a minute with no trades (volume 0), not a zero price."""

    symbol: str
    resolution: str
    start_us: int | None
    open: float | None
    high: float | None
    low: float | None
    close: float | None
    volume: float
    exchange_ts_us: int | None
    received_ts_us: int


class TradeEvent(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    price: float
    size: float
    buyer_role: str | None  # "maker"/"taker"
    exchange_ts_us: int | None
    received_ts_us: int
    from_snapshot: bool = False


class OrderUpdate(msgspec.Struct, frozen=True, kw_only=True):
    action: str  # create | update | delete
    reason: str | None
    symbol: str | None
    product_id: int | None
    order_id: int | None
    client_order_id: str | None
    side: str | None
    size: int | None
    unfilled_size: int | None
    limit_price: float | None
    average_fill_price: float | None
    state: str | None
    seq_no: int | None
    exchange_ts_us: int | None
    received_ts_us: int
    stop_order_type: str | None = None  # set on stop orders (pending until triggered)
    stop_price: float | None = None
    reduce_only: bool | None = None
    trail_amount: float | None = None  # set on trailing stops (the snapshot's Order has it)
    trail_extreme: float | None = None  # trigger_price_max_or_min: documented on updates of trailing stops
    order_type: str | None = None  # limit_order | market_order: not in the documented update fields; read when sent


class OrderSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str | None
    orders: list[Order]
    seq_no: int | None
    received_ts_us: int


class PositionUpdate(msgspec.Struct, frozen=True, kw_only=True):
    action: str
    symbol: str | None
    product_id: int | None
    size: int | None
    entry_price: float | None
    margin: float | None
    liquidation_price: float | None
    exchange_ts_us: int | None
    received_ts_us: int


class PositionSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    positions: list[Position]
    received_ts_us: int


class UserTrade(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str | None
    fill_id: str | None
    order_id: str | None
    client_order_id: str | None
    side: str | None
    size: int
    price: float
    role: str | None
    reason: str | None
    seq_no: int | None
    exchange_ts_us: int | None
    received_ts_us: int


class Connected(msgspec.Struct, frozen=True):
    connection: int  # 1 for the first connection, 2 after the first reconnect...


class Disconnected(msgspec.Struct, frozen=True):
    reason: str  # events may have been missed: reconcile from REST


class AuthResult(msgspec.Struct, frozen=True):
    ok: bool
    method: str  # "key-auth" or legacy "auth"
    message: str = ""


class Subscribed(msgspec.Struct, frozen=True):
    channels: list[dict[str, Any]]  # the server's full list; refused ones carry "error"


class Stale(msgspec.Struct, frozen=True):
    symbol: str
    quiet_for_s: float


class Fresh(msgspec.Struct, frozen=True):
    symbol: str


class DataGap(msgspec.Struct, frozen=True):
    dropped: int  # events lost to a full queue: reconcile from REST


class SequenceGap(msgspec.Struct, frozen=True):
    """Delta numbers order events per symbol; a jump means one was missed: reconcile."""

    channel: str
    symbol: str
    expected: int
    got: int


Level = tuple[str, str]  # (price, size) exactly as received: the checksum is over these strings


class BookTop(msgspec.Struct, frozen=True, kw_only=True):
    """Best bid and ask (`l1_orderbook`, compact `ob_l1`)."""

    symbol: str
    best_bid: float | None
    best_ask: float | None
    bid_size: float | None
    ask_size: float | None
    exchange_ts_us: int | None
    received_ts_us: int


class BookLevels(msgspec.Struct, frozen=True, kw_only=True):
    """A whole book (`l2_orderbook`, compact `ob_l2`): bids best first, asks best first."""

    symbol: str
    bids: list[Level]
    asks: list[Level]
    exchange_ts_us: int | None
    received_ts_us: int


class BookDelta(msgspec.Struct, frozen=True, kw_only=True):
    """One `l2_updates` (compact `ob_updates`) frame: a snapshot, then changed levels (size "0"
    deletes a level). `checksum` is Delta's `cs` over the book AFTER this frame (l2_checksum)."""

    symbol: str
    action: str  # snapshot | update | error
    bids: list[Level]
    asks: list[Level]
    sequence_no: int | None
    checksum: int | None
    exchange_ts_us: int | None
    received_ts_us: int
    message: str | None = None  # action "error": resubscribe later


class MarkPrice(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str  # the product symbol, without Delta's MARK: prefix
    price: float | None
    exchange_ts_us: int | None
    received_ts_us: int


class FundingRate(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    funding_rate: float | None  # percent per funding interval, as Delta quotes it
    next_funding_us: int | None
    exchange_ts_us: int | None
    received_ts_us: int


Event = (TickerEvent | CandleEvent | TradeEvent | OrderUpdate | OrderSnapshot | PositionUpdate
         | PositionSnapshot | UserTrade | Connected | Disconnected | AuthResult | Subscribed
         | Stale | Fresh | DataGap | SequenceGap | BookTop | BookLevels | BookDelta | MarkPrice
         | FundingRate)


# ------------------------------------------------------------------------------------ parsing

def _f(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _i(value: Any) -> int | None:
    f = _f(value)
    return None if f is None else int(f)


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _b(value: Any) -> bool | None:
    """Delta sends order flags as JSON booleans or as "true"/"false" strings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _at(seq: Any, index: int) -> Any:
    return seq[index] if isinstance(seq, list) and len(seq) > index else None


def _legacy_ticker(msg: Mapping[str, Any], rx: int) -> list[Event]:
    quotes = msg.get("quotes") or {}
    return [TickerEvent(symbol=str(msg.get("symbol")), product_id=_i(msg.get("product_id")),
                        mark_price=_f(msg.get("mark_price")), close=_f(msg.get("close")),
                        best_bid=_f(quotes.get("best_bid")), best_ask=_f(quotes.get("best_ask")),
                        spot_price=_f(msg.get("spot_price")),
                        exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _compact_ticker(msg: Mapping[str, Any], rx: int) -> list[Event]:
    # One frame may carry several products in `d`; quotes `q` = [ask, ask_size, bid, bid_size].
    out: list[Event] = []
    for d in msg.get("d") or []:
        ohlc, q = d.get("ohlc"), d.get("q")
        out.append(TickerEvent(
            symbol=str(d.get("s") or msg.get("sy")), product_id=_i(d.get("i")),
            mark_price=_f(d.get("m")), close=_f(_at(ohlc, 3)), best_ask=_f(_at(q, 0)),
            best_bid=_f(_at(q, 2)), spot_price=_f(msg.get("sp")),
            exchange_ts_us=to_micros(msg.get("ts")), received_ts_us=rx))
    return out


def _candle(kind: str, msg: Mapping[str, Any], rx: int) -> list[Event]:
    res = kind.removeprefix("candlestick_")
    if "sy" in msg:  # compact frames carry no start time: derive it from the frame time
        res = str(msg.get("res") or res)
        ts = to_micros(msg.get("ts"))
        step = _RES_S.get(res, 60) * 1_000_000
        return [CandleEvent(symbol=str(msg["sy"]), resolution=res,
                            start_us=None if ts is None else ts - ts % step,
                            open=_f(msg.get("o")), high=_f(msg.get("h")), low=_f(msg.get("l")),
                            close=_f(msg.get("c")), volume=_f(msg.get("v")) or 0.0,
                            exchange_ts_us=ts, received_ts_us=rx)]
    return [CandleEvent(symbol=str(msg.get("symbol")), resolution=str(msg.get("resolution") or res),
                        start_us=to_micros(msg.get("candle_start_time")),
                        open=_f(msg.get("open")), high=_f(msg.get("high")),
                        low=_f(msg.get("low")), close=_f(msg.get("close")),
                        volume=_f(msg.get("volume")) or 0.0,
                        exchange_ts_us=to_micros(msg.get("timestamp") or msg.get("last_updated")),
                        received_ts_us=rx)]


def _legacy_trade(msg: Mapping[str, Any], rx: int) -> list[Event]:
    price = _f(msg.get("price"))
    if price is None:
        return []
    return [TradeEvent(symbol=str(msg.get("symbol")), price=price,
                       size=_f(msg.get("size")) or 0.0, buyer_role=_s(msg.get("buyer_role")),
                       exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _trade_snapshot(msg: Mapping[str, Any], rx: int) -> list[Event]:
    return [TradeEvent(symbol=str(msg.get("symbol")), price=float(t["price"]),
                       size=_f(t.get("size")) or 0.0, buyer_role=_s(t.get("buyer_role")),
                       exchange_ts_us=to_micros(t.get("timestamp")), received_ts_us=rx,
                       from_snapshot=True)
            for t in msg.get("trades") or [] if _f(t.get("price")) is not None]


def _compact_trade(msg: Mapping[str, Any], rx: int) -> list[Event]:
    price = _f(msg.get("p"))
    if price is None:
        return []
    role = {"m": "maker", "t": "taker"}.get(str(msg.get("r")), _s(msg.get("r")))
    return [TradeEvent(symbol=str(msg.get("sy")), price=price, size=_f(msg.get("s")) or 0.0,
                       buyer_role=role, exchange_ts_us=to_micros(msg.get("t") or msg.get("ts")),
                       received_ts_us=rx)]


def _orders(msg: Mapping[str, Any], rx: int) -> list[Event]:
    if msg.get("action") == "snapshot":
        meta = msg.get("meta") or {}
        return [OrderSnapshot(symbol=_s(msg.get("symbol")),
                              orders=convert(msg.get("result") or [], list[Order]),
                              seq_no=_i(meta.get("seq_no")), received_ts_us=rx)]
    return [OrderUpdate(
        action=str(msg.get("action")), reason=_s(msg.get("reason")), symbol=_s(msg.get("symbol")),
        product_id=_i(msg.get("product_id")), order_id=_i(msg.get("order_id") or msg.get("id")),
        client_order_id=_s(msg.get("client_order_id")), side=_s(msg.get("side")),
        size=_i(msg.get("size")), unfilled_size=_i(msg.get("unfilled_size")),
        limit_price=_f(msg.get("limit_price")),
        average_fill_price=_f(msg.get("average_fill_price")), state=_s(msg.get("state")),
        seq_no=_i(msg.get("seq_no")), exchange_ts_us=to_micros(msg.get("timestamp")),
        received_ts_us=rx, stop_order_type=_s(msg.get("stop_order_type")),
        stop_price=_f(msg.get("stop_price")), reduce_only=_b(msg.get("reduce_only")),
        trail_amount=_f(msg.get("trail_amount")), trail_extreme=_f(msg.get(constants.TRAIL_EXTREME_FIELD)),
        order_type=_s(msg.get("order_type")))]


def _positions(msg: Mapping[str, Any], rx: int) -> list[Event]:
    if msg.get("action") == "snapshot":
        return [PositionSnapshot(positions=convert(msg.get("result") or [], list[Position]),
                                 received_ts_us=rx)]
    return [PositionUpdate(
        action=str(msg.get("action")), symbol=_s(msg.get("symbol")),
        product_id=_i(msg.get("product_id")), size=_i(msg.get("size")),
        entry_price=_f(msg.get("entry_price")), margin=_f(msg.get("margin")),
        liquidation_price=_f(msg.get("liquidation_price")),
        exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _user_trade(msg: Mapping[str, Any], rx: int) -> list[Event]:
    return [UserTrade(symbol=_s(msg.get("symbol")), fill_id=_s(msg.get("fill_id")),
                      order_id=_s(msg.get("order_id")),
                      client_order_id=_s(msg.get("client_order_id")), side=_s(msg.get("side")),
                      size=_i(msg.get("size")) or 0, price=_f(msg.get("price")) or 0.0,
                      role=_s(msg.get("role")), reason=_s(msg.get("reason")),
                      seq_no=_i(msg.get("seq_no")),
                      exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _compact_user_trade(msg: Mapping[str, Any], rx: int) -> list[Event]:
    return [UserTrade(symbol=_s(msg.get("sy")), fill_id=_s(msg.get("f")),
                      order_id=_s(msg.get("o")), client_order_id=_s(msg.get("c")),
                      side=_s(msg.get("S")), size=_i(msg.get("s")) or 0,
                      price=_f(msg.get("p")) or 0.0, role=_s(msg.get("r")),
                      reason=_s(msg.get("R")), seq_no=_i(msg.get("se")),
                      exchange_ts_us=to_micros(msg.get("t")), received_ts_us=rx)]


def _levels(rows: Any) -> list[Level]:
    """[[price, size], ...] or [{limit_price|price, size}, ...] as (price, size) strings."""
    out: list[Level] = []
    for row in rows or []:
        if isinstance(row, (list, tuple)) and len(row) >= 2:
            out.append((str(row[0]), str(row[1])))
        elif isinstance(row, Mapping):
            out.append((str(row.get("limit_price", row.get("price"))), str(row.get("size"))))
    return out


def _book_top(msg: Mapping[str, Any], rx: int) -> list[Event]:
    if "sy" in msg:
        return [BookTop(symbol=str(msg["sy"]), best_bid=_f(msg.get("bp")), best_ask=_f(msg.get("ap")),
                        bid_size=_f(msg.get("bs")), ask_size=_f(msg.get("as")),
                        exchange_ts_us=to_micros(msg.get("ts")), received_ts_us=rx)]
    return [BookTop(symbol=str(msg.get("symbol")), best_bid=_f(msg.get("best_bid")),
                    best_ask=_f(msg.get("best_ask")), bid_size=_f(msg.get("bid_qty")),
                    ask_size=_f(msg.get("ask_qty")), exchange_ts_us=to_micros(msg.get("timestamp")),
                    received_ts_us=rx)]


def _book_levels(msg: Mapping[str, Any], rx: int) -> list[Event]:
    if "sy" in msg:
        return [BookLevels(symbol=str(msg["sy"]), bids=_levels(msg.get("b")), asks=_levels(msg.get("a")),
                           exchange_ts_us=to_micros(msg.get("ts")), received_ts_us=rx)]
    return [BookLevels(symbol=str(msg.get("symbol")), bids=_levels(msg.get("buy")), asks=_levels(msg.get("sell")),
                       exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _book_delta(msg: Mapping[str, Any], rx: int) -> list[Event]:
    compact = "sy" in msg
    return [BookDelta(
        symbol=str(msg.get("sy") if compact else msg.get("symbol")), action=str(msg.get("action") or "update"),
        bids=_levels(msg.get("b" if compact else "bids")), asks=_levels(msg.get("a" if compact else "asks")),
        sequence_no=_i(msg.get("seq" if compact else "sequence_no")), checksum=_i(msg.get("cs")),
        exchange_ts_us=to_micros(msg.get("ts" if compact else "timestamp")), received_ts_us=rx,
        message=_s(msg.get("msg")))]


def _mark_price(msg: Mapping[str, Any], rx: int) -> list[Event]:
    symbol = str(msg.get("sy") or msg.get("symbol") or "")
    return [MarkPrice(symbol=symbol.removeprefix("MARK:"), price=_f(msg.get("p", msg.get("price"))),
                      exchange_ts_us=to_micros(msg.get("ts") or msg.get("timestamp")), received_ts_us=rx)]


def _funding_rate(msg: Mapping[str, Any], rx: int) -> list[Event]:
    if "sy" in msg:
        return [FundingRate(symbol=str(msg["sy"]), funding_rate=_f(msg.get("fr")),
                            next_funding_us=to_micros(msg.get("nfr")), exchange_ts_us=to_micros(msg.get("ts")),
                            received_ts_us=rx)]
    return [FundingRate(symbol=str(msg.get("symbol")), funding_rate=_f(msg.get("funding_rate")),
                        next_funding_us=to_micros(msg.get("next_funding_realization")),
                        exchange_ts_us=to_micros(msg.get("timestamp")), received_ts_us=rx)]


def _subscriptions(msg: Mapping[str, Any], rx: int) -> list[Event]:
    return [Subscribed(channels=list(msg.get("channels") or []))]


_PARSERS: dict[str, Callable[[Mapping[str, Any], int], list[Event]]] = {
    "v2/ticker": _legacy_ticker, "ticker": _compact_ticker,
    "all_trades": _legacy_trade, "all_trades_snapshot": _trade_snapshot,
    "trades": _compact_trade, "orders": _orders, "positions": _positions,
    "user_trades": _user_trade, "v2/user_trades": _compact_user_trade,
    "subscriptions": _subscriptions,
    "l1_orderbook": _book_top, "ob_l1": _book_top, "l2_orderbook": _book_levels, "ob_l2": _book_levels,
    "l2_updates": _book_delta, "ob_updates": _book_delta, "mark_price": _mark_price,
    "funding_rate": _funding_rate,
}


def parse_frame(msg: Mapping[str, Any], received_ts_us: int) -> list[Event]:
    """Typed events for one decoded websocket frame (pure). Unknown frames give []."""
    kind = str(msg.get("type", ""))
    if kind.startswith("candlestick_"):
        return _candle(kind, msg, received_ts_us)
    parser = _PARSERS.get(kind)
    return parser(msg, received_ts_us) if parser is not None else []


def market_symbol(event: Event) -> str | None:
    """The symbol whose market-data freshness an event proves."""
    if isinstance(event, (TickerEvent, CandleEvent, TradeEvent, BookTop, BookLevels, BookDelta)):
        return event.symbol
    return None


# ------------------------------------------------------------------------------------ order book

BOOK_CHECKSUM_LEVELS = 10


def l2_checksum(asks: Sequence[Level], bids: Sequence[Level]) -> int:
    """Delta's `cs`: unsigned CRC32 of "p:s,p:s,...|p:s,..." over the top 10 asks (ascending
    price) then the top 10 bids (descending), prices and sizes as the exact strings sent.
    `asks`/`bids` must already be best first."""
    def side(levels: Sequence[Level]) -> str:
        return ",".join(f"{p}:{q}" for p, q in levels[:BOOK_CHECKSUM_LEVELS])
    return zlib.crc32(f"{side(asks)}|{side(bids)}".encode()) & 0xFFFFFFFF


class L2Book:
    """One symbol's book kept from `l2_updates` frames (pure). `apply` answers None when the frame
    was applied and checks out, else why the book must be dropped and resubscribed: a sequence
    gap, a checksum mismatch, an update before any snapshot, or the server's error frame."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.sequence_no: int | None = None

    def best_first(self) -> tuple[list[Level], list[Level]]:
        asks = sorted(self.asks.items(), key=lambda kv: float(kv[0]))
        bids = sorted(self.bids.items(), key=lambda kv: -float(kv[0]))
        return asks, bids

    def apply(self, delta: BookDelta) -> str | None:
        if delta.action == "error":
            self.sequence_no = None
            return f"server error: {delta.message or 'unknown'}"
        if delta.action == "snapshot":
            self.bids, self.asks = dict(delta.bids), dict(delta.asks)
        else:
            if self.sequence_no is None:
                return "update before snapshot"
            if delta.sequence_no is not None and delta.sequence_no != self.sequence_no + 1:
                expected = self.sequence_no + 1
                self.sequence_no = None
                return f"sequence gap: expected {expected}, got {delta.sequence_no}"
            for book, levels in ((self.bids, delta.bids), (self.asks, delta.asks)):
                for price, size in levels:
                    if float(size) == 0:
                        book.pop(price, None)
                    else:
                        book[price] = size
        self.sequence_no = delta.sequence_no if delta.sequence_no is not None else (self.sequence_no or 0) + 1
        if delta.checksum is not None:
            asks, bids = self.best_first()
            if l2_checksum(asks, bids) != delta.checksum:
                self.sequence_no = None
                return "checksum mismatch"
        return None


# ------------------------------------------------------------------------------------ staleness

class QuietTracker:
    """Per-symbol silence bookkeeping (pure; times from the caller's monotonic clock)."""

    def __init__(self, stale_after_s: float) -> None:
        if stale_after_s <= 0:
            raise ValueError("stale_after_s must be positive")
        self.stale_after_s = stale_after_s
        self._last: dict[str, float] = {}
        self._stale: set[str] = set()

    def watch(self, symbols: Iterable[str], now: float) -> None:
        """Start the clock for symbols we expect data for (subscription time counts as heard)."""
        for symbol in symbols:
            self._last.setdefault(symbol, now)

    def heard(self, symbol: str, now: float) -> bool:
        """Record data; True if the symbol had been stale (it is fresh again)."""
        self._last[symbol] = now
        if symbol in self._stale:
            self._stale.discard(symbol)
            return True
        return False

    def quiet_for(self, symbol: str, now: float) -> float | None:
        last = self._last.get(symbol)
        return None if last is None else now - last

    def newly_stale(self, now: float) -> list[tuple[str, float]]:
        out = []
        for symbol, last in self._last.items():
            quiet = now - last
            if quiet >= self.stale_after_s and symbol not in self._stale:
                self._stale.add(symbol)
                out.append((symbol, quiet))
        return out

    def is_stale(self, symbol: str) -> bool:
        return symbol in self._stale


class SequenceTracker:
    """Last sequence number per (channel, symbol); reports jumps (pure)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def reset(self) -> None:
        """Forget everything: a new connection starts from new snapshots."""
        self._last.clear()

    def baseline(self, channel: str, symbol: str, seq_no: int) -> None:
        self._last[(channel, symbol)] = seq_no

    def check(self, channel: str, symbol: str, seq_no: int) -> SequenceGap | None:
        key = (channel, symbol)
        last = self._last.get(key)
        if last is not None and seq_no <= last:
            return None  # a repeat of something already seen: not a loss
        self._last[key] = seq_no
        if last is None or seq_no == last + 1:
            return None
        return SequenceGap(channel=channel, symbol=symbol, expected=last + 1, got=seq_no)


def reconnect_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter in [half, full] of the step, so it never hits 0."""
    step = min(cap_s, base_s * 2.0 ** max(0, attempt))
    return step / 2 + rng.uniform(0.0, step / 2)


# ------------------------------------------------------------------------------------ client

EventHandler = Callable[[Event], Awaitable[None]]


class DeltaWebSocket:
    """One websocket connection kept alive, authenticated and subscribed.

    Events go to `on_event` if given, else into the bounded `events` queue (oldest dropped when
    full, followed by a DataGap so nothing is lost silently).
    """

    def __init__(self, url: str, api_key: str | None = None, api_secret: str | None = None, *,
                 session: aiohttp.ClientSession | None = None,
                 on_event: EventHandler | None = None, queue_size: int = 10_000,
                 heartbeat: bool = True, heartbeat_timeout_s: float = 35.0,
                 stale_after_s: float = 10.0, auth_timeout_s: float = 5.0,
                 backoff_base_s: float = 0.5, backoff_cap_s: float = 30.0,
                 user_agent: str = "delta-grid-orchestrator/0.1 (+aiohttp)",
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._session = session
        self._owns_session = session is None
        self._on_event = on_event
        self.events: asyncio.Queue[Event] = asyncio.Queue(maxsize=max(2, queue_size))
        self.heartbeat = heartbeat
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.user_agent = user_agent
        self._clock = clock
        self._mono = monotonic
        self._rng = rng or random.Random()
        self.quiet = QuietTracker(stale_after_s)
        self.sequences = SequenceTracker()
        self.sequence_gaps = 0
        self.callback_errors = 0
        self._subs: dict[str, set[str]] = {}  # channel -> symbols ("all" allowed)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.connections = 0
        self.frames = 0
        self.dropped = 0
        self.authenticated = False
        self.auth_method: str | None = None

    def __repr__(self) -> str:
        return f"DeltaWebSocket({self.url!r}, {'with key' if self._api_key else 'public'})"

    # -------------------------------------------------------------- subscriptions

    async def subscribe(self, channel: str, symbols: Sequence[str]) -> None:
        """Add a subscription; it is (re)sent on every connection."""
        self._subs.setdefault(channel, set()).update(symbols)
        if channel not in PRIVATE_CHANNELS:
            self.quiet.watch([s for s in symbols if s != "all"], self._mono())
        if self._ws is not None and not self._ws.closed:
            if channel in PRIVATE_CHANNELS and not self.authenticated:
                return  # sent after auth succeeds on the next connect
            await self._send({"type": "subscribe", "payload": {
                "channels": [{"name": channel, "symbols": sorted(symbols)}]}})

    def quiet_for(self, symbol: str) -> float | None:
        """Seconds since market data last arrived for symbol; None if never subscribed."""
        return self.quiet.quiet_for(symbol, self._mono())

    def is_stale(self, symbol: str) -> bool:
        return self.quiet.is_stale(symbol)

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        self._task = asyncio.create_task(self._run(), name="delta-ws")
        self._watchdog = asyncio.create_task(self._watch_quiet(), name="delta-ws-quiet")

    async def stop(self) -> None:
        for task in (self._task, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watchdog = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> DeltaWebSocket:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def force_reconnect(self) -> None:
        """Drop the current socket (e.g. after a sequence gap); the run loop reconnects."""
        if self._ws is not None:
            await self._ws.close()

    # -------------------------------------------------------------- internals

    async def _emit(self, event: Event) -> None:
        if self._on_event is not None:
            try:
                await self._on_event(event)
            except Exception:  # a consumer bug must not kill the connection for everyone
                self.callback_errors += 1
                log.exception("delta ws: event handler failed on %s", type(event).__name__)
            return
        if self.events.full():
            # Market data is worthless late; make room for a gap marker plus this event so the
            # consumer learns it must reconcile instead of silently missing an order event.
            while self.events.qsize() > self.events.maxsize - 2:
                self.events.get_nowait()
                self.dropped += 1
            self.events.put_nowait(DataGap(dropped=self.dropped))
        self.events.put_nowait(event)

    async def _send(self, payload: Mapping[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(msgspec.json.encode(payload).decode("utf-8"))

    async def _run(self) -> None:
        failures = 0
        while True:
            reason = "closed"
            try:
                assert self._session is not None
                async with self._session.ws_connect(
                        self.url, headers={"User-Agent": self.user_agent},
                        heartbeat=None, autoping=True) as ws:
                    self._ws = ws
                    self.connections += 1
                    self.sequences.reset()
                    failures = 0
                    await self._emit(Connected(self.connections))
                    reason = await self._session_loop(ws)
            except asyncio.CancelledError:
                raise
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                reason = f"{type(exc).__name__}"
            except Exception as exc:  # a bug here must cost one connection, not the feed
                log.exception("delta ws: unexpected failure; reconnecting")
                reason = f"internal error {type(exc).__name__}"
            finally:
                self._ws = None
                self.authenticated = False
            await self._emit(Disconnected(reason))
            delay = reconnect_delay(failures, self.backoff_base_s, self.backoff_cap_s, self._rng)
            failures += 1
            log.info("delta ws disconnected (%s); reconnecting in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _session_loop(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        if self.heartbeat:
            await self._send({"type": "enable_heartbeat"})
        if self._api_key is not None:
            await self._authenticate(ws)
        await self._resubscribe()
        while True:
            try:
                msg = await ws.receive(timeout=self.heartbeat_timeout_s)
            except TimeoutError:
                return f"silent for {self.heartbeat_timeout_s} s"
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.CLOSED):
                return "closed by server"
            if msg.type == aiohttp.WSMsgType.ERROR:
                return "socket error"
            if msg.type == aiohttp.WSMsgType.TEXT:
                await self._handle_text(msg.data)

    async def _handle_text(self, text: str) -> dict[str, Any] | None:
        self.frames += 1
        try:
            frame = msgspec.json.decode(text)
        except msgspec.DecodeError:
            log.warning("delta ws: undecodable frame of %d chars", len(text))
            return None
        if not isinstance(frame, dict):
            return None
        try:
            events = parse_frame(frame, int(self._clock() * 1_000_000))
        except (msgspec.ValidationError, ValueError, TypeError, KeyError) as exc:
            log.warning("delta ws: unreadable %r frame: %s", frame.get("type"), exc)
            return frame
        now = self._mono()
        for event in events:
            symbol = market_symbol(event)
            if symbol is not None and self.quiet.heard(symbol, now):
                await self._emit(Fresh(symbol))
            if isinstance(event, OrderSnapshot) and event.symbol and event.seq_no is not None:
                self.sequences.baseline("orders", event.symbol, event.seq_no)
            elif isinstance(event, OrderUpdate) and event.symbol and event.seq_no is not None:
                gap = self.sequences.check("orders", event.symbol, event.seq_no)
                if gap is not None:
                    self.sequence_gaps += 1
                    await self._emit(gap)
            await self._emit(event)
        return frame

    async def _authenticate(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        assert self._api_key is not None and self._api_secret is not None
        for method in ("key-auth", "auth"):
            timestamp = str(int(self._clock()))
            await self._send({"type": method, "payload": {
                "api-key": self._api_key, "timestamp": timestamp,
                "signature": auth.sign_ws(self._api_secret, timestamp)}})
            deadline = self._mono() + self.auth_timeout_s
            while True:
                remaining = deadline - self._mono()
                if remaining <= 0:
                    break  # no answer: try the other form
                try:
                    msg = await ws.receive(timeout=remaining)
                except TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise aiohttp.ClientError("socket closed during auth")
                frame = await self._handle_text(msg.data)
                if frame is None:
                    continue
                kind = frame.get("type")
                if kind == "key-auth" or (method == "auth" and kind in ("success", "auth")):
                    ok = kind == "success" or frame.get("success") is True
                    message = str(frame.get("message") or frame.get("status") or "")
                    self.authenticated = ok
                    self.auth_method = method if ok else None
                    await self._emit(AuthResult(ok=ok, method=method, message=message[:200]))
                    return
                if kind == "error":
                    break  # server does not know this auth form: fall back
        self.authenticated = False
        await self._emit(AuthResult(ok=False, method="auth", message="no auth reply"))

    async def _resubscribe(self) -> None:
        channels = [{"name": name, "symbols": sorted(symbols)}
                    for name, symbols in sorted(self._subs.items())
                    if symbols and (name not in PRIVATE_CHANNELS or self.authenticated)]
        if channels:
            await self._send({"type": "subscribe", "payload": {"channels": channels}})

    async def _watch_quiet(self) -> None:
        period = max(0.01, min(1.0, self.quiet.stale_after_s / 4))
        while True:
            await asyncio.sleep(period)
            for symbol, quiet in self.quiet.newly_stale(self._mono()):
                await self._emit(Stale(symbol, quiet))
