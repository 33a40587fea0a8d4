"""Delta Exchange request signing (REST v2 and websocket key-auth).

prehash = METHOD + timestamp + path (with /v2) + query (with its leading '?', or '') + body (the
exact JSON text sent, or ''); signature = lowercase hex HMAC-SHA256 keyed by the secret's UTF-8
bytes. Sign the bytes you send: never re-serialise a body after signing it.
"""

from __future__ import annotations

import hashlib
import hmac

WS_AUTH_PATH = "/live"


def prehash(method: str, timestamp: str, path: str, query: str = "", body: str = "") -> str:
    if query and not query.startswith("?"):
        query = "?" + query
    return method.upper() + timestamp + path + query + body


def sign(secret: str, method: str, timestamp: str, path: str, query: str = "", body: str = "") -> str:
    message = prehash(method, timestamp, path, query, body)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_ws(secret: str, timestamp: str) -> str:
    return sign(secret, "GET", timestamp, WS_AUTH_PATH)


def verify(secret: str, signature: str, method: str, timestamp: str, path: str, query: str = "",
           body: str = "") -> bool:
    """Constant-time check used by the paper venue."""
    expected = sign(secret, method, timestamp, path, query, body)
    return hmac.compare_digest(expected, signature.lower())
