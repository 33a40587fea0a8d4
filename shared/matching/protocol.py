"""Delta REST/websocket shapes for the engine's records, and request parsing (pure, no I/O).

Shapes follow what LIVE servers send (api spec, last section, and the recorded samples kept as
tests/fixtures/delta/*.json): prices and money as strings, sizes as integer contracts, order
timestamps as µs strings, fill/position/ledger `created_at` as ISO 8601 (as recorded fills,
positions and wallet transactions carry it), `close_on_trigger` as the string "false", fills with a
hex `id` and a nested `product` (with its assets), products without created_at/updated_at.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from shared.products import ProductSpec

from .engine import Fill, FundingPayment, Order, OrderRequest, Position, Wallet, money
from .errors import bad_schema

USER_ID = 1  # the one paper account
USD_ASSET = {"id": 3, "symbol": "USD", "precision": 8, "deposit_status": "enabled",
             "withdrawal_status": "enabled", "base_withdrawal_fee": "0", "min_withdrawal_amount": "0"}


def s(x: Decimal | None) -> str | None:
    """Decimal -> Delta's string form without exponent noise ('0', '49990.5')."""
    if x is None:
        return None
    text = format(x.normalize(), "f")
    return text


def _num(spec: float) -> str:
    return format(Decimal(repr(spec)).normalize(), "f")


def iso_time(us: int) -> str:
    """µs since the epoch as Delta's ISO 8601 form with microseconds ("2023-07-20T03:49:09.159401Z")."""
    t = dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).replace(microsecond=us % 1_000_000)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def underlying_asset(spec: ProductSpec) -> dict[str, Any]:
    """The product's underlying as an Asset; paper asset ids are derived from the product id."""
    return {**USD_ASSET, "id": 1000 + spec.product_id % 1000, "symbol": spec.underlying_asset or spec.symbol}


def index_json(spec: ProductSpec) -> dict[str, Any]:
    """The product's spot index (GET /v2/indices items, and the product's `spot_index`): the
    paper venue's index is its own replayed price, so it has no constituent exchanges."""
    und = underlying_asset(spec)
    return {"id": spec.product_id, "symbol": f".DE{spec.symbol}", "constituent_exchanges": [],
            "underlying_asset_id": und["id"], "quoting_asset_id": USD_ASSET["id"],
            "tick_size": _num(spec.tick_size), "index_type": "spot_pair"}


def assets_json(specs: Iterable[ProductSpec]) -> list[dict[str, Any]]:
    """GET /v2/assets: the settling asset and every listed underlying, in the recorded live shape
    (CCXT fetchCurrencies sample: id and precision as strings, money as strings)."""
    seen: dict[str, dict[str, Any]] = {}
    for a in [USD_ASSET] + [underlying_asset(sp) for sp in specs]:
        if a["symbol"] in seen:
            continue
        seen[a["symbol"]] = {
            "id": str(a["id"]), "symbol": a["symbol"], "name": a["symbol"], "precision": str(a["precision"]),
            "minimum_precision": "2" if a is USD_ASSET else "4", "deposit_status": "enabled",
            "withdrawal_status": "enabled", "base_withdrawal_fee": "0", "min_withdrawal_amount": "0",
            "variable_withdrawal_fee": "0", "kyc_deposit_limit": "0", "kyc_withdrawal_limit": "0",
            "interest_credit": False, "interest_slabs": None, "sort_priority": str(len(seen) + 1),
            "networks": []}
    return list(seen.values())


def product_json(spec: ProductSpec, leverage: Decimal) -> dict[str, Any]:
    und = underlying_asset(spec)
    return {
        "id": spec.product_id, "symbol": spec.symbol,
        "description": f"{spec.underlying_asset or spec.symbol} perpetual (paper)",
        "short_description": f"{spec.symbol} Perpetual", "launch_time": "2020-01-01T00:00:00Z",
        "settlement_time": None, "notional_type": spec.notional_type, "impact_size": 10_000,
        "initial_margin": _num(spec.initial_margin * 100), "maintenance_margin": _num(spec.maintenance_margin * 100),
        "contract_value": _num(spec.contract_value), "contract_unit_currency": spec.underlying_asset or spec.symbol,
        "tick_size": _num(spec.tick_size),
        "product_specs": {"funding_clamp_value": 0.05, "only_reduce_only_orders_allowed": False, "tags": []},
        "state": "live", "trading_status": "operational", "max_leverage_notional": "1000000",
        "default_leverage": s(leverage), "initial_margin_scaling_factor": "0",
        "maintenance_margin_scaling_factor": "0", "taker_commission_rate": _num(spec.taker_fee),
        "maker_commission_rate": _num(spec.maker_fee), "liquidation_penalty_factor": "0.5",
        "contract_type": spec.contract_type, "position_size_limit": spec.position_size_limit,
        "basis_factor_max_limit": "0.15", "is_quanto": False, "funding_method": "mark_price",
        "annualized_funding": "10.95", "price_band": "2.5",
        "ui_config": {"default_trading_view_candle": "1m", "tags": []},
        "underlying_asset": und, "quoting_asset": USD_ASSET, "settling_asset": USD_ASSET,
        "spot_index": index_json(spec),
    }


