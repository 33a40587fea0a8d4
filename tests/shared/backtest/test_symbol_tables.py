"""The backtest trades each symbol with its own [symbols.SYMBOL.*] settings (symbol_settings),
as the worker does."""

from __future__ import annotations

import msgspec

from shared.backtest import run_backtest
from shared.config import Config, SymbolSettings
from shared.marketdata import Candles, shipped_candles
from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.grid import GridConfig
from shared.trading.risk import RiskConfig

from .conftest import SPEC, SYMBOL, busy_config

BTC = "BTCUSD"


def _figures(result, symbol: str) -> bytes:
    return msgspec.json.encode(result.per_symbol[symbol])


def test_a_symbol_table_trades_as_the_same_values_given_globally(eth: Candles) -> None:
    base = busy_config()
    table = msgspec.structs.replace(base, symbols={SYMBOL: SymbolSettings(grid={"levels": 2, "width": 0.001},
                                                                          risk={"risk_percentage": 0.5})})
    glob = msgspec.structs.replace(base, grid=msgspec.structs.replace(base.grid, levels=2, width=0.001),
                                   risk=msgspec.structs.replace(base.risk, risk_percentage=0.5))
    run = {name: run_backtest(cfg, {SYMBOL: eth}, specs={SYMBOL: SPEC}, balance_usd=10_000.0)
           for name, cfg in (("base", base), ("table", table), ("global", glob))}
    assert run["table"].summary.fills > 20
    assert _figures(run["table"], SYMBOL) == _figures(run["global"], SYMBOL)
    assert run["table"].fills == run["global"].fills
    assert _figures(run["table"], SYMBOL) != _figures(run["base"], SYMBOL)
    assert run["table"].config["symbols"] == {SYMBOL: {"grid": {"levels": 2, "width": 0.001},
                                                        "risk": {"risk_percentage": 0.5}}}


def test_a_table_changes_only_its_own_symbol() -> None:
    t0 = 1504418400  # 2017-09-03 06:00 UTC: 12 hours both shipped series cover bar by bar
    data = {sym: c.slice(*map(int, c.ts.searchsorted([t0, t0 + 12 * 3600])))
            for sym in (BTC, SYMBOL) for c in [shipped_candles(sym)]}
    specs = {sym: PAPER_PRODUCTS[sym] for sym in data}
    base = Config(grid=GridConfig(width=0.0005, levels=3),
                  risk=RiskConfig(daily_loss_limit=1e9, max_drawdown_fraction=1.0))
    # BTC's grid gets 1 level instead of 3, ETH's keeps 3
    table = msgspec.structs.replace(base, symbols={BTC: SymbolSettings(grid={"levels": 1})})
    a = run_backtest(base, data, specs=specs, balance_usd=100_000.0)
    b = run_backtest(table, data, specs=specs, balance_usd=100_000.0)
    assert set(_levels(a, BTC)) == {1, 2, 3} and set(_levels(b, BTC)) == {1}
    assert set(_levels(a, SYMBOL)) == set(_levels(b, SYMBOL)) == {1, 2, 3}


def _levels(result, symbol: str) -> list[int]:
    tags = [coid.decode(f.client_order_id, bot_id="g1", symbol=symbol) for f in result.fills if f.symbol == symbol]
    return [t.level for t in tags if t is not None and t.purpose == "entry"]
