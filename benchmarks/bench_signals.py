"""Signal engine figures: cost per symbol per update (100-symbol batch and single symbol) beside
TA-Lib's four indicators and the original bot's consensus measured in the same run; state bytes
per symbol; and, on real 1m BTC/ETH data, the learner's walk-forward hit rate beside the fixed
trend score's and the volatility component's vote frequency; and the backtest's whole-series
signals (shared.signals.series) in bars per second beside one engine call per tick.

Run: .venv/bin/python -m benchmarks.bench_signals   (about 20 s on the 2-core box)
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

from shared.marketdata import Candles, shipped_candles, synthetic_candles
from shared.signals import BarWindow, SignalConfig, SignalEngine
from shared.signals import indicators as ind
from shared.signals import strategies as st
from shared.signals.backend import VEC
from shared.signals.series import evaluate_series_reference, iter_series

from .harness import print_table, row
from .original_bot import generate_consensus

W = 1024
N_SYMBOLS = 100
TICKS_PER_BAR = 4  # the forming bar is re-evaluated a few times before it closes


def _best_of(fn: Callable[[], Any], number: int, repeat: int = 5) -> float:
    """Median over `repeat` runs of the mean seconds per call over `number` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return statistics.median(times)


def _window(c: Candles, symbol: str, end: int) -> BarWindow:
    s = slice(end - W, end)
    return BarWindow(symbol, end, c.ts[s].astype(np.float64), c.open[s], c.high[s], c.low[s],
                     c.close[s], c.volume[s])


def _engine_costs() -> dict[str, float]:
    symbols = [f"SYN{i:03d}" for i in range(N_SYMBOLS)]
    n_close = 40
    candles = {s: synthetic_candles(s, W + n_close + 2, seed=1) for s in symbols}
    out: dict[str, float] = {}

    # rebuild (warm-up from the window) of 100 symbols in one call, and of one symbol
    eng = SignalEngine()
    first = [_window(candles[s], s, W) for s in symbols]
    t0 = time.perf_counter()
    eng.evaluate_batch(first)
    out["rebuild_batch_per_symbol"] = (time.perf_counter() - t0) / N_SYMBOLS
    solo = SignalEngine()
    t0 = time.perf_counter()
    solo.evaluate(first[0])
    out["rebuild_single"] = time.perf_counter() - t0

    # ticks: nothing closed, only the forming bar is evaluated
    out["tick_batch_per_symbol"] = _best_of(lambda: eng.evaluate_batch(first), 40) / N_SYMBOLS
    out["tick_single"] = _best_of(lambda: solo.evaluate(first[0]), 2000)

    # bar closes: each call commits one new closed bar per symbol, then evaluates
    batches = [[_window(candles[s], s, W + 1 + b) for s in symbols] for b in range(n_close)]
    t0 = time.perf_counter()
    for ws in batches:
        eng.evaluate_batch(ws)
    out["close_batch_per_symbol"] = (time.perf_counter() - t0) / n_close / N_SYMBOLS
    singles = [ws[0] for ws in batches]
    t0 = time.perf_counter()
    for w in singles:
        solo.evaluate(w)
    out["close_single"] = (time.perf_counter() - t0) / n_close
    out["state_bytes"] = float(eng.state_nbytes(symbols[0]))
    return out


YEAR_BARS = 525_600


def _series_figures(btc: Candles) -> dict[str, float]:
    """Bars per second of the whole-series evaluation (4 ticks per bar, default config) on the
    shipped BTC series and on a year of synthetic 1m bars, and of one engine call per tick."""
    cfg = SignalConfig()

    def run(c: Candles, symbol: str) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in iter_series(cfg, symbol, c):
            pass
        return time.perf_counter() - t0, time.process_time() - c0

    out = {"btc_bars_per_s": len(btc) / min(run(btc, "BTCUSD")[0] for _ in range(3))}
    year = synthetic_candles("SYNYEAR", YEAR_BARS, seed=1)
    # CPU time beside wall time: on a shared machine the wall figure includes other processes
    out["year_s"], out["year_cpu_s"] = run(year, "SYNYEAR")
    probe = btc.slice(0, 2000)
    t0 = time.perf_counter()
    evaluate_series_reference(cfg, "BTCUSD", probe)
    out["per_tick_bars_per_s"] = len(probe) / (time.perf_counter() - t0)
    return out