def order_json(o: Order) -> dict[str, Any]:
    return {
        "id": o.id, "user_id": USER_ID, "size": o.size, "unfilled_size": o.unfilled_size, "side": o.side,
        "order_type": o.order_type, "limit_price": s(o.limit_price), "stop_order_type": o.stop_order_type,
        "stop_price": s(o.stop_price), "paid_commission": s(o.paid_commission), "commission": "0",
        "reduce_only": o.reduce_only, "client_order_id": o.client_order_id, "state": o.state,
        "created_at": str(o.created_at), "updated_at": str(o.updated_at), "product_id": o.product_id,
        "product_symbol": o.symbol, "average_fill_price": s(o.average_fill_price),
        "time_in_force": o.time_in_force, "post_only": o.post_only, "cancellation_reason": o.cancellation_reason,
        "trail_amount": s(o.trail_amount), "stop_trigger_method": o.stop_trigger_method, "close_on_trigger": "false",
        "bracket_order": None, "bracket_stop_loss_price": None, "bracket_stop_loss_limit_price": None,
        "bracket_take_profit_price": None, "bracket_take_profit_limit_price": None,
        "bracket_trail_amount": None, "mmp": "disabled", "meta_data": {"source": "api"},
    }


def _product_ref(spec: ProductSpec) -> dict[str, Any]:
    """The product nested in fills and positions (recorded live fill sample: with its assets)."""
    brief = {k: v for k, v in USD_ASSET.items() if k in ("id", "symbol", "precision")}
    und = {k: v for k, v in underlying_asset(spec).items() if k in ("id", "symbol", "precision")}
    return {"id": spec.product_id, "symbol": spec.symbol, "contract_value": _num(spec.contract_value),
            "contract_unit_currency": und["symbol"], "tick_size": _num(spec.tick_size),
            "contract_type": spec.contract_type, "notional_type": spec.notional_type,
            "underlying_asset": und, "quoting_asset": brief, "settling_asset": brief}


def fill_json(f: Fill, spec: ProductSpec, order: Order | None = None) -> dict[str, Any]:
    """`order`: the fill's order if still known, for the recorded meta_data's order_* keys
    (order_unfilled_size is the order's now, not at this fill)."""
    meta: dict[str, Any] = {
        "effective_commission_rate": _num(spec.maker_fee if f.role == "maker" else spec.taker_fee),
        "trading_fee_credits_used": "0", "new_position": str(f.position_after), "realized_pnl": s(f.realized_pnl)}
    if order is not None:
        # a market order has no limit; what Delta records there for one is UNCONFIRMED (the
        # recorded sample has a price): the order's average fill price stands in
        meta.update({"order_price": s(order.limit_price or order.average_fill_price), "order_size": order.size,
                     "order_type": order.order_type,
                     "order_unfilled_size": order.unfilled_size})
    return {
        "id": f.id, "size": f.size, "fill_type": f.fill_type, "side": f.side, "price": s(f.price),
        "role": f.role, "commission": s(f.commission), "created_at": iso_time(f.timestamp),
        # No client_order_id: Delta's fill record names its order only by order_id (api spec §5,
        # the recorded sample), so every paper run takes the live path that maps one to the other.
        "product_id": f.product_id, "product_symbol": f.symbol, "order_id": str(f.order_id),
        "settling_asset_id": USD_ASSET["id"],
        "settling_asset_symbol": "USD", "product": _product_ref(spec), "meta_data": meta,
    }


