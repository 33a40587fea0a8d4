"""The paper venue's REST v2 handlers, on an aiohttp RouteTableDef. Each takes the venue state
from the app (`request.app[VENUE]`) and the parsed body from the guard (`request[BODY]`); who may
call it is its @public / @private mark in the route table (guard.py does auth and limits).

Serves (all under /v2; shapes as LIVE Delta sends them, see the api spec's last section):
  public   GET products, products/{symbol}, tickers, tickers/{symbol}, l2orderbook/{symbol},
           trades/{symbol} (flat array), history/candles (1m..1w, max 2000), settings, assets,
           indices
  private  POST|PUT|DELETE orders (stop orders too: stop_order_type + stop_price or trail_amount, `pending` until
           triggered), POST|PUT|DELETE orders/batch (<= 50, one product, limit orders only),
           DELETE orders/all (cancel_limit/stop/reduce_only_orders), GET orders (states,
           order_types, cursor paging), orders/history, orders/{id},
           orders/client_order_id/{id}, positions?product_id=, positions/margined,
           wallet/balances, wallet/transactions (the ledger, cursor paging), fills (cursor
           paging), POST positions/change_margin, GET|POST products/{id}/orders/leverage
The recorded Delta samples these shapes are held to: tests/fixtures/delta (contract suite).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

from aiohttp import web

from shared.delta.constants import CANDLE_RESOLUTION_S as RESOLUTIONS
from shared.delta.constants import MAX_BATCH
from shared.delta.constants import MAX_CANDLES_PER_CALL as MAX_CANDLES
from shared.funding import last_boundary
from shared.matching import MatchingEngine, VenueError, bad_schema, dec
from shared.matching import protocol as wire
from workers.venue.faults import FaultModel
from workers.venue.guard import BODY, EngineOpsLimit, ok, private, public
from workers.venue.market import Market, MarketReplay, bars_between


class VenueState(Protocol):
    """What the handlers read and change: the engine, the market, the order-path limits."""

    engine: MatchingEngine
    replay: MarketReplay
    faults: FaultModel
    engine_ops: EngineOpsLimit


VENUE = web.AppKey("venue", VenueState)


# ---- public endpoints

async def products(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    items = [wire.product_json(m.spec, v.engine.leverage(m.spec.product_id)) for m in v.replay.listed]
    return ok(items, {"after": None, "before": None, "limit": 1000, "total_count": len(items)})


async def product(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    m = v.replay.symbol_market(request.match_info["symbol"], 404)
    return ok(wire.product_json(m.spec, v.engine.leverage(m.spec.product_id)))


async def tickers(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok([v.replay.ticker(m) for m in v.replay.listed])


async def ticker_one(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok(v.replay.ticker(v.replay.symbol_market(request.match_info["symbol"], 404)))


async def l2(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    m = v.replay.symbol_market(request.match_info["symbol"], 404)
    depth = _query_int(request, "depth", 20, 1, 100)
    assert depth is not None
    bids, asks = v.replay.book(m, depth)
    out: dict[str, Any] = {"symbol": m.symbol, "last_updated_at": v.replay.market_us}
    for side, rows_in in (("buy", bids), ("sell", asks)):
        cum = 0
        rows = []
        for px, size in rows_in:
            cum += size
            rows.append({"price": wire.s(px), "size": size, "depth": str(cum)})
        out[side] = rows
    return ok(out)


async def trades(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    m = v.replay.symbol_market(request.match_info["symbol"], 404)
    rows = [{"buyer_role": b, "seller_role": "maker" if b == "taker" else "taker",
             "price": wire.s(dec(p)), "size": sz, "symbol": m.symbol, "timestamp": ts}
            for p, sz, ts, b in reversed(m.recent)]
    return ok(rows)  # live shape: a flat array, newest first


async def candles(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    q = request.query
    res = q.get("resolution", "")
    if res not in RESOLUTIONS:
        raise bad_schema(f"resolution must be one of {', '.join(RESOLUTIONS)}", "resolution")
    sym = q.get("symbol", "")
    if not sym:
        raise bad_schema("symbol is required", "symbol")
    start = _query_int(request, "start", None, 0, 10**11)
    end = _query_int(request, "end", None, 0, 10**11)
    assert start is not None and end is not None
    series, _, base = sym.rpartition(":")  # MARK:<sym>, FUNDING:<sym> as on Delta
    if series not in ("", "MARK", "FUNDING"):
        raise VenueError("invalid_contract", {"symbol": sym, "message": f"unknown series {series!r}"})
    m = v.replay.symbol_market(base)
    step = RESOLUTIONS[res]
    bars = bars_between(m, start - start % step, end)
    if step != 60:
        bars = wire.aggregate_bars(bars, step)
    bars = bars[-MAX_CANDLES:]
    if series == "FUNDING":
        # Each bar: the rate (fraction) the newest funding time at or before it charged, the
        # backtest's reading of a FUNDING:<symbol> series (`orchestrate backtest --funding`).
        f = v.replay.funding
        bars = [(t, r, r, r, r, 0.0) for t, *_ in bars
                for r in (float(f.rate(m.symbol, last_boundary(t * 1_000_000, f.interval_s))),)]
    # MARK: the paper mark price is the last trade (tickers' mark_price), so its bars are the trades'
    return ok([{"time": t, "open": o, "high": h, "low": low, "close": c, "volume": v}
                for t, o, h, low, c, v in bars])


async def settings(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok({"server_time": int(time.time() * 1_000_000), "paper": True,
                "market_time": v.replay.market_us})


async def assets(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok(wire.assets_json(m.spec for m in v.replay.listed))


async def indices(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok([wire.index_json(m.spec) for m in v.replay.listed])

# ---- private endpoints

async def place(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    m = v.replay.product_from_body(body)
    req = wire.order_request(body, m.spec.product_id)
    v.engine_ops.charge(m.spec.product_id)
    v.faults.maybe_reject()
    return ok(wire.order_json(v.engine.place_order(req)))


async def edit(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    oid = wire.int_field(body, "id")
    assert oid is not None
    return ok(wire.order_json(_edit_one(v, oid, body)))


def _edit_one(v: VenueState, oid: int, body: Mapping[str, Any], *, batch: bool = False) -> Any:
    existing = v.engine.order(oid)
    if existing is None or existing.state not in ("open", "pending"):
        raise VenueError("open_order_not_found", {"id": oid}, 404)
    if batch:  # Delta batches are limit orders only; the batch paid its engine operations up front
        if existing.state == "pending":
            raise bad_schema(f"order {oid} is a pending stop order: edit it with PUT /v2/orders", "id")
        for key in ("stop_price", "trail_amount"):
            if body.get(key) not in (None, ""):
                raise bad_schema(f"{key} is not allowed in a batch edit", key)
    else:
        v.engine_ops.charge(existing.product_id)
    post = wire.flag(body, "post_only", existing.post_only) if "post_only" in body else None
    return v.engine.edit_order(oid, size=wire.int_field(body, "size", required=False),
                                  limit_price=wire.price_field(body, "limit_price"), post_only=post,
                                  stop_price=wire.price_field(body, "stop_price"),
                                  trail_amount=wire.trail_field(body))


async def cancel(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    oid = wire.int_field(body, "id", required=False)
    coid = body.get("client_order_id")
    pid = wire.int_field(body, "product_id", required=False)
    order = v.engine.cancel_order(order_id=oid, client_order_id=coid if isinstance(coid, str) else None,
                                     product_id=pid)
    return ok(wire.order_json(order))


async def cancel_all(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    """With any of the three cancel_* flags in the body only the kinds flagged true are
    cancelled (an absent one counts as false); with none of them, every kind is (the api
    spec's reading; sources disagree on the server default, so clients send all three)."""
    pid = wire.int_field(body, "product_id", required=False)
    if pid is not None:
        v.replay.market_by_product_id(pid)
    keys = ("cancel_limit_orders", "cancel_stop_orders", "cancel_reduce_only_orders")
    given = any(k in body for k in keys)
    limit, stop, reduce_only = (wire.flag(body, k) if given else True for k in keys)
    v.engine.cancel_all(pid, limit_orders=limit, stop_orders=stop, reduce_only_orders=reduce_only)
    return ok({})  # recorded live answer (CCXT cancelAllOrders sample): {"result":{},"success":true}


def _batch_market(v: VenueState, body: Mapping[str, Any]) -> tuple[Market, list[Any]]:
    m = v.replay.product_from_body(body)
    orders = body.get("orders")
    if not isinstance(orders, list) or not orders:
        raise bad_schema("orders must be a non-empty list", "orders")
    if len(orders) > MAX_BATCH:
        raise bad_schema(f"at most {MAX_BATCH} orders per batch, got {len(orders)}", "orders")
    if not all(isinstance(o, dict) for o in orders):
        raise bad_schema("each order must be an object", "orders")
    return m, orders


def _batch_answer(items: Sequence[Any], one: Callable[[Any], Any]) -> web.Response:
    """Delta's batch semantics: on partial failure only the processed orders come back; if
    none were, the first error is the answer (so a lone post-only reject still says why)."""
    done, first_error = [], None
    for item in items:
        try:
            done.append(wire.order_json(one(item)))
        except VenueError as exc:
            first_error = first_error or exc
    if not done and first_error is not None:
        raise first_error
    return ok(done)


async def batch_create(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    m, items = _batch_market(v, body)
    pid = m.spec.product_id
    if any(o.get("order_type", "limit_order") != "limit_order" for o in items):
        raise bad_schema("batch orders are limit orders only", "order_type")
    reqs = [wire.order_request({**o, "time_in_force": "gtc"}, pid, stops_allowed=False) for o in items]
    v.engine_ops.charge(pid, len(reqs))  # Delta: a batch of N is N matching-engine operations

    def place(req: Any) -> Any:
        v.faults.maybe_reject()
        return v.engine.place_order(req)
    return _batch_answer(reqs, place)


async def batch_edit(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    m, items = _batch_market(v, body)
    # Charged whole before any edit: a 429 halfway through would leave edits done that the
    # caller is told were refused.
    v.engine_ops.charge(m.spec.product_id, len(items))

    def edit(item: Mapping[str, Any]) -> Any:
        oid = wire.int_field(item, "id")
        assert oid is not None
        existing = v.engine.order(oid)
        if existing is not None and existing.product_id != m.spec.product_id:
            raise bad_schema("all orders in a batch must be on the same product", "product_id")
        return _edit_one(v, oid, item, batch=True)
    return _batch_answer(items, edit)


async def batch_cancel(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    m, items = _batch_market(v, body)

    def cancel(item: Mapping[str, Any]) -> Any:
        coid = item.get("client_order_id")
        return v.engine.cancel_order(order_id=wire.int_field(item, "id", required=False),
                                        client_order_id=coid if isinstance(coid, str) else None,
                                        product_id=m.spec.product_id)
    return _batch_answer(items, cancel)


def _product_ids(request: web.Request, key: str = "product_ids") -> list[int] | None:
    raw = request.query.get(key)
    if not raw:
        return None
    try:
        ids = [int(x) for x in raw.split(",") if x]
    except ValueError:
        raise bad_schema(f"{key} must be comma-separated integers", key) from None
    if len(ids) > 10:
        raise bad_schema(f"at most 10 {key}", key)
    return ids


async def open_orders(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    states = _csv_choice(request, "states", ("open", "pending"))
    kinds = _order_kinds(request)
    live = [o for o in v.engine.open_orders(_product_ids(request))
            if o.state in states and wire.order_kind(o) in kinds]
    orders = sorted(_time_filter(request, live, "created_at"), key=lambda o: -o.id)
    items, meta = _page(request, [(o.id, o) for o in orders], default_size=100, max_size=1000)
    return ok([wire.order_json(o) for o in items], meta)


async def order_history(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    kinds = _order_kinds(request)
    done = [o for o in v.engine.order_history(_product_ids(request)) if wire.order_kind(o) in kinds]
    orders = sorted(_time_filter(request, done, "created_at"), key=lambda o: -o.id)
    items, meta = _page(request, [(o.id, o) for o in orders], default_size=50, max_size=50)
    return ok([wire.order_json(o) for o in items], meta)


async def order_by_id(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    try:
        oid = int(request.match_info["order_id"])
    except ValueError:
        raise bad_schema("order id must be an integer", "order_id") from None
    o = v.engine.order(oid)
    if o is None:
        raise VenueError("open_order_not_found", {"id": oid}, 404)
    return ok(wire.order_json(o))


async def order_by_coid(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    coid = request.match_info["coid"]
    o = v.engine.order_by_client_id(coid)
    if o is None:
        raise VenueError("open_order_not_found", {"client_order_id": coid}, 404)
    return ok(wire.order_json(o))


async def position(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    raw = request.query.get("product_id")
    if raw:
        try:
            pid = int(raw)
        except ValueError:
            raise bad_schema("product_id must be an integer", "product_id") from None
        pos = v.engine.position(v.replay.market_by_product_id(pid).spec.product_id)
        return ok({"size": pos.size, "entry_price": wire.s(pos.entry_price), "timestamp": v.replay.market_us})
    und = request.query.get("underlying_asset_symbol")
    if not und:
        raise bad_schema("product_id is required", "product_id")
    out = [{"product_id": m.spec.product_id, "product_symbol": m.symbol,
            "size": v.engine.position(m.spec.product_id).size,
            "entry_price": wire.s(v.engine.position(m.spec.product_id).entry_price)}
           for m in v.replay.listed if m.spec.underlying_asset == und]
    return ok(out)


async def margined(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    wanted = _product_ids(request)
    out = []
    for pos in v.engine.positions():
        if wanted is not None and pos.product_id not in wanted:
            continue
        pid = pos.product_id
        out.append(wire.position_json(pos, v.engine.product(pid), v.engine.position_margin(pid),
                                      v.engine.last_price(pid), v.engine.unrealized_pnl(pid)))
    return ok(out)


async def balances(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    w = v.engine.wallet()
    return ok([wire.wallet_json(w)], wire.wallet_meta(w))


async def fills(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    wanted = _product_ids(request)
    fills = [f for f in reversed(v.engine.fills) if wanted is None or f.product_id in wanted]
    fills = _time_filter(request, fills, "timestamp")
    items, meta = _page(request, [(f.seq, f) for f in fills], default_size=50, max_size=50)
    return ok([wire.fill_json(f, v.engine.product(f.product_id), v.engine.order(f.order_id))
                for f in items], meta)


async def wallet_transactions(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    """The USD wallet's ledger, derived from the fill and funding history (see
    wire.wallet_transactions)."""
    assets = _product_ids(request, "asset_ids")
    kinds = _csv_choice(request, "transaction_types", ("cashflow", "commission", "deposit", "funding"))
    start = _query_int(request, "start_time", 0, 0, 10**17)
    end = _query_int(request, "end_time", 10**17, 0, 10**17)
    e = v.engine
    complete = len(e.fills) + len(e.funding) == e.last_ledger_seq  # nothing trimmed from either
    entries = wire.wallet_transactions(reversed(e.fills), e.balance, e.initial_balance,
                                       v.replay.origin_ts * 1_000_000, complete=complete,
                                       start_us=start or 0, end_us=end, funding=reversed(e.funding))
    usd = assets is None or wire.USD_ASSET["id"] in assets  # the one asset with a ledger here
    keyed = ((k, (k, t)) for k, t in entries if usd and t.kind in kinds)
    items, meta = _page(request, keyed, default_size=50, max_size=50)
    return ok([wire.transaction_json(k, t) for k, t in items], meta)


async def change_margin(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    m = v.replay.product_from_body(body)
    raw = body.get("delta_margin")
    if raw is None or isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        raise bad_schema("delta_margin is required: a signed decimal string", "delta_margin")
    try:
        delta = Decimal(str(raw))
    except ArithmeticError:
        raise bad_schema("delta_margin must be a signed decimal string", "delta_margin") from None
    if not delta.is_finite():
        raise bad_schema("delta_margin must be a signed decimal string", "delta_margin")
    pid = m.spec.product_id
    pos = v.engine.change_margin(pid, delta)
    return ok(wire.position_json(pos, m.spec, v.engine.position_margin(pid), v.engine.last_price(pid),
                                  v.engine.unrealized_pnl(pid)))


def _leverage_json(v: VenueState, pid: int) -> dict[str, Any]:
    return {"leverage": wire.s(v.engine.leverage(pid)), "order_margin": wire.s(v.engine.order_margin(pid)),
            "product_id": pid, "margin_mode": "isolated", "user_id": wire.USER_ID, "index_symbol": None}


def _path_product(v: VenueState, request: web.Request) -> int:
    try:
        pid = int(request.match_info["product_id"])
    except ValueError:
        raise bad_schema("product_id must be an integer", "product_id") from None
    return v.replay.market_by_product_id(pid).spec.product_id


async def get_leverage(request: web.Request) -> web.Response:
    v = request.app[VENUE]
    return ok(_leverage_json(v, _path_product(v, request)))


async def set_leverage(request: web.Request) -> web.Response:
    v, body = request.app[VENUE], request[BODY]
    pid = _path_product(v, request)
    raw = body.get("leverage")
    if raw is None or isinstance(raw, bool):
        raise bad_schema("leverage is required", "leverage")
    try:
        lev = Decimal(str(raw))
    except ArithmeticError:
        raise bad_schema("leverage must be a number", "leverage") from None
    if not lev.is_finite():
        raise bad_schema("leverage must be a number", "leverage")
    v.engine.set_leverage(pid, lev)
    return ok(_leverage_json(v, pid))


# ---- query helpers

def _time_filter(request: web.Request, items: list[Any], attr: str) -> list[Any]:
    """start_time / end_time query filters, in µs like Delta's."""
    start = _query_int(request, "start_time", 0, 0, 10**17)
    end = _query_int(request, "end_time", 10**17, 0, 10**17)
    if start == 0 and end == 10**17:
        return items
    return [x for x in items if start <= getattr(x, attr) <= end]


def _csv_choice(request: web.Request, key: str, allowed: Sequence[str]) -> set[str]:
    """A comma-separated query filter over `allowed` (absent or empty: all of them)."""
    raw = request.query.get(key, "")
    picked = {x.strip() for x in raw.split(",") if x.strip()}
    bad = picked - set(allowed)
    if bad:
        raise bad_schema(f"{key} must be a comma-separated subset of {','.join(allowed)}; "
                         f"got {','.join(sorted(bad))[:60]}", key)
    return picked or set(allowed)


def _order_kinds(request: web.Request) -> set[str]:
    """GET /v2/orders `order_types`: market, limit, stop_market, stop_limit; all_stop = both stops."""
    kinds = _csv_choice(request, "order_types", ("market", "limit", "stop_market", "stop_limit", "all_stop"))
    if "all_stop" in kinds:
        kinds |= {"stop_market", "stop_limit"}
    return kinds


def _query_int(request: web.Request, key: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        if default is None:
            raise bad_schema(f"{key} is required", key)
        return default
    try:
        val = int(raw)
    except ValueError:
        raise bad_schema(f"{key} must be an integer", key) from None
    if not lo <= val <= hi:
        raise bad_schema(f"{key} must be within [{lo}, {hi}]", key)
    return val


def _page(request: web.Request, keyed: Iterable[tuple[int, Any]], *, default_size: int,
          max_size: int) -> tuple[list[Any], dict[str, Any]]:
    size = _query_int(request, "page_size", default_size, 1, 10**6)
    assert size is not None
    cursors = []
    for name in ("after", "before"):
        raw = request.query.get(name)
        try:
            cursors.append(int(raw) if raw else None)
        except ValueError:
            raise bad_schema(f"{name} must be a cursor from a previous page", name) from None
    # Delta: a page_size above the maximum returns the maximum
    return wire.page_newest_first(keyed, after=cursors[0], before=cursors[1], size=min(size, max_size))


rest_routes = web.RouteTableDef()  # in matching order: fixed paths before {id} ones
rest_routes.get("/v2/products")(public(products))
rest_routes.get("/v2/products/{symbol}")(public(product))
rest_routes.get("/v2/tickers")(public(tickers))
rest_routes.get("/v2/tickers/{symbol}")(public(ticker_one))
rest_routes.get("/v2/l2orderbook/{symbol}")(public(l2))
rest_routes.get("/v2/trades/{symbol}")(public(trades))
rest_routes.get("/v2/history/candles")(public(candles))
rest_routes.get("/v2/settings")(public(settings))
rest_routes.get("/v2/assets")(public(assets))
rest_routes.get("/v2/indices")(public(indices))
rest_routes.post("/v2/orders")(private(place))
rest_routes.put("/v2/orders")(private(edit))
rest_routes.delete("/v2/orders")(private(cancel))
rest_routes.get("/v2/orders")(private(open_orders))
rest_routes.post("/v2/orders/batch")(private(batch_create))
rest_routes.put("/v2/orders/batch")(private(batch_edit))
rest_routes.delete("/v2/orders/batch")(private(batch_cancel))
rest_routes.delete("/v2/orders/all")(private(cancel_all))
rest_routes.get("/v2/orders/history")(private(order_history))
rest_routes.get("/v2/orders/client_order_id/{coid}")(private(order_by_coid))
rest_routes.get("/v2/orders/{order_id}")(private(order_by_id))
rest_routes.get("/v2/positions")(private(position))
rest_routes.get("/v2/positions/margined")(private(margined))
rest_routes.get("/v2/wallet/balances")(private(balances))
rest_routes.get("/v2/wallet/transactions")(private(wallet_transactions))
rest_routes.post("/v2/positions/change_margin")(private(change_margin))
rest_routes.get("/v2/fills")(private(fills))
rest_routes.get("/v2/products/{product_id}/orders/leverage")(private(get_leverage))
rest_routes.post("/v2/products/{product_id}/orders/leverage")(private(set_leverage))
