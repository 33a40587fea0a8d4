"""Where the exchange gateway takes market data (issue 14 §1): from the venue's public host
(compact `trades`) where it has one, as India live does and the paper venue's /public path
mirrors; from legacy `all_trades` on the main socket when the public host refuses `trades`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shared.config import Config, load_config
from shared.messages import Tick
from shared.transport import make_endpoints
from tests.workers.gateway_support import gateway_on, running
from workers.gateway_exchange import ExchangeGateway
from workers.runtime import ChildSpec
from workers.venue import PaperVenue, VenueSettings


async def _ticks_through_gateway(tmp_path: Path, venue: PaperVenue, public_ws_url: str,
                                 wanted: int = 3) -> tuple[ExchangeGateway, list[Tick]]:
    gw = gateway_on(tmp_path, venue, public_ws_url=public_ws_url)
    ticks: list[Tick] = []
    async with running(gw, watch=["BTCUSD"]) as run:
        deadline = time.monotonic() + 20.0
        while len(ticks) < wanted and time.monotonic() < deadline:
            if isinstance(msg := await run.published(), Tick):
                ticks.append(msg)
    return gw, ticks


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=200), ["BTCUSD"])
    await v.start()
    yield v
    await v.stop()


async def test_trades_come_from_the_public_path(tmp_path: Path, venue: PaperVenue) -> None:
    gw, ticks = await _ticks_through_gateway(tmp_path, venue, venue.public_ws_url)
    assert len(ticks) >= 3 and all(t.price > 0 and t.exch_ts_us > 10**15 for t in ticks)
    assert [t.seq for t in ticks] == list(range(ticks[0].seq, ticks[0].seq + len(ticks)))
    assert gw.market_channel == "trades@public" and "trades from trades@public" in gw.market_data_note()


async def test_a_public_host_that_refuses_trades_falls_back_to_all_trades(
        tmp_path: Path, venue: PaperVenue, caplog: pytest.LogCaptureFixture) -> None:
    # the legacy path stands in for a public host that does not know `trades`
    with caplog.at_level(logging.WARNING, logger="gateway"):
        gw, ticks = await _ticks_through_gateway(tmp_path, venue, venue.ws_url)
    assert len(ticks) >= 3
    assert gw.market_channel.startswith("all_trades")
    refusals = [r for r in caplog.records if "public socket refused trades" in r.getMessage()]
    assert any("all_trades on the main socket" in r.getMessage() for r in caplog.records)
    assert len(refusals) == 1 and "Unknown channel" in refusals[0].getMessage()  # the venue's words, once


async def test_without_a_public_host_trades_come_from_all_trades(tmp_path: Path, venue: PaperVenue) -> None:
    gw, ticks = await _ticks_through_gateway(tmp_path, venue, "")  # Global: no public host
    assert len(ticks) >= 3 and gw.market_channel == "all_trades"


def test_paper_and_india_connections_name_a_public_host_global_none(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.gateway_exchange import connection
    from workers.runtime import VenueAccess
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})

    def spec(cfg: Config, access: VenueAccess | None) -> ChildSpec:
        return ChildSpec(kind="gateway", name="gateway", run_dir=str(tmp_path), ring_name="", config=cfg,
                         endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",),
                         venue_access=access)
    paper = connection(spec(cfg, VenueAccess(port=5000, api_key="k", api_secret="s")))
    assert (paper["ws_url"], paper["public_ws_url"]) == ("ws://127.0.0.1:5000/ws", "ws://127.0.0.1:5000/public")
    monkeypatch.setenv("DELTA_API_KEY", "k")
    monkeypatch.setenv("DELTA_API_SECRET", "s")
    india, _ = load_config(None, {"run": {"symbols": ["BTCUSD"], "mode": "live", "venue": "india"}})
    assert connection(spec(india, None))["public_ws_url"] == "wss://public-socket.india.delta.exchange"
    glob, _ = load_config(None, {"run": {"symbols": ["BTCUSD"], "mode": "live", "venue": "global"}})
    assert connection(spec(glob, None))["public_ws_url"] == ""


async def test_a_symbol_the_public_host_goes_quiet_on_moves_to_all_trades_and_back(
        tmp_path: Path, venue: PaperVenue) -> None:
    gw = gateway_on(tmp_path, venue, public_ws_url=venue.public_ws_url)
    async with running(gw):
        assert gw.public_ws is not None
        gw.public_ws.quiet.stale_after_s = 0.5  # the threshold, shortened for the test

        async def until(pred: Callable[[], bool], what: str) -> None:
            for _ in range(1000):
                await gw.public_quiet_check()
                if pred():
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"never: {what}")
        await until(lambda: gw.ticks >= 2, "ticks from the public host")
        public_client = next(c for c in venue.ws.clients if c.compact)
        saved = dict(public_client.subs)
        public_client.subs.clear()  # the public host goes quiet (the connection stays up)
        await until(lambda: gw.legacy_for == {"BTCUSD"}, "all_trades takes over")
        assert "all_trades for 1 quiet on public" in gw.market_data_note()
        before = gw.ticks
        await until(lambda: gw.ticks >= before + 3, "ticks from all_trades")
        assert any("all_trades" in c.subs for c in venue.ws.clients if not c.compact)
        public_client.subs.update(saved)  # the public host speaks again
        await until(lambda: not gw.legacy_for, "the public host takes the symbol back")
        before = gw.ticks
        await until(lambda: gw.ticks >= before + 3, "ticks from the public host again")
