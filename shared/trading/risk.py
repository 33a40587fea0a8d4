"""Risk limits, evaluated in one place (the supervisor) for the whole account, plus the
per-symbol caps each worker applies to its desired orders.

Account limits: max total notional, daily loss limit (vs the equity at the start of the UTC day,
i.e. the last reading before the day boundary)
and max drawdown from the day's peak equity. A breach halts: no new orders anywhere, cancel open
orders, and flatten positions if configured. A halt is sticky: it survives the UTC day rollover
and clears only by an operator's explicit lift (`orchestrate resume --all`; account_risk.py), because a bot that
silently resumes after a loss limit is what the limit exists to prevent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated

import msgspec
from msgspec import Meta

from shared.trading.orders import DesiredOrder

SECONDS_PER_DAY = 86_400


class RiskConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[risk]` table of the TOML config. Money in the settling currency (USD)."""

    # Ranges live in the types (msgspec checks them when the config is decoded).
    # notional of each grid order, % of available balance
    risk_percentage: Annotated[float, Meta(gt=0, le=100)] = 1.0
    min_balance: Annotated[float, Meta(ge=0, le=1e9)] = 100.0  # below this available balance: no new orders
    max_position_contracts: Annotated[int, Meta(ge=1, le=10_000_000)] = 1_000  # per symbol, absolute
    # per symbol; 0 would leave even the protective stop unplaced
    max_open_orders: Annotated[int, Meta(ge=1, le=1000)] = 20
    # account-wide, sum over symbols of |position| notional
    max_total_notional: Annotated[float, Meta(gt=0, le=1e12)] = 100_000.0
    # account-wide, equity drop since the UTC day's start
    daily_loss_limit: Annotated[float, Meta(gt=0, le=1e12)] = 500.0
    # account-wide, from the UTC day's peak equity
    max_drawdown_fraction: Annotated[float, Meta(gt=0, le=1)] = 0.10
    flatten_on_halt: bool = False


class AccountRiskState(msgspec.Struct, frozen=True, kw_only=True):
    utc_day: int  # days since the epoch (UTC) that the figures below belong to
    day_start_equity: float
    day_peak_equity: float
    halted: bool = False
    halt_reason: str = ""
    halted_ts: float = 0.0
    updated_ts: float = 0.0
    # The latest reading's equity. When the next reading falls on a new UTC day it is the equity at
    # the day boundary: the new day starts from it, so a loss taken on the day's first bar (between
    # that reading and the next) counts against the new day instead of being its baseline. None in
    # records written before it was kept: then the first reading of a day starts it.
    last_equity: float | None = None


class AccountSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    ts: float  # epoch seconds
    equity: float  # wallet balance + unrealised PnL
    position_notional: Mapping[str, float]  # per symbol, absolute notional at mark


class RiskDecision(msgspec.Struct, frozen=True, kw_only=True):
    allow_new_orders: bool
    halted: bool
    reason: str = ""  # why halted (shown by status as HALTED: reason)
    cancel_open_orders: bool = False
    flatten: bool = False


def utc_day(ts: float) -> int:
    return int(math.floor(ts / SECONDS_PER_DAY))


def initial_state(equity: float, ts: float) -> AccountRiskState:
    if not math.isfinite(equity):
        raise ValueError(f"equity must be finite, got {equity!r}")
    return AccountRiskState(
        utc_day=utc_day(ts), day_start_equity=equity, day_peak_equity=equity, updated_ts=ts, last_equity=equity,
    )


def _halt(state: AccountRiskState, reason: str, ts: float, config: RiskConfig) -> tuple[RiskDecision, AccountRiskState]:
    new_state = msgspec.structs.replace(state, halted=True, halt_reason=reason, halted_ts=ts, updated_ts=ts)
    return RiskDecision(
        allow_new_orders=False, halted=True, reason=reason, cancel_open_orders=True,
        flatten=config.flatten_on_halt,
    ), new_state


