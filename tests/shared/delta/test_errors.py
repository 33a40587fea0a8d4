"""Both of Delta's error envelope forms map to the right exception, with no secret leaked."""

from __future__ import annotations

import pytest

from shared.delta.errors import (
    AuthError,
    BadSchema,
    DeltaError,
    InsufficientMargin,
    Maintenance,
    OrderNotFound,
    OrderRejected,
    PostOnlyWouldCross,
    RateLimited,
    ServerError,
    error_from_response,
)


@pytest.mark.parametrize(("status", "body", "cls", "code"), [
    (401, b'{"error":{"code":"invalid_api_key"},"success":false}', AuthError, "invalid_api_key"),
    (401, b'{"success":false,"error":{"code":"Signature Mismatch"}}', AuthError, "Signature Mismatch"),
    (401, b'{"error":"SignatureExpired","message":"your signature has expired"}', AuthError,
     "SignatureExpired"),
    (401, b'{"success":false,"error":{"code":"expired_signature","context":'
          b'{"request_time":1,"server_time":9}}}', AuthError, "expired_signature"),
    (401, b'{"error":"unauthorized","success":false}', AuthError, "unauthorized"),
    (401, b'{"success":false,"error":{"code":"ip_not_whitelisted_for_api_key",'
          b'"context":{"client_ip":"1.2.3.4"}}}', AuthError, "ip_not_whitelisted_for_api_key"),
    (401, b'{"error":"InvalidApiKey","message":"Api Key not found"}', AuthError, "InvalidApiKey"),
    (403, b'{"error":"UnauthorizedApiAccess","message":"no"}', AuthError, "UnauthorizedApiAccess"),
    (403, b'{"error":"Forbidden","message":"Request blocked by CDN"}', AuthError, "Forbidden"),
    (403, b'<html>blocked</html>', AuthError, "forbidden"),
    (400, b'{"success":false,"error":{"code":"insufficient_margin","context":'
          b'{"available_balance":"1","required_additional_balance":"2"}}}',
     InsufficientMargin, "insufficient_margin"),
    (400, b'{"success":false,"error":{"code":"immediate_execution_post_only"}}',
     PostOnlyWouldCross, "immediate_execution_post_only"),
    (400, b'{"success":false,"error":{"code":"open_order_not_found"}}', OrderNotFound,
     "open_order_not_found"),
    (404, b'', OrderNotFound, "not_found"),
    (400, b'{"success":false,"error":{"code":"bad_schema","context":{"schema_errors":'
          b'[{"code":"validation_error","message":"id is required","param":""}]}}}',
     BadSchema, "bad_schema"),
    (503, b'{"success":false,"error":{"code":"unavailable"}}', Maintenance, "unavailable"),
    (503, b'', Maintenance, "unavailable"),
    (500, b'oops', ServerError, "http_500"),
    (400, b'{"success":false,"error":{"code":"risk_limits_breached"}}', OrderRejected,
     "risk_limits_breached"),
])
def test_codes_map_to_classes(status: int, body: bytes, cls: type[DeltaError], code: str) -> None:
    err = error_from_response(status, body, endpoint="POST /v2/orders")
    assert type(err) is cls
    assert err.code == code and err.status == status and "POST /v2/orders" in str(err)


def test_context_is_kept_and_secrets_redacted() -> None:
    err = error_from_response(401, {"success": False, "error": {
        "code": "expired_signature",
        "context": {"server_time": 9, "api_key": "KEY123", "nested": {"signature": "abc"}}}})
    assert err.context["server_time"] == 9
    assert err.context["api_key"] == "<redacted>" and err.context["nested"]["signature"] == "<redacted>"
    assert "KEY123" not in str(err) and "abc" not in str(err) and "KEY123" not in repr(err)


def test_rate_limited_reads_reset_header_any_case() -> None:
    err = error_from_response(429, b"", headers={"x-rate-limit-reset": "1234"})
    assert isinstance(err, RateLimited) and err.reset_ms == 1234 and err.retryable
    unreadable = error_from_response(429, b"", headers={"X-RATE-LIMIT-RESET": "soon"})
    assert isinstance(unreadable, RateLimited) and unreadable.reset_ms is None
    limited = error_from_response(429, b'{"success":false,"error":{"code":"rate_limit_exceeded"}}')
    assert isinstance(limited, RateLimited)


def test_huge_html_error_page_is_truncated() -> None:
    err = error_from_response(502, "<html>" + "x" * 10_000)
    assert isinstance(err, ServerError) and len(str(err)) < 400
