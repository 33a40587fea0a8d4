"""Backtest speed: bars per second through `run_backtest` (the product's own signal engine, bot,
risk rules and matching engine), beside a floor measured in the same run on the same data:
reading the CSV and computing the four indicators (RSI 14, MACD 12/26/9, Bollinger 20/2, ATR 14)
over the whole series with TA-Lib, which is what any backtest must at least do.

Three data sets: the shipped BTC series (1 symbol, real prices), a generated year of 1m bars
(525,600 bars, 1 symbol), and 10 generated symbols x one month (10 x 43,200 bars). Targets
(issue 12): the year and the 10 x month each in <= 10 s. Also printed: the seconds spent in
`iter_series` (the signals) apart from the loop, the share of trades the bot was asked at,
and the process's peak RSS after each run.

Run: .venv/bin/python -m benchmarks.bench_backtest [quick]   (quick: a month instead of the year)
"""

from __future__ import annotations

import gzip
import os
import resource
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import talib

import shared.backtest.loop as loop
from shared.config import Config
from shared.marketdata import Candles, read_ohlcv_csv, shipped_candles, synthetic_candles
from shared.products import PAPER_PRODUCTS, synthetic_spec

from .harness import print_table, row

YEAR_BARS = 525_600
MONTH_BARS = 43_200
TARGET_S = 10.0


def _write_csv(path: Path, c: Candles) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("ts,open,high,low,close,volume\n")
        for row_ in zip(c.ts.tolist(), c.open.tolist(), c.high.tolist(), c.low.tolist(), c.close.tolist(),
                        c.volume.tolist(), strict=True):
            fh.write(",".join(repr(v) for v in row_) + "\n")


def _floor(paths: list[Path]) -> float:
    """Read each CSV and compute the four indicators over its whole series with TA-Lib."""
    t0 = time.perf_counter()
    for p in paths:
        c = read_ohlcv_csv(p)
        talib.RSI(c.close, 14)
        talib.MACD(c.close, 12, 26, 9)
        talib.BBANDS(c.close, 20, 2.0, 2.0)
        talib.ATR(c.high, c.low, c.close, 14)
    return time.perf_counter() - t0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _run(data: dict[str, Candles]) -> dict[str, float]:
    """One backtest, timed, with the series and the wake-ups counted apart."""
    spent = {"series": 0.0, "asked": 0}
    real_series = loop.iter_series
    real_trade = loop.run_trade

    def series(*a: Any, **k: Any) -> Any:
        chunks = real_series(*a, **k)
        while True:
            t = time.perf_counter()
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                spent["series"] += time.perf_counter() - t
            yield chunk

    def trade(*a: Any, **k: Any) -> Any:
        spent["asked"] += 1
        return real_trade(*a, **k)

    loop.iter_series, loop.run_trade = series, trade
    try:
        specs = {s: PAPER_PRODUCTS[s] if s in PAPER_PRODUCTS else synthetic_spec(s) for s in data}
        t0, c0 = time.perf_counter(), time.process_time()
        r = loop.run_backtest(Config(), data, specs=specs, balance_usd=10_000.0)
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        loop.iter_series, loop.run_trade = real_series, real_trade
    return {"s": total, "cpu_s": cpu, "series_s": spent["series"], "bars": r.bars,
            "asked_pct": 100.0 * spent["asked"] / max(1, r.bars * 4), "fills": r.summary.fills,
            "orders": r.summary.orders_placed + r.summary.orders_amended + r.summary.orders_cancelled,
            "rss_mb": _peak_rss_mb()}


def main(quick: bool = False) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-backtest-") as tmp:
        cases: list[tuple[str, dict[str, Candles], list[Path], float | None]] = []
        with resources.as_file(resources.files("shared") / "data" / "BTCUSD-coinbase-1m.csv.gz") as p:
            cases.append(("shipped BTC, 1 symbol", {"BTCUSD": shipped_candles("BTCUSD")}, [Path(p)], None))
            n_year = MONTH_BARS if quick else YEAR_BARS
            year = synthetic_candles("SYN_0001", n_year, seed=7)
            yp = Path(tmp) / "year.csv.gz"
            _write_csv(yp, year)
            cases.append((f"generated {n_year:,} bars, 1 symbol", {"SYN_0001": year}, [yp], TARGET_S))
            ten = {f"SYN_{i:04d}": synthetic_candles(f"SYN_{i:04d}", MONTH_BARS, seed=7) for i in range(1, 11)}
            paths = []
            for s, c in ten.items():
                paths.append(Path(tmp) / f"{s}.csv.gz")
                _write_csv(paths[-1], c)
            cases.append(("10 symbols x 43,200 bars", ten, paths, TARGET_S))
            for name, data, files, target in cases:
                floor = _floor(files)
                load_before = os.getloadavg()[0]
                m = _run(data)
                bars = m["bars"]
                print(f"{name}: {m['s']:.2f} s, CPU {m['cpu_s']:.2f} s ({bars / m['s']:,.0f} bars/s; "
                      f"signals {m['series_s']:.2f} s, "
                      f"loop {m['s'] - m['series_s']:.2f} s; bot asked at {m['asked_pct']:.1f}% of trades; "
                      f"{m['fills']:.0f} fills, {m['orders']:.0f} order actions; peak RSS {m['rss_mb']:.0f} MB) "
                      f"vs floor {floor:.2f} s; 1-min load {load_before:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
                rows.append(row(f"backtest {name}: seconds", round(m["s"], 3), "s", anchor=round(floor, 4),
                                anchor_name="read CSV + TA-Lib 4 indicators", target=target))
                # CPU seconds: the figure to compare on a shared, loaded machine (wall time waits for the cores)
                rows.append(row(f"backtest {name}: CPU seconds", round(m["cpu_s"], 3), "s", target=target))
                rows.append(row(f"backtest {name}: bars/s", round(bars / m["s"]), "bar/s",
                                anchor=round(bars / floor), anchor_name="floor bars/s"))
                rows.append(row(f"backtest {name}: signal series seconds", round(m["series_s"], 3), "s"))
                rows.append(row(f"backtest {name}: share of trades the bot is asked at", round(m["asked_pct"], 2), "%"))
    return rows


if __name__ == "__main__":
    print_table(main(quick="quick" in sys.argv[1:]))
