import gzip

import numpy as np
import pytest

from shared.marketdata import (
    CandleFileError,
    ReplayMarket,
    candle_ticks,
    read_ohlcv_csv,
    shipped_candles,
    synthetic_candles,
)


def test_shipped_series_are_real_and_valid() -> None:
    btc = shipped_candles("BTCUSD")
    eth = shipped_candles("ETHUSD")
    assert len(btc) == 12_423 and len(eth) == 5_329
    assert btc.close[0] == pytest.approx(611.9)
    assert np.all(btc.high >= np.maximum(btc.open, btc.close))


def test_bad_rows_name_file_and_line(tmp_path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("ts,open,high,low,close,volume\n60,1,2,0.5,1.5,3\n120,1,2,0.5,nan,3\n")
    with pytest.raises(CandleFileError, match=r"x.csv:3: NaN"):
        read_ohlcv_csv(p)
    p.write_text("ts,open,high,low,close,volume\n60,1,2,0.5,1.5,3\n60,1,2,0.5,1.5,3\n")
    with pytest.raises(CandleFileError, match=r"x.csv:3: timestamp"):
        read_ohlcv_csv(p)
    p.write_text("ts,open,high,low,close,volume\n60,-1,2,0.5,1.5,3\n")
    with pytest.raises(CandleFileError, match=r"x.csv:2: non-positive"):
        read_ohlcv_csv(p)
    with pytest.raises(CandleFileError, match="cannot read"):
        read_ohlcv_csv(tmp_path / "missing.csv")
    g = tmp_path / "y.csv.gz"
    g.write_bytes(gzip.compress(b"ts,open,high,low,close,volume\n60,1,2,0.5,1.5,3\n"))
    assert len(read_ohlcv_csv(g)) == 1


def test_synthetic_is_seeded_and_valid() -> None:
    a = synthetic_candles("SYN_0001", 500, seed=3)
    b = synthetic_candles("SYN_0001", 500, seed=3)
    c = synthetic_candles("SYN_0002", 500, seed=3)
    assert np.array_equal(a.close, b.close) and not np.array_equal(a.close, c.close)
    assert np.all(a.high >= np.maximum(a.open, a.close)) and np.all(a.low <= np.minimum(a.open, a.close))
    assert np.all(a.close > 0)


def test_candle_ticks_visit_nearer_extreme_first() -> None:
    assert candle_ticks(10, 10.5, 8, 9) == (10, 10.5, 8, 9)
    assert candle_ticks(10, 13, 9.8, 12) == (10, 9.8, 13, 12)


def test_replay_is_continuous_across_wrap_and_seek_matches_stream() -> None:
    m = ReplayMarket.for_symbol("ETHUSD", start_ts=1_800_000_000, history_bars=1000)
    bars = [m.next_bar() for _ in range(5_329 - 1000 + 5)]
    ts = np.array([b[0] for b in bars])
    assert np.all(np.diff(ts) == 60)
    wrap = 5_329 - 1000
    assert bars[wrap][1] == pytest.approx(bars[wrap - 1][4])  # opens where the last bar closed
    m2 = ReplayMarket.for_symbol("ETHUSD", start_ts=1_800_000_000, history_bars=1000)
    m2.seek(wrap + 2)
    assert m2.next_bar() == pytest.approx(bars[wrap + 2])
    h = m2.history()
    assert len(h) == 1000 and h.ts[-1] == 1_800_000_000 - 60
