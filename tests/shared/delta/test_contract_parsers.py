"""Contract suite, client side: the project's parsers (shared/delta/models.py, errors.py, ws.py)
read every recorded Delta sample in tests/fixtures/delta, the same files the paper venue is held
to (test_contract_venue.py), and get the recorded values out of them."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from shared.delta.errors import AuthError, BadSchema, DeltaError, InsufficientMargin, OrderNotFound, error_from_response
from shared.delta.models import (
    Asset,
    Candle,
    Envelope,
    Fill,
    HeartbeatAck,
    HeartbeatCreated,
    L2Book,
    Leverage,
    Order,
    Position,
    Product,
    RecentTrade,
    SpotIndex,
    Ticker,
    WalletBalance,
    WalletTransaction,
    decode,
    decode_envelope,
    to_micros,
    to_product_spec,
)
from shared.delta.ws import (
    AuthResult,
    BookDelta,
    BookLevels,
    BookTop,
    CandleEvent,
    FundingRate,
    MarkPrice,
    OrderUpdate,
    Subscribed,
    TickerEvent,
    TradeEvent,
    UserTrade,
    parse_frame,
)
from shared.delta.ws import L2Book as Book

from .contract import load, names

# fixture -> the model the client decodes its `result` with
RESULT_MODELS: dict[str, Any] = {
    "products": list[Product], "product": Product, "ticker": Ticker, "l2orderbook": L2Book,
    "trades": list[RecentTrade], "candles": list[Candle], "assets": list[Asset], "indices": list[SpotIndex],
    "wallet_balances": list[WalletBalance], "wallet_transactions": list[WalletTransaction], "fills": list[Fill],
    "order_create": Order, "positions_margined": list[Position], "change_margin": Position, "position": Position,
    "leverage": Leverage, "settings": dict[str, Any], "orders_all_delete": dict[str, Any],
    "heartbeat_create": HeartbeatCreated, "heartbeat_ack": HeartbeatAck,
}
ERRORS = {"error_bad_schema": BadSchema, "error_insufficient_margin": InsufficientMargin,
          "error_unauthorized": AuthError, "error_invalid_api_key": AuthError,
          "error_expired_signature": AuthError, "error_open_order_not_found": OrderNotFound}
FRAMES = {"ws_subscriptions": Subscribed, "ws_key_auth": None, "ws_all_trades": TradeEvent,
          "ws_all_trades_snapshot": TradeEvent, "ws_candlestick_1m": CandleEvent, "ws_l2_updates_snapshot": BookDelta,
          "ws_l2_updates_update": BookDelta, "ws_l2_orderbook": BookLevels, "ws_l1_orderbook": BookTop,
          "ws_mark_price": MarkPrice, "ws_funding_rate": FundingRate, "ws_v2_ticker": TickerEvent,
          "ws_orders_update": OrderUpdate, "ws_user_trades": UserTrade,
          "ws_public_trades": TradeEvent, "ws_public_ticker": TickerEvent, "ws_public_ob_l1": BookTop,
          "ws_public_ob_l2": BookLevels, "ws_public_ob_updates": BookDelta, "ws_public_mark_price": MarkPrice,
          "ws_public_funding_rate": FundingRate, "ws_public_candlestick_1m": CandleEvent}


def _result(name: str) -> Any:
    env = decode_envelope(json.dumps(load(name)["body"]))
    assert isinstance(env, Envelope) and env.success and env.has_result
    return decode(env.result, RESULT_MODELS[name])


def test_every_fixture_has_a_parser_check() -> None:
    assert set(names("rest")) == set(RESULT_MODELS)
    assert set(names("error")) == set(ERRORS)
    assert set(names("ws")) == set(FRAMES)


@pytest.mark.parametrize("name", sorted(RESULT_MODELS))
def test_rest_samples_decode(name: str) -> None:
    assert _result(name) is not None


def test_recorded_values_come_out_right() -> None:
    [product] = _result("products")
    spec = to_product_spec(product)
    assert (spec.product_id, spec.contract_value, spec.tick_size, spec.settling_asset) == (27, 0.001, 0.5, "USD")
    assert spec.initial_margin == pytest.approx(0.005)  # Delta quotes percent
    ticker = _result("ticker")
    assert ticker.timestamp == 1689136597460456 and ticker.volume == pytest.approx(1226.303)
    assert ticker.quotes is not None and ticker.quotes.best_bid == 30599.5
    [fill] = _result("fills")
    # ISO 8601 fill time, the recorded live form, read as µs
    assert fill.created_at == fill.created_us == 1605553639_000_000
    assert (fill.id, fill.order_id, fill.product_id, fill.product_symbol) == (
        "e7ff05c233a74245b72381f8dd91d1ce", "152999629", 139, "BTCUSDT")
    [entry] = _result("wallet_transactions")
    assert (entry.transaction_type, entry.amount, entry.created_at) == ("commission", -0.008335, 1605553639_000_000)
    [asset] = _result("assets")
    assert (asset.id, asset.symbol, asset.precision) == (1, "ETH", 18)  # live sends them as strings
    [pos] = _result("positions_margined")
    assert pos.created_at == to_micros("2023-07-20T03:49:09.159401Z") and pos.size == 1
    order = _result("order_create")
    assert order.created_at == 1725865012_000_000 and order.close_on_trigger is False
    assert _result("orders_all_delete") == {}
    [trade] = _result("trades")
    assert (trade.price, trade.size, trade.timestamp) == (15896.5, 241, 1605376684714595)
    [candle] = _result("candles")
    assert candle.time == 1605393120_000_000


def test_a_fills_time_is_read_from_either_form() -> None:
    base = load("fills")["body"]["result"][0]
    iso = decode(json.dumps(base), Fill)
    micros = decode(json.dumps({**base, "created_at": str(1605553639_000_000)}), Fill)
    assert iso.created_us == micros.created_us == 1605553639_000_000


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_samples_become_the_right_exception(name: str) -> None:
    fx = load(name)
    exc = error_from_response(fx["request"]["status"], json.dumps(fx["body"]).encode())
    assert isinstance(exc, DeltaError) and isinstance(exc, ERRORS[name])
    code = fx["body"]["error"] if isinstance(fx["body"]["error"], str) else fx["body"]["error"]["code"]
    assert exc.code == code


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_websocket_samples_parse_to_events(name: str) -> None:
    frame = load(name)["body"]
    events = parse_frame(frame, 1)
    kind = FRAMES[name]
    if kind is None:  # auth replies are read by the connection's handshake, not parse_frame
        assert frame["success"] is True and AuthResult(ok=True, method=frame["type"]).ok
        return
    assert events and all(isinstance(e, kind) for e in events), events


def test_the_recorded_book_frames_keep_a_book_that_checksums() -> None:
    book = Book("BTCUSD")
    [snap] = parse_frame(load("ws_l2_updates_snapshot")["body"], 1)
    [upd] = parse_frame(load("ws_l2_updates_update")["body"], 1)
    assert isinstance(snap, BookDelta) and isinstance(upd, BookDelta)
    assert book.apply(snap) is None and book.apply(upd) is None
    assert book.best_first() == ([("68001", "4")], [("68000", "9")])
    [mark] = parse_frame(load("ws_mark_price")["body"], 1)
    assert isinstance(mark, MarkPrice) and (mark.symbol, mark.price) == ("BTCUSD", 68000.21)


def test_a_shape_change_is_caught_by_the_parsers() -> None:
    """The parsers are strict where it matters: a fill without a price does not decode."""
    bad = {k: v for k, v in load("fills")["body"]["result"][0].items() if k != "price"}
    with pytest.raises(msgspec.ValidationError):
        decode(json.dumps(bad), Fill)


def test_the_documented_heartbeat_answers_read_as_documented() -> None:
    assert _result("heartbeat_create").heartbeat_id == "my_trading_bot_001"
    ack = _result("heartbeat_ack")
    assert ack.process_enabled is True  # the string "true"
    assert ack.heartbeat_timestamp == "1243453435" and ack.expires_us is not None  # unit unstated: kept raw
