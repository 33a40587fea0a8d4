"""What stands between a REST request and the paper venue's handlers, as aiohttp middlewares
(the shape of aiohttp's own web_middlewares.py): Delta's error envelopes, the 413 on big
bodies, auth, the rate limits, the request-level faults, the refusal while the account cannot
be written, and the public-caller mark.

Auth order: no headers -> 401 {"error":"unauthorized"}; wrong key -> invalid_api_key; timestamp
outside 5 s -> expired_signature {request_time, server_time}; signature over the exact bytes
received -> invalid_signature. Rate limits: weighted fixed window per key (per IP when public),
and `engine_ops_per_s` engine ops/s per product (cancels exempt); both answer 429 +
X-RATE-LIMIT-RESET (ms).

A handler says who may call it with `@public` or `@private`; routes without a mark (the
websockets) pass through untouched. The parsed JSON body is `request[BODY]`.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import msgspec
from aiohttp import web
from aiohttp.typedefs import Middleware

from shared.delta.auth import verify
from shared.delta.constants import SIGNATURE_WINDOW_S
from shared.delta.ratelimit import endpoint_weight
from shared.matching import VenueError, bad_schema
from shared.products import UnknownSymbolError
from workers.venue.faults import FaultModel

log = logging.getLogger("workers.venue")
MAX_BODY_BYTES = 1 << 20  # larger request bodies get 413 (Delta's bodies are a few KB)
BODY = web.RequestKey("body", dict)  # the request's JSON object, parsed once here
# Set while serving an unauthenticated request: it may read the markets there are, never list a
# new one (a public flood once made 200 synthetic markets that outlived a restart).
PUBLIC_CALLER = contextvars.ContextVar("public_caller", default=False)
_ACCESS = "delta_access"  # the attribute @public / @private put on a handler

RestHandler = Callable[[web.Request], Awaitable[web.Response]]


def public(handler: RestHandler) -> RestHandler:
    setattr(handler, _ACCESS, "public")
    return handler


def private(handler: RestHandler) -> RestHandler:
    setattr(handler, _ACCESS, "private")
    return handler


def ok(result: Any, meta: Mapping[str, Any] | None = None, status: int = 200) -> web.Response:
    body: dict[str, Any] = {"success": True, "result": result}
    if meta is not None:
        body["meta"] = meta
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json")


def err(code: str, context: Mapping[str, Any] | None, status: int,
        headers: Mapping[str, str] | None = None) -> web.Response:
    body = {"success": False, "error": {"code": code, "context": dict(context or {})}}
    return web.Response(body=msgspec.json.encode(body), status=status, content_type="application/json",
                        headers=headers)


class RateLimited(Exception):
    def __init__(self, reset_ms: int, context: Mapping[str, Any]) -> None:
        self.reset_ms = reset_ms
        self.context = dict(context)


class _Unauthorized(Exception):
    """No auth headers at all: live answers a bare {"error":"unauthorized","success":false}."""


class EngineOpsLimit:
    """Delta's matching-engine limit: `per_s` order operations a second per product."""

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self._ops: dict[int, tuple[int, int]] = {}  # product_id -> (wall second, ops)

    def charge(self, product_id: int, n: int = 1) -> None:
        second = int(time.monotonic())
        sec, ops = self._ops.get(product_id, (second, 0))
        if sec != second:
            sec, ops = second, 0
        if ops + n > self.per_s:
            raise RateLimited(1000 - int((time.monotonic() % 1) * 1000),
                              {"limit": self.per_s, "scope": "matching_engine", "product_id": product_id})
        self._ops[product_id] = (sec, ops + n)


class GuardedVenue(Protocol):
    """What the guard needs from the venue (given, not imported)."""

    api_key: str
    api_secret: str
    faults: FaultModel

    @property
    def storage_error(self) -> str: ...
    def flush_journal(self) -> bool: ...
    def publish_engine_events(self) -> None: ...


