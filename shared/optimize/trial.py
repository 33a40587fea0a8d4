"""One trial: a real backtest of a range with one config, scored by the objective.

This is the function a Dask worker runs (it must import on any worker that has the package
installed), the driver re-runs for the test range, and a test calls directly; so all three score
a config the same way. It never raises: a failure is an outcome with the reason.
"""

from __future__ import annotations

import math
import time
import traceback

import msgspec

from ..backtest.reuse import BacktestReuse
from ..config import Config
from ..marketdata import Candles
from ..products import ProductSpec
from .objective import score
from .windows import Window

SUMMARY_FIELDS = ("net_pnl", "return_pct", "max_drawdown_pct", "sharpe", "fees", "fills",
                  "orders_placed", "time_in_market_pct")
BARS_PER_DAY = 1440

# One per process (each Dask worker, and the driver's own re-runs): a study's trials backtest the
# same data and range, so the replayed bars, and the signal series while the trial changes no
# `signal.*` key, are computed once per worker instead of once per trial. Bounded (LRU by bytes).
REUSE = BacktestReuse()


class MarketData(msgspec.Struct, frozen=True, kw_only=True):
    """What every trial needs besides its config; shipped to each worker once (scattered)."""

    candles: dict[str, Candles]
    specs: dict[str, ProductSpec]


class TrialOutcome(msgspec.Struct, kw_only=True):
    score: float | None = None  # None: failed (see error)
    error: str = ""
    figures: dict[str, float] = msgspec.field(default_factory=dict)  # the summary's SUMMARY_FIELDS
    days: float = 0.0  # traded market days (bars per symbol / 1440)
    bars: int = 0
    halted: str = ""
    elapsed_s: float = 0.0


def warm_up() -> None:
    """Import what a trial runs (~0.15 s of CPU), so a worker pays it when the cluster starts
    rather than in its first trial."""
    from .. import backtest  # noqa: F401


def evaluate(cfg: Config, market: MarketData, window: Window, objective: str,
             warmup_bars: int | None = None, reuse: BacktestReuse | None = REUSE) -> TrialOutcome:
    """Backtest `window` with `cfg` on the starting balance the config names, and score it
    (`reuse`: the process's kept bars and series; None computes them, as a lone backtest does)."""
    from ..backtest import BacktestError, run_backtest

    t0 = time.perf_counter()
    try:
        result = run_backtest(cfg, market.candles, specs=market.specs,
                              balance_usd=cfg.market.initial_balance_usd,
                              start_ts=window.start_ts, end_ts=window.end_ts, warmup_bars=warmup_bars,
                              reuse=reuse)
    except BacktestError as exc:
        return TrialOutcome(error=f"backtest refused: {exc}", elapsed_s=time.perf_counter() - t0)
    except Exception as exc:  # a trial's crash is its own failure, never the study's
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return TrialOutcome(error=f"backtest failed: {type(exc).__name__}: {exc} "
                                  f"({where.filename.rsplit('/', 1)[-1]}:{where.lineno})",
                            elapsed_s=time.perf_counter() - t0)
    summary = result.summary
    days = result.bars / max(len(result.symbols), 1) / BARS_PER_DAY
    figures = {name: float(getattr(summary, name)) for name in SUMMARY_FIELDS}
    out = TrialOutcome(figures=figures, days=days, bars=result.bars, halted=result.halted,
                       elapsed_s=time.perf_counter() - t0)
    if result.bars == 0:
        out.error = f"no traded bars in {window.label()}"
        return out
    try:
        value = score(objective, summary, days)
    except ValueError as exc:
        out.error = str(exc)
        return out
    if not math.isfinite(value):
        out.error = f"{objective} is not a finite number ({value})"
        return out
    out.score = value
    return out
