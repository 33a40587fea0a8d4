"""Every indicator, full-series (1-D and 2-D) and streaming, against TA-Lib on real data.

TA-Lib is the oracle: our EMAs use its SMA seeding, so the values agree from the first bar
TA-Lib defines (its unstable period is 0 by default), to 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pytest
import talib

from shared.marketdata import Candles
from shared.signals import indicators as ind
from shared.signals.streaming import OUTPUT_COLUMNS, StreamingIndicators

RTOL = 1e-9


def talib_columns(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    macd, sig, hist = talib.MACD(close, 12, 26, 9)
    up, mid, lo = talib.BBANDS(close, 20, 2.0, 2.0)  # matype defaults to SMA
    return {"sma20": talib.SMA(close, 20), "ema12": talib.EMA(close, 12),
            "ema26": talib.EMA(close, 26), "rsi14": talib.RSI(close, 14), "macd": macd,
            "macd_signal": sig, "macd_hist": hist, "bb_upper": up, "bb_middle": mid,
            "bb_lower": lo, "atr14": talib.ATR(high, low, close, 14)}


def full_series_columns(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> dict[str, np.ndarray]:
    macd, sig, hist = ind.macd(close, 12, 26, 9)
    up, mid, lo = ind.bollinger(close, 20, 2.0)
    return {"sma20": ind.sma(close, 20), "ema12": ind.ema(close, 12), "ema26": ind.ema(close, 26),
            "rsi14": ind.rsi(close, 14), "macd": macd, "macd_signal": sig, "macd_hist": hist,
            "bb_upper": up, "bb_middle": mid, "bb_lower": lo, "atr14": ind.atr(high, low, close, 14)}


def assert_matches(got: np.ndarray, want: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: defined bars")
    assert (~np.isnan(want)).sum() > 0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0.0, err_msg=what)


@pytest.mark.parametrize("series", ["btc_1m", "eth_1m"])
def test_full_series_1d_matches_talib(series: str, request: pytest.FixtureRequest) -> None:
    c: Candles = request.getfixturevalue(series)
    want = talib_columns(c.high, c.low, c.close)
    got = full_series_columns(c.high, c.low, c.close)
    for name in OUTPUT_COLUMNS:
        assert_matches(got[name], want[name], f"{series} {name}")


def test_full_series_2d_matches_talib_row_by_row(bittrex_rows) -> None:
    symbols, high, low, close = bittrex_rows
    got = full_series_columns(high, low, close)
    for r, sym in enumerate(symbols):
        want = talib_columns(high[r], low[r], close[r])
        for name in OUTPUT_COLUMNS:
            assert got[name].shape == close.shape
            assert_matches(got[name][r], want[name], f"{sym} {name}")


@pytest.mark.parametrize("series", ["btc_1m", "eth_1m"])
def test_streaming_matches_talib(series: str, request: pytest.FixtureRequest) -> None:
    c: Candles = request.getfixturevalue(series)
    n = min(len(c), 4000)  # enough to cover warm-up and thousands of steady-state bars
    h, lo, cl = c.high[:n], c.low[:n], c.close[:n]
    stream = StreamingIndicators(["X"])
    rows = np.array([stream.update(h[i], lo[i], cl[i])[0] for i in range(n)])
    want = talib_columns(h, lo, cl)
    for j, name in enumerate(OUTPUT_COLUMNS):
        assert_matches(rows[:, j], want[name], f"{series} streaming {name}")


def test_streaming_2d_matches_talib(bittrex_rows) -> None:
    symbols, high, low, close = bittrex_rows
    n = 1500
    stream = StreamingIndicators(symbols)
    out = np.array([stream.update(high[:, i], low[:, i], close[:, i]) for i in range(n)])  # (n, rows, 11)
    for r, sym in enumerate(symbols):
        want = talib_columns(high[r, :n], low[r, :n], close[r, :n])
        for j, name in enumerate(OUTPUT_COLUMNS):
            assert_matches(out[:, r, j], want[name], f"{sym} streaming {name}")


def test_peek_evaluates_the_forming_bar_without_committing(eth_1m: Candles) -> None:
    c = eth_1m
    stream = StreamingIndicators(["ETH"])
    for i in range(200):
        stream.update(c.high[i], c.low[i], c.close[i])
    before = stream.state.copy(), stream.closes.copy()
    # the forming bar changes several times; each peek is what the bar would give if it closed now
    for price in (c.close[200] * 0.99, c.close[200] * 1.01, c.close[200]):
        hi, lo = max(price, c.high[200]), min(price, c.low[200])
        peeked = stream.peek(hi, lo, price)
        np.testing.assert_array_equal(stream.state, before[0])
        np.testing.assert_array_equal(stream.closes, before[1])
    committed = stream.update(c.high[200], c.low[200], c.close[200])
    np.testing.assert_array_equal(peeked, committed)
    want = talib_columns(c.high[:201], c.low[:201], c.close[:201])
    for j, name in enumerate(OUTPUT_COLUMNS):
        np.testing.assert_allclose(committed[0, j], want[name][-1], rtol=RTOL)


def test_streaming_rsi_of_a_flat_window_is_50() -> None:
    stream = StreamingIndicators(1)
    for _ in range(40):
        out = stream.update(100.0, 100.0, 100.0)
    assert out[0, OUTPUT_COLUMNS.index("rsi14")] == 50.0
    assert ind.rsi(np.full(40, 100.0))[-1] == 50.0


@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.0, np.inf])
def test_check_prices_names_symbol_and_bar(bad: float) -> None:
    x = np.full((2, 30), 10.0)
    x[1, 17] = bad
    with pytest.raises(ValueError, match=r"ETHUSD: bar 17: close is"):
        ind.check_prices(x, "close", ["BTCUSD", "ETHUSD"])
    ind.check_prices(x[:1], "close", ["BTCUSD"])  # good rows pass


@pytest.mark.parametrize("bad", [np.nan, 0.0, -5.0])
def test_streaming_rejects_bad_prices_and_keeps_its_state(bad: float) -> None:
    stream = StreamingIndicators(["BTCUSD", "ETHUSD"])
    for _ in range(5):
        stream.update([10.0, 20.0], [9.0, 19.0], [9.5, 19.5])
    before = stream.state.copy()
    with pytest.raises(ValueError, match=r"ETHUSD: bar 5: low is"):
        stream.update([10.0, 20.0], [9.0, bad], [9.5, 19.5])
    np.testing.assert_array_equal(stream.state, before)
    assert stream.bars == 5


def test_short_series_are_all_undefined_not_errors() -> None:
    x = np.linspace(10.0, 11.0, 10)
    assert np.isnan(ind.sma(x, 20)).all()
    assert np.isnan(ind.rsi(x, 14)).all()
    assert all(np.isnan(a).all() for a in ind.macd(x))
    assert np.isnan(ind.atr(x + 1, x - 1, x, 14)).all()


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="period"):
        ind.sma(np.ones(30), 0)
    with pytest.raises(ValueError, match="fast period"):
        ind.macd(np.ones(60), 26, 12, 9)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        ind.ema(np.ones((2, 2, 2)), 3)
