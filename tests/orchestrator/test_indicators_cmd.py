"""`orchestrate indicators --csv FILE`: streaming indicators as CSV, checked against TA-Lib."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
import talib

from orchestrator.indicators_cmd import HEADER, run_indicators
from shared.marketdata import read_ohlcv_csv

# The real ETH series shipped in the package (gzip CSV): the command reads .csv.gz as well.
ETH_1M = Path(__file__).resolve().parents[2] / "shared" / "data" / "ETHUSD-coinbase-1m.csv.gz"


def _run(path: Path | str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_indicators(str(path), out, err)
    return code, out.getvalue(), err.getvalue()


def test_writes_header_and_one_row_per_bar_matching_talib() -> None:
    code, text, err = _run(ETH_1M)
    assert code == 0 and err == ""
    rows = list(csv.reader(io.StringIO(text)))
    assert ",".join(rows[0]) == HEADER
    c = read_ohlcv_csv(ETH_1M)
    assert len(rows) - 1 == len(c)
    assert [int(r[0]) for r in rows[1:]] == c.ts.tolist()
    got = {name: np.array([float(r[j]) if r[j] else math.nan for r in rows[1:]])
           for j, name in enumerate(rows[0]) if j > 0}
    macd, sig, hist = talib.MACD(c.close, 12, 26, 9)
    up, mid, low = talib.BBANDS(c.close, 20, 2, 2)  # matype defaults to SMA
    ref = {"sma20": talib.SMA(c.close, 20), "ema12": talib.EMA(c.close, 12),
           "ema26": talib.EMA(c.close, 26), "rsi14": talib.RSI(c.close, 14), "macd": macd,
           "macd_signal": sig, "macd_hist": hist, "bb_upper": up, "bb_middle": mid,
           "bb_lower": low, "atr14": talib.ATR(c.high, c.low, c.close, 14)}
    for name, want in ref.items():
        # empty cells exactly where TA-Lib has no value yet
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want), err_msg=name)
        np.testing.assert_allclose(got[name], want, rtol=1e-9, err_msg=name)


def test_values_are_written_with_repr_precision() -> None:
    _, text, _ = _run(ETH_1M)
    last = text.strip().splitlines()[-1].split(",")
    assert all(float(v) == float(repr(float(v))) for v in last[1:])
    assert any(len(v) > 12 for v in last[1:])  # not rounded to a few decimals


def test_bad_file_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,open,high,low,close,volume\n"
                   "60,1,2,0.5,1.5,10\n"
                   "120,1,2,0.5,nan,10\n")
    code, text, err = _run(bad)
    assert code == 2
    assert text == ""
    assert f"{bad}:3" in err


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = _run(tmp_path / "nope.csv")
    assert code == 2 and "nope.csv" in err


@pytest.mark.parametrize("body", ["", "ts,open,high,low,close,volume\n"])
def test_empty_file_exits_2(tmp_path: Path, body: str) -> None:
    p = tmp_path / "empty.csv"
    p.write_text(body)
    code, _, err = _run(p)
    assert code == 2 and "empty.csv" in err
