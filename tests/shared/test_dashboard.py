"""The dashboard's decisions: access, action checks, drawdowns, history sizing, the book view."""

from __future__ import annotations

import math

import pytest

from shared import dashboard as d
from shared.trading.book_view import MAX_BOOK_ROWS, grid_levels, resting_rows
from shared.trading.client_order_id import encode
from shared.trading.orders import DesiredOrder, OpenOrder


@pytest.mark.parametrize(("loopback", "action", "enabled", "header", "cookie", "status"), [
    (True, False, False, False, False, 200),   # reading on this machine is free
    (False, False, False, False, False, 401),  # from the network: token on every request
    (False, False, False, False, True, 200),   # ... the token link's cookie will do for reading
    (False, False, False, True, False, 200),
    (True, True, False, True, False, 403),     # actions off: refused even with the token
    (True, True, True, False, False, 401),     # actions on, no token
    (True, True, True, False, True, 401),      # a cookie alone never acts (another site's page could send it)
    (True, True, True, True, False, 200),
    (False, True, True, True, False, 200),
])
def test_access(loopback: bool, action: bool, enabled: bool, header: bool, cookie: bool, status: int) -> None:
    got, why = d.access(over_loopback=loopback, action=action, actions_enabled=enabled, header_token_ok=header,
                        cookie_token_ok=cookie)
    assert got == status and (why == "") == (status == 200)


def test_token_matches_only_the_token() -> None:
    assert d.token_matches("abc", "abc")
    assert not d.token_matches("abd", "abc") and not d.token_matches("", "abc") and not d.token_matches(None, "abc")
    assert not d.token_matches("", "")  # no token configured never matches


def test_actions_need_their_target_typed_back() -> None:
    syms = ["BTCUSD", "ETHUSD"]
    assert d.check_action("pause", "BTCUSD", "BTCUSD", syms) == ""
    assert "not confirmed" in d.check_action("pause", "BTCUSD", "", syms)
    assert "not confirmed" in d.check_action("resume", "BTCUSD", "ETHUSD", syms)
    assert "no worker" in d.check_action("pause", "XRPUSD", "XRPUSD", syms)
    assert d.check_action("halt", "", "ALL", syms) == "" and d.check_action("flatten", "", "ALL", syms) == ""
    assert "ALL" in d.check_action("flatten", "", "BTCUSD", syms)
    assert "unknown action" in d.check_action("stop", "", "ALL", syms)
    # one symbol flattened, the whole account resumed (the halt lifted); the rest refused
    assert d.check_action("flatten", "ETHUSD", "ETHUSD", syms) == ""
    assert "not confirmed" in d.check_action("flatten", "ETHUSD", "ALL", syms)
    assert d.check_action("resume", "", "ALL", syms) == ""
    assert "needs a symbol" in d.check_action("pause", "", "ALL", syms)
    assert "whole account" in d.check_action("halt", "BTCUSD", "BTCUSD", syms)


def test_drawdowns() -> None:
    assert d.drawdown(90.0, 100.0) == pytest.approx(0.1)
    assert d.drawdown(110.0, 100.0) == 0.0 and d.drawdown(math.nan, 100.0) == 0.0 and d.drawdown(5.0, 0.0) == 0.0
    worst, peak = d.max_drawdown([100.0, 120.0, 90.0, math.nan, 130.0, 117.0])
    assert worst == pytest.approx(0.25) and peak == 130.0
    assert d.max_drawdown([]) == (0.0, pytest.approx(math.nan, nan_ok=True))


def test_history_points_stay_within_the_fleet_budget() -> None:
    assert d.history_points(1) == d.HISTORY_POINTS_MAX
    assert d.history_points(300) == 400
    assert d.history_points(100_000) == d.HISTORY_POINTS_MIN


def test_loopback_hosts() -> None:
    assert d.is_loopback("127.0.0.1") and d.is_loopback("::1") and d.is_loopback("127.0.1.1")
    assert not d.is_loopback("0.0.0.0") and not d.is_loopback("192.0.2.2")


def test_book_view_keeps_our_orders_and_the_grid_entries() -> None:
    desired = [DesiredOrder(symbol="BTCUSD", side="buy", level=k, purpose="entry", price=100.0 - k, size=1)
               for k in (2, 1, 3)]
    desired.append(DesiredOrder(symbol="BTCUSD", side="sell", level=1, purpose="take_profit", price=101.0, size=1))
    assert grid_levels(desired) == (97.0, 98.0, 99.0)
    ours = encode(bot_id="g1", symbol="BTCUSD", side="buy", purpose="entry", level=1, generation=1)
    stop = encode(bot_id="g1", symbol="BTCUSD", side="sell", purpose="stop", level=0, generation=1)
    book = [OpenOrder(order_id=1, symbol="BTCUSD", side="buy", price=99.0, size=3, unfilled_size=2,
                      client_order_id=ours),
            OpenOrder(order_id=2, symbol="BTCUSD", side="sell", price=95.0, size=3, unfilled_size=3,
                      client_order_id=stop, order_type="stop_market_order", reduce_only=True),
            OpenOrder(order_id=3, symbol="BTCUSD", side="buy", price=98.0, size=1, unfilled_size=1,
                      client_order_id="manual-1")]
    assert resting_rows(book, bot_id="g1", symbol="BTCUSD") == (("sell", "stop", 95.0, 3), ("buy", "entry", 99.0, 2))
    many = [DesiredOrder(symbol="X", side="buy", level=1, purpose="entry", price=float(i), size=1) for i in range(999)]
    assert len(grid_levels(many)) == MAX_BOOK_ROWS


def test_control_requests_have_the_cli_shape() -> None:
    assert d.control_request("pause", "BTCUSD") == {"cmd": "pause", "symbol": "BTCUSD"}
    assert d.control_request("resume", "BTCUSD") == {"cmd": "resume", "symbol": "BTCUSD"}
    assert d.control_request("halt", "") == {"cmd": "halt", "reason": "from the dashboard"}
    assert d.control_request("flatten", "") == {"cmd": "flatten", "all": True}
    assert d.control_request("flatten", "ETHUSD") == {"cmd": "flatten", "symbols": ["ETHUSD"]}
    assert d.control_request("resume", "") == {"cmd": "resume", "all": True}
