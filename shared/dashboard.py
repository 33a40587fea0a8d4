"""The dashboard's decisions, without I/O: who may read or act, how much history each symbol
keeps, and the account's drawdowns. orchestrator/dashboard/ is the shell that serves them."""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable

from shared.config import LOOPBACK_HOSTS

ACTIONS = ("pause", "resume", "halt", "flatten")
SYMBOL_ACTIONS = ("pause", "resume", "flatten")  # with a symbol: that symbol alone
ACCOUNT_ACTIONS = ("halt", "flatten", "resume")  # without one: the whole account (resume lifts the halt)
# Price/signal points kept for all symbols together (~100 bytes each): 300 symbols keep 400 points each.
HISTORY_POINTS_TOTAL = 120_000
HISTORY_POINTS_MAX = 1_800  # one symbol: an hour at one point every 2 s
HISTORY_POINTS_MIN = 60


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host == "::ffff:127.0.0.1"


def history_points(n_symbols: int) -> int:
    """Points each symbol's history keeps, so the fleet's history stays under HISTORY_POINTS_TOTAL."""
    per = HISTORY_POINTS_TOTAL // max(1, n_symbols)
    return max(HISTORY_POINTS_MIN, min(HISTORY_POINTS_MAX, per))


def token_matches(given: str | None, token: str) -> bool:
    return bool(given) and bool(token) and hmac.compare_digest(str(given).encode(), token.encode())


def access(*, over_loopback: bool, action: bool, actions_enabled: bool, header_token_ok: bool,
           cookie_token_ok: bool) -> tuple[int, str]:
    """(HTTP status, why) for one request: 200 lets it through. Reading over loopback is free;
    over any other address every request needs the token (header or the cookie the token link
    set). An action needs actions enabled and the token in a header, which a page on another
    site cannot send (a cookie alone would let such a page act: cross-site request forgery)."""
    if action:
        if not actions_enabled:
            return 403, "actions are disabled: set [dashboard] actions = true to use them"
        if not header_token_ok:
            return 401, "this action needs the dashboard token (in <run dir>/dashboard.token)"
        return 200, ""
    if over_loopback or header_token_ok or cookie_token_ok:
        return 200, ""
    return 401, "this dashboard needs its token: open the link in <run dir>/dashboard.url"


def check_action(cmd: str, symbol: str, confirm: str, symbols: Iterable[str]) -> str:
    """Why an action request is refused ("" when it may go to the supervisor). The confirmation
    is the command's target typed back: the symbol for pause/resume/flatten of one symbol, "ALL"
    for halt, flatten of every symbol and resume of the whole account (which lifts a halt)."""
    if cmd not in ACTIONS:
        return f"unknown action {cmd[:40]!r} (one of {', '.join(ACTIONS)})"
    if symbol:
        if cmd not in SYMBOL_ACTIONS:
            return f"{cmd} acts on the whole account: send no symbol"
        if symbol not in set(symbols):
            return f"no worker for symbol {symbol[:40]!r}"
        if confirm != symbol:
            return f"not confirmed: {cmd} {symbol} needs confirm={symbol!r}"
    elif cmd not in ACCOUNT_ACTIONS:
        return f"{cmd} needs a symbol"
    elif confirm != "ALL":
        return f"not confirmed: {cmd} acts on the whole account and needs confirm='ALL'"
    return ""


def control_request(cmd: str, symbol: str) -> dict[str, object]:
    """The control-socket request of a checked action, in the shape `orchestrate pause/resume/halt/
    flatten` send (a typed parser refuses any other field)."""
    if cmd == "flatten":
        return {"cmd": "flatten", "symbols": [symbol]} if symbol else {"cmd": "flatten", "all": True}
    if symbol:
        return {"cmd": cmd, "symbol": symbol}
    if cmd == "halt":
        return {"cmd": "halt", "reason": "from the dashboard"}
    return {"cmd": "resume", "all": True}


def drawdown(equity: float, peak: float) -> float:
    """Fall from the peak as a fraction of it (0 at or above the peak, or with no peak yet)."""
    if not (math.isfinite(equity) and math.isfinite(peak)) or peak <= 0 or equity >= peak:
        return 0.0
    return (peak - equity) / peak


def max_drawdown(equities: Iterable[float]) -> tuple[float, float]:
    """(largest fall from a running peak as a fraction of that peak, the peak) over a series."""
    peak = -math.inf
    worst = 0.0
    for e in equities:
        if not math.isfinite(e):
            continue
        peak = max(peak, e)
        worst = max(worst, drawdown(e, peak))
    return worst, (peak if math.isfinite(peak) else math.nan)
