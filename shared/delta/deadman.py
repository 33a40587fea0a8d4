"""The client side of Delta's dead-man switch as a pure schedule (no I/O, times given by the
caller): what to send next (create, ack, nothing), when, and what the trader sees in status.

The gateway (workers/gateway_deadman.py) registers one heartbeat for the account at start and
acknowledges it every `renew_interval_s` with a TTL of `ttl_s`; if the gateway and everything
above it die, the exchange cancels the account's open orders once `ttl_s` has passed since the
last ack. The heartbeat id is stable for a bot id, so a restarted gateway renews the same
heartbeat instead of leaving an orphan that would lapse and cancel the new run's orders.

Tolerance where Delta's answers are UNCONFIRMED (error codes of the heartbeat API are only
`unauthorized` and `rate_limit_exceeded` in the docs):
- a create refused with any other 4xx may mean "already exists": go on to the ack, which says;
- an ack refused with any other 4xx may mean "no such heartbeat" (e.g. it was created by a
  different key or forgotten): create it again next;
- timeouts, 5xx, 429 and auth failures retry the same step after `retry_s`.
No failure ever stops the schedule: a renewal that cannot be sent is logged, counted and
retried; the exchange's TTL is the margin.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import msgspec

from shared.delta.constants import HEARTBEAT_MAX_SYMBOLS

Step = Literal["create", "ack"]
# Refusals that are the request's fault, not the heartbeat's state: retry the same step.
_TRANSIENT_STATUS = (401, 403, 408, 429)
_TRANSIENT_CODES = ("unauthorized", "rate_limit_exceeded", "invalid_signature", "expired_signature",
                    "invalid_api_key", "ip_not_whitelisted_for_api_key", "timeout", "connection_lost",
                    "connect_failed", "unavailable", "internal_server_error")


def heartbeat_id_for(bot_id: str) -> str:
    """The account's heartbeat id: stable across restarts of the same bot id."""
    return f"dgo-{bot_id}"


def heartbeat_scope(symbols: Iterable[str], contract_types: Iterable[str]) -> dict[str, list[str]]:
    """What the heartbeat covers: the bots' own products by symbol (a trader's orders elsewhere
    are not ours to cancel), or, beyond the symbols a list may hold, every product of the bots'
    contract types."""
    syms = sorted(set(symbols))
    if len(syms) <= HEARTBEAT_MAX_SYMBOLS:
        return {"product_symbols": syms}
    return {"contract_types": sorted(set(contract_types))}


class KeeperState(msgspec.Struct, kw_only=True):
    """Where the schedule stands. `next_step` is due at `due_at` (seconds, caller's clock)."""
    next_step: Step = "create"
    due_at: float = 0.0
    last_ack_at: float | None = None  # when the exchange last confirmed a renewal
    failures: int = 0  # renewal or create requests that failed, all time
    failing_in_a_row: int = 0
    last_error: str = ""  # Delta's error code of the last failure ("" once one succeeds)


class DeadmanSchedule:
    """The dead-man switch's renewal schedule for one heartbeat."""

    def __init__(self, ttl_s: float, renew_interval_s: float, retry_s: float) -> None:
        if not 0 < renew_interval_s < ttl_s:
            raise ValueError("renew_interval_s must be > 0 and below ttl_s")
        self.ttl_s = ttl_s
        self.renew_interval_s = renew_interval_s
        self.retry_s = min(retry_s, renew_interval_s)
        self.state = KeeperState()

    @property
    def ttl_ms(self) -> int:
        return int(round(self.ttl_s * 1000))

    def due(self, now: float) -> Step | None:
        """The step to send now, or None (sleep until `state.due_at`)."""
        return self.state.next_step if now >= self.state.due_at else None

    def on_success(self, step: Step, now: float) -> None:
        s = self.state
        s.failing_in_a_row = 0
        s.last_error = ""
        if step == "create":
            s.next_step, s.due_at = "ack", now  # armed only by the first ack: at once
        else:
            s.last_ack_at = now
            s.next_step, s.due_at = "ack", now + self.renew_interval_s

    def on_failure(self, step: Step, now: float, *, code: str, status: int | None) -> None:
        """A failed step: counted, and the next step chosen (see the module doc)."""
        s = self.state
        s.failures += 1
        s.failing_in_a_row += 1
        s.last_error = code or "error"
        transient = status is None or status >= 500 or status in _TRANSIENT_STATUS or code in _TRANSIENT_CODES
        if transient:
            s.next_step = step
        else:
            s.next_step = "ack" if step == "create" else "create"
        s.due_at = now + self.retry_s

    def lapses_at(self) -> float | None:
        """When the exchange cancels the orders if no renewal gets through (None: never armed)."""
        return None if self.state.last_ack_at is None else self.state.last_ack_at + self.ttl_s

    def figures(self, now: float) -> tuple[str, float]:
        """(state, seconds until the exchange cancels the open orders if no renewal gets through)
        for metrics: state `not armed` (never confirmed; seconds NaN), `armed` (renewing),
        `failing` (renewals failing, the switch still holding) or `lapsed` (orders cancelled)."""
        lapse = self.lapses_at()
        if lapse is None:
            return "not armed", math.nan
        left = lapse - now
        if left <= 0:
            return "lapsed", 0.0
        return ("failing" if self.state.failing_in_a_row else "armed"), left

    def note(self, now: float) -> str:
        """One phrase for status."""
        s = self.state
        lapse = self.lapses_at()
        if s.failing_in_a_row == 0 and lapse is not None:
            return f"dead-man switch armed (TTL {self.ttl_s:.0f}s, renewed {now - (s.last_ack_at or now):.0f}s ago)"
        counts = f"{s.failures} renewal failures" + (f", last {s.last_error}" if s.last_error else "")
        if lapse is None:
            return f"dead-man switch NOT armed yet ({counts})"
        left = lapse - now
        when = f"cancels open orders in {left:.0f}s" if left > 0 else "has lapsed: open orders cancelled"
        return f"dead-man switch FAILING: {s.failing_in_a_row} in a row ({counts}); the exchange {when}"
