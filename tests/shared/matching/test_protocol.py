"""Wire shapes and pure helpers: paging cursors, bar aggregation, request parsing, live shapes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from shared.matching import MatchingEngine, OrderRequest, VenueError
from shared.matching import protocol as wire
from shared.products import PAPER_PRODUCTS


def test_paging_walks_older_then_back_newer_without_gaps() -> None:
    keyed = [(k, f"item{k}") for k in range(10, 0, -1)]  # newest first
    page1, meta1 = wire.page_newest_first(keyed, after=None, before=None, size=4)
    assert page1 == ["item10", "item9", "item8", "item7"] and meta1["before"] is None
    page2, meta2 = wire.page_newest_first(keyed, after=int(meta1["after"]), before=None, size=4)
    assert page2 == ["item6", "item5", "item4", "item3"]
    page3, meta3 = wire.page_newest_first(keyed, after=int(meta2["after"]), before=None, size=4)
    assert page3 == ["item2", "item1"] and meta3["after"] is None
    back, meta_back = wire.page_newest_first(keyed, after=None, before=int(meta3["before"]), size=4)
    assert back == page2 and meta_back["before"] is not None
    assert wire.page_newest_first([], after=None, before=None, size=4) == ([], {"after": None, "before": None, "limit": 4})


def test_aggregate_bars_aligns_to_the_epoch() -> None:
    bars = [(600 + 60 * i, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 1.0) for i in range(7)]
    out = wire.aggregate_bars(bars, 300)
    assert [b[0] for b in out] == [600, 900]
    assert out[0] == (600, 10.0, 15.0, 9.0, 14.5, 5.0)
    assert out[1] == (900, 15.0, 17.0, 14.0, 16.5, 2.0)


def test_order_request_accepts_string_flags_and_numeric_string_sizes() -> None:
    req = wire.order_request({"side": "buy", "size": "3", "limit_price": "100.5", "post_only": "true",
                              "reduce_only": False, "client_order_id": "abc"}, 27)
    assert (req.size, req.limit_price, req.post_only, req.reduce_only) == (3, D("100.5"), True, False)
    market = wire.order_request({"side": "sell", "size": 1, "order_type": "market_order", "limit_price": "5"}, 27)
    assert market.limit_price is None  # ignored on market orders, not a cap


@pytest.mark.parametrize("body, param", [
    ({"side": "hold", "size": 1, "limit_price": "1"}, "side"),
    ({"side": "buy", "limit_price": "1"}, "size"),
    ({"side": "buy", "size": True, "limit_price": "1"}, "size"),
    ({"side": "buy", "size": 1, "limit_price": "abc"}, "limit_price"),
    ({"side": "buy", "size": 1, "limit_price": "-1"}, "limit_price"),
    ({"side": "buy", "size": 1, "limit_price": "1", "time_in_force": "fok"}, "time_in_force"),
    ({"side": "buy", "size": 1, "limit_price": "1", "post_only": "maybe"}, "post_only"),
])
def test_bad_order_bodies_name_the_field(body: dict[str, object], param: str) -> None:
    with pytest.raises(VenueError) as err:
        wire.order_request(body, 27)
    assert err.value.code == "bad_schema"
    assert err.value.context["schema_errors"][0]["param"] == param


def test_live_shapes_of_orders_fills_and_products() -> None:
    e = MatchingEngine(initial_balance_usd=1000, default_leverage=10, clock=lambda: 1_700_000_000_000_000)
    spec = PAPER_PRODUCTS["ETHUSD"]
    e.add_product(spec)
    e.on_market_trade("ETHUSD", 2000.0, 1, 1)
    o = e.place_order(OrderRequest(product_id=spec.product_id, side="buy", size=2, order_type="market_order"))
    oj = wire.order_json(o)
    assert oj["close_on_trigger"] == "false" and oj["stop_trigger_method"] == "mark_price"
    assert oj["average_fill_price"] == "2000.05" and oj["created_at"] == "1700000000000000"
    fj = wire.fill_json(e.fills[0], spec)
    assert isinstance(fj["id"], str) and fj["product"]["symbol"] == "ETHUSD" and fj["commission"] == "0.0200005"  # 2 x 0.01 x 2000.05 x 0.05%
    pj = wire.product_json(spec, D(10))
    assert (pj["contract_value"], pj["tick_size"], pj["taker_commission_rate"]) == ("0.01", "0.05", "0.0005")
    assert "created_at" not in pj and "launch_time" in pj
    assert wire.s(D("1E+3")) == "1000" and wire.s(D("0.00000000")) == "0"


def test_stop_fields_parse_and_echo_in_the_order_json() -> None:
    req = wire.order_request({"side": "sell", "size": 2, "order_type": "limit_order", "limit_price": "1990",
                              "stop_order_type": "stop_loss_order", "stop_price": "1995.5",
                              "stop_trigger_method": "last_traded_price", "reduce_only": "true"}, 3136)
    assert (req.stop_order_type, req.stop_price, req.stop_trigger_method) == \
        ("stop_loss_order", D("1995.5"), "last_traded_price")
    default = wire.order_request({"side": "buy", "size": 1, "order_type": "market_order",
                                  "stop_order_type": "take_profit_order", "stop_price": "1900"}, 3136)
    assert (default.stop_trigger_method, default.limit_price) == ("mark_price", None)
    e = MatchingEngine(initial_balance_usd=1000, default_leverage=10, clock=lambda: 1)
    e.add_product(PAPER_PRODUCTS["ETHUSD"])
    e.on_market_trade("ETHUSD", 2000.0, 1, 1)
    e.place_order(OrderRequest(product_id=3136, side="buy", size=2, order_type="market_order"))
    oj = wire.order_json(e.place_order(req))
    assert (oj["state"], oj["stop_order_type"], oj["stop_price"], oj["stop_trigger_method"]) == \
        ("pending", "stop_loss_order", "1995.5", "last_traded_price")
    assert wire.order_kind(e.order(oj["id"])) == "stop_limit"  # type: ignore[arg-type]
    assert wire.order_kind(e.order(1)) == "market"  # type: ignore[arg-type]


@pytest.mark.parametrize("extra, param", [
    ({"stop_price": "1900"}, "stop_order_type"),
    ({"stop_order_type": "stop_loss_order"}, "stop_price"),
    ({"stop_order_type": "trailing_stop", "stop_price": "1900"}, "stop_order_type"),
    ({"stop_order_type": "stop_loss_order", "stop_price": "0"}, "stop_price"),
    ({"stop_order_type": "stop_loss_order", "stop_price": "1900", "stop_trigger_method": "index"},
     "stop_trigger_method"),
])
def test_bad_stop_fields_name_the_field(extra: dict[str, object], param: str) -> None:
    with pytest.raises(VenueError) as err:
        wire.order_request({"side": "sell", "size": 1, "order_type": "market_order", **extra}, 27)
    assert err.value.code == "bad_schema"
    assert err.value.context["schema_errors"][0]["param"] == param


def test_batch_items_refuse_stop_fields() -> None:
    body = {"side": "sell", "size": 1, "limit_price": "100", "stop_order_type": "stop_loss_order",
            "stop_price": "99"}
    assert wire.order_request(body, 27).stop_price == D("99")
    for key in ("stop_order_type", "stop_price"):  # either one alone names itself
        item = {"side": "sell", "size": 1, "limit_price": "100", key: body[key]}
        with pytest.raises(VenueError) as err:
            wire.order_request(item, 27, stops_allowed=False)
        assert err.value.context["schema_errors"][0]["param"] == key
