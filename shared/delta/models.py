"""Typed Delta Exchange REST records, tolerant of both documented and live shapes.

What varies between Delta's docs and what its servers actually send (api spec §3-§6 and the
"corrections from recorded live responses"), and how these models absorb it:
- prices and money: JSON strings or numbers -> float (decoded with msgspec's lax mode),
- sizes: whole contracts -> int (a numeric string is accepted),
- flags: "true"/"false" or JSON booleans -> bool,
- timestamps: µs, ms or s numbers, numeric strings, or ISO 8601 -> int microseconds since epoch,
- ids that are sometimes ints and sometimes hex strings (fills) -> str,
- keys we do not know are ignored, and keys live servers omit have defaults.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar, overload

import msgspec
from msgspec.structs import force_setattr

from shared.products import ProductSpec

# A raw timestamp as Delta may send it; every model normalises these to int µs in __post_init__.
RawTime = int | float | str | None
RawId = int | str | None

_US_PER_S = 1_000_000


class TimestampError(ValueError):
    pass


def to_micros(value: RawTime) -> int | None:
    """Any timestamp Delta sends, as int microseconds since the epoch (None stays None).

    Bare numbers carry no unit, so the unit is read from the magnitude: plausible dates (after
    2001) are below 1e11 in seconds, below 1e14 in ms, below 1e17 in µs, else ns.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TimestampError(f"not a timestamp: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        try:
            number: float = float(text)
        except ValueError:
            try:
                parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise TimestampError(f"not a timestamp: {value!r}") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=dt.UTC)
            delta = parsed - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            return (delta.days * 86_400 + delta.seconds) * _US_PER_S + delta.microseconds
        if text.isdigit():  # keep full integer precision for µs strings
            return _scale(int(text))
        return _scale(number)
    return _scale(value)


def _scale(number: float | int) -> int:
    magnitude = abs(number)
    if magnitude < 1e11:
        return int(round(number * _US_PER_S))
    if magnitude < 1e14:
        return int(round(number * 1_000))
    if magnitude < 1e17:
        return int(number)
    return int(number) // 1_000


def _norm_times(obj: msgspec.Struct, *names: str) -> None:
    for name in names:
        force_setattr(obj, name, to_micros(getattr(obj, name)))


