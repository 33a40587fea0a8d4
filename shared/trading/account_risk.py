"""The account's risk state as one state machine: the UTC day's start and peak equity and the
halt (why, when, by whom), fed the account's equity and notional by the supervisor. No I/O and
no clock of its own: the supervisor persists each record it returns (SQLite) and restores it at
start, so a restart neither re-arms the day's loss budget nor lifts a halt.

The limits themselves are `risk.evaluate` (the one rule set, which the backtest calls too); this
adds what a long-running account needs around it:

- the halt lives here, whatever caused it: a breached limit (`limit`), a ledger or paper-venue
  journal that cannot be written (`storage`), or the operator (`operator`). The first reason
  stands; later ones do not overwrite it.
- only `clear` lifts a halt. After a limit halt it re-bases the day at the current equity (the
  operator accepts the loss so far; otherwise the next reading would halt again at once); after
  a storage or operator halt the day's baseline stays, so halting and resuming never buys a
  fresh loss budget.
- a record from an earlier UTC day rolls over at the first reading (`evaluate` does it: the new
  day starts from the record's last reading, the equity at the boundary), one from today keeps
  its start equity and peak.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import msgspec

from .risk import AccountRiskState, AccountSnapshot, RiskConfig, RiskDecision, evaluate, initial_state

HaltKind = Literal["limit", "storage", "operator"]
Change = Literal["none", "batched", "durable"]


class Halt(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    ts: float  # epoch seconds
    by: str  # "risk limits", "supervisor", or the operator's user name
    kind: HaltKind


class AccountRisk(msgspec.Struct, frozen=True, kw_only=True):
    """What is persisted: today's figures (None until the first equity reading, or after a
    limit halt was cleared with no equity known) and the standing halt, if any."""

    day: AccountRiskState | None = None
    halt: Halt | None = None

    @property
    def halted(self) -> bool:
        return self.halt is not None

    @property
    def halt_reason(self) -> str:
        return self.halt.reason if self.halt is not None else ""


OK = RiskDecision(allow_new_orders=True, halted=False)


def _halted_decision(halt: Halt, config: RiskConfig) -> RiskDecision:
    return RiskDecision(allow_new_orders=False, halted=True, reason=halt.reason, cancel_open_orders=True,
                        flatten=config.flatten_on_halt)


def decision(state: AccountRisk, config: RiskConfig) -> RiskDecision:
    """What the state says now, without a new reading."""
    return _halted_decision(state.halt, config) if state.halt is not None else OK


def observe(state: AccountRisk, equity: float, now: float, config: RiskConfig,
            position_notional: Mapping[str, float] | None = None) -> tuple[AccountRisk, RiskDecision]:
    """One reading of the account. A NaN equity means "no reading yet" (the gateway has not
    reported): nothing changes. The first reading starts the day's figures (unless a restored
    record already holds today's) and is checked at once."""
    if not math.isfinite(equity):
        return state, decision(state, config)
    day = state.day if state.day is not None else initial_state(equity, now)
    halt = state.halt
    # evaluate keeps its own halt flag; the halt's one home is `state.halt`, so it is fed in
    # and stripped out again.
    day = msgspec.structs.replace(day, halted=halt is not None, halt_reason=halt.reason if halt else "",
                                  halted_ts=halt.ts if halt else 0.0)
    verdict, day = evaluate(day, AccountSnapshot(ts=now, equity=equity, position_notional=position_notional or {}),
                            config)
    day = msgspec.structs.replace(day, halted=False, halt_reason="", halted_ts=0.0)
    if verdict.halted and halt is None:
        halt = Halt(reason=verdict.reason, ts=now, by="risk limits", kind="limit")
    return AccountRisk(day=day, halt=halt), verdict


def halt(state: AccountRisk, reason: str, now: float, *, by: str, kind: HaltKind) -> tuple[AccountRisk, bool]:
    """Halt the account; False (and the state unchanged) when a halt already stands."""
    if state.halt is not None:
        return state, False
    return msgspec.structs.replace(state, halt=Halt(reason=reason, ts=now, by=by, kind=kind)), True


def clear(state: AccountRisk, now: float, *, equity: float = math.nan) -> tuple[AccountRisk, Halt | None]:
    """Lift the halt; returns the halt lifted (None: there was none). See the module doc for
    what happens to the day's figures."""
    lifted = state.halt
    if lifted is None:
        return state, None
    day = state.day
    if lifted.kind == "limit":
        day = initial_state(equity, now) if math.isfinite(equity) else None
    return AccountRisk(day=day, halt=None), lifted


def change(old: AccountRisk, new: AccountRisk) -> Change:
    """How a new state must reach the store: a halt, a clear, a new day or a new day start at
    once (`durable`, fsynced before anyone acts on it); a new peak or a new last reading with the
    next batch (a restart across midnight starts the new day from that reading); a mere re-reading
    (same figures) not at all."""
    if old.halt != new.halt:
        return "durable"
    if old.day is None and new.day is None:
        return "none"
    if old.day is None or new.day is None:
        return "durable"
    if (old.day.utc_day, old.day.day_start_equity) != (new.day.utc_day, new.day.day_start_equity):
        return "durable"
    if (old.day.day_peak_equity, old.day.last_equity) != (new.day.day_peak_equity, new.day.last_equity):
        return "batched"
    return "none"


def describe(state: AccountRisk) -> str:
    """One line for logs: the day's figures and the halt."""
    day = state.day
    figures = (f"day {day.utc_day}: start {day.day_start_equity:.2f}, peak {day.day_peak_equity:.2f}"
               if day is not None else "no equity reading yet")
    if state.halt is None:
        return figures
    return f"{figures}; HALTED by {state.halt.by}: {state.halt.reason}"
