"""The supervisor's commands as typed requests: one JSON line on the control socket (the CLI), or
the same dict handed to `Supervisor.command` in-process (a dashboard). Parsing is pure: a request
that does not fit is refused with a message naming the field, before anything acts on it."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

Reason = Annotated[str, Meta(max_length=200)]
Symbol = Annotated[str, Meta(min_length=1, max_length=40)]


class _Cmd(msgspec.Struct, frozen=True, kw_only=True, tag_field="cmd", forbid_unknown_fields=True):
    pass


class Status(_Cmd, frozen=True, tag="status"):
    pass


class Stop(_Cmd, frozen=True, tag="stop"):
    cancel_orders: bool = False


class Pause(_Cmd, frozen=True, tag="pause"):
    symbol: Symbol


class Resume(_Cmd, frozen=True, tag="resume"):
    """One symbol's entries again; `all`: lift the account halt and resume every symbol."""
    symbol: str = ""
    all: bool = False


class Halt(_Cmd, frozen=True, tag="halt"):
    reason: Reason = ""
    flatten: bool = False


class ClearHalt(_Cmd, frozen=True, tag="clear-halt"):
    pass


class Flatten(_Cmd, frozen=True, tag="flatten"):
    symbols: list[Symbol] = msgspec.field(default_factory=list)
    all: bool = False


Request = Status | Stop | Pause | Resume | Halt | ClearHalt | Flatten
COMMANDS = ("status", "stop", "pause", "resume", "halt", "clear-halt", "flatten")


class BadRequest(ValueError):
    pass


def parse(raw: Any) -> Request:
    """The request, or BadRequest saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise BadRequest("a request is a JSON object with a 'cmd' field")
    cmd = raw.get("cmd")
    if cmd not in COMMANDS:
        raise BadRequest(f"unknown command {str(cmd)[:40]!r} (known: {', '.join(COMMANDS)})")
    try:
        req: Request = msgspec.convert(raw, Request)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{cmd}: {exc}") from None
    if isinstance(req, Resume) and req.all == bool(req.symbol):
        raise BadRequest("resume: name one SYMBOL or --all, not both or neither")
    if isinstance(req, Flatten) and req.all == bool(req.symbols):
        raise BadRequest("flatten: name SYMBOLs or --all, not both or neither")
    return req
