"""Which orders a bot may send while something stands between it and its normal plan: the
account halt (the supervisor's risk limits), its own position-mismatch halt, a position the venue
contradicts, an operator's cancel or flatten. One rule, pure: the worker and the backtest ask it
before `TradingBot.plan`, and hand a `HaltOrders` to `TradingBot.halt_plan`."""

from __future__ import annotations

from typing import Literal

import msgspec


class HaltOrders(msgspec.Struct, frozen=True, kw_only=True):
    """The arguments of `TradingBot.halt_plan` for the bot's standing."""

    halted: bool  # a halt: the protective stop stays unless it flattens
    flatten: bool  # close the bot's position with a reduce-only market order
    cancel_requested: bool  # an operator's cancel: the protective stop goes too


def standing(*, account_halt: bool, position_halt: bool, position_doubtful: bool, cancel_requested: bool,
             flattening: bool, flatten_on_halt: bool) -> Literal["trade", "wait"] | HaltOrders:
    """What the bot sends now: "trade" (plan as usual), "wait" (nothing: a position the venue
    contradicts is never traded on, the re-read of the fills decides), or a halt's orders."""
    if flattening:
        # An operator's flatten: every order of ours (the stop too) and the position, reduce-only.
        return HaltOrders(halted=True, flatten=True, cancel_requested=True)
    if account_halt or position_halt or cancel_requested:
        return halt_orders(account_halt=account_halt, position_halt=position_halt,
                           cancel_requested=cancel_requested, flatten_on_halt=flatten_on_halt)
    return "wait" if position_doubtful else "trade"


def halt_orders(*, account_halt: bool, flatten_on_halt: bool, position_halt: bool = False,
                cancel_requested: bool = False) -> HaltOrders:
    """A halt's or an operator's cancel's orders. Only the account halt may flatten: a position
    the venue contradicts is not one to close at market (its halt keeps the protective stop, like
    a halt that does not flatten)."""
    return HaltOrders(halted=account_halt or position_halt, flatten=flatten_on_halt and account_halt,
                      cancel_requested=cancel_requested)
