"""Models read both the documented and the recorded-live shapes of Delta's bodies."""

from __future__ import annotations

import msgspec
import pytest

from shared.delta.models import (
    Candle,
    Fill,
    L2Book,
    Order,
    Position,
    Product,
    RecentTrade,
    Ticker,
    TimestampError,
    WalletBalance,
    decode,
    decode_envelope,
    to_micros,
    to_product_spec,
)

DOC_PRODUCT = b'''{"id":27,"symbol":"BTCUSD",
 "description":"Bitcoin Perpetual futures, quoted, settled & margined in USD",
 "created_at":"2023-12-18T13:10:39Z","updated_at":"2024-01-01T00:00:00Z",
 "settlement_time":null,"notional_type":"vanilla","impact_size":10000,"initial_margin":"0.5",
 "maintenance_margin":"0.25","contract_value":"0.001","contract_unit_currency":"BTC",
 "tick_size":"0.5","product_specs":{"funding_clamp_value":0.05,"tags":[]},"state":"live",
 "trading_status":"operational","default_leverage":"200","taker_commission_rate":"0.0005",
 "maker_commission_rate":"0.0002","contract_type":"perpetual_futures","position_size_limit":229167,
 "is_quanto":false,"price_band":"2.5",
 "underlying_asset":{"id":1,"symbol":"BTC","precision":8,"deposit_status":"enabled"},
 "quoting_asset":{"id":14,"symbol":"USD"},"settling_asset":{"id":14,"symbol":"USD"},
 "spot_index":{"id":14,"symbol":".DEXBTUSD","constituent_exchanges":[{"name":"x","weight":1}]}}'''

LIVE_GLOBAL_PRODUCT = b'''{"id":27,"symbol":"BTCUSD","contract_value":1,"tick_size":0.5,
 "notional_type":"inverse","contract_type":"perpetual_futures","state":"live",
 "launch_time":"2019-06-01T00:00:00Z","ui_config":{"leverage_slider_values":[1,2]},
 "short_description":"BTC inverse perp","default_leverage":100,"initial_margin":1,
 "maintenance_margin":0.5,"settling_asset":{"symbol":"BTC"},"underlying_asset":{"symbol":"BTC"}}'''


def test_documented_product_becomes_a_spec_with_fraction_margins() -> None:
    product = decode(DOC_PRODUCT, Product)
    spec = to_product_spec(product)
    assert (spec.product_id, spec.contract_value, spec.tick_size) == (27, 0.001, 0.5)
    assert spec.initial_margin == pytest.approx(1 / 200) and spec.default_leverage == 200
    assert (spec.maker_fee, spec.taker_fee, spec.position_size_limit) == (0.0002, 0.0005, 229167)
    assert product.spot_index and product.spot_index.symbol == ".DEXBTUSD"


def test_live_global_product_numbers_and_extra_keys() -> None:
    spec = to_product_spec(decode(LIVE_GLOBAL_PRODUCT, Product))
    assert spec.notional_type == "inverse" and spec.contract_value == 1.0
    assert spec.settling_asset == "BTC" and spec.initial_margin == pytest.approx(0.01)


def test_order_documented_and_live_forms_agree() -> None:
    documented = decode(b'''{"id":11,"user_id":5,"size":10,"unfilled_size":4,"side":"buy",
      "order_type":"limit_order","limit_price":"59000","state":"open","reduce_only":false,
      "post_only":true,"client_order_id":"c1","created_at":"1725865012000000",
      "product_id":27,"product_symbol":"BTCUSD","average_fill_price":null,"meta_data":{"source":"api"}}''',
                        Order)
    live = decode(b'''{"id":11,"user_id":5,"size":"10","unfilled_size":"4","side":"buy",
      "order_type":"limit_order","limit_price":59000,"state":"open","reduce_only":"false",
      "post_only":"true","close_on_trigger":"false","stop_trigger_method":"mark_price",
      "client_order_id":"c1","created_at":"2024-09-09T06:56:52Z","product_id":27,
      "product_symbol":"BTCUSD","bracket_order":null}''', Order)
    assert documented == msgspec.structs.replace(live, stop_trigger_method=None)
    assert documented.filled_size == 6 and documented.is_open and documented.post_only is True


