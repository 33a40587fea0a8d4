"""What a trial is scored by: one number from a backtest's summary figures, higher is better.

Pure functions over the summary (`shared.backtest.Figures` or its JSON dict), so the driver, a
Dask worker and a test compute the very same score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

OBJECTIVES = ("net_pnl", "sharpe", "calmar", "return_over_drawdown")

# A drawdown below this (% of peak equity) counts as this much: a run that barely traded has a
# near-zero drawdown, and dividing by it would crown a lucky single fill with a huge score.
DRAWDOWN_FLOOR_PCT = 0.5
DAYS_PER_YEAR = 365.0


def _get(summary: Any, name: str) -> float:
    value = summary[name] if isinstance(summary, Mapping) else getattr(summary, name)
    return float(value)


def score(objective: str, summary: Any, days: float) -> float:
    """The objective of one backtest summary over `days` of traded market time.

    net_pnl: USD. sharpe: annualised Sharpe of daily returns (as the backtest reports it).
    return_over_drawdown: return % / max drawdown %. calmar: annualised return % / max drawdown %
    (return compounded to a year from `days`). Drawdowns below DRAWDOWN_FLOOR_PCT count as it."""
    if objective == "net_pnl":
        return _get(summary, "net_pnl")
    if objective == "sharpe":
        return _get(summary, "sharpe")
    ret = _get(summary, "return_pct")
    dd = max(abs(_get(summary, "max_drawdown_pct")), DRAWDOWN_FLOOR_PCT)
    if objective == "return_over_drawdown":
        return ret / dd
    if objective == "calmar":
        if days <= 0:
            raise ValueError("calmar needs a positive number of days")
        growth = max(1.0 + ret / 100.0, 1e-9)
        annual = (math.exp(math.log(growth) * DAYS_PER_YEAR / days) - 1.0) * 100.0
        return annual / dd
    raise ValueError(f"unknown objective {objective!r} (one of {', '.join(OBJECTIVES)})")


def comparable(objective: str, value: float, days: float) -> float:
    """The score on a per-day footing where it grows with the length of the range (net PnL, return
    over drawdown), so a 3-day train range and a 1-day test range can be compared."""
    if objective in ("net_pnl", "return_over_drawdown") and days > 0:
        return value / days
    return value


def much_worse(objective: str, train: float, test: float, train_days: float, test_days: float,
               tolerance: float = 0.5) -> bool:
    """True when the test range lost the edge the train range found: the train score was positive
    and the test score (per day where that matters) fell below `tolerance` of it."""
    a = comparable(objective, train, train_days)
    b = comparable(objective, test, test_days)
    if not math.isfinite(b):
        return True
    if a <= 0:
        return b < a - abs(a) * tolerance if a < 0 else b < 0
    return b < a * tolerance
