"""One order type past the exchange edge (issue 11 §3): Delta's wire order, a REST answer or an
orders-channel update, is mapped once by the gateway (`domain_order`) into
shared.trading.orders.OpenOrder; the gateway's messages carry that very type to a real Worker and
its bot. Stops of either kind, market orders and answers without a side keep the order; one no
OpenOrder can hold is dropped at the edge and counted, never raised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
import zmq
import zmq.asyncio

import shared.messages as messages
from shared.delta import models
from shared.delta.ws import OrderUpdate, parse_frame
from shared.matching import OrderRequest
from shared.messages import AccountRequest, AccountSnapshot, MessageCodec, OrderEvent, SignalReply
from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.orders import OpenOrder, Purpose, Side
from shared.trading.pnl import Fill
from tests.workers.gateway_support import btc_worker, gateway_on, started_venue
from workers.gateway_exchange import domain_order
from workers.venue import PaperVenue
from workers.worker import Worker

BTC = PAPER_PRODUCTS["BTCUSD"]


def cid(side: Side, purpose: Purpose, level: int, generation: int = 1) -> str:
    return coid.encode(bot_id="g1", symbol="BTCUSD", side=side, purpose=purpose, level=level, generation=generation)


def reply(close: float) -> SignalReply:
    return SignalReply(symbol="BTCUSD", seq=1, bar_count=500, bar_ts=time.time(), direction="NONE", confidence=0.0,
                       votes={}, close=close, atr14=100.0, rsi14=50.0, valid=True, reason="", batch_size=1,
                       compute_ns=0, sent_ns=0)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    yield from btc_worker(tmp_path)


def wire_order(**body: Any) -> models.Order:
    """An order as Delta's REST answers it (amounts as strings)."""
    base: dict[str, Any] = {"id": 12, "size": 2, "unfilled_size": 2, "side": "sell", "order_type": "limit_order",
                            "limit_price": "48990", "state": "open", "reduce_only": False, "client_order_id": None,
                            "product_id": BTC.product_id, "product_symbol": "BTCUSD"}
    order: models.Order = models.decode(msgspec.json.encode({**base, **body}), models.Order)
    return order


def update_frame(**body: Any) -> OrderUpdate:
    """An orders-channel update as the client's frame parser reads it."""
    frame = {"type": "orders", "action": "update", "reason": "stop_update", "symbol": "BTCUSD",
             "product_id": BTC.product_id, "order_id": 12, "size": 2, "unfilled_size": 2, "state": "pending",
             "seq_no": 3, "timestamp": 1_800_000_000_000_000, **body}
    [ev] = parse_frame(frame, 1_800_000_000_000_001)
    assert isinstance(ev, OrderUpdate)
    return ev


OUR_STOP = cid("sell", "stop", 0)
STOP_LIMIT = {"order_type": "limit_order", "limit_price": "48990", "stop_order_type": "stop_loss_order",
              "stop_price": "49000", "state": "pending", "reduce_only": True}