def _talib_per_symbol(c: Candles) -> float | None:
    try:
        import talib  # the oracle, if installed (test/bench only)
    except ImportError:
        return None
    h, lo, cl = (np.ascontiguousarray(a[-1000:]) for a in (c.high, c.low, c.close))

    def four() -> None:
        talib.RSI(cl, 14)
        talib.MACD(cl, 12, 26, 9)
        talib.BBANDS(cl, 20, 2.0, 2.0, 0)
        talib.ATR(h, lo, cl, 14)

    return _best_of(four, 2000)


def _original_per_symbol(c: Candles) -> float:
    prices = np.ascontiguousarray(c.close[-500:])
    return _best_of(lambda: generate_consensus(prices), 2000)


def walk_forward_hit_rates(c: Candles, cfg: SignalConfig) -> dict[str, float]:
    """Next-bar direction hit rates over the closed bars of a real series: the fixed trend score,
    the online learner (predict, then learn the outcome: strictly walk-forward), and the share of
    up bars for scale. Bars with an unchanged close are left out."""
    close = c.close
    sma20 = ind.sma(close, 20)
    rsi = ind.rsi(close, 14)
    macd = ind.macd(close)[0]
    mom = np.full(close.shape, np.nan)
    mom[cfg.momentum_bars:] = close[cfg.momentum_bars:] - close[:-cfg.momentum_bars]
    f = st.trend_features(VEC, close, sma20, rsi, macd, mom, cfg.rsi_overbought)
    feats = np.stack(f, axis=1)
    score = st.trend_score(f, cfg.trend_weights)
    nxt = np.sign(np.diff(close))  # outcome of bar t is close[t+1] - close[t]
    usable = np.flatnonzero(~np.isnan(macd[:-1]) & (nxt != 0))
    fixed_hits = ((score[usable] > 0) == (nxt[usable] > 0)).mean()
    x_all = st.learner_inputs(feats)
    w = np.zeros((1, st.N_LEARNER_WEIGHTS))
    hits = calls = 0
    for t in usable.tolist():
        x = x_all[t:t + 1]
        p = float(st.learner_probability(w, x)[0])
        up = nxt[t] > 0
        if p != 0.5:
            calls += 1
            hits += (p > 0.5) == up
        w = st.learner_update(w, x, np.array([1.0 if up else 0.0]), np.array([True]),
                              cfg.learner_rate, cfg.learner_l2)
    return {"fixed": float(fixed_hits), "learner": hits / max(calls, 1),
            "up_share": float((nxt[usable] > 0).mean()), "bars": float(len(usable))}


def volatility_vote_frequency(c: Candles, cfg: SignalConfig) -> tuple[float, float]:
    """(share of bars where the volatility component votes, median relative volatility)."""
    close = c.close
    upper, _, lower = ind.bollinger(close, 20, 2.0)
    k = cfg.volatility_changes
    win = np.lib.stride_tricks.sliding_window_view(close, k + 1)
    rel = np.full(close.shape, np.nan)
    rel[k:] = np.diff(win, axis=1).std(axis=1) / win[:, 1:].mean(axis=1)
    ok = ~np.isnan(rel) & ~np.isnan(upper)
    votes = st.volatility_vote(VEC, close[ok], upper[ok], lower[ok], rel[ok], cfg.volatility_min,
                               cfg.volatility_max, cfg.volatility_rule)
    return float((votes != st.NONE).mean()), float(np.median(rel[ok]))


