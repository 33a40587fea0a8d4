"""`orchestrate indicators --csv FILE`: the streaming indicators of a candle file, as CSV, so
anyone can diff our numbers against another tool (TA-Lib, a charting package)."""

from __future__ import annotations

from typing import TextIO

from shared.marketdata import CandleFileError, read_ohlcv_csv
from shared.signals.streaming import OUTPUT_COLUMNS, StreamingIndicators

HEADER = "ts," + ",".join(OUTPUT_COLUMNS)


def _cell(v: float) -> str:
    return "" if v != v else repr(v)  # NaN -> empty: not yet defined


def run_indicators(csv_path: str, out: TextIO, err: TextIO) -> int:
    """Write one row per bar (streaming form). Returns 0, or 2 on a bad file (message on err)."""
    try:
        candles = read_ohlcv_csv(csv_path)
    except CandleFileError as exc:
        print(f"error: {exc}", file=err)
        return 2
    stream = StreamingIndicators([csv_path])
    out.write(HEADER + "\n")
    high, low, close = candles.high, candles.low, candles.close
    for i, ts in enumerate(candles.ts.tolist()):
        values = stream.update(high[i:i + 1], low[i:i + 1], close[i:i + 1])[0].tolist()
        out.write(f"{ts}," + ",".join(_cell(v) for v in values) + "\n")
    return 0


__all__ = ["HEADER", "run_indicators"]
