"""How many trials one Dask task runs (shared.optimize.tasks), and a task of several trials
scoring each as a lone trial does."""

from __future__ import annotations

from orchestrator.optimize_cmd import parse_range
from orchestrator.optimize_study import trial_config
from shared.config import Config, config_to_toml_dict
from shared.marketdata import shipped_candles
from shared.optimize.tasks import MAX_TRIALS_PER_TASK, TASK_SECONDS, trials_per_task
from shared.optimize.trial import MarketData, evaluate, evaluate_batch
from shared.products import PAPER_PRODUCTS


def test_short_trials_share_a_task_long_ones_do_not() -> None:
    assert trials_per_task([], 100, 4) == 1  # nothing measured yet
    assert trials_per_task([0.1] * 8, 100, 4) == int(TASK_SECONDS / 0.1) == 2
    assert trials_per_task([0.06] * 8, 100, 4) == 4
    assert trials_per_task([0.001] * 8, 100, 4) == MAX_TRIALS_PER_TASK
    assert trials_per_task([1.5] * 8, 100, 4) == 1
    assert trials_per_task([0.0] * 8, 100, 4) == MAX_TRIALS_PER_TASK
    # the typical trial is the median: one slow outlier does not stop the grouping
    assert trials_per_task([0.1] * 7 + [9.0], 100, 4) == 2


def test_the_last_trials_go_one_a_task() -> None:
    # 4 tasks in flight: a task of 2 only while 8 or more trials remain to start
    assert trials_per_task([0.1] * 8, 8, 4) == 2
    assert trials_per_task([0.1] * 8, 7, 4) == 1
    assert trials_per_task([0.05] * 8, 12, 4) == 3
    assert trials_per_task([0.1] * 8, 1, 4) == 1
    assert trials_per_task([0.1] * 8, 0, 4) == 0


def test_a_task_of_several_trials_scores_each_as_alone() -> None:
    market = MarketData(candles={"BTCUSD": shipped_candles("BTCUSD")}, specs={"BTCUSD": PAPER_PRODUCTS["BTCUSD"]})
    window = parse_range("2018-04-05..2018-04-05", "--train")
    base = config_to_toml_dict(Config())
    configs = [trial_config(base, {"grid.width": w, "grid.levels": n}) for w, n in ((0.004, 4), (0.01, 8), (0.002, 3))]
    batch = evaluate_batch(configs, market, window, "net_pnl")
    alone = [evaluate(cfg, market, window, "net_pnl", reuse=None) for cfg in configs]
    assert [o.score for o in batch] == [o.score for o in alone]
    assert all(o.score is not None and o.cpu_s > 0 for o in batch)
    assert len({o.score for o in batch}) == 3  # three different configs, three different results
