"""The real REST client against a scripted Delta-shaped server on 127.0.0.1."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from itertools import pairwise

import pytest

from shared.delta.errors import (
    AuthError,
    InsufficientMargin,
    OrderNotFound,
    OutcomeUnknown,
    PostOnlyWouldCross,
    ServerError,
)
from shared.delta.models import Order
from shared.delta.ratelimit import INTENT_CHARGE, AccountRateLimiter, IntentCharge, Priority, RequestBudget, charged_to
from shared.delta.rest import (
    DeltaRestClient,
    NewOrder,
    OrderEdit,
    batch_split,
    build_query,
    price_text,
    server_timing_s,
)
from shared.products import UnknownSymbolError

from .conftest import API_KEY, API_SECRET, Reply, ScriptedDelta, Seen, fail, ok

ORDER = {"id": 101, "product_id": 27, "product_symbol": "BTCUSD", "size": 2, "unfilled_size": 2,
         "side": "buy", "order_type": "limit_order", "limit_price": "59000.5", "state": "open",
         "client_order_id": "dg1-a1-BTCUSD-Be03-1z", "created_at": "1725865012000000",
         "close_on_trigger": "false", "stop_trigger_method": "mark_price"}
BTC = {"id": 27, "symbol": "BTCUSD", "contract_value": "0.001", "tick_size": "0.5",
       "state": "live", "contract_type": "perpetual_futures", "notional_type": "vanilla",
       "default_leverage": "200", "initial_margin": "0.5", "maintenance_margin": "0.25",
       "maker_commission_rate": "0.0002", "taker_commission_rate": "0.0005",
       "position_size_limit": 229167, "settling_asset": {"id": 14, "symbol": "USD"},
       "underlying_asset": {"id": 1, "symbol": "BTC"}, "ui_config": {"x": 1},
       "launch_time": "2020-01-01T00:00:00Z"}
ETH = {**BTC, "id": 3136, "symbol": "ETHUSD", "contract_value": 0.01, "tick_size": 0.05,
       "underlying_asset": {"symbol": "ETH"}}


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, s: float) -> None:
        self.calls.append(s)


@pytest.fixture
async def client(delta: ScriptedDelta) -> AsyncIterator[DeltaRestClient]:
    async with DeltaRestClient(delta.url, API_KEY, API_SECRET, timeout_s=0.5,
                               sleep=Sleeps(), rng=random.Random(7)) as c:
        yield c


async def test_signed_get_signs_the_exact_query_and_sends_user_agent(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/orders", ok([ORDER], {"after": None}))
    orders = await client.get_open_orders([27, 3136])
    assert [o.id for o in orders] == [101]
    seen = delta.requests("GET", "/v2/orders")[0]
    assert seen.signature_ok is True
    assert seen.query == "?product_ids=27,3136&states=open,pending&page_size=100"
    assert seen.headers["User-Agent"]
    assert seen.headers["api-key"] == API_KEY
    assert seen.headers["timestamp"].isdigit() and len(seen.headers["timestamp"]) == 10


async def test_post_signs_the_compact_body_it_sends(delta: ScriptedDelta,
                                                    client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders", ok(ORDER))
    order = await client.place_order(product_id=27, size=2, side="buy", limit_price=59000.5,
                                     post_only=True, client_order_id="dg1-a1-BTCUSD-Be03-1z")
    assert order.id == 101 and order.limit_price == 59000.5 and order.close_on_trigger is False
    seen = delta.requests("POST", "/v2/orders")[0]
    assert seen.signature_ok is True
    assert seen.body == ('{"product_id":27,"size":2,"side":"buy","order_type":"limit_order",'
                         '"time_in_force":"gtc","limit_price":"59000.5","post_only":"true",'
                         '"reduce_only":"false","client_order_id":"dg1-a1-BTCUSD-Be03-1z"}')


async def test_stop_market_order_sends_the_stop_fields(delta: ScriptedDelta,
                                                      client: DeltaRestClient) -> None:
    pending = {**ORDER, "order_type": "market_order", "limit_price": None, "state": "pending",
               "side": "sell", "reduce_only": True, "stop_order_type": "stop_loss_order",
               "stop_price": "58000.5"}
    delta.on("POST", "/v2/orders", ok(pending))
    delta.on("PUT", "/v2/orders", ok({**pending, "stop_price": "58100"}))
    order = await client.place_order(product_id=27, size=2, side="sell", order_type="market_order",
                                     reduce_only=True, client_order_id="dg1-a1-BTCUSD-Ss00-1z",
                                     stop_order_type="stop_loss_order", stop_price=58000.5,
                                     stop_trigger_method="last_traded_price")
    assert (order.state, order.stop_order_type, order.stop_price) == ("pending", "stop_loss_order", 58000.5)
    body = delta.requests("POST", "/v2/orders")[0].body
    assert '"stop_order_type":"stop_loss_order","stop_price":"58000.5"' in body
    assert '"stop_trigger_method":"last_traded_price"' in body and "limit_price" not in body
    edited = await client.edit_order(product_id=27, order_id=101, stop_price=58100, size=2)
    assert edited.stop_price == 58100.0
    assert '"stop_price":"58100"' in delta.requests("PUT", "/v2/orders")[0].body


async def test_half_a_stop_is_refused_before_sending(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    with pytest.raises(ValueError, match="both stop_order_type and stop_price"):
        await client.place_order(product_id=27, size=1, side="sell", order_type="market_order",
                                 stop_price=58000)
    with pytest.raises(ValueError, match="stop_order_type must be one of"):
        await client.place_order(product_id=27, size=1, side="sell", order_type="market_order",
                                 stop_order_type="trailing", stop_price=58000)
    assert delta.seen == []


async def test_public_reads_are_unsigned(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/tickers/BTCUSD", ok({"symbol": "BTCUSD", "close": 60000,
                                              "mark_price": "60001.5", "timestamp": 1689136597460456,
                                              "quotes": {"best_bid": "60000", "best_ask": "60001"}}))
    ticker = await client.get_ticker("BTCUSD")
    assert ticker.mark_price == 60001.5 and ticker.quotes and ticker.quotes.best_ask == 60001.0
    assert delta.seen[0].signature_ok is None and "api-key" not in delta.seen[0].headers


async def test_products_follow_cursors_and_resolve_to_specs(delta: ScriptedDelta,
                                                            client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/products", ok([BTC], {"after": "c1"}), ok([ETH], {"after": None}))
    specs = await client.resolve_symbols(["BTCUSD", "ETHUSD"])
    assert [s.query for s in delta.seen] == ["?page_size=500", "?page_size=500&after=c1"]
    btc = specs["BTCUSD"]
    assert (btc.product_id, btc.contract_value, btc.tick_size) == (27, 0.001, 0.5)
    assert btc.initial_margin == pytest.approx(0.005)  # Delta's "0.5" is percent: 200x
    assert btc.maintenance_margin == pytest.approx(0.0025)
    assert (btc.settling_asset, btc.underlying_asset, btc.default_leverage) == ("USD", "BTC", 200)
    assert specs["ETHUSD"].product_id == 3136


async def test_unknown_symbol_names_close_matches(delta: ScriptedDelta,
                                                  client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/products", ok([BTC, ETH], {"after": None}))
    with pytest.raises(UnknownSymbolError) as info:
        await client.resolve_symbols(["BTCUSDT"])
    assert "BTCUSD" in info.value.close_matches


async def test_reads_retry_5xx_with_backoff_then_succeed(delta: ScriptedDelta,
                                                         client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/wallet/balances", Reply(status=502, body="<html>bad gateway</html>"),
             fail(503, "unavailable"), ok([{"asset_symbol": "USD", "balance": "1000.5",
                                            "available_balance": "900"}], {"net_equity": "1000"}))
    balances = await client.get_wallet_balances()
    assert balances[0].balance == 1000.5 and balances[0].blocked_margin == 0.0
    assert len(delta.seen) == 3 and client.retries == 2
    assert isinstance(client._sleep, Sleeps) and len(client._sleep.calls) == 2
    assert all(0 <= s <= client.backoff_cap_s for s in client._sleep.calls)
    route = "GET /v2/wallet/balances"
    assert client.outcomes == {(route, "5xx"): 2, (route, "2xx"): 1}
    assert client.latency[route].total == 3


async def test_reads_give_up_after_bounded_attempts(delta: ScriptedDelta,
                                                    client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/wallet/balances", fail(500, "internal_error"))
    with pytest.raises(ServerError):
        await client.get_wallet_balances()
    assert len(delta.seen) == client.max_read_attempts


async def test_create_timeout_then_order_exists_is_not_resent(delta: ScriptedDelta,
                                                              client: DeltaRestClient) -> None:
    coid = ORDER["client_order_id"]
    assert isinstance(coid, str)
    delta.on("POST", "/v2/orders", Reply(body={"success": True, "result": ORDER}, delay_s=30))
    delta.on("GET", f"/v2/orders/client_order_id/{coid}", ok(ORDER))
    order = await client.place_order(product_id=27, size=2, side="buy", limit_price="59000.5",
                                     client_order_id=coid)
    assert order.id == 101
    assert len(delta.requests("POST", "/v2/orders")) == 1
    assert client.outcomes[("POST /v2/orders", "timeout")] == 1
    assert client.outcomes[("GET /v2/orders/client_order_id/{coid}", "2xx")] == 1


async def test_create_timeout_and_no_order_is_resent_once(delta: ScriptedDelta,
                                                          client: DeltaRestClient) -> None:
    coid = ORDER["client_order_id"]
    assert isinstance(coid, str)
    delta.on("POST", "/v2/orders", Reply(body={}, delay_s=30), ok(ORDER))
    delta.on("GET", f"/v2/orders/client_order_id/{coid}", fail(404, "not_found"))
    order = await client.place_order(product_id=27, size=2, side="buy", limit_price="59000.5",
                                     client_order_id=coid)
    assert order.id == 101
    posts = delta.requests("POST", "/v2/orders")
    assert len(posts) == 2 and posts[0].body == posts[1].body
    assert all(p.signature_ok for p in posts)


async def test_create_5xx_without_client_id_is_outcome_unknown(delta: ScriptedDelta,
                                                               client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders", fail(500, "internal_error"))
    with pytest.raises(OutcomeUnknown):
        await client.place_order(product_id=27, size=1, side="sell", limit_price=60000)
    assert len(delta.requests("POST", "/v2/orders")) == 1


async def test_order_rejections_map_to_classes_with_context(delta: ScriptedDelta,
                                                            client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders",
             fail(400, "insufficient_margin", {"available_balance": "1.2",
                                               "required_additional_balance": "3.4"}),
             fail(400, "immediate_execution_post_only"))
    with pytest.raises(InsufficientMargin) as info:
        await client.place_order(product_id=27, size=1, side="buy", limit_price=1)
    assert info.value.status == 400 and info.value.context["available_balance"] == "1.2"
    with pytest.raises(PostOnlyWouldCross):
        await client.place_order(product_id=27, size=1, side="buy", limit_price=1, post_only=True)
    assert len(delta.requests("POST", "/v2/orders")) == 2  # rejections are never retried


async def test_prose_auth_error_and_no_secret_anywhere(delta: ScriptedDelta,
                                                       client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/wallet/balances",
             Reply(status=401, body={"error": "SignatureExpired",
                                     "message": "your signature has expired"}))
    with pytest.raises(AuthError) as info:
        await client.get_wallet_balances()
    assert info.value.code == "SignatureExpired" and info.value.status == 401
    assert len(delta.seen) == 1  # auth failures are not retried
    for text in (str(info.value), repr(info.value), repr(client)):
        assert API_SECRET not in text and API_KEY not in text


async def test_429_blocks_the_limiter_for_the_reset_then_retries(delta: ScriptedDelta) -> None:
    class Spy(AccountRateLimiter):
        resets: list[int | None] = []

        async def on_rate_limited(self, reset_ms: int | None) -> None:
            self.resets.append(reset_ms)
            await super().on_rate_limited(reset_ms)

    limiter = Spy()
    delta.on("GET", "/v2/l2orderbook/BTCUSD",
             Reply(status=429, body="", headers={"X-RATE-LIMIT-RESET": "30"}),
             ok({"symbol": "BTCUSD", "buy": [{"price": "100", "size": 5, "depth": "5"}],
                 "sell": [], "last_updated_at": 1700000000000000}))
    async with DeltaRestClient(delta.url, public_limiter=limiter) as client:  # a public read
        book = await client.get_l2_orderbook("BTCUSD", depth=5)
    assert book.buy[0].size == 5 and book.last_updated_at == 1700000000000000
    assert limiter.resets == [30]
    assert len(delta.seen) == 2 and delta.seen[0].query == "?depth=5"


async def test_candles_page_past_2000_and_come_back_sorted(delta: ScriptedDelta,
                                                           client: DeltaRestClient) -> None:
    def window(seen: Seen) -> Reply:
        params = dict(p.split("=") for p in seen.query[1:].split("&"))
        lo, hi = int(params["start"]), int(params["end"])
        bars = [{"time": t, "open": 1, "high": 2, "low": 0.5, "close": "1.5", "volume": 3}
                for t in range(lo - lo % 60, hi + 1, 60) if t >= lo]
        return ok(list(reversed(bars)))  # newest first: the client must sort

    delta.on("GET", "/v2/history/candles", window)
    start = 1_700_000_040
    end = start + 4500 * 60 - 60
    candles = await client.get_candles("BTCUSD", "1m", start, end)
    assert len(delta.seen) == 3
    assert len(candles) == 4500
    assert candles[0].time == start * 1_000_000
    times = [c.time for c in candles if isinstance(c.time, int)]  # normalised to integer µs
    assert len(times) == len(candles) and all(b - a == 60_000_000 for a, b in pairwise(times))


def created(seen: Seen) -> Reply:
    """A batch create that places every order it is sent."""
    return ok([{**ORDER, "id": 1000 + i, "client_order_id": o["client_order_id"], "limit_price": o["limit_price"]}
               for i, o in enumerate(seen.json()["orders"])])


def placed_alone(seen: Seen) -> Reply:
    body = seen.json()
    return ok({**ORDER, "id": 2000, "client_order_id": body["client_order_id"], "limit_price": body["limit_price"]})


def grid(n: int) -> list[NewOrder]:
    return [NewOrder(size=1, side="buy", limit_price=100 + i, client_order_id=f"c{i}") for i in range(n)]


def test_batch_split_sends_a_batch_only_where_it_costs_no_more_than_single_orders() -> None:
    assert batch_split(1) == ([], [0])
    assert batch_split(4) == ([], [0, 1, 2, 3])  # 4 x 5 units < one batch's 25
    assert batch_split(5) == ([range(0, 5)], [])  # 25 = 25: the batch, one round trip
    assert batch_split(120) == ([range(0, 50), range(50, 100), range(100, 120)], [])
    assert batch_split(53) == ([range(0, 50)], [50, 51, 52])  # Delta's 50 a batch; 3 left go alone


async def test_place_orders_batches_50_at_a_time_and_answers_in_order(delta: ScriptedDelta,
                                                                      client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders/batch", created)
    placed = await client.place_orders(27, grid(120))
    sizes = [len(s.json()["orders"]) for s in delta.requests("POST", "/v2/orders/batch")]
    assert sorted(sizes) == [20, 50, 50]
    assert [o.client_order_id for o in placed if isinstance(o, Order)] == [f"c{i}" for i in range(120)]
    assert delta.requests("POST", "/v2/orders") == []
    assert client.limiter.snapshot().used == 3 * 25  # Delta's weight for a batch, whatever its size


async def test_a_five_level_regrid_is_one_batch_call_of_25_units(delta: ScriptedDelta,
                                                                 client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders/batch", created)
    await client.place_orders(27, grid(5))
    [call] = delta.seen
    assert call.json() == {"product_id": 27, "orders": [
        {"limit_price": str(100 + i), "size": 1, "side": "buy", "order_type": "limit_order", "time_in_force": "gtc",
         "post_only": "false", "client_order_id": f"c{i}"} for i in range(5)]}
    assert call.signature_ok and client.limiter.snapshot().used == 25


async def test_fewer_than_five_orders_go_alone_at_once(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders", placed_alone)
    placed = await client.place_orders(27, grid(4))
    assert len(delta.requests("POST", "/v2/orders")) == 4 and delta.requests("POST", "/v2/orders/batch") == []
    assert [o.client_order_id for o in placed if isinstance(o, Order)] == ["c0", "c1", "c2", "c3"]
    assert client.limiter.snapshot().used == 4 * 5


async def test_an_order_a_batch_leaves_out_is_sent_alone_and_gets_its_own_code(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    def all_but_c2(seen: Seen) -> Reply:  # Delta's partial success: only what it processed
        reply = created(seen)
        assert isinstance(reply.body, dict)
        reply.body["result"] = [o for o in reply.body["result"] if o["client_order_id"] != "c2"]
        return reply

    delta.on("POST", "/v2/orders/batch", all_but_c2)
    delta.on("POST", "/v2/orders", fail(400, "insufficient_margin", {"available_balance": "1.5"}))
    results = await client.place_orders(27, grid(6))
    assert [type(r).__name__ for r in results] == ["Order", "Order", "InsufficientMargin", "Order", "Order", "Order"]
    err = results[2]
    assert isinstance(err, InsufficientMargin) and err.code == "insufficient_margin"
    assert [s.json()["client_order_id"] for s in delta.requests("POST", "/v2/orders")] == ["c2"]


async def test_a_batch_refused_whole_asks_each_order_alone_for_its_own_answer(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    def alone(seen: Seen) -> Reply:
        if seen.json()["client_order_id"] == "c1":
            return fail(400, "immediate_execution_post_only")
        return placed_alone(seen)

    delta.on("POST", "/v2/orders/batch", fail(400, "risk_limits_breached"))
    delta.on("POST", "/v2/orders", alone)
    results = await client.place_orders(27, grid(5))
    assert isinstance(results[1], PostOnlyWouldCross)
    assert all(isinstance(r, Order) for i, r in enumerate(results) if i != 1)
    assert len(delta.requests("POST", "/v2/orders")) == 5


async def test_error_items_in_a_batch_answer_are_those_orders_refusals(delta: ScriptedDelta,
                                                                        client: DeltaRestClient) -> None:
    """Not in Delta's documented answer, but read if it ever comes: an item that names its
    order and carries an error is that order's refusal, with no extra call."""
    def with_error_item(seen: Seen) -> Reply:
        reply = created(seen)
        assert isinstance(reply.body, dict)
        reply.body["result"][3] = {"client_order_id": "c3", "error": {"code": "insufficient_margin"}}
        return reply

    delta.on("POST", "/v2/orders/batch", with_error_item)
    results = await client.place_orders(27, grid(5))
    assert isinstance(results[3], InsufficientMargin)
    assert delta.requests("POST", "/v2/orders") == []