@pytest.mark.parametrize(("body", "expected"), [
    ({}, ("limit_order", "sell", 48_990.0, "open")),
    ({"order_type": "market_order", "limit_price": None, "state": "closed", "unfilled_size": 0},
     ("market_order", "sell", 0.0, "closed")),
    ({"order_type": "market_order", "limit_price": None, "stop_order_type": "stop_loss_order", "stop_price": "49000",
      "state": "pending"}, ("stop_market_order", "sell", 49_000.0, "pending")),
    ({**STOP_LIMIT, "side": "buy"}, ("stop_limit_order", "buy", 49_000.0, "pending")),
    # no side said: our client order id says it
    ({**STOP_LIMIT, "side": "", "client_order_id": OUR_STOP}, ("stop_limit_order", "sell", 49_000.0, "pending")),
])
def test_each_kind_delta_reports_is_one_open_order(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    o = domain_order(wire_order(**body), "BTCUSD")
    assert type(o) is OpenOrder and (o.order_type, o.side, o.price, o.state) == expected
    assert o.is_stop == expected[0].startswith("stop_")


@pytest.mark.parametrize(("body", "why"), [
    ({"side": "", "client_order_id": "manual-1"}, "side ''"),
    ({"order_type": "iceberg_order"}, "order type 'iceberg_order'"),
    ({"state": "untriggered"}, "state 'untriggered'"),
])
def test_an_order_no_open_order_can_hold_is_refused_at_the_edge(body: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        domain_order(wire_order(**body), "BTCUSD")


async def test_our_stop_resting_as_a_stop_limit_on_the_venue_is_the_bots_stop(tmp_path: Path, worker: Worker) -> None:
    """Real paper venue, real gateway over loopback: our protective stop rests as a stop-limit
    (a trader re-placed it so, or the venue reports it so). The bot reads it as its stop: it shows
    its trigger and neither cancels it nor places a second stop."""
    venue = await started_venue(time.time())
    gw = gateway_on(tmp_path, venue)
    ctx = zmq.asyncio.Context()
    try:
        pub = ctx.socket(zmq.PUB)
        pub.bind("tcp://127.0.0.1:*")
        await gw.start(pub, ctx.socket(zmq.PUSH))
        e = venue.engine
        e.on_market_trade("BTCUSD", 50_000.0, 100, venue.market_us)
        e.place_order(OrderRequest(product_id=BTC.product_id, side="buy", size=2, order_type="market_order",
                                   client_order_id=cid("buy", "entry", 1)))
        e.place_order(OrderRequest(product_id=BTC.product_id, side="sell", size=2, order_type="limit_order",
                                   limit_price=Decimal("48990"), stop_order_type="stop_loss_order",
                                   stop_price=Decimal("49000"), reduce_only=True, client_order_id=OUR_STOP))
        snap = await gw.account(AccountRequest(symbol="BTCUSD", include_fills=True, sent_ns=0))
    finally:
        await gw.stop()
        ctx.destroy(linger=0)
        await venue.stop()
    assert snap.error == ""
    [stop] = snap.open_orders
    assert (stop.order_type, stop.side, stop.state, stop.price, stop.reduce_only) == (
        "stop_limit_order", "sell", "pending", 49_000.0, True)
    codec = MessageCodec("test")
    heard = codec.decode(codec.encode(snap))
    assert type(heard) is AccountSnapshot and heard.open_orders == [stop] and type(heard.open_orders[0]) is OpenOrder

    worker.on_account(heard, full=True)
    bot = worker.bot
    assert bot is not None and bot.position is not None and bot.position.contracts == 2
    assert bot.resting_stop_price() == 49_000.0
    assert worker.trading_figures()["resting_orders"] == (("sell", "stop", 49_000.0, 2),)
    intents = worker.make_intents(reply(50_000.0))
    placed = [] if intents is None else [coid.parse(p.client_order_id) for p in intents.place]
    assert [t.purpose for t in placed if t is not None].count("stop") == 0  # no second stop
    assert intents is None or stop.order_id not in intents.cancel


async def test_an_order_the_venue_sends_without_a_side_reaches_the_bot_by_its_client_order_id(
        tmp_path: Path, worker: Worker) -> None:
    """Delta's wire answers as the client parses them (a REST order body, an orders-channel
    frame), through the gateway's one mapping, the wire, and a real Worker: a stop-limit whose
    side is empty is the bot's stop; an update that names neither side nor client order id is
    the order the gateway learned; what no OpenOrder can hold is dropped and counted."""
    nowhere = SimpleNamespace(rest_url="http://127.0.0.1:9", ws_url="ws://127.0.0.1:9", api_key="k", api_secret="s")
    gw = gateway_on(tmp_path, cast(PaperVenue, nowhere))  # not started: the mapping needs no connection
    own_fill = Fill(fill_id="f1", symbol="BTCUSD", order_id="10", client_order_id=cid("buy", "entry", 1), side="buy",
                    size=2, price="50000", fee="0.01", contract_value=repr(BTC.contract_value), role="taker",
                    ts=1_800_000_000.0)
    wire = [wire_order(**STOP_LIMIT, side="", client_order_id=OUR_STOP),
            wire_order(id=13, order_type="iceberg_order", client_order_id="manual-2"),
            wire_order(id=14, side="", client_order_id="manual-3")]
    for o in wire:
        gw.client_ids.learn(o.id, o.client_order_id)  # as the gateway's account read does
    snap = AccountSnapshot(symbol="BTCUSD", product=BTC, open_orders=gw.read_orders("BTCUSD", wire),
                           fills=[own_fill], available_balance=10_000.0, equity=10_000.0, venue_position=2)
    assert gw.orders_dropped == 2 and gw.figures(0.0).orders_dropped == 2
    codec = MessageCodec("test")
    heard = codec.decode(codec.encode(snap))
    assert type(heard) is AccountSnapshot and heard.open_orders == snap.open_orders
    worker.on_account(heard, full=True)
    bot = worker.bot
    assert bot is not None and [o.order_id for o in bot.open_orders.values()] == [12]
    assert bot.resting_stop_price() == 49_000.0

    # the channel moves the stop without repeating side or client order id
    moved = gw.read_order("BTCUSD", update_frame(stop_price="49100", limit_price="49090",
                                                 stop_order_type="stop_loss_order"))
    assert moved is not None and (moved.side, moved.client_order_id) == ("sell", OUR_STOP)
    ev = codec.decode(codec.encode(OrderEvent(symbol="BTCUSD", order=moved, sent_ns=0)))
    assert type(ev) is OrderEvent
    worker.on_order_event(ev)
    assert bot.resting_stop_price() == 49_100.0 and bot.open_orders[12].reduce_only  # kept from the REST answer
    assert gw.read_order("BTCUSD", update_frame(order_id=99)) is None and gw.orders_dropped == 3


def test_no_second_order_struct_on_the_wire() -> None:
    """Every message struct that describes an exchange order is the one OpenOrder (OrderView is gone)."""
    twins = [name for name, obj in vars(messages).items()
             if isinstance(obj, type) and issubclass(obj, msgspec.Struct) and obj is not OpenOrder
             and "unfilled_size" in obj.__struct_fields__]
    assert twins == []