def main() -> list[dict[str, Any]]:
    cfg = SignalConfig()
    btc = shipped_candles("BTCUSD")
    eth = shipped_candles("ETHUSD")
    costs = _engine_costs()
    series = _series_figures(btc)
    talib_us = _talib_per_symbol(btc)
    orig_us = _original_per_symbol(btc) * 1e6
    talib_us = talib_us * 1e6 if talib_us is not None else None
    mixed = ((TICKS_PER_BAR - 1) * costs["tick_batch_per_symbol"] + costs["close_batch_per_symbol"]) \
        / TICKS_PER_BAR * 1e6
    mixed_single = ((TICKS_PER_BAR - 1) * costs["tick_single"] + costs["close_single"]) / TICKS_PER_BAR * 1e6
    rows = [
        row(f"100-sym batch: per symbol, {TICKS_PER_BAR} updates/bar (us)", mixed, "us",
            orig_us, "original consensus", target=5),
        row("100-sym batch: per symbol, tick, no bar closed (us)", costs["tick_batch_per_symbol"] * 1e6,
            "us", orig_us, "original consensus", target=5),
        row("100-sym batch: per symbol, bar close + eval (us)", costs["close_batch_per_symbol"] * 1e6,
            "us", orig_us, "original consensus"),
        row(f"single symbol: {TICKS_PER_BAR} updates/bar, mean (us)", mixed_single, "us", orig_us,
            "original consensus", target=50),
        row("single symbol: tick, no bar closed (us)", costs["tick_single"] * 1e6, "us", orig_us,
            "original consensus", target=50),
        row("single symbol: bar close + eval (us)", costs["close_single"] * 1e6, "us", orig_us,
            "original consensus", target=50),
    ]
    if talib_us is not None:
        rows.append(row("100-sym batch tick/symbol vs TA-Lib 4 ind. (us)",
                        costs["tick_batch_per_symbol"] * 1e6, "us", talib_us, "TA-Lib 4 ind./1000 bars"))
        rows.append(row("TA-Lib RSI+MACD+BBANDS+ATR, 1000 bars (us)", talib_us, "us", orig_us,
                        "original consensus"))
    rows += [
        row("original bot generate_consensus, 500 samples (us)", orig_us, "us", 100.0, "perf-floors ~100 us"),
        row("warm-up from 1023 bars, 100-sym batch, /symbol (ms)",
            costs["rebuild_batch_per_symbol"] * 1e3, "ms"),
        row("warm-up from 1023 bars, single symbol (ms)", costs["rebuild_single"] * 1e3, "ms"),
        row("streaming state per symbol (bytes)", costs["state_bytes"], "B"),
        row("series: shipped BTC 1m, 4 ticks/bar (bars/s)", series["btc_bars_per_s"], "bars/s",
            series["per_tick_bars_per_s"], "engine call per tick"),
        row(f"series: {YEAR_BARS:,} synthetic 1m bars, 4 ticks/bar (s)", series["year_s"], "s",
            YEAR_BARS / series["per_tick_bars_per_s"], "engine call per tick"),
        row(f"series: {YEAR_BARS:,} synthetic 1m bars, CPU time (s)", series["year_cpu_s"], "s",
            series["year_s"], "wall time"),
    ]
    for name, c in (("BTC", btc), ("ETH", eth)):
        hr = walk_forward_hit_rates(c, cfg)
        rows.append(row(f"{name} 1m next-bar hit rate: learner, walk-forward", hr["learner"], "frac",
                        hr["fixed"], "fixed trend score"))
        rows.append(row(f"{name} 1m next-bar hit rate: fixed trend score", hr["fixed"], "frac",
                        hr["up_share"], "share of up bars"))
        freq, med = volatility_vote_frequency(c, cfg)
        rows.append(row(f"{name} 1m volatility component: share of bars voting", freq, "frac"))
        rows.append(row(f"{name} 1m median relative volatility", med, "frac",
                        cfg.volatility_min, "lower band edge"))
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
