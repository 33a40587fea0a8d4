"""Async REST v2 client for Delta Exchange (India/Global, prod/testnet) and our paper venue.

Rules it keeps (api spec §2, §5, §7):
- It signs exactly what it sends: the query string is built once and put on the URL verbatim
  (aiohttp is told not to re-encode it), the body is compact JSON serialised once.
- Every request carries a User-Agent (India's CDN answers 403 without one); `timestamp` is Unix
  seconds and is re-taken and re-signed on every attempt so a retry is never stale.
- Every signed request first takes weight from the account's rate limiter, every public one
  from the public (per-IP) limiter; a 429 blocks only the limiter of the request that earned it,
  until X-RATE-LIMIT-RESET. A 429 is a refusal, so repeating that request afterwards is safe.
- Reads retry timeouts, connection failures and 5xx with capped exponential backoff and full
  jitter, a bounded number of times.
- Mutations are never repeated blindly. An order creation that timed out is looked up by its
  client_order_id first and only re-sent if the exchange has no such order. Cancels are
  idempotent, so they are re-sent, and a "not found" after an uncertain first try is resolved by
  reading the order back.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from types import GenericAlias, TracebackType
from typing import Any, Literal, TypeVar, overload
from urllib.parse import quote, urlencode

import aiohttp
import msgspec
import yarl

from shared.delta import auth
from shared.delta.constants import (
    CANDLE_RESOLUTION_S,
    HEARTBEAT_CREATE_PATH,
    HEARTBEAT_PATH,
    MAX_BATCH,
    MAX_CANDLES_PER_CALL,
    TRAILING_STOP_ORDER_TYPE,
)
from shared.delta.errors import (
    AuthError,
    DeltaError,
    OrderNotFound,
    OutcomeUnknown,
    RateLimited,
    RequestTimeout,
    ResponseShapeError,
    ServerError,
    error_from_response,
)
from shared.delta.models import (
    Asset,
    Candle,
    Envelope,
    Fill,
    HeartbeatAck,
    HeartbeatCreated,
    L2Book,
    Leverage,
    Order,
    Position,
    Product,
    RecentTrade,
    Ticker,
    WalletBalance,
    WalletTransaction,
    decode,
    decode_envelope,
    to_micros,
    to_product_spec,
)
from shared.delta.ratelimit import (
    INTENT_CHARGE,
    PURPOSE,
    UNKNOWN_RESET_BLOCK_S,
    AccountRateLimiter,
    Priority,
    RequestBudget,
    batch_pays,
    endpoint_weight,
    spend_kind,
)
from shared.latency import LatencyHistogram
from shared.products import ProductSpec, UnknownSymbolError

_T = TypeVar("_T")  # the model a request decodes to

DEFAULT_USER_AGENT = "delta-grid-orchestrator/0.1 (+aiohttp)"
MAX_CLIENT_ORDER_ID = 32
MAX_IDS_PER_QUERY = 10  # product_ids lists longer than 10 are refused by Delta
MAX_PAGES = 1_000  # a cursor loop that never ends is a server bug; stop rather than spin
RESOLUTION_S = CANDLE_RESOLUTION_S
Side = Literal["buy", "sell"]
_ORDER_TYPES = ("limit_order", "market_order")
_TIME_IN_FORCE = ("gtc", "ioc")
_STOP_ORDER_TYPES = ("stop_loss_order", "take_profit_order")
_STOP_TRIGGER_METHODS = ("mark_price", "last_traded_price", "spot_price")


class NewOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One order of place_orders (batches are GTC limit orders on one product)."""

    size: int
    side: Side
    limit_price: float | str | Decimal
    client_order_id: str | None = None
    post_only: bool = False