def test_fill_forms() -> None:
    documented = decode(b'''{"id":123,"size":2,"fill_type":"normal","side":"sell","price":"60000.5",
      "role":"taker","commission":"0.06","created_at":"1700000000000000","product_id":27,
      "product_symbol":"BTCUSD","order_id":"456","meta_data":{"order_price":"60000"}}''', Fill)
    live = decode(b'''{"id":"7b1e2a","size":2,"side":"sell","price":60000.5,"role":"taker",
      "commission":"0.06","created_at":"2023-11-14T22:13:20Z","order_id":456,
      "product":{"id":27,"symbol":"BTCUSD","contract_value":"0.001"}}''', Fill)
    assert documented.id == "123" and live.id == "7b1e2a"
    assert live.product_symbol == documented.product_symbol == "BTCUSD"
    assert live.order_id == documented.order_id == "456"
    assert live.created_at == documented.created_at == 1_700_000_000_000_000


def test_positions_wallet_book_ticker_candle_trades() -> None:
    pos = decode(b'''{"size":-5,"entry_price":"61000.5","margin":"30.5","adl_level":null,
      "realized_holding_cost":"0.1","product":{"id":27,"symbol":"BTCUSD"},"mark_price":"60900"}''',
                 Position)
    assert pos.size == -5 and pos.product_id == 27 and pos.adl_level is None
    wallet = decode(b'[{"asset_symbol":"USD","asset_id":14,"balance":"100.5",'
                    b'"available_balance":"90","order_margin":"10.5","unknown":1}]',
                    list[WalletBalance])
    assert wallet[0].blocked_margin == 0.0 and wallet[0].cross_asset_liability == 0.0
    book = decode(b'{"symbol":"BTCUSD","buy":[{"price":"100.5","size":3,"depth":"3"}],'
                  b'"sell":[{"price":101,"size":"2","depth":2}],"last_updated_at":1700000000000000}',
                  L2Book)
    assert book.buy[0].price == 100.5 and book.sell[0].size == 2
    ticker = decode(b'{"symbol":"BTCUSD","close":60000,"mark_price":"60001","timestamp":1689136597}',
                    Ticker)
    assert ticker.timestamp == 1_689_136_597_000_000  # seconds in the docs example -> µs
    candles = decode(b'[{"time":1605393120,"open":15989,"high":"16000","low":15980,'
                     b'"close":15990.5,"volume":12}]', list[Candle])
    assert candles[0].time == 1_605_393_120_000_000 and candles[0].high == 16000.0
    flat = decode(b'[{"buyer_role":"taker","seller_role":"maker","price":"1.5","size":2,'
                  b'"symbol":"BTCUSD","timestamp":1700000000000000}]', list[RecentTrade])
    nested = decode(b'{"trades":[{"side":"buy","size":2,"price":1.5,"timestamp":1700000000}]}',
                    dict[str, list[RecentTrade]])["trades"]
    assert flat[0].timestamp == nested[0].timestamp and flat[0].price == nested[0].price


def test_envelope_keeps_cursors_and_tolerates_missing_result() -> None:
    env = decode_envelope(b'{"success":true,"result":[1],"meta":{"after":"abc","before":null,'
                          b'"limit":1000,"total_count":3}}')
    assert env.has_result and env.meta and env.meta.after == "abc" and env.meta.before is None
    assert not decode_envelope(b'{"success":true}').has_result


def test_timestamps_in_every_unit() -> None:
    us = 1_700_000_000_123_456
    assert to_micros(us) == us and to_micros(str(us)) == us
    assert to_micros(1_700_000_000_123) == 1_700_000_000_123_000  # ms
    assert to_micros(1_700_000_000) == 1_700_000_000_000_000
    assert to_micros(1_700_000_000.5) == 1_700_000_000_500_000
    assert to_micros(us * 1000) == us  # ns
    assert to_micros("2023-11-14T22:13:20.123456Z") == 1_700_000_000_123_456
    assert to_micros("2023-11-14T22:13:20+00:00") == 1_700_000_000_000_000
    assert to_micros("2023-11-14T22:13:20") == 1_700_000_000_000_000  # naive = UTC
    assert to_micros(None) is None and to_micros("") is None
    with pytest.raises(TimestampError):
        to_micros("yesterday")


def test_bad_bodies_fail_clearly() -> None:
    with pytest.raises(msgspec.ValidationError, match="size"):
        decode(b'{"id":1,"size":"lots"}', Order)
    with pytest.raises(msgspec.ValidationError, match="symbol"):
        decode(b'{"id":1,"contract_value":1,"tick_size":1}', Product)
