"""Reusing the replayed bars and signal series between runs (an optimizer's trials) changes no
result: every run with a `BacktestReuse` gives the bytes of the same run without one, whether the
reuse had the arrays (hit), computed them (miss) or could not keep them (budget)."""

from __future__ import annotations

import msgspec
import pytest

from shared.backtest import BacktestResult, run_backtest
from shared.backtest.reuse import BacktestReuse
from shared.config import Config
from shared.marketdata import Candles, shipped_candles
from shared.trading.grid import GridConfig

from .conftest import SPEC, SYMBOL, busy_config


def _bytes(r: BacktestResult) -> bytes:
    return msgspec.structs.replace(r, elapsed_s=0.0).to_json()


def _run(cfg: Config, data: Candles, reuse: BacktestReuse | None, start: float | None = None) -> bytes:
    return _bytes(run_backtest(cfg, {SYMBOL: data}, specs={SYMBOL: SPEC}, balance_usd=10_000.0, start_ts=start,
                               reuse=reuse))


CONFIGS = [
    busy_config(),
    Config(grid=GridConfig(width=0.0008, levels=2, mode="neutral", stop_cooldown_s=300)),
    Config(grid=GridConfig(spacing_mode="atr", atr_multiple=0.5, spacing_floor=0.0003, levels=4)),
    # another signal table: its own series, not the one the grids above shared
    msgspec.structs.replace(busy_config(), signal=msgspec.structs.replace(Config().signal, rsi_overbought=60.0)),
    busy_config(),  # back to the first: its series is still kept
]


def test_runs_with_a_reuse_give_the_bytes_of_runs_without(eth: Candles) -> None:
    reuse = BacktestReuse()
    for cfg in CONFIGS:
        assert _run(cfg, eth, reuse) == _run(cfg, eth, None)
    # bars: computed once, then kept; series: one per signal table (the default one came back)
    bar_keys = [k for k in reuse.entries if k[0] == "bars"]
    series_keys = [k for k in reuse.entries if k[0] == "series"]
    assert len(bar_keys) == 1 and len(series_keys) == 2
    assert reuse.hits == 2 * len(CONFIGS) - 1 - 2  # every lookup but the first bars and the two series
    # a kept array cannot be written by a later run
    (bars, _), _ = reuse.entries[bar_keys[0]]
    with pytest.raises(ValueError):
        bars.ticks[0, 0] = 1.0


def test_other_data_or_another_range_is_not_served_the_kept_arrays(eth: Candles) -> None:
    reuse = BacktestReuse()
    cfg = busy_config()
    assert _run(cfg, eth, reuse) == _run(cfg, eth, None)
    # same shape, other prices: a new candles object, never the kept replay of the first
    moved = Candles(eth.ts.copy(), eth.open * 1.01, eth.high * 1.01, eth.low * 1.01, eth.close * 1.01,
                    eth.volume.copy())
    assert _run(cfg, moved, reuse) == _run(cfg, moved, None) != _run(cfg, eth, None)
    later = float(eth.ts[1000])
    assert _run(cfg, eth, reuse, later) == _run(cfg, eth, None, later)
    assert len([k for k in reuse.entries if k[0] == "bars"]) == 3


def test_a_budget_too_small_keeps_nothing_and_changes_nothing(eth: Candles) -> None:
    reuse = BacktestReuse(budget_bytes=10_000)
    for cfg in CONFIGS[:2]:
        assert _run(cfg, eth, reuse) == _run(cfg, eth, None)
    assert not reuse.entries and reuse.used == 0 and reuse.hits == 0


def test_the_least_recently_used_entry_goes_first_and_the_bytes_stay_within_the_budget() -> None:
    data = shipped_candles(SYMBOL)
    one = data.slice(0, 1500)
    per_run = BacktestReuse()
    _run(busy_config(), one, per_run)
    size = per_run.used  # bars + candles, series + bars of one run
    reuse = BacktestReuse(budget_bytes=int(size * 1.5))
    two = data.slice(1500, 3000)
    _run(busy_config(), one, reuse)
    _run(busy_config(), two, reuse)
    assert reuse.used <= reuse.budget_bytes
    held = [v[0][1] if k[0] == "bars" else None for k, v in reuse.entries.items()]
    assert not any(c is one for c in held if c is not None)  # the older data went first
    assert any(c is two for c in held if c is not None)