class OrderEdit(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    limit_price: float | str | Decimal | None = None
    size: int | None = None  # total size after the edit, not a delta
    post_only: bool | None = None


def trail_text(amount: float | str | Decimal) -> str:
    """A trailing stop's signed trail_amount as a plain decimal string (non-zero)."""
    value = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(str(amount).strip())
    if not value.is_finite() or value == 0:
        raise ValueError(f"trail_amount must be a non-zero finite number, got {amount!r}")
    return format(value.normalize(), "f")


def price_text(price: float | str | Decimal) -> str:
    """A price as Delta wants it: a plain decimal string, never exponent notation."""
    if isinstance(price, bool):
        raise ValueError(f"price must be a number, got {price!r}")
    if isinstance(price, str):
        value = Decimal(price.strip())
    elif isinstance(price, float):
        value = Decimal(repr(price))  # shortest repr round-trips: 0.1 -> "0.1"
    else:
        value = Decimal(price)
    if not value.is_finite() or value <= 0:
        raise ValueError(f"price must be a positive finite number, got {price!r}")
    text = format(value.normalize(), "f")
    return text


def _flag(value: bool) -> str:
    # Delta's schema types order flags as the strings "true"/"false" (api spec §5).
    return "true" if value else "false"


def check_client_order_id(client_order_id: str | None) -> None:
    if client_order_id is None:
        return
    if not isinstance(client_order_id, str) or not client_order_id:
        raise ValueError("client_order_id must be a non-empty string")
    if len(client_order_id) > MAX_CLIENT_ORDER_ID:
        raise ValueError(f"client_order_id {client_order_id!r} is {len(client_order_id)} chars; "
                         f"Delta allows at most {MAX_CLIENT_ORDER_ID}")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive whole number of contracts, got {size!r}")


def _check_side(side: str) -> None:
    if side not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def batch_split(n: int, size: int = MAX_BATCH) -> tuple[list[range], list[int]]:
    """Which of n order actions of one kind go in which batch call (ranges of at most `size`)
    and which go singly: a group too small for a batch to pay (batch_pays)."""
    batches: list[range] = []
    singles: list[int] = []
    for lo in range(0, n, size):
        group = range(lo, min(lo + size, n))
        if batch_pays(len(group)):
            batches.append(group)
        else:
            singles.extend(group)
    return batches, singles


def _create_item(o: NewOrder) -> dict[str, Any]:
    """One order of a batch create, in Delta's item schema (no reduce_only, no stops: Delta's
    batches are GTC limit orders only)."""
    _check_size(o.size)
    _check_side(o.side)
    check_client_order_id(o.client_order_id)
    item: dict[str, Any] = {"limit_price": price_text(o.limit_price), "size": o.size, "side": o.side,
                            "order_type": "limit_order", "time_in_force": "gtc", "post_only": _flag(o.post_only)}
    if o.client_order_id is not None:
        item["client_order_id"] = o.client_order_id
    return item


def _edit_item(e: OrderEdit) -> dict[str, Any]:
    item: dict[str, Any] = {"id": int(e.id)}
    if e.limit_price is not None:
        item["limit_price"] = price_text(e.limit_price)
    if e.size is not None:
        _check_size(e.size)
        item["size"] = e.size
    if e.post_only is not None:
        item["post_only"] = _flag(e.post_only)
    return item


def _batch_answers(env: Envelope, key_of: Callable[[Order], str | int | None],
                   endpoint: str) -> dict[str | int, Order | DeltaError]:
    """A batch answer's orders by the key they were sent under. Delta's documented answer is
    the orders it processed; an item that is an error object instead (undocumented) is taken
    as that order's refusal when it names the order, and ignored otherwise (the order is then
    sent again on its own)."""
    if not env.has_result:
        raise ResponseShapeError("missing_result", message="response had no result", endpoint=endpoint)
    try:
        raw_items = decode(env.result, list[msgspec.Raw])
    except msgspec.ValidationError as exc:
        raise ResponseShapeError("unexpected_shape", message=str(exc), endpoint=endpoint) from exc
    out: dict[str | int, Order | DeltaError] = {}
    for raw in raw_items:
        try:
            order: Order = decode(raw, Order)
        except msgspec.ValidationError:
            try:
                item: dict[str, Any] = decode(raw, dict[str, Any])
            except msgspec.ValidationError:
                continue
            key = item.get("client_order_id") or item.get("id")
            if "error" in item and isinstance(key, (str, int)):
                out[key] = error_from_response(400, item, endpoint=endpoint)
            continue
        key = key_of(order)
        if key is not None:
            out[key] = order
    return out


def candle_windows(start_s: int, end_s: int, resolution: str,
                   per_call: int = MAX_CANDLES_PER_CALL) -> list[tuple[int, int]]:
    """Split [start, end] (Unix seconds) into request windows of at most `per_call` bars."""
    if resolution not in RESOLUTION_S:
        raise ValueError(f"unknown resolution {resolution!r}; valid: {', '.join(RESOLUTION_S)}")
    if end_s < start_s:
        raise ValueError(f"end {end_s} is before start {start_s}")
    span = RESOLUTION_S[resolution] * per_call
    windows = []
    lo = start_s
    while lo <= end_s:
        hi = min(lo + span - 1, end_s)
        windows.append((lo, hi))
        lo = hi + 1
    return windows


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt))."""
    return rng.uniform(0.0, min(cap_s, base_s * (2 ** attempt)))


def build_query(params: Mapping[str, Any] | None) -> str:
    """The query string exactly as sent and signed, with its leading '?', or ''."""
    if not params:
        return ""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            text = _flag(value)
        elif isinstance(value, (list, tuple)):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        pairs.append((key, text))
    return "?" + urlencode(pairs, safe=",") if pairs else ""


_ROUTE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name) for pattern, name in (
        (r"^/v2/orders/client_order_id/[^/]+$", "/v2/orders/client_order_id/{coid}"),
        (r"^/v2/orders/\d+$", "/v2/orders/{id}"),
        (r"^/v2/products/\d+/orders/leverage$", "/v2/products/{id}/orders/leverage"),
        (r"^/v2/(products|tickers|l2orderbook|trades)/[^/]+$", "/v2/\\1/{symbol}"),
    ))


def route_of(method: str, path: str) -> str:
    """Endpoint name with ids and symbols folded, so per-route metrics stay bounded."""
    for pattern, name in _ROUTE_PATTERNS:
        match = pattern.match(path)
        if match:
            return f"{method} {match.expand(name)}"
    return f"{method} {path}"


def server_timing_s(header: str | None) -> float | None:
    """The server's own time from a W3C Server-Timing header ("app;dur=0.42", milliseconds; the
    sum of its metrics), in seconds; None when absent or unreadable, or not a duration (NaN,
    infinite, negative: whatever answers may add the header, and a figure must never fail the
    answer it came with)."""
    if not header:
        return None
    total, seen = 0.0, False
    for metric in header.split(","):
        for param in metric.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            if name == "dur":
                try:
                    total += float(value)
                except ValueError:
                    return None
                seen = True
    return total / 1000.0 if seen and 0.0 <= total < math.inf else None


class _Response(msgspec.Struct, frozen=True):
    envelope: Envelope
    status: int


def _product_scoped(err: RateLimited) -> bool:
    """A 429 from one product's matching-engine limit (Delta: operations per second per
    product), not the account's: it must not stop orders on every other product."""
    return err.context.get("scope") == "matching_engine"


