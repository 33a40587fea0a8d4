"""The backtest loop (implementation in progress: the signature and result are fixed)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..config import Config
from ..marketdata import Candles
from ..products import ProductSpec
from .result import BacktestResult


class BacktestError(ValueError):
    """Bad backtest input; the message names the symbol, option or range at fault."""


def run_backtest(cfg: Config, data: Mapping[str, Candles], *, specs: Mapping[str, ProductSpec],
                 balance_usd: float, start_ts: float | None = None, end_ts: float | None = None,
                 warmup_bars: int | None = None, funding: Mapping[str, Candles] | None = None,
                 latency_ticks: int = 1, progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> BacktestResult:
    """Replay each symbol's candles (bar open times, epoch s; 1m bars) through the paper venue's
    tick path, the pool's SignalEngine, the worker's TradingBot, the supervisor's account risk
    rules and the paper venue's MatchingEngine.

    `start_ts`/`end_ts` (inclusive bar open times) pick the traded range; the `warmup_bars` bars
    before it feed the indicators and trade nothing (None: what the signal engine needs).
    `funding[symbol]` is a FUNDING:<symbol> series (rate per funding interval in `close`, positive
    = longs pay shorts), charged at each interval's boundary; without one, funding is zero and the
    result says so. An order sent at tick t rests from tick t + `latency_ticks` (>= 1).
    `progress(done, total)` is called now and then with bars done; `should_stop()` True ends the
    run early with what it had (`interrupted`). Raises BacktestError for bad input."""
    raise NotImplementedError("run_backtest: loop being built on branch backtest")