def position_json(pos: Position, spec: ProductSpec, margin: Decimal, mark: Decimal | None,
                  unrealized: Decimal) -> dict[str, Any]:
    """A margined position. `realized_funding`: the funding it received (+) or paid (-);
    `realized_cashflow`: its closed PnL plus that funding (Delta's exact definition is
    UNCONFIRMED)."""
    return {
        "user_id": USER_ID, "size": pos.size, "entry_price": s(pos.entry_price), "margin": s(margin),
        "liquidation_price": None, "bankruptcy_price": None, "adl_level": None,
        "product_id": pos.product_id, "product_symbol": pos.symbol, "commission": s(pos.commission),
        "realized_pnl": s(pos.realized_pnl), "realized_cashflow": s(pos.realized_pnl + pos.funding),
        "realized_funding": s(pos.funding),
        "realized_holding_cost": "0", "unrealized_pnl": s(unrealized), "mark_price": s(mark), "auto_topup": False,
        "margin_mode": "isolated", "created_at": iso_time(pos.created_at or pos.updated_at),
        "updated_at": iso_time(pos.updated_at), "product": _product_ref(spec),
    }


class LedgerEntry(msgspec.Struct, frozen=True, array_like=True):
    """One wallet-ledger entry before it is put on the wire (transaction_json)."""
    kind: str  # Delta's transaction_type
    amount: Decimal
    balance: Decimal  # after the entry
    us: int
    fill: Fill | None
    funding: FundingPayment | None = None


def wallet_transactions(fills: Iterable[Fill], balance_now: Decimal, initial_balance: Decimal,
                        opened_us: int, *, complete: bool, start_us: int = 0,
                        end_us: int | None = None,
                        funding: Iterable[FundingPayment] = ()) -> Iterator[tuple[int, LedgerEntry]]:
    """GET /v2/wallet/transactions, newest first, keyed for cursor paging: what moved the USD
    balance. Each fill books its realised PnL (`cashflow`, when not zero) and its commission
    (`commission`, negative; a maker rebate would be positive); each funding payment is one
    `funding` entry (negative: paid); the account's starting balance is one `deposit`, listed
    only when `complete` (nothing trimmed from the history). `balance` is the balance after the
    entry, walked back from `balance_now`.

    `fills` and `funding` must be newest first; they share one sequence, so they merge by it.
    Lazy, and entries are bare records (transaction_json makes the wire form of a page only), so
    a page costs the walk to it, not the whole history. Keys: deposit 1, a fill's cashflow
    2 x seq, its commission 2 x seq + 1, a funding payment 2 x seq. `start_us`/`end_us` keep the
    entries created within them (µs, inclusive), as Delta's start_time/end_time do."""
    balance = balance_now
    merged: Iterable[Fill | FundingPayment] = heapq.merge(fills, funding, key=lambda x: -x.seq)
    for f in merged:
        if f.timestamp < start_us:
            return  # newest first: everything further is older still
        if isinstance(f, FundingPayment):
            if end_us is None or f.timestamp <= end_us:
                yield 2 * f.seq, LedgerEntry("funding", f.amount, balance, f.timestamp, None, f)
            balance -= f.amount
            continue
        if end_us is None or f.timestamp <= end_us:
            if f.commission:
                yield 2 * f.seq + 1, LedgerEntry("commission", -f.commission, balance, f.timestamp, f)
            if f.realized_pnl:
                yield 2 * f.seq, LedgerEntry("cashflow", f.realized_pnl, balance + f.commission, f.timestamp, f)
        balance += f.commission - f.realized_pnl
    if complete and start_us <= opened_us and (end_us is None or opened_us <= end_us):
        yield 1, LedgerEntry("deposit", initial_balance, initial_balance, opened_us, None)


def transaction_json(key: int, e: LedgerEntry) -> dict[str, Any]:
    """A ledger entry as Delta sends it: the IN docs' Transaction plus the recorded live keys
    (`uuid`, `user_id`, ISO `created_at`; CCXT fetchLedger sample)."""
    f, fp = e.fill, e.funding
    meta: dict[str, Any] = {"paper": True}
    product_id = None
    if f is not None:
        meta, product_id = {"fill_id": f.id, "order_id": str(f.order_id), "product_symbol": f.symbol}, f.product_id
    elif fp is not None:
        # Delta's meta_data for a funding entry is UNCONFIRMED: the paper venue names the product,
        # the rate and what it was charged on; clients read only product_id and amount.
        meta, product_id = {"product_symbol": fp.symbol, "funding_rate": s(fp.rate), "position_size": fp.position,
                            "mark_price": s(fp.mark)}, fp.product_id
    return {"id": key, "uuid": f"{key:032x}", "amount": s(e.amount), "balance": s(e.balance),
            "transaction_type": e.kind, "meta_data": meta, "product_id": product_id,
            "asset_id": USD_ASSET["id"], "asset_symbol": "USD", "created_at": iso_time(e.us), "user_id": USER_ID}