def evaluate(
    state: AccountRiskState, snapshot: AccountSnapshot, config: RiskConfig
) -> tuple[RiskDecision, AccountRiskState]:
    """Roll the day if needed, track the peak, and halt on the first breached account limit."""
    equity = snapshot.equity
    if not math.isfinite(equity):
        # Unknown equity is not "fine": stop adding risk until we know it again.
        return _halt(state, f"equity is not a number ({equity!r})", snapshot.ts, config)
    day = utc_day(snapshot.ts)
    if day > state.utc_day:
        # The day starts at the equity last seen before the boundary, not at this reading: this
        # reading already holds whatever moved since (a whole bar in the backtest), and that move
        # is the new day's. (After a gap with no readings the last one seen is still the best
        # figure known for the boundary, and erring that way halts rather than forgives a loss.)
        start = state.last_equity if state.last_equity is not None else equity
        state = msgspec.structs.replace(state, utc_day=day, day_start_equity=start, day_peak_equity=start)
    state = msgspec.structs.replace(
        state, day_peak_equity=max(state.day_peak_equity, equity), updated_ts=snapshot.ts, last_equity=equity,
    )
    if state.halted:
        return RiskDecision(
            allow_new_orders=False, halted=True, reason=state.halt_reason, cancel_open_orders=True,
            flatten=config.flatten_on_halt,
        ), state

    loss = state.day_start_equity - equity
    if loss >= config.daily_loss_limit:
        return _halt(state, f"daily loss {loss:.2f} reached the limit {config.daily_loss_limit:.2f}",
                     snapshot.ts, config)
    peak = state.day_peak_equity
    if peak > 0:
        drawdown = (peak - equity) / peak
        if drawdown >= config.max_drawdown_fraction:
            return _halt(state, f"drawdown {drawdown:.2%} from today's peak {peak:.2f} reached the "
                                f"limit {config.max_drawdown_fraction:.2%}", snapshot.ts, config)
    elif equity <= 0:
        return _halt(state, f"equity {equity:.2f} is not positive", snapshot.ts, config)
    total = sum(abs(v) for v in snapshot.position_notional.values())
    if not math.isfinite(total):
        return _halt(state, "position notional is not a number", snapshot.ts, config)
    if total > config.max_total_notional:
        return _halt(state, f"total notional {total:.2f} above the limit {config.max_total_notional:.2f}",
                     snapshot.ts, config)
    return RiskDecision(allow_new_orders=True, halted=False), state


def limit_desired(
    desired: Sequence[DesiredOrder],
    position_contracts: int,
    config: RiskConfig,
    *,
    long_held: int = 0,
    short_held: int = 0,
) -> tuple[DesiredOrder, ...]:
    """The desired orders that fit the symbol's caps.

    Take-profits and reduce-only orders (stops) always pass: each only unwinds contracts its own
    level (or the position) holds. Entry orders are taken nearest level first while (a) every
    entry on a side could fill on top of what that side already holds without exceeding
    max_position_contracts, and (b) the order count stays within max_open_orders (take-profits
    and stops count too). "Already holds" is the larger of the net position on that side and the
    gross contracts the bot's levels hold there (`long_held`/`short_held` from the level
    holdings): the net position alone would let a buy level's take-profit plus fresh sell entries
    go past the cap when both sides hold contracts."""
    if long_held < 0 or short_held < 0:
        raise ValueError(f"held contracts must be >= 0, got {long_held}, {short_held}")
    protective = [d for d in desired if d.reduce_only or d.purpose != "entry"]
    if len(desired) <= config.max_open_orders:
        # the usual case, decided without ranking: every entry fits when all of them together do
        # (sizes are never negative, so no partial sum exceeds the whole)
        buys = sells = 0
        for d in desired:
            if not (d.reduce_only or d.purpose != "entry"):
                if d.size < 0:
                    break
                if d.side == "buy":
                    buys += d.size
                else:
                    sells += d.size
        else:
            if (max(position_contracts, 0, long_held) + buys <= config.max_position_contracts
                    and max(-position_contracts, 0, short_held) + sells <= config.max_position_contracts):
                return tuple(desired)
    entries = sorted((d for d in desired if not (d.reduce_only or d.purpose != "entry")),
                     key=lambda d: (d.level, d.side))
    slots = config.max_open_orders - len(protective)
    worst_long = max(position_contracts, 0, long_held)
    worst_short = max(-position_contracts, 0, short_held)
    chosen: list[DesiredOrder] = []
    for d in entries:
        if slots <= 0:
            break
        if d.side == "buy":
            if worst_long + d.size > config.max_position_contracts:
                continue
            worst_long += d.size
        else:
            if worst_short + d.size > config.max_position_contracts:
                continue
            worst_short += d.size
        chosen.append(d)
        slots -= 1
    if len(chosen) == len(entries):  # the usual case: everything fits
        return tuple(desired)
    keep = set(map(id, chosen)) | set(map(id, protective))
    return tuple(d for d in desired if id(d) in keep)
