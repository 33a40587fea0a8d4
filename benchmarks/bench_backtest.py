"""Backtest speed: bars per second through `run_backtest` (the product's own signal engine, bot,
risk rules and matching engine), beside a floor measured in the same run on the same data:
reading the CSV and computing the four indicators (RSI 14, MACD 12/26/9, Bollinger 20/2, ATR 14)
over the whole series with TA-Lib, which is what any backtest must at least do.

Three data sets: the shipped BTC series (1 symbol, real prices), a generated year of 1m bars
(525,600 bars, 1 symbol), and 10 generated symbols x one month (10 x 43,200 bars). Targets
(issue 12): the year and the 10 x month each in <= 10 s. Runs as `orchestrate backtest` does:
the signal series in a helper process on the second core (`signals_ahead`). Printed for each:
wall seconds, the loop process's CPU seconds and the helper's (on a loaded machine compare CPU
seconds; the wall figure is the target's), the seconds the loop waited for a signal chunk, the
share of trades the bot was asked at, and the process's peak RSS after the run.

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
import shared.backtest.series_ahead as series_ahead
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


def _children_cpu() -> float:
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ch.ru_utime + ch.ru_stime


def _run(data: dict[str, Candles]) -> dict[str, float]:
    """One backtest, timed, with the waits for signal chunks and the wake-ups counted apart."""
    spent = {"wait": 0.0, "asked": 0}
    real_take = series_ahead.SeriesAhead._take
    real_trade = loop.run_trade

    def take(self: series_ahead.SeriesAhead, symbol: str) -> Any:
        t = time.perf_counter()
        try:
            return real_take(self, symbol)
        finally:
            spent["wait"] += time.perf_counter() - t

    def trade(*a: Any, **k: Any) -> Any:
        spent["asked"] += 1
        return real_trade(*a, **k)

    series_ahead.SeriesAhead._take = take  # type: ignore[method-assign]  # timed, same behaviour
    loop.run_trade = trade
    try:
        specs = {s: PAPER_PRODUCTS[s] if s in PAPER_PRODUCTS else synthetic_spec(s) for s in data}
        t0, c0, h0 = time.perf_counter(), time.process_time(), _children_cpu()
        r = loop.run_backtest(Config(), data, specs=specs, balance_usd=10_000.0, signals_ahead=True)
        total, cpu, helper = time.perf_counter() - t0, time.process_time() - c0, _children_cpu() - h0
    finally:
        series_ahead.SeriesAhead._take, loop.run_trade = real_take, real_trade  # type: ignore[method-assign]
    return {"s": total, "cpu_s": cpu, "helper_cpu_s": helper, "wait_s": spent["wait"], "bars": r.bars,
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
                goal = f" (target {target:.0f} s)" if target is not None else ""
                print(f"{name}: {m['s']:.2f} s{goal} vs floor {floor:.2f} s; {bars / m['s']:,.0f} bars/s "
                      f"vs floor {bars / floor:,.0f}; CPU {m['cpu_s']:.2f} s loop process + "
                      f"{m['helper_cpu_s']:.2f} s signals helper (waited {m['wait_s']:.2f} s for signals); "
                      f"bot asked at {m['asked_pct']:.1f}% of trades; {m['fills']:.0f} fills, "
                      f"{m['orders']:.0f} order actions; peak RSS {m['rss_mb']:.0f} MB; "
                      f"1-min load {load_before:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
                rows.append(row(f"backtest {name}: seconds", round(m["s"], 3), "s", anchor=round(floor, 4),
                                anchor_name="read CSV + TA-Lib 4 indicators", target=target))
                # CPU seconds: the figure to compare on a shared, loaded machine (wall time waits for the cores)
                rows.append(row(f"backtest {name}: CPU seconds, loop process", round(m["cpu_s"], 3), "s",
                                target=target))
                rows.append(row(f"backtest {name}: CPU seconds, signals helper", round(m["helper_cpu_s"], 3), "s"))
                rows.append(row(f"backtest {name}: bars/s", round(bars / m["s"]), "bar/s",
                                anchor=round(bars / floor), anchor_name="floor bars/s"))
                rows.append(row(f"backtest {name}: seconds waited for signals", round(m["wait_s"], 3), "s"))
                rows.append(row(f"backtest {name}: share of trades the bot is asked at", round(m["asked_pct"], 2), "%"))
    return rows


if __name__ == "__main__":
    print_table(main(quick="quick" in sys.argv[1:]))
