from __future__ import annotations

import math

import msgspec
import pytest

from shared.products import PAPER_PRODUCTS, synthetic_spec
from shared.trading.grid import (
    GridAnchor,
    GridConfig,
    desired_grid,
    grid_step,
    level_prices,
    needs_regrid,
    next_anchor,
    protective_stop,
)

BTC = PAPER_PRODUCTS["BTCUSD"]  # tick 0.5
ETH = PAPER_PRODUCTS["ETHUSD"]  # tick 0.05
DEFAULT = GridConfig()


def test_defaults_are_the_original_rules() -> None:
    assert (DEFAULT.levels, DEFAULT.width, DEFAULT.min_confidence, DEFAULT.mode) == (5, 0.01, 0.5, "directional")


def test_up_places_buys_below_rounded_down_to_the_tick() -> None:
    orders = desired_grid("UP", 0.75, 60_000.3, 40.0, BTC, 2, DEFAULT)
    assert [o.side for o in orders] == ["buy"] * 5
    assert [o.level for o in orders] == [1, 2, 3, 4, 5]
    # 60,000.3 x (1 - 0.01 i) floored to 0.5
    assert [o.price for o in orders] == [59_400.0, 58_800.0, 58_200.0, 57_600.0, 57_000.0]
    assert all(o.size == 2 and o.purpose == "entry" and not o.reduce_only for o in orders)


def test_down_places_sells_above_rounded_up_to_the_tick() -> None:
    orders = desired_grid("DOWN", 0.5, 2_000.01, 5.0, ETH, 3, DEFAULT)
    assert [o.side for o in orders] == ["sell"] * 5
    # 2,000.01 + 20.0001 i, ceiled to 0.05
    assert [o.price for o in orders] == [2_020.05, 2_040.05, 2_060.05, 2_080.05, 2_100.05]


def test_prices_are_on_the_tick_grid() -> None:
    for price in (1_234.567, 2_000.0, 1_999.975, 3_333.3333):
        for o in desired_grid("UP", 1.0, price, 5, ETH, 1, GridConfig(mode="neutral")):
            ticks = o.price / ETH.tick_size
            assert abs(ticks - round(ticks)) < 1e-6, o


def test_price_already_on_a_tick_boundary() -> None:
    # 100.0 x 0.99 = 99.0 exactly on the tick: stays 99.0, not 98.95 (buy) / not 101.05 (sell)
    cfg = GridConfig(levels=1, mode="neutral")
    orders = desired_grid("UP", 1.0, 100.0, 1.0, ETH, 1, cfg)
    assert {(o.side, o.price) for o in orders} == {("buy", 99.0), ("sell", 101.0)}


def test_steps_below_one_tick_never_share_or_cross_a_price() -> None:
    # 0.01% of 10 = 0.001, far below the 0.05 tick: each level moves one tick further away
    cfg = GridConfig(levels=4, width=0.0001, mode="neutral")
    orders = desired_grid("UP", 1.0, 10.0, 0.001, ETH, 1, cfg)
    buys = [o.price for o in orders if o.side == "buy"]
    sells = [o.price for o in orders if o.side == "sell"]
    assert buys == [9.95, 9.9, 9.85, 9.8]
    assert sells == [10.05, 10.1, 10.15, 10.2]


def test_buy_level_never_at_or_above_the_price() -> None:
    for price in (10.0, 10.02, 10.05, 10.049999999):
        (buy,) = level_prices("buy", price, 1e-9, 1, ETH)
        assert buy < price
        (sell,) = level_prices("sell", price, 1e-9, 1, ETH)
        assert sell > price


def test_neutral_places_both_sides() -> None:
    orders = desired_grid("DOWN", 0.9, 60_000, 40, BTC, 1, GridConfig(mode="neutral", levels=3))
    assert sorted((o.side, o.level) for o in orders) == [
        ("buy", 1), ("buy", 2), ("buy", 3), ("sell", 1), ("sell", 2), ("sell", 3)]
    assert len({o.price for o in orders}) == 6


