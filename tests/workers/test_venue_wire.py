"""Paper venue endpoints and wire shapes that real Delta clients rely on (issue 14 §2), over real
loopback sockets: assets, indices, the wallet ledger, change_margin, cancel-all's `result`, fill
and position times as ISO 8601, the ticker's volume units."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from itertools import pairwise
from pathlib import Path

import aiohttp
import pytest

from shared.config import ConfigError, load_config
from shared.delta.models import Fill, Position, decode, to_micros
from shared.transport import make_endpoints
from tests.workers.test_venue import SYN, SYN_ID, Api, _start
from workers.runtime import ChildSpec
from workers.venue import PaperVenue, VenueSettings
from workers.venue_proc import venue_settings


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    venue = await _start()
    async with aiohttp.ClientSession() as session:
        yield Api(venue, session)
    await venue.stop()


def _iso_us(text: str) -> int:
    """ISO 8601 with a Z, as Delta's recorded fills carry it; refuses a bare number."""
    assert text.endswith("Z") and "T" in text, text
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


async def test_assets_list_the_settling_asset_and_underlyings_with_the_balance_asset_id(api: Api) -> None:
    assets = (await api.ok("GET", "/v2/assets"))["result"]
    by_symbol = {a["symbol"]: a for a in assets}
    assert {"USD", "BTC", "ETH"} <= set(by_symbol)
    balance = (await api.ok("GET", "/v2/wallet/balances"))["result"][0]
    # a client keys balances by asset: the balance's asset_id must name a listed asset
    assert by_symbol["USD"]["id"] == str(balance["asset_id"])
    products = {p["symbol"]: p for p in (await api.ok("GET", "/v2/products"))["result"]}
    assert by_symbol["BTC"]["id"] == str(products["BTCUSD"]["underlying_asset"]["id"])


async def test_indices_are_the_products_spot_indices(api: Api) -> None:
    indices = (await api.ok("GET", "/v2/indices"))["result"]
    products = (await api.ok("GET", "/v2/products"))["result"]
    assert sorted(i["symbol"] for i in indices) == sorted(p["spot_index"]["symbol"] for p in products)


async def test_cancel_all_answers_with_a_result_and_cancels(api: Api) -> None:
    bid = D((await api.ok("GET", f"/v2/tickers/{SYN}"))["result"]["quotes"]["best_bid"])
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "buy", "size": 1,
                                             "limit_price": str(bid - 50)})
    data = await api.ok("DELETE", "/v2/orders/all", body={"product_id": SYN_ID})
    assert data == {"success": True, "result": {}}
    assert (await api.ok("GET", "/v2/orders"))["result"] == []


async def test_fills_carry_iso_created_at_and_the_products_settling_asset(api: Api) -> None:
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "buy", "size": 3,
                                             "order_type": "market_order"})
    raw = (await api.ok("GET", "/v2/fills"))["result"][0]
    us = _iso_us(raw["created_at"])
    assert abs(us - api.venue.market_us) < 120 * 1_000_000
    assert raw["product"]["settling_asset"]["symbol"] == "USD"
    # the project's client reads the same time from the ISO form
    fill = decode(json.dumps(raw), Fill)
    assert fill.created_at == us and fill.created_us == us


