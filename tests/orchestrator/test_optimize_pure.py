"""Pure pieces of the optimizer: objectives, the overfitting rule, walk-forward windows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from shared.optimize.objective import DRAWDOWN_FLOOR_PCT, much_worse, score
from shared.optimize.windows import RangeError, Window, walk_forward


def test_objectives() -> None:
    s = {"net_pnl": 120.0, "sharpe": 1.5, "return_pct": 1.2, "max_drawdown_pct": 2.0}
    assert score("net_pnl", s, 3) == 120.0
    assert score("sharpe", s, 3) == 1.5
    assert score("return_over_drawdown", s, 3) == pytest.approx(0.6)
    # 1.2% in 3 days compounds to (1.012^(365/3) - 1) a year, over a 2% drawdown
    assert score("calmar", s, 3) == pytest.approx((1.012 ** (365 / 3) - 1) * 100 / 2.0)
    # a run that barely moved does not divide by a near-zero drawdown
    tiny = {**s, "max_drawdown_pct": 0.001}
    assert score("return_over_drawdown", tiny, 3) == pytest.approx(1.2 / DRAWDOWN_FLOOR_PCT)
    with pytest.raises(ValueError, match="unknown objective"):
        score("profit", s, 3)


def test_much_worse_compares_per_day_where_scores_grow_with_time() -> None:
    # 30 USD over 3 train days vs 8 USD over 1 test day: 10/day vs 8/day is not much worse
    assert not much_worse("net_pnl", 30.0, 8.0, 3.0, 1.0)
    assert much_worse("net_pnl", 30.0, 4.0, 3.0, 1.0)
    assert much_worse("net_pnl", 30.0, -1.0, 3.0, 1.0)
    assert not much_worse("sharpe", 2.0, 1.5, 3.0, 1.0)
    assert much_worse("sharpe", 2.0, 0.5, 3.0, 1.0)


def test_walk_forward_splits_bars_not_calendar() -> None:
    # two days of bars with a month-long gap between them: a calendar split would leave windows empty
    day = np.arange(0, 1440 * 60, 60)
    ts = np.concatenate([1_500_000_000 + day, 1_503_000_000 + day])
    whole = Window(start_ts=float(ts[0]), end_ts=float(ts[-1]))
    windows = walk_forward(ts, whole, 4, 0.75)
    assert [w.index for w in windows] == [1, 2, 3, 4]
    for a, b in itertools.pairwise(windows):
        assert a.train.end_ts < a.test.start_ts <= a.test.end_ts < b.train.start_ts
    assert all(np.count_nonzero((ts >= w.train.start_ts) & (ts <= w.train.end_ts)) == 540 for w in windows)
    assert all(np.count_nonzero((ts >= w.test.start_ts) & (ts <= w.test.end_ts)) == 180 for w in windows)
    with pytest.raises(RangeError, match="too few"):
        walk_forward(ts[:10], whole, 4, 0.75)
