"""The fast path changes nothing: the backtest that asks the bot only at trades that could matter
gives the same bytes as one that asks it at every trade, and the whole-series signals give the
same decisions as the pool's engine asked at every trade."""

from __future__ import annotations

import msgspec
import pytest

from shared.backtest import BacktestResult, run_backtest
from shared.config import Config
from shared.marketdata import Candles, shipped_candles, synthetic_candles
from shared.products import PAPER_PRODUCTS, ProductSpec, synthetic_spec
from shared.trading.grid import GridConfig

from .conftest import busy_config


def _specs(data: dict[str, Candles]) -> dict[str, ProductSpec]:
    return {k: PAPER_PRODUCTS[k] if k in PAPER_PRODUCTS else synthetic_spec(k) for k in data}


def _bytes(r: BacktestResult) -> bytes:
    return msgspec.structs.replace(r, elapsed_s=0.0).to_json()


def _both(cfg: Config, data: dict[str, Candles]) -> tuple[BacktestResult, BacktestResult]:
    every = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0, _wake_every_trade=True)
    woken = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0)
    return every, woken


CASES = {
    # fine directional grid on real ETH: hundreds of fills, amends, stops
    "eth-fixed": (busy_config(), {"ETHUSD": shipped_candles("ETHUSD").slice(2000, 4000)}),
    # ATR spacing: the step and the tolerance move with every trade's ATR
    "eth-atr": (Config(grid=GridConfig(spacing_mode="atr", atr_multiple=0.5, spacing_floor=0.0003, levels=4)),
                {"ETHUSD": shipped_candles("ETHUSD").slice(0, 2000)}),
    # neutral grids with a short cool-down after each stop
    "eth-neutral": (Config(grid=GridConfig(width=0.0008, levels=2, mode="neutral", stop_cooldown_s=300)),
                    {"ETHUSD": shipped_candles("ETHUSD").slice(4000, 6000)}),
    # three symbols sharing one balance, with a churn limit that holds actions back
    "three-symbols-churn": (Config(grid=GridConfig(width=0.0005, levels=3, max_actions_per_minute=8)),
                            {f"SYN_000{n}": synthetic_candles(f"SYN_000{n}", 1500) for n in (1, 2, 3)}),
    # trailing stops: the venue moves them with every new extreme, which the skipping must not miss
    "eth-trailing": (Config(grid=GridConfig(width=0.0005, levels=3, stop_kind="trailing", stop_atr_multiple=0.5,
                                            stop_cooldown_s=300)),
                     {"ETHUSD": shipped_candles("ETHUSD").slice(2000, 4000)}),
    # the benchmark's shape (default settings, generated prices): mostly flat, so most batches are
    # followed by a trade where the bot is not asked again (see _Run.quiet_after_delivery)
    "bench-shape": (Config(), {"SYN_0001": synthetic_candles("SYN_0001", 8000, seed=7)}),
    # an account halt that flattens
    "halt": (busy_config(daily_loss_limit=20.0, flatten_on_halt=True),
             {"ETHUSD": shipped_candles("ETHUSD").slice(2000, 4000)}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_asking_the_bot_only_when_something_could_change_gives_identical_results(case: str) -> None:
    cfg, data = CASES[case]
    every, woken = _both(cfg, data)
    assert every.summary.fills > 20 or every.halted
    assert _bytes(every) == _bytes(woken)


def test_series_signals_decide_exactly_as_the_engine_asked_at_every_trade() -> None:
    data = {"ETHUSD": shipped_candles("ETHUSD").slice(2000, 3500)}
    cfg = busy_config()
    engine = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0, _per_trade_engine=True)
    series = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0)
    assert engine.summary.fills > 50
    assert _bytes(engine) == _bytes(series)


def test_reading_the_signals_in_small_chunks_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.backtest.loop as loop

    cfg, data = CASES["eth-fixed"]
    whole = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0)
    monkeypatch.setattr(loop, "CHUNK_BARS", 333)  # chunk edges fall inside the warm-up and the trading
    chunked = run_backtest(cfg, data, specs=_specs(data), balance_usd=10_000.0)
    assert whole.summary.fills > 50
    assert _bytes(whole) == _bytes(chunked)


def test_a_grid_never_shrinks_as_the_balance_grows() -> None:
    # the resize check skips balances between two that gave the plan's size: sound only if the
    # size is monotone in the balance (min-balance cut, minimum size, margin cap and limit included)
    import numpy as np

    from shared.trading.sizing import contracts_per_level

    rng = np.random.default_rng(3)
    for spec in (PAPER_PRODUCTS["BTCUSD"], PAPER_PRODUCTS["ETHUSD"], synthetic_spec("SYN_0001")):
        for price in rng.uniform(0.5, 2.0, 20) * (60_000.0 if spec.symbol == "BTCUSD" else 2_000.0):
            balances = np.sort(np.concatenate([rng.uniform(-100, 200, 300), rng.uniform(0, 1e6, 300)]))
            sizes = [contracts_per_level(float(b), float(price), spec, risk_percentage=2.0, min_balance=50.0)
                     for b in balances]
            assert all(a <= b for a, b in zip(sizes, sizes[1:], strict=False))
            assert sizes[0] == 0 and sizes[-1] > 0
