"""An operator's flatten of one symbol, as the bot tracks it: cancel every order the bot owns (its
protective stop too: the position it protects is being closed), close the bot's position with a
reduce-only market order (TradingBot.halt_plan builds both), and call it done only when a read of
the venue shows no order of ours resting and none of our contracts held. Pure: the worker feeds
it what the venue said.

A reduce-only order can never flip a position (Delta clips its fill to what still reduces and
the paper venue does the same), so sending the close again is safe; it is sent again when a
venue read shows our contracts still held and no order of ours resting (the last one finished,
e.g. clipped or rejected)."""

from __future__ import annotations

import time

import msgspec


class FlattenProgress(msgspec.Struct, frozen=True, kw_only=True):
    requested_ts: float  # epoch seconds
    confirmed_ts: float = 0.0  # the venue read that showed us flat (0: not yet)
    venue_left: int | None = None  # our contracts on the venue at the last read (None: no read yet)

    @property
    def done(self) -> bool:
        return self.confirmed_ts > 0


def starts_anew(p: FlattenProgress | None, *, bot_contracts: int) -> bool:
    """Asked to flatten (the supervisor asks each pass until it hears "flat"): a new flatten
    unless one is under way, or the last one's "flat" still holds (the bot holds nothing)."""
    return p is None or (p.done and bot_contracts != 0)


def needs_venue_read(p: FlattenProgress | None, *, bot_contracts: int, own_orders: int) -> bool:
    """The bot believes it is flat with nothing resting: only a read of the venue confirms it."""
    return p is not None and not p.done and bot_contracts == 0 and own_orders == 0


def on_venue_read(p: FlattenProgress, *, own_orders: int, venue_position: int, foreign: int,
                  ts: float) -> FlattenProgress:
    """A read of the venue: its open orders (`own_orders` of them ours) and its position for the
    product (`foreign`: the contracts of a trader's manual fills, not ours to close)."""
    if p.done:
        return p
    left = venue_position - foreign
    return FlattenProgress(requested_ts=p.requested_ts, venue_left=left,
                           confirmed_ts=ts if own_orders == 0 and left == 0 else 0.0)


def close_again(p: FlattenProgress, *, own_orders: int) -> bool:
    """Whether the close must be sent again: the venue still shows our contracts and nothing of
    ours rests there (the last close finished without closing them all)."""
    return not p.done and p.venue_left not in (None, 0) and own_orders == 0


def describe(p: FlattenProgress, *, own_orders: int, bot_contracts: int) -> str:
    """Status: the step the flatten is at."""
    if p.done:
        return time.strftime("flat: confirmed on the venue at %H:%M:%S UTC", time.gmtime(p.confirmed_ts))
    if own_orders:
        return f"cancelling {own_orders} order(s)"
    if bot_contracts:
        return f"closing {abs(bot_contracts)} contract(s) with a reduce-only market order"
    if p.venue_left:
        return f"the venue still shows {p.venue_left:+d} contract(s) of ours: reading fills and the venue again"
    return "confirming on the venue"
