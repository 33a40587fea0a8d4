"""What a bot sends while a halt, a doubtful position or an operator stands in the way
(shared/trading/halt.py), on a real TradingBot: no worker, no sockets."""

from __future__ import annotations

import itertools

import pytest

from shared.trading import halt
from shared.trading.bot import TradingBot

from .test_bot import _long_with_stop, bot

CALM = dict(account_halt=False, position_halt=False, position_doubtful=False, cancel_requested=False,
            flattening=False, flatten_on_halt=True)


def test_a_calm_bot_trades_and_a_doubtful_position_waits() -> None:
    assert halt.standing(**CALM) == "trade"
    assert halt.standing(**{**CALM, "position_doubtful": True}) == "wait"


def test_only_the_account_halt_flattens_and_only_when_configured() -> None:
    assert halt.standing(**{**CALM, "account_halt": True}) == halt.HaltOrders(
        halted=True, flatten=True, cancel_requested=False)
    assert halt.standing(**{**CALM, "account_halt": True, "flatten_on_halt": False}) == halt.HaltOrders(
        halted=True, flatten=False, cancel_requested=False)
    # a position the venue contradicts is halted on, never closed at market
    assert halt.standing(**{**CALM, "position_halt": True, "position_doubtful": True}) == halt.HaltOrders(
        halted=True, flatten=False, cancel_requested=False)
    assert halt.standing(**{**CALM, "cancel_requested": True, "position_doubtful": True}) == halt.HaltOrders(
        halted=False, flatten=False, cancel_requested=True)


@pytest.mark.parametrize("others", list(itertools.product([False, True], repeat=4)))
def test_an_operators_flatten_wins_over_everything(others: tuple[bool, bool, bool, bool]) -> None:
    account, position, doubtful, cancel = others
    got = halt.standing(account_halt=account, position_halt=position, position_doubtful=doubtful,
                        cancel_requested=cancel, flattening=True, flatten_on_halt=False)
    assert got == halt.HaltOrders(halted=True, flatten=True, cancel_requested=True)


def _sent(b: TradingBot, orders: halt.HaltOrders) -> tuple[set[int], bool]:
    p = b.halt_plan(halted=orders.halted, flatten_on_halt=orders.flatten, cancel_requested=orders.cancel_requested,
                    flatten_sent=False, price=1990.0)
    return set(p.cancel), p.flatten is not None


def test_each_standing_on_a_bot_holding_a_position_with_its_stop() -> None:
    b = bot()
    _long_with_stop(b)
    everything = set(b.open_orders)
    stop = {o.order_id for o in b.open_orders.values() if o.order_type == "stop_market_order"}
    position_halt = halt.standing(**{**CALM, "position_halt": True, "position_doubtful": True})
    account_halt = halt.standing(**{**CALM, "account_halt": True})
    operator_flatten = halt.standing(**{**CALM, "flattening": True, "flatten_on_halt": False})
    assert isinstance(position_halt, halt.HaltOrders) and isinstance(account_halt, halt.HaltOrders)
    assert isinstance(operator_flatten, halt.HaltOrders)
    assert _sent(b, position_halt) == (everything - stop, False)  # entries go, the stop protects
    assert _sent(b, account_halt) == (everything, True)  # flatten_on_halt: the stop goes, the position closes
    assert _sent(b, operator_flatten) == (everything, True)  # whatever flatten_on_halt says
    backtest = halt.halt_orders(account_halt=True, flatten_on_halt=False)  # the backtest's account halt
    assert _sent(b, backtest) == (everything - stop, False)