def _norm_id(obj: msgspec.Struct, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not isinstance(value, str):
            force_setattr(obj, name, str(value))


class Meta(msgspec.Struct, frozen=True, kw_only=True):
    after: str | None = None
    before: str | None = None
    limit: int | None = None
    total_count: int | None = None
    net_equity: float | None = None


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Delta's response wrapper; `result` is decoded later with the endpoint's own type."""

    success: bool = True
    # Raw cannot be unioned with None in msgspec; an absent or null result is Raw(b"") / b"null".
    result: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b""))
    meta: Meta | None = None

    @property
    def has_result(self) -> bool:
        return bytes(self.result) not in (b"", b"null")


class Asset(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    id: int | None = None
    precision: int | None = None


class SpotIndex(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    id: int | None = None


class Product(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    symbol: str
    contract_value: float
    tick_size: float
    description: str = ""
    contract_type: str = ""
    notional_type: str = "vanilla"
    state: str = "live"
    trading_status: str = "operational"
    contract_unit_currency: str | None = None
    default_leverage: float | None = None
    # Delta quotes these two in PERCENT of notional ("0.5" = 0.5% = 200x), unlike ProductSpec.
    initial_margin: float | None = None
    maintenance_margin: float | None = None
    maker_commission_rate: float | None = None
    taker_commission_rate: float | None = None
    position_size_limit: int | None = None
    impact_size: int | None = None
    underlying_asset: Asset | None = None
    quoting_asset: Asset | None = None
    settling_asset: Asset | None = None
    spot_index: SpotIndex | None = None
    settlement_time: RawTime = None
    launch_time: RawTime = None

    def __post_init__(self) -> None:
        _norm_times(self, "settlement_time", "launch_time")


def to_product_spec(product: Product) -> ProductSpec:
    """The trading view of a venue product. Margins convert from Delta's percent to fractions."""
    defaults = ProductSpec(symbol=product.symbol, product_id=product.id,
                           contract_value=product.contract_value, tick_size=product.tick_size)
    leverage = product.default_leverage or defaults.default_leverage
    initial = (product.initial_margin / 100.0 if product.initial_margin is not None
               else 1.0 / leverage)
    maintenance = (product.maintenance_margin / 100.0 if product.maintenance_margin is not None
                   else defaults.maintenance_margin)
    return ProductSpec(
        symbol=product.symbol,
        product_id=product.id,
        contract_value=product.contract_value,
        tick_size=product.tick_size,
        min_size=1,
        position_size_limit=product.position_size_limit or defaults.position_size_limit,
        maker_fee=(product.maker_commission_rate if product.maker_commission_rate is not None
                   else defaults.maker_fee),
        taker_fee=(product.taker_commission_rate if product.taker_commission_rate is not None
                   else defaults.taker_fee),
        default_leverage=leverage,
        initial_margin=initial,
        maintenance_margin=maintenance,
        settling_asset=product.settling_asset.symbol if product.settling_asset else "",
        underlying_asset=product.underlying_asset.symbol if product.underlying_asset else "",
        notional_type=product.notional_type,
        contract_type=product.contract_type,
    )


class Quotes(msgspec.Struct, frozen=True, kw_only=True):
    best_bid: float | None = None
    best_ask: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    impact_mid_price: float | None = None


class Ticker(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    product_id: int | None = None
    timestamp: RawTime = None  # µs after decode
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    mark_price: float | None = None
    spot_price: float | None = None
    volume: float | None = None
    turnover: float | None = None
    turnover_usd: float | None = None
    oi: float | None = None
    funding_rate: float | None = None
    contract_type: str | None = None
    quotes: Quotes | None = None

    def __post_init__(self) -> None:
        _norm_times(self, "timestamp")


class L2Level(msgspec.Struct, frozen=True, kw_only=True):
    price: float
    size: int
    depth: float | None = None


class L2Book(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    buy: list[L2Level] = msgspec.field(default_factory=list)
    sell: list[L2Level] = msgspec.field(default_factory=list)
    last_updated_at: RawTime = None

    def __post_init__(self) -> None:
        _norm_times(self, "last_updated_at")


class Candle(msgspec.Struct, frozen=True, kw_only=True):
    """One bar. REST sends `time` in seconds; it is normalised to µs like every timestamp here.

    OHLC may be null (a websocket minute with no trades): None means "no trades", 0 never does.
    """

    time: RawTime
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float = 0.0

    def __post_init__(self) -> None:
        _norm_times(self, "time")


class Order(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    product_id: int | None = None
    product_symbol: str | None = None
    size: int = 0
    unfilled_size: int = 0
    side: str = ""
    order_type: str = "limit_order"
    limit_price: float | None = None
    state: str = ""
    time_in_force: str | None = None
    post_only: bool = False
    reduce_only: bool = False
    close_on_trigger: bool = False
    client_order_id: str | None = None
    average_fill_price: float | None = None
    paid_commission: float | None = None
    commission: float | None = None
    cancellation_reason: str | None = None
    stop_order_type: str | None = None
    stop_price: float | None = None
    trail_amount: float | None = None
    stop_trigger_method: str | None = None
    bracket_stop_loss_price: float | None = None
    bracket_stop_loss_limit_price: float | None = None
    bracket_take_profit_price: float | None = None
    bracket_take_profit_limit_price: float | None = None
    bracket_trail_amount: float | None = None
    user_id: int | None = None
    created_at: RawTime = None
    updated_at: RawTime = None

    def __post_init__(self) -> None:
        _norm_times(self, "created_at", "updated_at")

    @property
    def filled_size(self) -> int:
        return self.size - self.unfilled_size

    @property
    def is_open(self) -> bool:
        return self.state in ("open", "pending")


class ProductRef(msgspec.Struct, frozen=True, kw_only=True):
    id: int | None = None
    symbol: str | None = None


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    id: RawId  # str after decode: live ids are hex strings, documented ones ints
    size: int
    side: str
    price: float
    order_id: RawId = None
    role: str | None = None
    fill_type: str | None = None
    commission: float | None = None
    product_id: int | None = None
    product_symbol: str | None = None
    product: ProductRef | None = None
    client_order_id: str | None = None
    settling_asset_symbol: str | None = None
    created_at: RawTime = None

    def __post_init__(self) -> None:
        _norm_times(self, "created_at")  # µs strings, numbers and ISO 8601 (recorded fills) alike
        _norm_id(self, "id", "order_id")
        if self.product is not None:
            if self.product_symbol is None and self.product.symbol is not None:
                force_setattr(self, "product_symbol", self.product.symbol)
            if self.product_id is None and self.product.id is not None:
                force_setattr(self, "product_id", self.product.id)


    @property
    def created_us(self) -> int | None:
        """When the fill happened, µs since the epoch, whichever form the venue sent."""
        value = self.created_at
        return value if isinstance(value, int) else to_micros(value)


class Position(msgspec.Struct, frozen=True, kw_only=True):
    size: int = 0  # signed contracts: + long, - short
    entry_price: float | None = None
    product_id: int | None = None
    product_symbol: str | None = None
    product: ProductRef | None = None
    margin: float | None = None
    liquidation_price: float | None = None
    bankruptcy_price: float | None = None
    adl_level: float | None = None
    commission: float | None = None
    realized_pnl: float | None = None
    realized_funding: float | None = None
    realized_holding_cost: float | None = None
    unrealized_pnl: float | None = None
    mark_price: float | None = None
    margin_mode: str | None = None
    user_id: int | None = None
    timestamp: RawTime = None
    created_at: RawTime = None
    updated_at: RawTime = None

    def __post_init__(self) -> None:
        _norm_times(self, "timestamp", "created_at", "updated_at")
        if self.product is not None:
            if self.product_symbol is None and self.product.symbol is not None:
                force_setattr(self, "product_symbol", self.product.symbol)
            if self.product_id is None and self.product.id is not None:
                force_setattr(self, "product_id", self.product.id)


class WalletBalance(msgspec.Struct, frozen=True, kw_only=True):
    asset_symbol: str
    asset_id: int | None = None
    balance: float = 0.0
    available_balance: float = 0.0
    blocked_margin: float = 0.0
    order_margin: float = 0.0
    position_margin: float = 0.0
    commission: float = 0.0
    cross_asset_liability: float = 0.0
    portfolio_margin: float = 0.0


class WalletTransaction(msgspec.Struct, frozen=True, kw_only=True):
    """One GET /v2/wallet/transactions entry: what moved a wallet's balance (cashflow,
    commission, funding, deposit, ...); `amount` is signed, `balance` is the balance after it."""

    transaction_type: str
    amount: float
    balance: float | None = None
    id: RawId = None  # str after decode
    uuid: str | None = None
    asset_id: int | None = None
    asset_symbol: str | None = None
    product_id: int | None = None
    created_at: RawTime = None  # µs after decode (live: ISO 8601)
    meta_data: dict[str, Any] | None = None  # a fill's entries name it: {"fill_id": ...}

    def __post_init__(self) -> None:
        _norm_times(self, "created_at")
        _norm_id(self, "id")

    @property
    def fill_id(self) -> str | None:
        """The fill this entry belongs to (commission, cashflow), if it says."""
        fid = (self.meta_data or {}).get("fill_id")
        return str(fid) if fid not in (None, "") else None


class Leverage(msgspec.Struct, frozen=True, kw_only=True):
    leverage: float
    product_id: int | None = None
    order_margin: float | None = None
    margin_mode: str | None = None


class RecentTrade(msgspec.Struct, frozen=True, kw_only=True):
    price: float
    size: int
    timestamp: RawTime = None
    side: str | None = None
    buyer_role: str | None = None
    seller_role: str | None = None
    symbol: str | None = None

    def __post_init__(self) -> None:
        _norm_times(self, "timestamp")


class HeartbeatCreated(msgspec.Struct, frozen=True, kw_only=True):
    """POST /v2/heartbeat/create's result."""
    heartbeat_id: str | None = None


class HeartbeatAck(msgspec.Struct, frozen=True, kw_only=True):
    """POST /v2/heartbeat's result. The docs show `heartbeat_timestamp` ("next expiry") as a
    string in no stated unit and `process_enabled` as the string "true"/"false": both kept
    loose (UNCONFIRMED); `expires_us` is a best effort, None when the value cannot be read."""
    heartbeat_timestamp: RawTime = None
    process_enabled: bool | None = None

    @property
    def expires_us(self) -> int | None:
        try:
            return to_micros(self.heartbeat_timestamp)
        except TimestampError:
            return None


T = TypeVar("T")
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


@overload
def decode(data: bytes | str | msgspec.Raw, kind: type[T]) -> T: ...
@overload
def decode(data: bytes | str | msgspec.Raw, kind: Any) -> Any: ...  # list[Model] and other type forms
def decode(data: bytes | str | msgspec.Raw, kind: type[T] | Any) -> Any:
    """Decode JSON into a model (or list of models) leniently; raises msgspec.ValidationError."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = msgspec.json.Decoder(kind, strict=False)
        _decoders[kind] = decoder
    return decoder.decode(data)


def decode_envelope(data: bytes | str) -> Envelope:
    return decode(data, Envelope)


def convert(obj: Any, kind: type[T] | Any) -> Any:
    """Same leniency for an already-parsed object (websocket frames)."""
    return msgspec.convert(obj, kind, strict=False)
