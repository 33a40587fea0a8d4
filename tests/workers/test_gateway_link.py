"""What the gateway tells the supervisor about its link (alerts, metrics): how long the account
websocket has been down, and the rate budget left, against a real paper venue over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.workers.gateway_support import gateway_on, running, started_venue


async def _until(pred: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_the_account_socket_outage_is_timed_and_the_rate_budget_reported(tmp_path: Path) -> None:
    venue = await started_venue(time.time() - 86_400)
    gw = gateway_on(tmp_path, venue)
    async with running(gw):
        assert gw.ws is not None
        assert await _until(lambda: gw.ws is not None and gw.ws.connections >= 1, 10)
        assert gw.link_figures()["ws_down_s"] == 0.0
        full = gw.link_figures()["rate_budget_left"]
        await gw.rest.get_wallet_balances()  # a signed read (weight 3) from the account's budget
        link = gw.link_figures()
        assert link["rate_budget_capacity"] == 10_000 and link["rate_budget_left"] == full - 3
        await venue.stop()  # the exchange goes away: the socket drops and cannot reconnect
        assert await _until(lambda: gw.link_figures()["ws_down_s"] > 0.0, 10)
        first = gw.link_figures()["ws_down_s"]
        await asyncio.sleep(0.6)
        assert gw.link_figures()["ws_down_s"] >= first + 0.5  # timed from the drop, not from each retry
        figures = gw.figures(0.0)
        assert figures.ws_down_s > 0 and figures.rate_budget_capacity == 10_000
