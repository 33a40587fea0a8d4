"""A scripted Delta-shaped HTTP server on 127.0.0.1 for exercising the real client.

Each test scripts exact replies (status, body, headers, delay) per method and path, and reads
back exactly what the client sent, including whether its signature verifies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from shared.delta import auth

API_KEY = "test-key-0123"
API_SECRET = "s3cr3t-test-secret-never-printed"


class Reply(msgspec.Struct, kw_only=True):
    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes sent verbatim
    headers: dict[str, str] = {}
    delay_s: float = 0.0


def ok(result: Any = None, meta: dict[str, Any] | None = None) -> Reply:
    body: dict[str, Any] = {"success": True}
    if result is not None:
        body["result"] = result
    if meta is not None:
        body["meta"] = meta
    return Reply(body=body)


def fail(status: int, code: str, context: dict[str, Any] | None = None) -> Reply:
    err: dict[str, Any] = {"code": code}
    if context:
        err["context"] = context
    return Reply(status=status, body={"success": False, "error": err})


class Seen(msgspec.Struct, frozen=True):
    method: str
    path: str
    query: str  # raw, with leading '?' or ''
    body: str
    headers: dict[str, str]
    signature_ok: bool | None  # None when the request was not signed

    def json(self) -> Any:
        return msgspec.json.decode(self.body) if self.body else None


Script = Reply | Callable[[Seen], Reply]


class ScriptedDelta:
    def __init__(self) -> None:
        self.scripts: dict[tuple[str, str], deque[Script]] = {}
        self.seen: list[Seen] = []
        self.server: TestServer | None = None

    def on(self, method: str, path: str, *replies: Script) -> None:
        """Queue replies for a route; the last one repeats once the others are used up."""
        self.scripts.setdefault((method, path), deque()).extend(replies)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode("utf-8")
        raw_query = request.rel_url.raw_query_string
        query = "?" + raw_query if raw_query else ""
        headers = {k: v for k, v in request.headers.items()}
        sig_ok: bool | None = None
        if "signature" in request.headers:
            sig_ok = auth.verify(API_SECRET, request.headers["signature"], request.method,
                                 request.headers.get("timestamp", ""), request.rel_url.raw_path,
                                 query, body)
        seen = Seen(request.method, request.rel_url.raw_path, query, body, headers, sig_ok)
        self.seen.append(seen)
        queue = self.scripts.get((request.method, request.rel_url.raw_path))
        if not queue:
            return web.json_response({"success": False, "error": {"code": "unscripted"}},
                                     status=418)
        script = queue.popleft() if len(queue) > 1 else queue[0]
        reply = script(seen) if callable(script) else script
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if isinstance(reply.body, (dict, list)):
            data = msgspec.json.encode(reply.body)
        elif isinstance(reply.body, str):
            data = reply.body.encode()
        else:
            data = reply.body or b""
        return web.Response(status=reply.status, body=data, headers=reply.headers,
                            content_type="application/json")


@pytest.fixture
async def delta() -> AsyncIterator[ScriptedDelta]:
    fake = ScriptedDelta()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    fake.server = server
    try:
        yield fake
    finally:
        await server.close()
