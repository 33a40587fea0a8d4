import gzip

import numpy as np
import pytest

from shared.marketdata import (
    CandleFileError,
    Gap,
    ReplayMarket,
    bar_interval,
    candle_ticks,
    find_gaps,
    parse_ohlcv_csv,
    parse_ohlcv_text,
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
    with pytest.raises(CandleFileError, match=r"x.csv:3: duplicate timestamp 60 \(also on line 2\)"):
        read_ohlcv_csv(p)
    p.write_text("ts,open,high,low,close,volume\n60,-1,2,0.5,1.5,3\n")
    with pytest.raises(CandleFileError, match=r"x.csv:2: non-positive"):
        read_ohlcv_csv(p)
    with pytest.raises(CandleFileError, match="cannot read"):
        read_ohlcv_csv(tmp_path / "missing.csv")
    g = tmp_path / "y.csv.gz"
    g.write_bytes(gzip.compress(b"ts,open,high,low,close,volume\n60,1,2,0.5,1.5,3\n"))
    assert len(read_ohlcv_csv(g)) == 1


HEADER = "ts,open,high,low,close,volume\n"


@pytest.mark.parametrize("body, message", [
    ("60,1,2,0.5,1.5,3\n180,1,2,0.5,1.5,3\n120,1,2,0.5,1.5,3\n",
     r"x.csv:4: timestamp 120 is before 180 on line 3: rows must be sorted by time"),
    ("60,1,2,0.5,1.5,3\n\n60,1,2,0.5,1.5,3\n", r"x.csv:4: duplicate timestamp 60 \(also on line 2\)"),
    ("1475798400000,1,2,0.5,1.5,3\n", r"x.csv:2: timestamp 1475798400000 looks like milliseconds"),
    ("60.5,1,2,0.5,1.5,3\n", r"x.csv:2: timestamp 60.5 is not whole epoch seconds"),
    ("60,1,2,0.5,1.5\n", r"x.csv:2: expected 6 columns"),
    ("60,1,2,0.5,abc,3\n", r"x.csv:2: not a number"),
    ("60,1,2,1.2,1.5,3\n", r"x.csv:2: high/low do not bound"),
])
def test_bad_rows_are_named_by_line(tmp_path, body: str, message: str) -> None:
    p = tmp_path / "x.csv"
    p.write_text(HEADER + body)
    with pytest.raises(CandleFileError, match=message):
        read_ohlcv_csv(p)


def test_not_an_ohlcv_file_is_named(tmp_path) -> None:
    j = tmp_path / "x.json"
    j.write_text('{"symbol": "BTCUSD"}\n')
    with pytest.raises(CandleFileError, match=r"x.json:1: not an OHLCV file"):
        read_ohlcv_csv(j)
    b = tmp_path / "x.csv"
    b.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(CandleFileError, match=r"x.csv: not a text CSV"):
        read_ohlcv_csv(b)
    g = tmp_path / "plain.csv.gz"  # named .gz but not gzip
    g.write_text(HEADER)
    with pytest.raises(CandleFileError, match=r"plain.csv.gz: not a text CSV"):
        read_ohlcv_csv(g)
    with pytest.raises(CandleFileError, match=r"is a directory"):
        read_ohlcv_csv(tmp_path)


def test_fast_path_agrees_with_the_line_parser() -> None:
    c = synthetic_candles("SYN_0003", 3_000, seed=1)
    rows = [f"{t},{o!r},{h!r},{lo!r},{cl!r},{v!r}" for t, o, h, lo, cl, v in
            zip(c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                c.volume.tolist(), strict=True)]
    for text in (HEADER + "\n".join(rows) + "\n", "\r\n".join(rows), HEADER + "\n".join(rows[:5]) + "\n\n"):
        fast = parse_ohlcv_text(text, "x")
        slow = parse_ohlcv_csv(text.splitlines(), "x")
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(parse_ohlcv_text(HEADER + "\n".join(rows), "x").close, c.close)


def test_signed_series_accepts_negative_rates(tmp_path) -> None:
    p = tmp_path / "funding.csv"
    p.write_text(HEADER + "0,0.0001,0.0001,-0.0002,-0.0002,0\n28800,0,0,0,0,0\n")
    with pytest.raises(CandleFileError, match="non-positive"):
        read_ohlcv_csv(p)
    f = read_ohlcv_csv(p, signed=True)
    assert f.close.tolist() == [-0.0002, 0.0]


def test_gaps_are_found_where_bars_are_missing() -> None:
    ts = np.array([0, 60, 120, 600, 660, 4260], dtype=np.int64)
    assert bar_interval(ts) == 60
    assert find_gaps(ts) == [Gap(180, 420), Gap(720, 3540)]
    assert find_gaps(np.arange(0, 6000, 300)) == []
    btc = shipped_candles("BTCUSD")
    gaps = find_gaps(btc.ts)
    assert len(gaps) == 99 and max(g.seconds for g in gaps) == 28_339_200  # the shipped file skips ~328 days


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