def test_no_grid_below_confidence_or_without_direction_or_size() -> None:
    assert desired_grid("UP", 0.49, 60_000, 40, BTC, 1, DEFAULT) == ()
    assert desired_grid("NONE", 0.9, 60_000, 40, BTC, 1, DEFAULT) == ()
    assert desired_grid("UP", math.nan, 60_000, 40, BTC, 1, DEFAULT) == ()
    assert desired_grid("UP", 0.9, 60_000, 40, BTC, 0, DEFAULT) == ()
    assert len(desired_grid("UP", 0.5, 60_000, 40, BTC, 1, DEFAULT)) == 5  # threshold is inclusive


@pytest.mark.parametrize("price,atr", [(0, 1), (-1, 1), (math.nan, 1), (100, 0), (100, math.nan), (100, -2)])
def test_bad_market_input_is_an_error(price: float, atr: float) -> None:
    with pytest.raises(ValueError):
        desired_grid("UP", 1.0, price, atr, ETH, 1, DEFAULT)


def test_atr_spacing_with_floor_and_cap() -> None:
    cfg = GridConfig(spacing_mode="atr", atr_multiple=2.0, spacing_floor=0.002, spacing_cap=0.02)
    assert grid_step(1_000, 3.0, cfg) == pytest.approx(6.0)  # 2 x ATR
    assert grid_step(1_000, 0.1, cfg) == pytest.approx(2.0)  # floor 0.2% of price
    assert grid_step(1_000, 50, cfg) == pytest.approx(20.0)  # cap 2% of price
    orders = desired_grid("UP", 1.0, 1_000, 3.0, ETH, 1, cfg)
    assert [o.price for o in orders] == [994.0, 988.0, 982.0, 976.0, 970.0]


def test_config_decodes_from_toml_shapes_and_rejects_bad_values() -> None:
    cfg = msgspec.convert({"levels": 3, "spacing_mode": "atr", "mode": "neutral", "stops": False}, GridConfig)
    assert cfg.levels == 3 and cfg.mode == "neutral" and not cfg.stops
    for bad in ({"levels": 0}, {"width": 0}, {"width": 0.25}, {"spacing_mode": "log"},
                {"mode": "long"}, {"min_confidence": 1.5}, {"regrid_fraction": -0.1},
                {"spacing_floor": 0.1, "spacing_cap": 0.05}, {"max_actions_per_minute": 0},
                {"grid_levels": 5}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, GridConfig)


def test_hysteresis() -> None:
    anchor = GridAnchor(direction="UP", price=1_000.0, step=10.0, built_ts=0.0)
    cfg = GridConfig(regrid_fraction=0.5)
    assert needs_regrid(None, "UP", 1_000, cfg)
    assert not needs_regrid(anchor, "UP", 1_004.9, cfg)
    assert not needs_regrid(anchor, "UP", 995.0, cfg)  # exactly at the band edge: keep
    assert needs_regrid(anchor, "UP", 1_005.1, cfg)
    assert needs_regrid(anchor, "DOWN", 1_000, cfg)  # the signal changed
    assert not needs_regrid(anchor, "DOWN", 1_000, GridConfig(mode="neutral"))


def test_protective_stop() -> None:
    DEFAULT = GridConfig(stops=True)
    stop = protective_stop(6, grid_edge_price=57_000.0, atr=40.3, product=BTC, config=DEFAULT)
    assert stop is not None
    assert (stop.side, stop.size, stop.reduce_only, stop.order_type, stop.purpose) == (
        "sell", 6, True, "stop_market_order", "stop")
    assert stop.price == 56_939.5  # 57,000 - 60.45 floored to the tick
    short = protective_stop(-3, 63_000.0, 40.3, BTC, DEFAULT)
    assert short is not None and short.side == "buy" and short.price == 63_060.5  # 63,060.45 ceiled
    assert protective_stop(0, 57_000, 40, BTC, DEFAULT) is None
    assert protective_stop(6, 57_000, 40, BTC, GridConfig(stops=False)) is None


def test_synthetic_product_grid() -> None:
    spec = synthetic_spec("SYN_0042")
    orders = desired_grid("DOWN", 1.0, 1.0, 0.01, spec, 5, DEFAULT)
    assert [o.price for o in orders] == [1.01, 1.02, 1.03, 1.04, 1.05]
    assert all(o.symbol == "SYN_0042" for o in orders)