async def test_ledger_books_each_fills_pnl_and_commission_and_walks_the_balance(api: Api) -> None:
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "buy", "size": 40,
                                             "order_type": "market_order"})
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "sell", "size": 40,
                                             "order_type": "market_order"})
    ledger = (await api.ok("GET", "/v2/wallet/transactions"))["result"]
    fills = (await api.ok("GET", "/v2/fills"))["result"]
    balance = D((await api.ok("GET", "/v2/wallet/balances"))["result"][0]["balance"])
    kinds = [t["transaction_type"] for t in ledger]
    assert kinds.count("commission") == len(fills) and kinds[-1] == "deposit"
    assert D(ledger[0]["balance"]) == balance  # newest entry: the balance now
    assert D(ledger[-1]["amount"]) == D(ledger[-1]["balance"]) == D("10000")
    # each entry's balance is the previous one's plus its amount
    for newer, older in pairwise(ledger):
        assert D(newer["balance"]) == D(older["balance"]) + D(newer["amount"])
    assert sum(D(t["amount"]) for t in ledger if t["transaction_type"] == "commission") == \
        -sum(D(f["commission"]) for f in fills)
    assert sum(D(t["amount"]) for t in ledger if t["transaction_type"] == "cashflow") == \
        sum(D(f["meta_data"]["realized_pnl"]) for f in fills)
    assert all(_iso_us(t["created_at"]) > 0 for t in ledger)
    only_fees = (await api.ok("GET", "/v2/wallet/transactions", "?transaction_types=commission"))["result"]
    assert {t["transaction_type"] for t in only_fees} == {"commission"}
    page = await api.ok("GET", "/v2/wallet/transactions", "?page_size=1")
    nxt = await api.ok("GET", "/v2/wallet/transactions", f"?page_size=1&after={page['meta']['after']}")
    assert [page["result"][0]["id"], nxt["result"][0]["id"]] == [ledger[0]["id"], ledger[1]["id"]]
    status, data, _ = await api.call("GET", "/v2/wallet/transactions", "?transaction_types=bogus")
    assert status == 400 and data["error"]["code"] == "bad_schema"


async def test_change_margin_moves_margin_between_balance_and_position(api: Api) -> None:
    status, data, _ = await api.call("POST", "/v2/positions/change_margin",
                                     body={"product_id": SYN_ID, "delta_margin": "10"})
    assert status == 400 and data["error"]["code"] == "bad_schema"  # no position yet
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "buy", "size": 10,
                                             "order_type": "market_order"})
    before = (await api.ok("GET", "/v2/positions/margined"))["result"][0]
    avail0 = D((await api.ok("GET", "/v2/wallet/balances"))["result"][0]["available_balance"])
    pos = (await api.ok("POST", "/v2/positions/change_margin",
                        body={"product_id": SYN_ID, "delta_margin": "25.5"}))["result"]
    assert D(pos["margin"]) == D(before["margin"]) + D("25.5")
    wallet = (await api.ok("GET", "/v2/wallet/balances"))["result"][0]
    assert D(wallet["available_balance"]) == avail0 - D("25.5")
    assert D(wallet["position_margin"]) == D(pos["margin"])
    status, data, _ = await api.call("POST", "/v2/positions/change_margin",
                                     body={"product_id": SYN_ID, "delta_margin": "-30"})
    assert status == 400 and data["error"]["code"] == "bad_schema"  # only the added 25.5 can go
    status, data, _ = await api.call("POST", "/v2/positions/change_margin",
                                     body={"product_id": SYN_ID, "delta_margin": "1000000"})
    assert status == 400 and data["error"]["code"] == "insufficient_margin"
    back = (await api.ok("POST", "/v2/positions/change_margin",
                         body={"product_id": SYN_ID, "delta_margin": "-25.5"}))["result"]
    assert D(back["margin"]) == D(before["margin"])
    status, data, _ = await api.call("POST", "/v2/positions/change_margin",
                                     body={"product_id": SYN_ID, "delta_margin": "ten"})
    assert status == 400 and data["error"]["code"] == "bad_schema"


async def test_margined_positions_carry_created_at_and_realized_cashflow(api: Api) -> None:
    await api.ok("POST", "/v2/orders", body={"product_id": SYN_ID, "side": "sell", "size": 4,
                                             "order_type": "market_order"})
    raw = (await api.ok("GET", "/v2/positions/margined"))["result"][0]
    assert _iso_us(raw["created_at"]) <= _iso_us(raw["updated_at"])
    assert "realized_cashflow" in raw
    pos = decode(json.dumps(raw), Position)
    assert pos.created_at == _iso_us(raw["created_at"])