class Guard:
    """The middlewares of one venue, and what they counted."""

    def __init__(self, venue: GuardedVenue, *, rate_limit_units: int, rate_limit_window_s: float) -> None:
        self.venue = venue
        self.units = rate_limit_units
        self.window_s = rate_limit_window_s
        self._windows: dict[str, tuple[float, int]] = {}  # key or ip -> (window start, used)
        self.requests_served = 0  # REST requests answered, any status
        self.requests_refused = 0  # of which 4xx/5xx (auth, validation, rejections, limits, faults)

    @property
    def middlewares(self) -> list[Middleware]:
        return [envelope_http_errors, self.guard]

    @web.middleware
    async def guard(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        access = getattr(request.match_info.handler, _ACCESS, None)
        if access is None:
            return await handler(request)
        is_private = access == "private"
        token = PUBLIC_CALLER.set(not is_private)
        started = time.perf_counter()
        try:
            response = await self._serve(request, handler, private=is_private)
        finally:
            PUBLIC_CALLER.reset(token)
        # The venue's own share of the caller's round trip (W3C Server-Timing, ms): the gateway
        # splits an order's HTTP time into the venue's handling and the transport around it.
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.3f}"
        return response

    async def _serve(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                     *, private: bool) -> web.StreamResponse:
        venue = self.venue
        try:
            raw = await request.read()
            await venue.faults.delay()
            key = self._authenticate(request, raw) if private else None
            if not private and request.headers.get("api-key"):
                with contextlib.suppress(_Unauthorized, VenueError):  # a public route, signed anyway
                    self._authenticate(request, raw)
                    PUBLIC_CALLER.set(False)
            self._charge(key or f"ip:{request.remote}", endpoint_weight(request.method, request.path))
            if venue.faults.rate_limited():
                raise RateLimited(1000, {"fault_injection": True})
            if venue.faults.unavailable():
                return self._count(err("unavailable", {"fault_injection": True}, 503))
            request[BODY] = _json_body(raw)
            if private and request.method != "GET" and not venue.flush_journal():
                # Refused before anything is done: an action the account cannot record is one a
                # crash would silently undo.
                raise VenueError("unavailable", {"message": "the paper account cannot be written "
                                                 f"({venue.storage_error}); nothing was done"}, 503)
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return self._count(err("request_entity_too_large", {"max_bytes": MAX_BODY_BYTES}, 413))
        except _Unauthorized:
            return self._count(web.Response(body=b'{"error":"unauthorized","success":false}', status=401,
                                            content_type="application/json"))
        except RateLimited as exc:
            return self._count(err("rate_limit_exceeded", exc.context, 429,
                                   {"X-RATE-LIMIT-RESET": str(exc.reset_ms)}))
        except VenueError as exc:
            response = err(exc.code, exc.context, exc.status)
        except UnknownSymbolError as exc:
            response = err("invalid_contract", {"symbol": exc.symbol, "message": str(exc),
                                                "close_matches": exc.close_matches}, 404)
        except Exception:  # a venue bug: answer like Delta's 500, keep serving, leave a trace
            log.exception("venue: %s %s failed", request.method, request.path)
            response = err("internal_server_error", {}, 500)
        # state may have changed (fills, cancels): push the private events right away
        venue.publish_engine_events()
        self._count(response)
        return response

    def _count(self, response: web.StreamResponse) -> web.StreamResponse:
        self.requests_served += 1
        if response.status >= 400:
            self.requests_refused += 1
        return response

    def _authenticate(self, request: web.Request, raw: bytes) -> str:
        h = request.headers
        key, ts, sig = h.get("api-key"), h.get("timestamp"), h.get("signature")
        if not key and not sig and not ts:
            raise _Unauthorized()
        if key != self.venue.api_key:
            raise VenueError("invalid_api_key", {}, 401)
        now = time.time()
        try:
            ts_val = int(ts or "")
        except ValueError:
            raise VenueError("invalid_signature", {"message": "timestamp must be epoch seconds"}, 401) from None
        if abs(now - ts_val) > SIGNATURE_WINDOW_S:
            raise VenueError("expired_signature", {"request_time": ts_val, "server_time": int(now)}, 401)
        path, _, query = request.raw_path.partition("?")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VenueError("invalid_signature", {}, 401) from None
        if not sig or not verify(self.venue.api_secret, sig, request.method, ts or "", path,
                                 "?" + query if query else "", text):
            raise VenueError("invalid_signature", {}, 401)
        return key

    def _charge(self, who: str, weight: int) -> None:
        """Delta's fixed window: `rate_limit_units` per `rate_limit_window_s`, refilled at once."""
        now = time.monotonic()
        window = self.window_s
        start, used = self._windows.get(who, (now, 0))
        if now - start >= window:
            start, used = now, 0
        if used + weight > self.units:
            reset_ms = max(1, math.ceil((start + window - now) * 1000))
            raise RateLimited(reset_ms, {"limit": self.units, "used": used})
        if len(self._windows) > 10_000 and who not in self._windows:
            self._windows.clear()  # bounded: only loopback callers exist, so this is a flood
        self._windows[who] = (start, used + weight)


@web.middleware
async def envelope_http_errors(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                               ) -> web.StreamResponse:
    """Unknown paths and methods answer in Delta's envelope, not aiohttp's text page."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "bad_request")
        return err(code, {"path": request.path}, exc.status)


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested a thousand deep: junk
        raise bad_schema("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise bad_schema("body must be a JSON object")
    return body