def test_next_anchor_follows_strong_signals_and_holds_through_weak_ones() -> None:
    cfg = GridConfig(regrid_fraction=0.5)
    assert next_anchor(None, "UP", 0.4, 1_000.0, 2.0, cfg, now_ts=1.0) is None  # weak: no grid yet
    a = next_anchor(None, "UP", 0.75, 1_000.0, 2.0, cfg, now_ts=1.0)
    assert a == GridAnchor(direction="UP", price=1_000.0, step=10.0, built_ts=1.0, confidence=0.75)
    assert next_anchor(a, "DOWN", 0.25, 900.0, 2.0, cfg, now_ts=2.0) is a  # weak signal: hold
    assert next_anchor(a, "NONE", 0.9, 900.0, 2.0, cfg, now_ts=2.0) is a
    assert next_anchor(a, "UP", 0.75, 1_004.0, 2.0, cfg, now_ts=2.0) is a  # inside the band
    moved = next_anchor(a, "UP", 0.75, 1_006.0, 2.0, cfg, now_ts=3.0)
    assert moved is not None and moved.price == 1_006.0 and moved.built_ts == 3.0
    flipped = next_anchor(a, "DOWN", 0.5, 1_000.0, 2.0, cfg, now_ts=3.0)
    assert flipped is not None and flipped.direction == "DOWN"


def test_anchor_step_keeps_the_grid_still_as_atr_drifts() -> None:
    cfg = GridConfig(spacing_mode="atr", atr_multiple=2.0)
    first = desired_grid("UP", 1.0, 1_000.0, 3.0, ETH, 1, cfg, step=6.0)
    later = desired_grid("UP", 1.0, 1_000.0, 3.3, ETH, 1, cfg, step=6.0)
    assert first == later
    with pytest.raises(ValueError):
        desired_grid("UP", 1.0, 1_000.0, 3.0, ETH, 1, cfg, step=0.0)


def test_grid_table_from_toml() -> None:
    text = b"""
levels = 8
width = 0.005
spacing_mode = "atr"
atr_multiple = 1.5
spacing_floor = 0.001
spacing_cap = 0.02
mode = "neutral"
min_confidence = 0.6
regrid_fraction = 0.25
max_actions_per_minute = 20
stops = false
"""
    cfg = msgspec.toml.decode(text, type=GridConfig)
    assert (cfg.levels, cfg.spacing_mode, cfg.mode, cfg.stops, cfg.max_actions_per_minute) == (
        8, "atr", "neutral", False, 20)
    with pytest.raises(msgspec.ValidationError, match="levels"):
        msgspec.toml.decode(b"levels = 0", type=GridConfig)


def test_a_trailing_stop_starts_where_the_fixed_one_would_and_trails_by_the_distance_to_it() -> None:
    DEFAULT = GridConfig(stops=True)
    trailing = msgspec.structs.replace(DEFAULT, stop_kind="trailing")
    fixed = protective_stop(6, 57_000.0, 40.3, BTC, DEFAULT)
    long = protective_stop(6, 57_000.0, 40.3, BTC, trailing, price=58_000.0)
    assert fixed is not None and long is not None and fixed.trail == 0.0
    assert (long.price, long.side, long.reduce_only) == (fixed.price, "sell", True)
    assert long.trail == BTC.ceil_price(58_000.0 - fixed.price) > 0
    short = protective_stop(-3, 63_000.0, 40.3, BTC, trailing, price=62_000.25)
    assert short is not None and short.side == "buy"
    assert short.trail == BTC.ceil_price(short.price - 62_000.25)  # rounded up to the tick
    assert (short.trail / BTC.tick_size).is_integer()
    # a price already beyond the fixed trigger still trails by at least a tick
    assert protective_stop(6, 57_000.0, 40.3, BTC, trailing, price=56_000.0).trail == BTC.tick_size  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="trailing stop needs the market price"):
        protective_stop(6, 57_000.0, 40.3, BTC, trailing)