async def test_ticker_volume_is_in_the_underlying_and_turnover_in_the_quote(api: Api) -> None:
    t = (await api.ok("GET", "/v2/tickers/BTCUSD"))["result"]
    cv = 0.001
    assert isinstance(t["size"], int) and t["size"] > 0
    assert t["volume"] == pytest.approx(t["size"] * cv, rel=1e-3, abs=cv)
    assert t["turnover"] == pytest.approx(t["volume"] * t["close"], rel=1e-9)
    assert to_micros(t["timestamp"]) == t["timestamp"]


# ---- the market clock: an explicit choice ---------------------------------------------------

async def test_wall_clock_replays_at_real_time_so_timestamps_are_now() -> None:
    # lockstep arrivals: the quarter's tick at its start, so this minute's candle exists at once
    # (independent arrivals send it up to a quarter bar, 15 s, later)
    venue = PaperVenue(VenueSettings(clock="wall", bar_seconds=0.04, history_bars=200, arrivals="lockstep"),
                       ["BTCUSD"])
    assert venue.settings.bar_seconds == 60.0  # wall: one bar per wall minute, whatever was set
    await venue.start()
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(venue, session)
            # the quarters of this minute already past replay at once: wait for that, not a time
            for _ in range(250):
                ticker = (await api.ok("GET", "/v2/tickers/BTCUSD"))["result"]
                if abs(ticker["timestamp"] / 1e6 - time.time()) <= 16:
                    break
                await asyncio.sleep(0.02)
            assert abs(ticker["timestamp"] / 1e6 - time.time()) <= 16  # a quarter bar, plus slack
            candles = (await api.ok("GET", "/v2/history/candles",
                                    f"?resolution=1m&symbol=BTCUSD&start={int(time.time()) - 600}"
                                    f"&end={int(time.time()) + 600}"))["result"]
            assert candles and candles[-1]["time"] == int(time.time()) // 60 * 60
    finally:
        await venue.stop()


async def test_replay_clock_runs_ahead_of_the_wall_clock(api: Api) -> None:
    for _ in range(1000):  # five bars of 0.04 s are five market minutes, from a start <= now
        if api.venue.ticks_replayed >= 20:
            break
        await asyncio.sleep(0.01)
    ticker = (await api.ok("GET", "/v2/tickers/BTCUSD"))["result"]
    assert ticker["timestamp"] / 1e6 - time.time() > 120


def test_config_passes_the_clock_to_the_venue(tmp_path: Path) -> None:
    path = tmp_path / "wall.toml"
    path.write_text('[market]\nclock = "wall"\n')
    cfg, _ = load_config(path)
    assert (cfg.market.clock, cfg.market.bar_seconds) == ("wall", 60.0)
    spec = ChildSpec(kind="venue", name="venue", run_dir=str(tmp_path), ring_name="", config=cfg,
                     endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",))
    assert (venue_settings(spec, 0).clock, venue_settings(spec, 0).bar_seconds) == ("wall", 60.0)
    path.write_text('[market]\nclock = "sundial"\n')
    with pytest.raises(ConfigError, match="market.clock"):
        load_config(path)


async def test_the_projects_client_reads_assets_and_the_ledger_from_the_venue(api: Api) -> None:
    from shared.delta.rest import DeltaRestClient
    venue = api.venue
    rest = DeltaRestClient(venue.rest_url, venue.api_key, venue.api_secret)
    try:
        assets = {a.symbol: a for a in await rest.get_assets()}
        [wallet] = await rest.get_wallet_balances()
        assert assets["USD"].id == wallet.asset_id
        await rest.place_order(product_id=SYN_ID, size=5, side="buy", order_type="market_order")
        ledger = await rest.get_wallet_transactions()
        assert [t.transaction_type for t in ledger] == ["commission", "deposit"]
        assert ledger[0].balance == pytest.approx(wallet.balance + ledger[0].amount)
        assert isinstance(ledger[0].created_at, int) and ledger[0].created_at > 10**15
    finally:
        await rest.close()
