"""Tasks of several short trials on a real 2-worker LocalCluster: a driver that fails while drawing
a task's trials leaves none of them running (they are queued again at once, not left for the
heartbeat check to find stale a grace period later)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from orchestrator.optimize_cmd import parse_range
from orchestrator.optimize_study import (
    INTERRUPTED,
    RETRY_OF,
    dask_client,
    open_study,
    run_trials,
    scatter_market,
    train_result,
)
from shared.config import Config, config_to_toml_dict
from shared.marketdata import shipped_candles
from shared.optimize.space import load_space
from shared.optimize.tasks import TASK_SECONDS
from shared.optimize.trial import MarketData
from shared.products import PAPER_PRODUCTS

# one hour of bars: a trial well under TASK_SECONDS / 2 of CPU, so tasks take two trials or more
TRAIN = "2018-04-05T00:00..2018-04-05T00:59"
SPACE = '"grid.width" = {low = 0.001, high = 0.01, log = true}\n"grid.levels" = {low = 2, high = 8}\n'

pytestmark = pytest.mark.slow


def test_trials_drawn_for_a_task_that_was_never_sent_are_queued_again(tmp_path: Path) -> None:
    study = open_study(f"sqlite:///{tmp_path / 's.sqlite'}", "s", "fp", 0, n_dims=2)
    asked = [0]
    real_ask = study.ask

    def ask(*args: Any, **kwargs: Any) -> optuna.Trial:
        asked[0] += 1
        if asked[0] == 10:  # the 4 first tasks take one trial each, then pairs: the 10th is a pair's second
            raise RuntimeError("the database went away")
        return real_ask(*args, **kwargs)

    study.ask = ask  # type: ignore[method-assign]
    market = MarketData(candles={"BTCUSD": shipped_candles("BTCUSD")}, specs={"BTCUSD": PAPER_PRODUCTS["BTCUSD"]})
    with dask_client(2, None) as client, pytest.raises(RuntimeError, match="went away"):
        run_trials(study, client, scatter_market(client, market), config_to_toml_dict(Config()),
                   load_space(SPACE, "space"), parse_range(TRAIN, "--train"), "net_pnl", 40)
    trials = study.get_trials(deepcopy=False)
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert done and all(float(train_result(t)["cpu_s"]) < TASK_SECONDS / 2 for t in done)
    # the pair's first trial was drawn, never sent: failed as interrupted, its values queued again
    first_of_pair = trials[8]
    assert first_of_pair.state == TrialState.FAIL and first_of_pair.user_attrs.get(INTERRUPTED)
    again = [t for t in trials if t.state == TrialState.WAITING and t.user_attrs.get(RETRY_OF) == 8]
    assert len(again) == 1 and again[0].system_attrs["fixed_params"] == first_of_pair.params