async def test_after_an_uncertain_batch_each_order_is_looked_up_before_it_is_sent_again(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders/batch", fail(504, "gateway_timeout"))
    delta.on("GET", "/v2/orders/client_order_id/c0", ok({**ORDER, "client_order_id": "c0"}))  # it went through
    for i in range(1, 5):
        delta.on("GET", f"/v2/orders/client_order_id/c{i}", fail(404, "open_order_not_found"))
    delta.on("POST", "/v2/orders", placed_alone)
    results = await client.place_orders(27, grid(5))
    assert [r.client_order_id for r in results if isinstance(r, Order)] == [f"c{i}" for i in range(5)]
    assert sorted(s.json()["client_order_id"] for s in delta.requests("POST", "/v2/orders")) == ["c1", "c2", "c3", "c4"]
    assert len(delta.requests("POST", "/v2/orders/batch")) == 1  # a batch is never re-sent blindly


async def test_edit_and_cancel_batches_and_the_orders_they_leave_out(delta: ScriptedDelta,
                                                                     client: DeltaRestClient) -> None:
    ids = [101, 102, 103, 104, 105]
    delta.on("PUT", "/v2/orders/batch", ok([{**ORDER, "id": i, "size": 3} for i in ids if i != 104]))
    delta.on("PUT", "/v2/orders", fail(404, "open_order_not_found"))  # 104 filled meanwhile
    delta.on("DELETE", "/v2/orders/batch", ok([{**ORDER, "id": i, "state": "cancelled"} for i in ids]))
    edited = await client.edit_orders(27, [OrderEdit(id=i, limit_price=0.1, size=3) for i in ids])
    cancelled = await client.cancel_orders(27, ids)
    assert delta.requests("PUT", "/v2/orders/batch")[0].json() == {
        "product_id": 27, "orders": [{"id": i, "limit_price": "0.1", "size": 3} for i in ids]}
    assert [type(r).__name__ for r in edited] == ["Order", "Order", "Order", "OrderNotFound", "Order"]
    assert [s.json()["id"] for s in delta.requests("PUT", "/v2/orders")] == [104]
    assert delta.requests("DELETE", "/v2/orders/batch")[0].json() == {
        "product_id": 27, "orders": [{"id": i} for i in ids]}
    assert [r.state for r in cancelled if isinstance(r, Order)] == ["cancelled"] * 5


async def test_an_uncertain_batch_edit_is_not_repeated(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("PUT", "/v2/orders/batch", fail(504, "gateway_timeout"))
    edited = await client.edit_orders(27, [OrderEdit(id=100 + i, limit_price=0.1) for i in range(5)])
    assert all(isinstance(r, OutcomeUnknown) for r in edited)
    assert len(delta.seen) == 1


async def test_open_orders_split_ids_by_10_and_follow_cursors(delta: ScriptedDelta,
                                                              client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/orders", ok([ORDER], {"after": "p2"}), ok([{**ORDER, "id": 102}]),
             ok([{**ORDER, "id": 103}], {"after": None}))
    orders = await client.get_open_orders(list(range(1, 13)))
    assert [o.id for o in orders] == [101, 102, 103]
    queries = [s.query for s in delta.seen]
    assert queries[0].startswith("?product_ids=1,2,3,4,5,6,7,8,9,10&")
    assert queries[1].endswith("&after=p2")
    assert queries[2].startswith("?product_ids=11,12&")


async def test_cursor_loop_is_refused(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/fills", ok([{"id": "a", "size": 1, "side": "buy", "price": "1"}],
                                    {"after": "same"}))
    with pytest.raises(Exception, match="cursor_loop"):
        await client.get_fills()


async def test_cancel_by_client_id_and_cancel_all(delta: ScriptedDelta,
                                                  client: DeltaRestClient) -> None:
    delta.on("DELETE", "/v2/orders", ok({**ORDER, "state": "cancelled",
                                         "cancellation_reason": "cancelled_by_user"}))
    delta.on("DELETE", "/v2/orders/all", Reply(body={"success": True}))
    order = await client.cancel_order(product_id=27, client_order_id="c1")
    await client.cancel_all(product_id=27)
    assert order.state == "cancelled" and not order.is_open
    assert delta.requests("DELETE", "/v2/orders")[0].json() == {"product_id": 27,
                                                                "client_order_id": "c1"}
    body = delta.requests("DELETE", "/v2/orders/all")[0].json()
    assert body["product_id"] == 27 and body["cancel_limit_orders"] == "true"
    assert all(s.signature_ok for s in delta.seen)


async def test_cancel_retried_after_timeout_reads_back_not_found(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("DELETE", "/v2/orders", Reply(body={}, delay_s=30), fail(400, "open_order_not_found"))
    delta.on("GET", "/v2/orders/101", ok({**ORDER, "state": "cancelled"}))
    order = await client.cancel_order(product_id=27, order_id=101)
    assert order.state == "cancelled"
    assert len(delta.requests("DELETE", "/v2/orders")) == 2


async def test_cancel_of_unknown_order_raises_not_found(delta: ScriptedDelta,
                                                        client: DeltaRestClient) -> None:
    delta.on("DELETE", "/v2/orders", fail(400, "open_order_not_found"))
    with pytest.raises(OrderNotFound):
        await client.cancel_order(product_id=27, order_id=5)
    assert len(delta.seen) == 1


async def test_bad_input_is_refused_before_anything_is_sent(delta: ScriptedDelta,
                                                            client: DeltaRestClient) -> None:
    with pytest.raises(ValueError, match="at most 32"):
        await client.place_order(product_id=27, size=1, side="buy", limit_price=1,
                                 client_order_id="x" * 33)
    with pytest.raises(ValueError, match="size"):
        await client.place_order(product_id=27, size=0, side="buy", limit_price=1)
    with pytest.raises(ValueError, match="limit_price"):
        await client.place_order(product_id=27, size=1, side="buy")
    with pytest.raises(ValueError, match="positive"):
        await client.place_order(product_id=27, size=1, side="buy", limit_price=-5)
    with pytest.raises(AuthError, match="no_api_key"):
        await DeltaRestClient(delta.url).get_wallet_balances()
    assert delta.seen == []


async def test_account_reads_accept_live_shapes(delta: ScriptedDelta,
                                                client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/positions", ok({"size": -3, "entry_price": "61000"}))
    delta.on("GET", "/v2/positions/margined", ok([{
        "size": 4, "entry_price": "60000", "margin": "12.5", "adl_level": None,
        "realized_holding_cost": "0", "product": {"id": 27, "symbol": "BTCUSD"},
        "created_at": "2024-05-01T10:00:00.123456Z"}]))
    delta.on("GET", "/v2/fills", ok([{
        "id": "5f2a9c", "size": 2, "side": "sell", "price": 60010.5, "role": "maker",
        "commission": "-0.01", "order_id": 101, "created_at": "2020-11-16T02:38:26Z",
        "product": {"id": 27, "symbol": "BTCUSD"}}], {"after": None}))
    delta.on("POST", "/v2/products/27/orders/leverage", ok({"leverage": 20, "product_id": 27}))
    position = await client.get_position(27)
    margined = await client.get_margined_positions()
    fills = await client.get_fills([27], start_time=1_600_000_000_000_000)
    leverage = await client.set_leverage(27, 20)
    assert (position.size, position.entry_price, position.product_id) == (-3, 61000.0, 27)
    assert margined[0].product_symbol == "BTCUSD" and margined[0].adl_level is None
    assert margined[0].created_at == 1714557600123456
    assert fills[0].id == "5f2a9c" and fills[0].order_id == "101"
    assert fills[0].product_symbol == "BTCUSD" and fills[0].created_at == 1605494306000000
    assert leverage.leverage == 20.0
    assert delta.requests("POST", "/v2/products/27/orders/leverage")[0].body == '{"leverage":"20"}'


def test_query_and_price_text_are_exact() -> None:
    assert build_query({"a": None, "b": True, "c": [1, 2], "s": "MARK:BTCUSD"}) == (
        "?b=true&c=1,2&s=MARK%3ABTCUSD")
    assert build_query({}) == ""
    assert price_text(0.1) == "0.1" and price_text(1e-7) == "0.0000001"
    assert price_text("59000.50") == "59000.5" and price_text(60000) == "60000"
    with pytest.raises(ValueError):
        price_text(float("nan"))


async def test_reduce_only_goes_at_risk_priority(delta: ScriptedDelta) -> None:
    class Spy(AccountRateLimiter):
        seen: list[Priority] = []

        async def acquire(self, weight: int, priority: Priority = Priority.READ) -> None:
            self.seen.append(priority)
            await super().acquire(weight, priority)

    limiter = Spy()
    delta.on("POST", "/v2/orders", ok(ORDER))
    async with DeltaRestClient(delta.url, API_KEY, API_SECRET, limiter=limiter) as client:
        await client.place_order(product_id=27, size=1, side="sell", limit_price=1,
                                 reduce_only=True)
        await client.place_order(product_id=27, size=1, side="sell", limit_price=1)
    assert limiter.seen == [Priority.RISK, Priority.NEW_ORDER]


async def test_read_timeout_is_retried_and_each_try_is_freshly_signed(
        delta: ScriptedDelta) -> None:
    ticks = iter(range(1_700_000_000, 1_700_000_100))
    delta.on("GET", "/v2/orders/7", Reply(body={}, delay_s=30), ok({**ORDER, "id": 7}))
    async with DeltaRestClient(delta.url, API_KEY, API_SECRET, timeout_s=0.5, sleep=Sleeps(),
                               clock=lambda: float(next(ticks))) as client:
        order = await client.get_order(7)
    assert order.id == 7
    first, second = delta.requests("GET", "/v2/orders/7")
    assert first.headers["timestamp"] != second.headers["timestamp"]
    assert first.signature_ok and second.signature_ok


async def test_429_on_a_create_is_resent_once_after_the_reset(delta: ScriptedDelta,
                                                              client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders", Reply(status=429, body="", headers={"X-RATE-LIMIT-RESET": "5"}),
             ok(ORDER))
    order = await client.place_order(product_id=27, size=2, side="buy", limit_price=1,
                                     client_order_id="c1")
    assert order.id == 101 and len(delta.requests("POST", "/v2/orders")) == 2
    assert delta.requests("GET", "/v2/orders/client_order_id/c1") == []  # a 429 is a refusal


async def test_recent_trades_in_both_shapes(delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/trades/BTCUSD",
             ok([{"buyer_role": "taker", "seller_role": "maker", "price": "2", "size": 1,
                  "symbol": "BTCUSD", "timestamp": 1700000000000002},
                 {"buyer_role": "maker", "seller_role": "taker", "price": "1", "size": 3,
                  "symbol": "BTCUSD", "timestamp": 1700000000000001}]),
             ok({"trades": [{"side": "buy", "size": 2, "price": 5, "timestamp": 1700000000}]}))
    live = await client.get_recent_trades("BTCUSD")
    documented = await client.get_recent_trades("BTCUSD")
    assert [t.price for t in live] == [1.0, 2.0]
    assert documented[0].timestamp == 1_700_000_000_000_000 and documented[0].size == 2


async def test_nothing_secret_reaches_the_logs(delta: ScriptedDelta, client: DeltaRestClient,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    delta.on("GET", "/v2/wallet/balances", fail(500, "internal_error"),
             fail(401, "invalid_signature"))
    delta.on("POST", "/v2/orders", fail(400, "bad_schema"))
    for call in (client.get_wallet_balances(),
                 client.place_order(product_id=27, size=1, side="buy", limit_price=1)):
        with pytest.raises(Exception) as info:
            await call
        logging.getLogger("test").exception("failed: %r %s", info.value, info.value)
    signatures = [s.headers["signature"] for s in delta.seen]
    for secret in (API_SECRET, API_KEY, *signatures):
        assert secret not in caplog.text


async def test_expired_signature_teaches_the_server_clock_and_resends_once(
        delta: ScriptedDelta) -> None:
    local = 1_700_000_000.0
    server_us = int((local + 100) * 1_000_000)
    delta.on("POST", "/v2/orders",
             fail(401, "expired_signature", {"request_time": int(local), "server_time": server_us}),
             ok(ORDER))
    async with DeltaRestClient(delta.url, API_KEY, API_SECRET, clock=lambda: local) as client:
        await client.place_order(product_id=27, size=1, side="buy", limit_price=1)
        assert client.clock_offset_s == pytest.approx(100.0)
    first, second = delta.requests("POST", "/v2/orders")
    assert int(second.headers["timestamp"]) - int(first.headers["timestamp"]) == 100
    assert second.signature_ok


async def test_expired_signature_twice_or_without_server_time_raises(
        delta: ScriptedDelta, client: DeltaRestClient) -> None:
    delta.on("GET", "/v2/wallet/balances", fail(401, "expired_signature", {"server_time": 1}))
    with pytest.raises(AuthError):
        await client.get_wallet_balances()  # an hour+ away: not believed, not resent
    delta.on("GET", "/v2/positions/margined",
             Reply(status=401, body={"error": "SignatureExpired", "message": "expired"}))
    with pytest.raises(AuthError):
        await client.get_margined_positions()
    assert len(delta.seen) == 2


def test_server_timing_header_reads_the_servers_own_time() -> None:
    assert server_timing_s("app;dur=1.5") == pytest.approx(0.0015)
    assert server_timing_s("db;dur=2, app;desc=\"x\";dur=0.5") == pytest.approx(0.0025)
    assert server_timing_s(None) is None
    assert server_timing_s("app") is None  # no duration: nothing to say
    assert server_timing_s("app;dur=fast") is None


@pytest.mark.parametrize("timing", ["app;dur=nan", "app;dur=inf", "cdn;dur=1e400", "app;dur=-2"])
async def test_an_odd_server_timing_header_never_fails_an_answered_order(
        delta: ScriptedDelta, client: DeltaRestClient, timing: str) -> None:
    """The header is a figure for the order-path log, from whatever answers (a CDN in front of the
    exchange may add its own): an order the exchange placed must not come back as an error because
    that figure is not a duration, or the bot would think it unplaced."""
    delta.on("POST", "/v2/orders", Reply(body={"success": True, "result": ORDER}, headers={"Server-Timing": timing}))
    order = await client.place_order(product_id=27, size=2, side="buy", limit_price=59000.5,
                                     client_order_id="dg1-a1-BTCUSD-Be03-1z")
    assert order.id == 101
    assert "POST /v2/orders" not in client.venue_time  # no duration known: none recorded
    assert server_timing_s(timing) is None


async def test_the_units_each_request_cost_are_charged_to_what_it_bought(delta: ScriptedDelta,
                                                                        client: DeltaRestClient) -> None:
    delta.on("POST", "/v2/orders/batch", created)
    delta.on("POST", "/v2/orders", placed_alone)
    delta.on("GET", "/v2/wallet/balances", ok([]))
    await client.place_orders(27, grid(5))  # one batch: 25
    await client.place_orders(27, grid(2))  # two single places: 10
    with charged_to("reconcile"):
        await client.get_wallet_balances()  # 3
    await client.get_wallet_balances()  # nobody said what for: 3
    assert client.units_spent == {"batch place": 25, "place": 10, "reconcile": 3, "other": 3}
    assert sum(client.units_spent.values()) == client.limiter.snapshot().used


async def test_an_intent_learns_how_long_its_requests_waited_for_budget(delta: ScriptedDelta) -> None:
    delta.on("POST", "/v2/orders", placed_alone)
    budget = RequestBudget(capacity=10, window_s=0.3, reserve=0)
    async with DeltaRestClient(delta.url, API_KEY, API_SECRET, limiter=AccountRateLimiter(budget)) as c:
        charge = IntentCharge()
        token = INTENT_CHARGE.set(charge)
        try:
            await c.place_orders(27, grid(3))  # 15 units: the third waits for the next window
        finally:
            INTENT_CHARGE.reset(token)
    assert 0.1 < charge.waited_s < 2.0 and not charge.refused
