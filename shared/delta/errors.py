"""Delta Exchange failures as exceptions a trader's code can act on.

Delta answers errors in two shapes (api spec §2.4, §3):
  envelope: {"success": false, "error": {"code": "insufficient_margin", "context": {...}}}
  prose:    {"error": "SignatureExpired", "message": "your signature has expired"}
and live servers have also sent {"error": "unauthorized", "success": false}. `error_from_response`
reads all of them. Nothing secret goes into a message: request headers are never attached, and
context keys that look like credentials are redacted before they are stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

_SECRET_HINTS = ("secret", "signature", "api-key", "api_key", "apikey", "password", "token")
_MAX_TEXT = 300  # keep a hostile or HTML error page from flooding logs


def _redact(context: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in context.items():
        if any(hint in str(key).lower() for hint in _SECRET_HINTS):
            out[str(key)] = "<redacted>"
        elif isinstance(value, Mapping):
            out[str(key)] = _redact(value)
        else:
            out[str(key)] = value
    return out


class DeltaError(Exception):
    """Any failure reported by Delta (or the transport to it). `code` is Delta's own code."""

    retryable: bool = False  # safe to repeat a *read* after this

    def __init__(self, code: str, *, status: int | None = None, message: str = "",
                 context: Mapping[str, Any] | None = None, endpoint: str = "") -> None:
        self.code = code
        self.status = status
        self.message = message[:_MAX_TEXT]
        self.context = _redact(context or {})
        self.endpoint = endpoint
        super().__init__(self._text())

    def _text(self) -> str:
        parts = [f"{self.code}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.endpoint:
            parts.append(self.endpoint)
        text = " ".join(parts)
        if self.message:
            text += f": {self.message}"
        if self.context:
            text += f" {self.context}"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r})"


class AuthError(DeltaError):
    """Key, signature, timestamp or IP refused: retrying the same request cannot help."""


class InsufficientMargin(DeltaError):
    pass


class PostOnlyWouldCross(DeltaError):
    pass


class OrderNotFound(DeltaError):
    pass


class BadSchema(DeltaError):
    """The request was malformed; `context["schema_errors"]` says which field."""


class OrderRejected(DeltaError):
    """Any other refusal of an order (risk limits, liquidity, contract state...)."""


class RateLimited(DeltaError):
    retryable = True

    def __init__(self, code: str, *, reset_ms: int | None = None, **kw: Any) -> None:
        self.reset_ms = reset_ms
        super().__init__(code, **kw)


class ServerError(DeltaError):
    """5xx: the request may or may not have been applied."""

    retryable = True


class Maintenance(ServerError):
    """503 / `unavailable`: the exchange is down for maintenance."""


class RequestTimeout(DeltaError):
    """No answer in time: for a mutation the outcome is unknown and must be looked up."""

    retryable = True


class OutcomeUnknown(DeltaError):
    """A mutation may or may not have been applied and could not be confirmed either way.

    The caller must reconcile (read open orders) before acting on that order again.
    """


class ResponseShapeError(DeltaError):
    """Delta answered 2xx with a body these models cannot read."""


AUTH_CODES = frozenset({
    "invalid_api_key", "invalid_signature", "signature mismatch", "expired_signature",
    "signatureexpired", "unauthorized", "ip_not_whitelisted_for_api_key", "ip_blocked_for_api_key",
    "invalidapikey", "unauthorizedapiaccess", "forbidden", "api_key_not_found",
    "ip_not_whitelisted", "request_expired",
})
_BY_CODE: dict[str, type[DeltaError]] = {
    "insufficient_margin": InsufficientMargin,
    "immediate_execution_post_only": PostOnlyWouldCross,
    "open_order_not_found": OrderNotFound,
    "order_not_found": OrderNotFound,
    "not_found": OrderNotFound,
    "bad_schema": BadSchema,
    "rate_limit_exceeded": RateLimited,
    "unavailable": Maintenance,
}


def _class_for(code: str, status: int | None) -> type[DeltaError]:
    folded = code.lower()
    if folded in AUTH_CODES:
        return AuthError
    if folded in _BY_CODE:
        return _BY_CODE[folded]
    if status == 429:
        return RateLimited
    if status in (401, 403):
        return AuthError
    if status == 404:
        return OrderNotFound
    if status == 503:
        return Maintenance
    if status is not None and status >= 500:
        return ServerError
    return OrderRejected


def _decode(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any] | str | None:
    if body is None or isinstance(body, Mapping):
        return body
    try:
        decoded = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return decoded if isinstance(decoded, Mapping) else str(decoded)


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def error_from_response(status: int | None, body: bytes | str | Mapping[str, Any] | None, *,
                        headers: Mapping[str, str] | None = None,
                        endpoint: str = "") -> DeltaError:
    """The exception for a failed Delta response, whichever envelope form it used."""
    decoded = _decode(body)
    code, message, context = "", "", {}
    if isinstance(decoded, Mapping):
        err = decoded.get("error")
        if isinstance(err, Mapping):
            code = str(err.get("code") or "")
            message = str(err.get("message") or decoded.get("message") or "")
            raw_ctx = err.get("context")
            context = dict(raw_ctx) if isinstance(raw_ctx, Mapping) else {}
        elif isinstance(err, str):
            code = err
            message = str(decoded.get("message") or "")
        elif "message" in decoded:
            message = str(decoded["message"])
    elif isinstance(decoded, str):
        message = decoded.strip()
    if not code:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 429: "rate_limited",
                503: "unavailable"}.get(status or 0, f"http_{status}" if status else "unknown")
    cls = _class_for(code, status)
    if cls is RateLimited:
        reset = _header(headers, "X-RATE-LIMIT-RESET")
        reset_ms: int | None = None
        if reset is not None:
            try:
                reset_ms = max(0, int(float(reset)))
            except ValueError:
                reset_ms = None
        return RateLimited(code, reset_ms=reset_ms, status=status, message=message,
                           context=context, endpoint=endpoint)
    return cls(code, status=status, message=message, context=context, endpoint=endpoint)