def wallet_json(w: Wallet) -> dict[str, Any]:
    return {
        "asset_id": USD_ASSET["id"], "asset_symbol": w.asset_symbol, "balance": s(w.balance),
        "available_balance": s(w.available_balance), "available_balance_for_robo": s(w.available_balance),
        "commission": s(w.commission), "cross_commission": "0", "cross_locked_collateral": "0",
        "cross_order_margin": "0", "cross_position_margin": "0", "id": 1, "interest_credit": "0",
        "order_margin": s(w.order_margin), "pending_referral_bonus": "0", "pending_trading_fee_credit": "0",
        "portfolio_margin": "0", "position_margin": s(w.position_margin), "trading_fee_credit": "0",
        "unvested_amount": "0", "user_id": USER_ID,
    }


def wallet_meta(w: Wallet) -> dict[str, Any]:
    equity = money(w.balance + w.unrealized_pnl)
    return {"net_equity": s(equity), "robo_trading_equity": "0"}


# ---- request parsing ------------------------------------------------------------------------

def flag(body: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """Delta order flags arrive as JSON booleans or as the strings "true"/"false"."""
    v = body.get(key, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if v is None:
        return default
    raise bad_schema(f"{key} must be true or false", key)


def _decimal_field(body: Mapping[str, Any], key: str) -> Decimal | None:
    """A decimal the wire may send as a string or a number; None when absent or empty."""
    v = body.get(key)
    if v is None or v == "":
        return None
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise bad_schema(f"{key} must be a decimal string", key)
    try:
        return Decimal(str(v))
    except InvalidOperation:
        raise bad_schema(f"{key} must be a decimal string, got {str(v)[:40]!r}", key) from None


def price_field(body: Mapping[str, Any], key: str) -> Decimal | None:
    d = _decimal_field(body, key)
    if d is None:
        return None
    if not d.is_finite() or d <= 0:
        raise bad_schema(f"{key} must be > 0", key)
    return d


def trail_field(body: Mapping[str, Any], key: str = "trail_amount") -> Decimal | None:
    """A signed price distance (a trailing stop's trail_amount: its sign is the side's, see
    shared/delta/constants.py); the engine checks the sign against the side."""
    d = _decimal_field(body, key)
    if d is None:
        return None
    if not d.is_finite() or d == 0:
        raise bad_schema(f"{key} must be a non-zero number", key)
    return d


def int_field(body: Mapping[str, Any], key: str, *, required: bool = True) -> int | None:
    v = body.get(key)
    if v is None:
        if required:
            raise bad_schema(f"{key} is required", key)
        return None
    if isinstance(v, bool):
        raise bad_schema(f"{key} must be an integer", key)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v)  # CCXT sends sizes as numeric strings
    raise bad_schema(f"{key} must be an integer, got {str(v)[:40]!r}", key)


STOP_ORDER_TYPES = ("stop_loss_order", "take_profit_order")
STOP_TRIGGER_METHODS = ("mark_price", "last_traded_price", "spot_price")


def order_kind(o: Order) -> str:
    """The order's class in GET /v2/orders `order_types`: market, limit, stop_market, stop_limit
    (a stop keeps its class after it triggers, as it keeps its stop fields)."""
    base = "market" if o.order_type == "market_order" else "limit"
    return base if o.stop_order_type is None else f"stop_{base}"


def order_request(body: Mapping[str, Any], product_id: int, *, stops_allowed: bool = True) -> OrderRequest:
    """A POST /v2/orders body (or batch item: `stops_allowed=False`, Delta batches are limit
    orders only) as an OrderRequest. Stop fields come as a pair: stop_order_type + stop_price, or
    stop_order_type + trail_amount for a trailing stop."""
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise bad_schema("side must be buy or sell", "side")
    order_type = body.get("order_type", "limit_order")
    if order_type not in ("limit_order", "market_order"):
        raise bad_schema("order_type must be limit_order or market_order", "order_type")
    tif: Any = body.get("time_in_force") or "gtc"  # a Literal once checked below (like `method`)
    if tif not in ("gtc", "ioc"):
        raise bad_schema("time_in_force must be gtc or ioc", "time_in_force")
    coid = body.get("client_order_id")
    if coid is not None and not isinstance(coid, str):
        raise bad_schema("client_order_id must be a string", "client_order_id")
    size = int_field(body, "size")
    assert size is not None
    stop_type = body.get("stop_order_type")
    stop_price = price_field(body, "stop_price")
    trail = trail_field(body)
    if not stops_allowed:
        for key in ("stop_order_type", "stop_price", "trail_amount"):
            if body.get(key) not in (None, ""):
                raise bad_schema(f"batch orders are limit orders only: {key} is not allowed", key)
    if stop_type is not None and stop_type not in STOP_ORDER_TYPES:
        raise bad_schema(f"stop_order_type must be one of {', '.join(STOP_ORDER_TYPES)}", "stop_order_type")
    if trail is not None and stop_type is None:
        raise bad_schema("a trailing stop needs stop_order_type = stop_loss_order", "stop_order_type")
    if trail is None and (stop_type is None) != (stop_price is None):
        missing = "stop_price" if stop_price is None else "stop_order_type"
        raise bad_schema(f"a stop order needs both stop_order_type and stop_price; {missing} is missing", missing)
    method: Any = body.get("stop_trigger_method")
    if method is None:
        method = "mark_price"  # Delta's default
    elif method not in STOP_TRIGGER_METHODS:
        raise bad_schema(f"stop_trigger_method must be one of {', '.join(STOP_TRIGGER_METHODS)}",
                         "stop_trigger_method")
    return OrderRequest(  # side/type/tif/stop type/method were checked against their literals above
        product_id=product_id, side=side, size=size, order_type=order_type,
        limit_price=price_field(body, "limit_price") if order_type == "limit_order" else None,
        time_in_force=tif, post_only=flag(body, "post_only"),
        reduce_only=flag(body, "reduce_only"), client_order_id=coid,
        stop_order_type=stop_type, stop_price=stop_price, stop_trigger_method=method, trail_amount=trail)


# ---- paging and candles ------------------------------------------------------------------------

def page_newest_first(keyed: Iterable[tuple[int, Any]], *, after: int | None, before: int | None,
                      size: int) -> tuple[list[Any], dict[str, Any]]:
    """Delta-style cursor paging over items sorted newest first by a unique integer key.

    `after` = the cursor of the last page: continue to older items. `before` = go back to newer
    items (the `size` just newer than the cursor). Cursors are the edge keys as strings, or None
    when nothing lies beyond that edge. Reads `keyed` lazily and stops as soon as the page is
    known, so a generator over a long history costs only what precedes the page.
    """
    page: list[tuple[int, Any]] = []
    if before is not None:
        window: deque[tuple[int, Any]] = deque(maxlen=size + 1)
        for kv in keyed:
            if kv[0] <= before:
                break
            window.append(kv)
        newer_left = len(window) > size
        page = list(window)[-size:]
        older_left = True
    else:
        for kv in keyed:
            if after is not None and kv[0] >= after:
                continue
            page.append(kv)
            if len(page) > size:
                break
        older_left = len(page) > size
        page = page[:size]
        newer_left = after is not None
    meta = {"after": str(page[-1][0]) if page and older_left else None,
            "before": str(page[0][0]) if page and newer_left else None,
            "limit": size}  # the recorded live meta names the page size `limit`
    return [v for _, v in page], meta


Bar = tuple[int, float, float, float, float, float]  # (time s, open, high, low, close, volume)


def aggregate_bars(bars: list[Bar], step_s: int) -> list[Bar]:
    """1m bars (oldest first) folded into `step_s` buckets aligned to the epoch."""
    out: list[Bar] = []
    for t, o, h, low, c, v in bars:
        bucket = t - t % step_s
        if out and out[-1][0] == bucket:
            bt, bo, bh, bl, _, bv = out[-1]
            out[-1] = (bt, bo, max(bh, h), min(bl, low), c, bv + v)
        else:
            out.append((bucket, o, h, low, c, v))
    return out
