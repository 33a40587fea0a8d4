"""Delta's dead-man switch on the paper venue, over real loopback sockets with the real REST
client: create / ack / list with Delta's shapes and auth, the lapse (open orders of the covered
products cancelled with reason `deadman_switch`, pending protective stops kept, other products
untouched), renewal and ttl 0, persistence across a venue restart, and the gateway's keeper
(workers/gateway_deadman.py) arming, failing visibly, and disabling at a clean stop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shared.config import DeadmanConfig
from shared.delta.errors import DeltaError
from shared.delta.rest import DeltaRestClient
from workers.gateway_deadman import DeadmanKeeper
from workers.venue import PaperVenue, VenueSettings
from workers.venue.deadman import heartbeats_file

FROZEN = VenueSettings(bar_seconds=3600, history_bars=200)  # the market holds still after its first step
BTC, ETH = 27, 3136


async def start_venue(settings: VenueSettings = FROZEN) -> PaperVenue:
    venue = PaperVenue(settings, ["BTCUSD", "ETHUSD"])
    await venue.start()
    return venue


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = await start_venue()
    yield v
    await v.stop()


def client(venue: PaperVenue, secret: str | None = None) -> DeltaRestClient:
    return DeltaRestClient(venue.rest_url, venue.api_key, secret or venue.api_secret)


async def book_orders(rest: DeltaRestClient) -> dict[str, int]:
    """A resting bid on each product and a pending protective stop on BTCUSD (over a long
    position); returns their ids by name."""
    btc = await rest.get_ticker("BTCUSD")
    eth = await rest.get_ticker("ETHUSD")
    assert btc.close and eth.close
    await rest.place_order(product_id=BTC, size=3, side="buy", order_type="market_order")
    bid_btc = await rest.place_order(product_id=BTC, size=1, side="buy", limit_price=round(btc.close * 0.9),
                                     client_order_id="bid-btc")
    tp_btc = await rest.place_order(product_id=BTC, size=1, side="sell", limit_price=round(btc.close * 1.1),
                                    reduce_only=True, client_order_id="tp-btc")
    stop_btc = await rest.place_order(product_id=BTC, size=3, side="sell", order_type="market_order",
                                      reduce_only=True, stop_order_type="stop_loss_order",
                                      stop_price=round(btc.close * 0.8), client_order_id="stop-btc")
    bid_eth = await rest.place_order(product_id=ETH, size=1, side="buy", limit_price=round(eth.close * 0.9, 1),
                                     client_order_id="bid-eth")
    assert stop_btc.state == "pending" and bid_btc.state == "open"
    return {"bid-btc": bid_btc.id, "tp-btc": tp_btc.id, "stop-btc": stop_btc.id, "bid-eth": bid_eth.id}


async def open_by_coid(rest: DeltaRestClient) -> dict[str, str]:
    return {o.client_order_id or "": o.state or "" for o in await rest.get_open_orders()}


async def wait_until(pred: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pred():  # type: ignore[misc]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_create_ack_and_list_speak_deltas_shapes(venue: PaperVenue) -> None:
    async with client(venue) as rest:
        created = await rest.create_heartbeat("bot-1", product_symbols=["BTCUSD"])
        assert created.heartbeat_id == "bot-1"
        before = time.time()
        ack = await rest.ack_heartbeat("bot-1", 60_000)
        assert ack.process_enabled is True
        assert ack.expires_us is not None and before + 59 < ack.expires_us / 1e6 < time.time() + 61
        listed = await rest.get_heartbeats()
        assert listed == [{"user_id": 1, "heartbeat_id": "bot-1", "impact": "products", "contract_types": [],
                           "underlying_assets": [], "product_symbols": ["BTCUSD"],
                           "config": [{"action": "cancel_orders", "unhealthy_count": 1}]}]
        off = await rest.ack_heartbeat("bot-1", 0)
        assert off.process_enabled is False
        with pytest.raises(DeltaError) as unknown:
            await rest.ack_heartbeat("nobody", 1000)
        assert unknown.value.status == 404
        with pytest.raises(DeltaError) as bad:
            await rest.create_heartbeat("x" * 65, product_symbols=["BTCUSD"])
        assert bad.value.code == "bad_schema"
    async with client(venue, secret="0" * 64) as wrong:
        with pytest.raises(DeltaError) as refused:
            await wrong.ack_heartbeat("bot-1", 1000)
        assert refused.value.code == "invalid_signature"


async def test_a_lapsed_heartbeat_cancels_open_orders_of_its_products_and_keeps_pending_stops(
        venue: PaperVenue) -> None:
    async with client(venue) as rest:
        ids = await book_orders(rest)
        await rest.create_heartbeat("bot-1", product_symbols=["BTCUSD"])
        await rest.ack_heartbeat("bot-1", 400)
        assert set(await open_by_coid(rest)) == {"bid-btc", "tp-btc", "stop-btc", "bid-eth"}
        await wait_until(lambda: _gone(rest, "bid-btc"), 5, "the lapse")
        assert await open_by_coid(rest) == {"stop-btc": "pending", "bid-eth": "open"}
        for name in ("bid-btc", "tp-btc"):
            o = await rest.get_order(ids[name])
            assert (o.state, o.cancellation_reason) == ("cancelled", "deadman_switch")
        assert venue.deadman.lapses == 1 and venue.deadman.cancelled == 2
        # Once per lapse: a new order after it stays until the next ack lapses again.
        close = (await rest.get_ticker("BTCUSD")).close
        assert close
        again = await rest.place_order(product_id=BTC, size=1, side="buy", limit_price=round(close * 0.9))
        await asyncio.sleep(0.8)
        assert (await rest.get_order(again.id)).state == "open"
        await rest.ack_heartbeat("bot-1", 300)
        await wait_until(lambda: _state_is(rest, again.id, "cancelled"), 5, "the second lapse")


async def _gone(rest: DeltaRestClient, coid: str) -> bool:
    return coid not in await open_by_coid(rest)


async def _state_is(rest: DeltaRestClient, oid: int, state: str) -> bool:
    return (await rest.get_order(oid)).state == state


async def test_contract_scope_covers_every_product_of_the_type(venue: PaperVenue) -> None:
    async with client(venue) as rest:
        await book_orders(rest)
        await rest.create_heartbeat("all", contract_types=["perpetual_futures"])
        await rest.ack_heartbeat("all", 300)
        await wait_until(lambda: _gone(rest, "bid-eth"), 5, "the lapse")
        assert await open_by_coid(rest) == {"stop-btc": "pending"}


async def test_renewals_and_ttl_zero_keep_the_orders(venue: PaperVenue) -> None:
    async with client(venue) as rest:
        await book_orders(rest)
        await rest.create_heartbeat("bot-1", product_symbols=["BTCUSD", "ETHUSD"])
        for _ in range(8):  # 1.6 s of renewals, each well inside the 600 ms TTL
            await rest.ack_heartbeat("bot-1", 600)
            await asyncio.sleep(0.2)
        await rest.ack_heartbeat("bot-1", 0)  # switched off: nothing lapses
        await asyncio.sleep(1.0)
        assert len(await open_by_coid(rest)) == 4
        assert venue.deadman.lapses == 0


async def test_heartbeats_survive_a_venue_restart_and_lapse_while_it_was_down(tmp_path: Path) -> None:
    settings = VenueSettings(bar_seconds=3600, history_bars=200, state_file=str(tmp_path / "paper-account.json"))
    venue = await start_venue(settings)
    key, secret = venue.api_key, venue.api_secret
    async with client(venue) as rest:
        await book_orders(rest)
        await rest.create_heartbeat("bot-1", product_symbols=["BTCUSD"])
        await rest.ack_heartbeat("bot-1", 1500)
    await venue.stop()  # down before the TTL runs out, with the orders resting
    assert heartbeats_file(settings.state_file or "").stat().st_mode & 0o777 == 0o600
    await asyncio.sleep(2.0)
    venue = PaperVenue(settings, ["BTCUSD", "ETHUSD"], api_key=key, api_secret=secret)
    await venue.start()
    try:
        async with client(venue) as rest:
            await wait_until(lambda: _gone(rest, "bid-btc"), 5, "the lapse after the restart")
            assert await open_by_coid(rest) == {"stop-btc": "pending", "bid-eth": "open"}
            assert [h["heartbeat_id"] for h in await rest.get_heartbeats()] == ["bot-1"]
    finally:
        await venue.stop()


async def test_the_gateway_keeper_arms_renews_and_disables(venue: PaperVenue) -> None:
    cfg = DeadmanConfig(ttl_s=6.0, renew_interval_s=1.0)
    async with client(venue) as rest:
        await book_orders(rest)
        products = await rest.resolve_symbols(["BTCUSD", "ETHUSD"])
        keeper = DeadmanKeeper(rest, cfg, "g1", products.values())
        task = asyncio.create_task(keeper.loop())
        try:
            await wait_until(lambda: _armed(keeper), 5, "the keeper armed")
            assert keeper.note().startswith("dead-man switch armed (TTL 6s")
            (hb,) = await rest.get_heartbeats()
            assert (hb["heartbeat_id"], hb["product_symbols"]) == ("dgo-g1", ["BTCUSD", "ETHUSD"])
            await asyncio.sleep(2.5)  # renewed meanwhile
            assert keeper.schedule.state.last_ack_at is not None
            assert time.monotonic() - keeper.schedule.state.last_ack_at < 1.5
        finally:
            task.cancel()
        await keeper.disable()
        assert venue.deadman.switches.heartbeats["dgo-g1"].ttl_ms == 0
        await asyncio.sleep(0.5)
        assert len(await open_by_coid(rest)) == 4


async def _armed(keeper: DeadmanKeeper) -> bool:
    return keeper.schedule.state.last_ack_at is not None


async def test_the_keeper_counts_and_shows_failures_and_never_raises(venue: PaperVenue) -> None:
    cfg = DeadmanConfig(ttl_s=6.0, renew_interval_s=1.0)
    async with client(venue, secret="0" * 64) as wrong:  # every signed call refused
        products = {"BTCUSD": (await venue_products(venue))["BTCUSD"]}
        keeper = DeadmanKeeper(wrong, cfg, "g1", products.values())
        for _ in range(3):
            await keeper.step(keeper.schedule.state.next_step)
        s = keeper.schedule.state
        assert (s.failures, s.failing_in_a_row, s.last_error, s.next_step) == (3, 3, "invalid_signature", "create")
        assert keeper.note() == "dead-man switch NOT armed yet (3 renewal failures, last invalid_signature)"


async def venue_products(venue: PaperVenue) -> dict:
    async with client(venue) as rest:
        return await rest.resolve_symbols(["BTCUSD"])


def test_only_the_supervisors_word_is_an_operators_stop() -> None:
    """The gateway's side of OperatorStopLine: nothing said, or a supervisor gone without a word
    (its end closed), is not the operator's stop; the word is, and only once it was said."""
    from workers import gateway_deadman as gd

    try:
        gd.hear_operator_stop_on(None)
        assert not gd.operator_stopped()  # a gateway started without the line (never switches off)
        line = gd.OperatorStopLine()
        gd.hear_operator_stop_on(line.hear_end)
        assert not gd.operator_stopped()
        line.say()
        assert gd.operator_stopped()
        gone = gd.OperatorStopLine()
        gd.hear_operator_stop_on(gone.hear_end)
        gone._say_end.close()  # the supervisor died (EOF), having said nothing
        assert not gd.operator_stopped()
    finally:
        gd.hear_operator_stop_on(None)
