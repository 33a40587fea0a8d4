"""Shared inputs: the shipped ETH series (real prices, in the repository) and a grid fine enough to
fill often in a couple of thousand bars."""

from __future__ import annotations

import msgspec
import pytest

from shared.config import Config
from shared.marketdata import Candles, shipped_candles
from shared.products import PAPER_PRODUCTS
from shared.trading.grid import GridConfig

SYMBOL = "ETHUSD"
SPEC = PAPER_PRODUCTS[SYMBOL]


def busy_config(**risk: object) -> Config:
    """A fine grid (0.05% steps, 3 levels): hundreds of fills in 2,000 ETH bars (held across 8 h funding boundaries)."""
    cfg = Config(grid=GridConfig(width=0.0005, levels=3))
    if risk:
        cfg = msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, **risk))
    return cfg


@pytest.fixture(scope="session")
def eth() -> Candles:
    return shipped_candles(SYMBOL).slice(2000, 4000)