class DeltaRestClient:
    """One account's REST session. Use as `async with DeltaRestClient(url, key, secret) as c:`."""

    def __init__(self, base_url: str, api_key: str | None = None, api_secret: str | None = None,
                 *, session: aiohttp.ClientSession | None = None,
                 limiter: AccountRateLimiter | None = None,
                 public_limiter: AccountRateLimiter | None = None,
                 user_agent: str = DEFAULT_USER_AGENT, timeout_s: float = 10.0,
                 max_read_attempts: int = 4, max_create_attempts: int = 2,
                 backoff_base_s: float = 0.25, backoff_cap_s: float = 8.0,
                 clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None, venue_name: str | None = None) -> None:
        if not user_agent:
            raise ValueError("user_agent must not be empty: Delta's CDN refuses requests without")
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._api_secret = api_secret
        self._session = session
        self._owns_session = session is None
        self.limiter = limiter or AccountRateLimiter()  # the account's budget: signed requests
        # Unsigned requests: Delta limits them per IP, apart from the account. Its size is not
        # published; ours is the account's, with no reserve (public calls are never risk actions).
        self.public_limiter = public_limiter or AccountRateLimiter(RequestBudget(reserve=0))
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)  # made once, not per request
        self.max_read_attempts = max(1, max_read_attempts)
        self.max_create_attempts = max(1, max_create_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.venue_name = venue_name or yarl.URL(self.base_url).host or self.base_url
        self.retries = 0  # reads re-sent after a transient failure, for metrics
        # Round trip of every HTTP exchange by route (ids folded: a bounded set of keys), and
        # how many answers of each status class each route got ("2xx", "4xx", "timeout"...).
        self.latency: dict[str, LatencyHistogram] = {}
        # Where a request's time goes besides the HTTP exchange, by route: the wait for the
        # account's (or the IP's) rate budget before it is sent, and the venue's own handling
        # time when the venue says it (the paper venue's Server-Timing header; Delta does not).
        self.budget_wait: dict[str, LatencyHistogram] = {}
        self.venue_time: dict[str, LatencyHistogram] = {}
        self.outcomes: dict[tuple[str, str], int] = {}
        # The account's units this client was charged, by what they bought (ratelimit.spend_kind):
        # a bounded set of keys (SPEND_KINDS plus the purposes callers name).
        self.units_spent: dict[str, int] = {}
        # Seconds to add to our clock to get Delta's, learnt from an expired-signature reply.
        # Delta refuses signatures older than 5 s, so a drifting host clock would stop trading.
        self.clock_offset_s = 0.0

    def __repr__(self) -> str:
        keyed = "with key" if self._api_key else "public"
        return f"DeltaRestClient({self.base_url!r}, {keyed})"

    async def __aenter__(self) -> DeltaRestClient:
        self._ensure_session()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # ---------------------------------------------------------------- transport

    async def _send_once(self, method: str, path: str, query: str, body: str, signed: bool,
                         weight: int, priority: Priority) -> _Response:
        limiter = self.limiter if signed else self.public_limiter
        asked = time.perf_counter()
        await limiter.acquire(weight, priority)
        route = route_of(method, path)
        waited = time.perf_counter() - asked
        self._measure_into(self.budget_wait, route, waited)
        if signed:  # the account's budget (public calls are the IP's)
            kind = spend_kind(method, path, PURPOSE.get())
            self.units_spent[kind] = self.units_spent.get(kind, 0) + weight
        if (charge := INTENT_CHARGE.get()) is not None:
            charge.waited_s += waited
        headers = {"User-Agent": self.user_agent, "Accept": "application/json",
                   "Content-Type": "application/json"}
        if signed:
            if self._api_key is None or self._api_secret is None:
                raise AuthError("no_api_key", message=f"{method} {path} needs an API key")
            timestamp = str(int(self._clock() + self.clock_offset_s))
            headers["api-key"] = self._api_key
            headers["timestamp"] = timestamp
            headers["signature"] = auth.sign(self._api_secret, method, timestamp, path, query,
                                             body)
        url = yarl.URL(self.base_url + path + query, encoded=True)
        endpoint = f"{method} {path}"
        session = self._ensure_session()
        outcome = "error"
        started = time.perf_counter()
        try:
            async with session.request(
                    method, url, data=body.encode("utf-8") if body else None, headers=headers,
                    timeout=self._timeout) as resp:
                raw = await resp.read()
                status = resp.status
                resp_headers: Mapping[str, str] = resp.headers  # read-only and kept by the response: no copy
            outcome = f"{status // 100}xx"
            served_s = server_timing_s(resp_headers.get("Server-Timing"))
            if served_s is not None:
                self._measure_into(self.venue_time, route, served_s)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            outcome = "timeout"
            raise RequestTimeout("timeout", message=f"no answer in {self.timeout_s} s",
                                 endpoint=endpoint) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ServerError("connect_failed", message=type(exc).__name__,
                              endpoint=endpoint) from exc
        except aiohttp.ClientError as exc:
            # Dropped mid-request: like a timeout, the server may have acted on it.
            raise RequestTimeout("connection_lost", message=type(exc).__name__,
                                 endpoint=endpoint) from exc
        finally:
            self._measure(route, outcome, time.perf_counter() - started)
        if status >= 300:
            raise await self._failure(status, raw, resp_headers, endpoint, limiter)
        try:
            envelope = decode_envelope(raw) if raw.strip() else Envelope()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ResponseShapeError("invalid_response", status=status, message=str(exc),
                                     endpoint=endpoint) from exc
        if not envelope.success:
            raise await self._failure(status, raw, resp_headers, endpoint, limiter)
        return _Response(envelope=envelope, status=status)

    @staticmethod
    def _measure_into(by_route: dict[str, LatencyHistogram], route: str, seconds: float) -> None:
        hist = by_route.get(route)
        if hist is None:
            hist = by_route[route] = LatencyHistogram()
        hist.record(seconds * 1e6)

    def _measure(self, route: str, outcome: str, seconds: float) -> None:
        self._measure_into(self.latency, route, seconds)
        key = (route, outcome)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    async def _failure(self, status: int, raw: bytes, headers: Mapping[str, str],
                       endpoint: str, limiter: AccountRateLimiter) -> DeltaError:
        err = error_from_response(status, raw, headers=headers, endpoint=endpoint)
        if isinstance(err, RateLimited) and not _product_scoped(err):  # whatever the status, that bucket waits
            await limiter.on_rate_limited(err.reset_ms)
        return err

    async def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                       body: Mapping[str, Any] | None = None, signed: bool = False,
                       priority: Priority = Priority.READ, retry: bool = False) -> Envelope:
        query = build_query(params)
        body_text = msgspec.json.encode(body).decode("utf-8") if body is not None else ""
        weight = endpoint_weight(method, path)
        attempts = self.max_read_attempts if retry else 1
        attempt = 0
        while True:
            try:
                return (await self._send_once(method, path, query, body_text, signed, weight,
                                              priority)).envelope
            except AuthError as exc:
                # A stale timestamp is refused before execution, so re-sending is safe, once.
                if attempt > 0 or not self._learn_clock_offset(exc):
                    raise
                attempt += 1
            except RateLimited as exc:
                # Refused before execution: the limiter now blocks until the reset, so waiting
                # for our turn again is the backoff. Still bounded.
                attempt += 1
                if attempt >= max(attempts, 2):
                    raise
                if _product_scoped(exc):  # one product's matching engine: only this request waits
                    await self._sleep(UNKNOWN_RESET_BLOCK_S if exc.reset_ms is None else exc.reset_ms / 1000.0)
            except (RequestTimeout, ServerError):
                attempt += 1
                if not retry or attempt >= attempts:
                    raise
                self.retries += 1
                await self._sleep(backoff_delay(attempt - 1, self.backoff_base_s,
                                                self.backoff_cap_s, self._rng))

    def _learn_clock_offset(self, exc: AuthError) -> bool:
        """Adopt Delta's clock from an expired-signature error; False if it tells us nothing."""
        if exc.code.lower() not in ("expired_signature", "signatureexpired", "request_expired"):
            return False
        try:
            server_us = to_micros(exc.context.get("server_time"))
        except ValueError:
            return False
        if server_us is None:
            return False
        offset = server_us / 1e6 - self._clock()
        if abs(offset) > 3600:  # an hour out is a broken box or a lying server, not drift
            return False
        self.clock_offset_s = offset
        return True

    @overload
    async def _get(self, path: str, kind: type[_T], *, params: Mapping[str, Any] | None = None,
                   signed: bool = False) -> tuple[_T, Envelope]: ...

    @overload  # a union of shapes (get_recent_trades) or a list built at run time (_get_paged)
    async def _get(self, path: str, kind: Any, *, params: Mapping[str, Any] | None = None,
                   signed: bool = False) -> tuple[Any, Envelope]: ...

    async def _get(self, path: str, kind: Any, *, params: Mapping[str, Any] | None = None,
                   signed: bool = False) -> tuple[Any, Envelope]:
        env = await self._request("GET", path, params=params, signed=signed, retry=True)
        return self._result(env, kind, f"GET {path}"), env

    @staticmethod
    @overload
    def _result(env: Envelope, kind: type[_T], endpoint: str) -> _T: ...

    @staticmethod
    @overload
    def _result(env: Envelope, kind: Any, endpoint: str) -> Any: ...

    @staticmethod
    def _result(env: Envelope, kind: Any, endpoint: str) -> Any:
        if not env.has_result:
            raise ResponseShapeError("missing_result", message="response had no result",
                                     endpoint=endpoint)
        try:
            return decode(env.result, kind)
        except msgspec.ValidationError as exc:
            raise ResponseShapeError("unexpected_shape", message=str(exc),
                                     endpoint=endpoint) from exc

    async def _get_paged(self, path: str, kind: type[_T], params: Mapping[str, Any], *,
                         signed: bool) -> list[_T]:
        items: list[_T] = []
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page_params = dict(params)
            if cursor is not None:
                page_params["after"] = cursor
            # list[kind] built at run time (GenericAlias is what list[kind] evaluates to)
            page, env = await self._get(path, GenericAlias(list, (kind,)), params=page_params, signed=signed)
            items.extend(page)
            cursor = env.meta.after if env.meta else None
            if not cursor or not page:
                return items
            if cursor in seen:
                raise ResponseShapeError("cursor_loop", message=f"cursor {cursor!r} repeated",
                                         endpoint=f"GET {path}")
            seen.add(cursor)
        raise ResponseShapeError("too_many_pages", message=f"more than {MAX_PAGES} pages",
                                 endpoint=f"GET {path}")

    # ---------------------------------------------------------------- public data

    async def get_products(self, *, contract_types: Sequence[str] | None = None,
                           states: Sequence[str] | None = None) -> list[Product]:
        params = {"contract_types": contract_types, "states": states, "page_size": 500}
        return await self._get_paged("/v2/products", Product, params, signed=False)

    async def get_product(self, symbol: str) -> Product:
        result, _ = await self._get(f"/v2/products/{quote(symbol, safe='')}", Product)
        return result

    async def resolve_symbols(self, symbols: Iterable[str]) -> dict[str, ProductSpec]:
        """ProductSpecs for `symbols` from this venue's own product list.

        Raises UnknownSymbolError (with close matches) for a symbol the venue does not list live,
        before anything trades on a guess.
        """
        wanted = list(symbols)
        products = await self.get_products()
        live = {p.symbol: p for p in products if p.state == "live"}
        out: dict[str, ProductSpec] = {}
        for symbol in wanted:
            product = live.get(symbol)
            if product is None:
                raise UnknownSymbolError(symbol, sorted(live), self.venue_name)
            out[symbol] = to_product_spec(product)
        return out

    async def get_tickers(self, *, contract_types: Sequence[str] | None = None) -> list[Ticker]:
        result, _ = await self._get("/v2/tickers", list[Ticker],
                                    params={"contract_types": contract_types})
        return result

    async def get_ticker(self, symbol: str) -> Ticker:
        result, _ = await self._get(f"/v2/tickers/{quote(symbol, safe='')}", Ticker)
        return result

    async def get_l2_orderbook(self, symbol: str, depth: int = 20) -> L2Book:
        result, _ = await self._get(f"/v2/l2orderbook/{quote(symbol, safe='')}", L2Book,
                                    params={"depth": depth})
        return result

    async def get_candles(self, symbol: str, resolution: str, start: int, end: int) -> list[Candle]:
        """Bars with start time in [start, end] (Unix seconds), oldest first, paged 2000 a call.

        Candle.time comes back in µs like every timestamp in these models.
        """
        by_time: dict[int, Candle] = {}
        for lo, hi in candle_windows(int(start), int(end), resolution):
            page, _ = await self._get("/v2/history/candles", list[Candle], params={
                "resolution": resolution, "symbol": symbol, "start": lo, "end": hi})
            for candle in page:
                if isinstance(candle.time, int):  # a bar without a time cannot be placed
                    by_time[candle.time] = candle
        return [by_time[t] for t in sorted(by_time)]

    async def get_recent_trades(self, symbol: str) -> list[RecentTrade]:
        """Public trades, oldest first. Live servers send a flat list; the docs show
        {"trades": [...]}; both are read."""
        path = f"/v2/trades/{quote(symbol, safe='')}"
        result, _ = await self._get(path, list[RecentTrade] | dict[str, list[RecentTrade]])
        trades: list[RecentTrade] = result["trades"] if isinstance(result, dict) else result
        return sorted(trades, key=lambda t: t.timestamp or 0)

    # ---------------------------------------------------------------- orders

    async def place_order(self, *, product_id: int, size: int, side: Side,
                          limit_price: float | str | Decimal | None = None,
                          order_type: str = "limit_order", time_in_force: str = "gtc",
                          post_only: bool = False, reduce_only: bool = False,
                          client_order_id: str | None = None,
                          stop_order_type: str | None = None,
                          stop_price: float | str | Decimal | None = None,
                          stop_trigger_method: str | None = None,
                          trail_amount: float | str | Decimal | None = None,
                          bracket_stop_loss_price: float | str | Decimal | None = None,
                          bracket_stop_loss_limit_price: float | str | Decimal | None = None,
                          bracket_take_profit_price: float | str | Decimal | None = None,
                          bracket_take_profit_limit_price: float | str | Decimal | None = None,
                          bracket_stop_trigger_method: str | None = None,
                          priority: Priority | None = None) -> Order:
        """Place one order. After a timeout it is looked up by client_order_id before any
        re-send; without a client_order_id an uncertain outcome raises OutcomeUnknown.

        With `stop_order_type` and `stop_price` it is a stop (stop-market for a market order,
        stop-limit for a limit order): the exchange holds it `pending` until the trigger. With
        `trail_amount` instead of `stop_price` it is a trailing stop-loss; the amount is signed as
        Delta wants it (negative for a sell: constants.signed_trail_amount)."""
        _check_size(size)
        _check_side(side)
        check_client_order_id(client_order_id)
        if order_type not in _ORDER_TYPES:
            raise ValueError(f"order_type must be one of {_ORDER_TYPES}, got {order_type!r}")
        if time_in_force not in _TIME_IN_FORCE:
            raise ValueError(
                f"time_in_force must be one of {_TIME_IN_FORCE}, got {time_in_force!r}")
        body: dict[str, Any] = {"product_id": int(product_id), "size": size, "side": side,
                                "order_type": order_type, "time_in_force": time_in_force}
        if order_type == "limit_order":
            if limit_price is None:
                raise ValueError("a limit order needs limit_price")
            body["limit_price"] = price_text(limit_price)
        elif limit_price is not None:
            raise ValueError("a market order takes no limit_price (Delta ignores it: no cap)")
        if post_only and (order_type != "limit_order" or time_in_force != "gtc"):
            raise ValueError("post_only needs a gtc limit order")
        body["post_only"] = _flag(post_only)
        body["reduce_only"] = _flag(reduce_only)
        if client_order_id is not None:
            body["client_order_id"] = client_order_id
        for name, value in (("bracket_stop_loss_price", bracket_stop_loss_price),
                            ("bracket_stop_loss_limit_price", bracket_stop_loss_limit_price),
                            ("bracket_take_profit_price", bracket_take_profit_price),
                            ("bracket_take_profit_limit_price", bracket_take_profit_limit_price)):
            if value is not None:
                body[name] = price_text(value)
        if bracket_stop_trigger_method is not None:
            body["bracket_stop_trigger_method"] = bracket_stop_trigger_method
        if trail_amount is not None:
            if stop_order_type != TRAILING_STOP_ORDER_TYPE or stop_price is not None:
                raise ValueError("a trailing stop is a stop_loss_order with trail_amount and no stop_price")
            body["stop_order_type"] = stop_order_type
            body["trail_amount"] = trail_text(trail_amount)
        elif (stop_order_type is None) != (stop_price is None):
            raise ValueError("a stop order needs both stop_order_type and stop_price")
        if stop_order_type is not None:
            if stop_order_type not in _STOP_ORDER_TYPES:
                raise ValueError(f"stop_order_type must be one of {_STOP_ORDER_TYPES}, got {stop_order_type!r}")
            body["stop_order_type"] = stop_order_type
            if stop_price is not None:
                body["stop_price"] = price_text(stop_price)
            if stop_trigger_method is not None:
                if stop_trigger_method not in _STOP_TRIGGER_METHODS:
                    raise ValueError(f"stop_trigger_method must be one of {_STOP_TRIGGER_METHODS}, "
                                     f"got {stop_trigger_method!r}")
                body["stop_trigger_method"] = stop_trigger_method
        elif stop_trigger_method is not None:
            raise ValueError("stop_trigger_method needs a stop order")
        prio = priority if priority is not None else (
            Priority.RISK if reduce_only else Priority.NEW_ORDER)

        last: DeltaError | None = None
        for attempt in range(self.max_create_attempts):
            try:
                env = await self._request("POST", "/v2/orders", body=body, signed=True,
                                          priority=prio)
                return self._result(env, Order, "POST /v2/orders")
            except (RequestTimeout, ServerError) as exc:
                last = exc
                if client_order_id is None:
                    raise OutcomeUnknown(exc.code, status=exc.status, endpoint=exc.endpoint,
                                         message="order creation not confirmed and it has no "
                                                 "client_order_id to look it up by") from exc
                found = await self._find_by_client_id(client_order_id)
                if found is not None:
                    return found
                if attempt + 1 < self.max_create_attempts:
                    await self._sleep(backoff_delay(attempt, self.backoff_base_s,
                                                    self.backoff_cap_s, self._rng))
        assert last is not None
        raise OutcomeUnknown(last.code, status=last.status, endpoint=last.endpoint,
                             message=f"order {client_order_id!r} not confirmed after "
                                     f"{self.max_create_attempts} tries; reconcile before reuse")

    async def _find_by_client_id(self, client_order_id: str) -> Order | None:
        """The order with this client id, None if the exchange has none. A failure of the
        lookup itself leaves the outcome unknown."""
        try:
            return await self.get_order_by_client_id(client_order_id)
        except OrderNotFound:
            return None
        except (RequestTimeout, ServerError) as exc:
            raise OutcomeUnknown(exc.code, status=exc.status, endpoint=exc.endpoint,
                                 message=f"could not confirm order {client_order_id!r}") from exc

    async def edit_order(self, *, product_id: int, order_id: int,
                         limit_price: float | str | Decimal | None = None,
                         size: int | None = None, post_only: bool | None = None,
                         stop_price: float | str | Decimal | None = None,
                         priority: Priority = Priority.NEW_ORDER) -> Order:
        """Change price, stop price and/or total size. Not retried: an uncertain edit raises
        for reconcile. A protective stop's edit goes as Priority.RISK (ahead of quotes, into the
        reserve)."""
        body: dict[str, Any] = {"id": int(order_id), "product_id": int(product_id)}
        if limit_price is not None:
            body["limit_price"] = price_text(limit_price)
        if stop_price is not None:
            body["stop_price"] = price_text(stop_price)
        if size is not None:
            _check_size(size)
            body["size"] = size
        if post_only is not None:
            body["post_only"] = _flag(post_only)
        env = await self._request("PUT", "/v2/orders", body=body, signed=True, priority=priority)
        return self._result(env, Order, "PUT /v2/orders")

    async def cancel_order(self, *, product_id: int, order_id: int | None = None,
                           client_order_id: str | None = None) -> Order:
        if (order_id is None) == (client_order_id is None):
            raise ValueError("give exactly one of order_id or client_order_id")
        check_client_order_id(client_order_id)
        body: dict[str, Any] = {"product_id": int(product_id)}
        if order_id is not None:
            body["id"] = int(order_id)
        else:
            body["client_order_id"] = client_order_id
        uncertain = False
        for attempt in range(self.max_read_attempts):
            try:
                env = await self._request("DELETE", "/v2/orders", body=body, signed=True,
                                          priority=Priority.RISK)
                return self._result(env, Order, "DELETE /v2/orders")
            except OrderNotFound:
                if not uncertain:
                    raise
                # An earlier try may have cancelled it: read it back to tell.
                order = (await self.get_order(order_id) if order_id is not None
                         else await self._find_by_client_id(client_order_id or ""))
                if order is None or order.is_open:
                    raise
                return order
            except (RequestTimeout, ServerError):
                uncertain = True
                if attempt + 1 >= self.max_read_attempts:
                    raise
                self.retries += 1
                await self._sleep(backoff_delay(attempt, self.backoff_base_s,
                                                self.backoff_cap_s, self._rng))
        raise AssertionError("unreachable")

    async def cancel_all(self, product_id: int | None = None) -> None:
        # All three flags set: sources disagree on whether they default to true (api spec §5).
        body: dict[str, Any] = {"cancel_limit_orders": "true", "cancel_stop_orders": "true",
                                "cancel_reduce_only_orders": "true"}
        if product_id is not None:
            body["product_id"] = int(product_id)
        await self._request("DELETE", "/v2/orders/all", body=body, signed=True,
                            priority=Priority.RISK, retry=True)  # idempotent

    # ---------------------------------------------------------------- many orders at once
    #
    # place_orders / edit_orders / cancel_orders take the orders of one product and answer one
    # result per order, in order: its Order, or the DeltaError Delta gave for it. Batch calls go
    # where they pay (batch_split); the rest go singly, all at once. Delta's batch answer is the
    # orders it processed, with no per-order errors (api spec §5), so an order a batch leaves
    # out is sent once more on its own: that places, edits or cancels it, or returns the code
    # Delta gives for it, exactly as a single order would.

    async def place_orders(self, product_id: int, orders: Sequence[NewOrder]) -> list[Order | DeltaError]:
        """GTC limit orders on one product (Delta's batches take no other kind). Each needs a
        client_order_id: that is how a batch's answer is matched to it. After a batch whose
        outcome is unknown (timeout, 5xx) each order is looked up by its client_order_id and
        sent again only if the exchange has none."""
        items = [_create_item(o) for o in orders]
        if any(o.client_order_id is None for o in orders):
            raise ValueError("every order of place_orders needs a client_order_id")

        async def single(i: int) -> Order:
            o = orders[i]
            return await self.place_order(product_id=product_id, size=o.size, side=o.side,
                                          limit_price=o.limit_price, post_only=o.post_only,
                                          client_order_id=o.client_order_id)

        async def uncertain(i: int, exc: DeltaError) -> Order:
            found = await self._find_by_client_id(orders[i].client_order_id or "")
            return found if found is not None else await single(i)

        return await self._per_order("POST", product_id, items, [o.client_order_id for o in orders],
                                     lambda o: o.client_order_id, single, uncertain, Priority.NEW_ORDER)

    async def edit_orders(self, product_id: int, edits: Sequence[OrderEdit]) -> list[Order | DeltaError]:
        """Limit-order edits on one product (a stop's trigger is edited with edit_order). An edit
        whose outcome is unknown is not repeated: its result is OutcomeUnknown, for reconcile."""
        items = [_edit_item(e) for e in edits]

        async def single(i: int) -> Order:
            e = edits[i]
            return await self.edit_order(product_id=product_id, order_id=e.id, limit_price=e.limit_price,
                                         size=e.size, post_only=e.post_only)

        async def uncertain(i: int, exc: DeltaError) -> Order:
            raise OutcomeUnknown(exc.code, status=exc.status, endpoint=exc.endpoint,
                                 message=f"edit of order {edits[i].id} not confirmed; reconcile")

        return await self._per_order("PUT", product_id, items, [int(e.id) for e in edits], lambda o: o.id,
                                     single, uncertain, Priority.NEW_ORDER)

    async def cancel_orders(self, product_id: int, order_ids: Sequence[int]) -> list[Order | DeltaError]:
        """Cancels on one product. Cancels are idempotent, so after an uncertain batch each is
        sent again on its own (cancel_order reads an order back when that is what it takes)."""
        items: list[dict[str, Any]] = [{"id": int(i)} for i in order_ids]

        async def single(i: int) -> Order:
            return await self.cancel_order(product_id=product_id, order_id=int(order_ids[i]))

        async def uncertain(i: int, exc: DeltaError) -> Order:
            return await single(i)

        return await self._per_order("DELETE", product_id, items, [int(i) for i in order_ids], lambda o: o.id,
                                     single, uncertain, Priority.RISK)

    async def _per_order(self, method: str, product_id: int, items: list[dict[str, Any]],
                         keys: Sequence[str | int | None], key_of: Callable[[Order], str | int | None],
                         single: Callable[[int], Awaitable[Order]],
                         uncertain: Callable[[int, DeltaError], Awaitable[Order]],
                         priority: Priority) -> list[Order | DeltaError]:
        results: list[Order | DeltaError | None] = [None] * len(items)
        endpoint = f"{method} /v2/orders/batch"

        async def settle(i: int, action: Awaitable[Order]) -> None:
            try:
                results[i] = await action
            except DeltaError as exc:
                results[i] = exc

        async def batch(idx: range) -> None:
            try:
                env = await self._request(method, "/v2/orders/batch", priority=priority, signed=True,
                                          body={"product_id": int(product_id), "orders": [items[i] for i in idx]})
                answered = _batch_answers(env, key_of, endpoint)
            except (AuthError, RateLimited) as exc:  # refused before anything was done: alike for all
                for i in idx:
                    results[i] = exc
                return
            except (RequestTimeout, ServerError, ResponseShapeError) as exc:  # done or not: unknown
                await asyncio.gather(*(settle(i, uncertain(i, exc)) for i in idx))
                return
            except DeltaError:
                # Refused whole (Delta answers 400 when it could do none of them): each order on
                # its own gets its own answer and code.
                answered = {}
            left = []
            for i in idx:
                key = keys[i]
                got = answered.get(key) if key is not None else None
                if got is None:
                    left.append(i)
                else:
                    results[i] = got
            await asyncio.gather(*(settle(i, single(i)) for i in left))

        batches, singles = batch_split(len(items))
        await asyncio.gather(*(batch(r) for r in batches), *(settle(i, single(i)) for i in singles))
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]  # every slot was settled just above

    async def _paged_by_products(self, path: str, item: type, product_ids: Sequence[int] | None,
                                 params: dict[str, Any]) -> list[Any]:
        """Every item of a signed paged list, following cursors, 10 products a query."""
        groups: list[Sequence[int] | None] = (
            list(chunks(list(product_ids), MAX_IDS_PER_QUERY)) if product_ids else [None])
        out: list[Any] = []
        for group in groups:
            out.extend(await self._get_paged(path, item, {
                "product_ids": list(group) if group else None, **params}, signed=True))
        return out

    async def get_open_orders(self, product_ids: Sequence[int] | None = None, *,
                              states: Sequence[str] = ("open", "pending")) -> list[Order]:
        """Every open (and untriggered stop) order."""
        return await self._paged_by_products("/v2/orders", Order, product_ids,
                                             {"states": list(states), "page_size": 100})

    async def get_order_history(self, product_ids: Sequence[int] | None = None,
                                start_time: int | None = None) -> list[Order]:
        """Closed and cancelled orders since start_time (µs), in pages of 50."""
        return await self._paged_by_products("/v2/orders/history", Order, product_ids,
                                             {"start_time": start_time, "page_size": 50})

    async def get_order(self, order_id: int) -> Order:
        result, _ = await self._get(f"/v2/orders/{int(order_id)}", Order, signed=True)
        return result

    async def get_order_by_client_id(self, client_order_id: str) -> Order:
        check_client_order_id(client_order_id)
        result, _ = await self._get(
            f"/v2/orders/client_order_id/{quote(client_order_id, safe='')}", Order, signed=True)
        return result

    # ---------------------------------------------------------------- account

    async def get_position(self, product_id: int) -> Position:
        result, _ = await self._get("/v2/positions", Position,
                                    params={"product_id": int(product_id)}, signed=True)
        if result.product_id is None:
            result = msgspec.structs.replace(result, product_id=int(product_id))
        return result

    async def get_margined_positions(self, product_ids: Sequence[int] | None = None
                                     ) -> list[Position]:
        params = {"product_ids": list(product_ids) if product_ids else None}
        result, _ = await self._get("/v2/positions/margined", list[Position], params=params,
                                    signed=True)
        return result

    async def get_wallet_balances(self) -> list[WalletBalance]:
        result, _ = await self._get("/v2/wallet/balances", list[WalletBalance], signed=True)
        return result

    async def get_assets(self) -> list[Asset]:
        """GET /v2/assets: what balances' asset_id name."""
        result, _ = await self._get("/v2/assets", list[Asset])
        return result

    async def get_wallet_transactions(self, start_time: int | None = None) -> list[WalletTransaction]:
        """The wallet ledger since start_time (µs), newest first, every page."""
        return await self._get_paged("/v2/wallet/transactions", WalletTransaction,
                                     {"start_time": start_time, "page_size": 50}, signed=True)

    async def get_wallet_transactions_page(self, *, after: str | None = None, page_size: int = 50
                                           ) -> tuple[list[WalletTransaction], str | None]:
        """One page of the wallet ledger, newest first, and the cursor of the next (older) page
        (None: no more). Every kind of entry: whether Delta filters by `transaction_types` is
        UNCONFIRMED, so callers pick the kinds they want (funding, ...) themselves."""
        params = {"page_size": page_size, "after": after}
        page, env = await self._get("/v2/wallet/transactions", list[WalletTransaction], params=params, signed=True)
        return page, (env.meta.after if env.meta else None) or None

    async def get_fills(self, product_ids: Sequence[int] | None = None,
                        start_time: int | None = None) -> list[Fill]:
        """Fills since start_time (µs) (Delta caps pages at 50)."""
        return await self._paged_by_products("/v2/fills", Fill, product_ids,
                                             {"start_time": start_time, "page_size": 50})

    async def get_fills_page(self, product_ids: Sequence[int] | None = None, *, after: str | None = None,
                             page_size: int = 50) -> tuple[list[Fill], str | None]:
        """One page of fills, newest first, and the cursor of the next (older) page (None: no
        more). `after`: the cursor a previous page returned. At most 10 product ids."""
        if product_ids is not None and len(product_ids) > MAX_IDS_PER_QUERY:
            raise ValueError(f"at most {MAX_IDS_PER_QUERY} product ids a query, got {len(product_ids)}")
        params = {"product_ids": list(product_ids) if product_ids else None, "page_size": page_size,
                  "after": after}
        page, env = await self._get("/v2/fills", list[Fill], params=params, signed=True)
        return page, (env.meta.after if env.meta else None) or None

    async def set_leverage(self, product_id: int, leverage: float | int) -> Leverage:
        if isinstance(leverage, bool) or not leverage > 0:
            raise ValueError(f"leverage must be positive, got {leverage!r}")
        text = format(Decimal(repr(float(leverage))).normalize(), "f")
        env = await self._request("POST", f"/v2/products/{int(product_id)}/orders/leverage",
                                  body={"leverage": text}, signed=True, priority=Priority.RISK,
                                  retry=True)  # setting the same value twice is harmless
        return self._result(env, Leverage, "POST leverage")

    # ---------------------------------------------------------------- dead-man switch

    async def create_heartbeat(self, heartbeat_id: str, *, product_symbols: Sequence[str] = (),
                               contract_types: Sequence[str] = (), underlying_assets: Sequence[str] = (),
                               unhealthy_count: int = 1) -> HeartbeatCreated:
        """Register a dead-man switch that cancels the key's open orders once it lapses: on
        `product_symbols` (impact "products") or else on `contract_types` (impact "contracts",
        optionally narrowed to `underlying_assets`). It is armed by the first ack. Not retried:
        the caller's schedule retries (creating the same id again is harmless)."""
        if not heartbeat_id:
            raise ValueError("heartbeat_id must not be empty")
        if bool(product_symbols) == bool(contract_types):
            raise ValueError("give product_symbols or contract_types, not both or neither")
        body: dict[str, Any] = {"heartbeat_id": heartbeat_id,
                                "impact": "products" if product_symbols else "contracts",
                                "config": [{"action": "cancel_orders", "unhealthy_count": int(unhealthy_count)}]}
        if product_symbols:
            body["product_symbols"] = list(product_symbols)
        else:
            body["contract_types"] = list(contract_types)
            if underlying_assets:
                body["underlying_assets"] = list(underlying_assets)
        env = await self._request("POST", HEARTBEAT_CREATE_PATH, body=body, signed=True, priority=Priority.RISK)
        return self._result(env, HeartbeatCreated, f"POST {HEARTBEAT_CREATE_PATH}") if env.has_result \
            else HeartbeatCreated(heartbeat_id=heartbeat_id)

    async def ack_heartbeat(self, heartbeat_id: str, ttl_ms: int) -> HeartbeatAck:
        """Keep the heartbeat alive for `ttl_ms` more milliseconds (0 disables it). Not retried
        here: the caller's schedule decides when to try again."""
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms < 0:
            raise ValueError(f"ttl_ms must be a whole number of milliseconds >= 0, got {ttl_ms!r}")
        env = await self._request("POST", HEARTBEAT_PATH, body={"heartbeat_id": heartbeat_id, "ttl": ttl_ms},
                                  signed=True, priority=Priority.RISK)
        return self._result(env, HeartbeatAck, f"POST {HEARTBEAT_PATH}") if env.has_result else HeartbeatAck()

    async def get_heartbeats(self, heartbeat_id: str | None = None) -> list[dict[str, Any]]:
        """The key's heartbeats as the exchange lists them (shape loosely documented: raw dicts)."""
        result, _ = await self._get(HEARTBEAT_PATH, list[dict[str, Any]],
                                    params={"heartbeat_id": heartbeat_id}, signed=True)
        return result


__all__ = [
    "DeltaRestClient", "NewOrder", "OrderEdit", "batch_split", "build_query", "candle_windows", "price_text",
    "check_client_order_id", "backoff_delay",
]
