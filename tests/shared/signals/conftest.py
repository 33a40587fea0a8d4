"""Real market series for the signal tests (read from ../shared/data/market, tests only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.marketdata import Candles, read_ohlcv_csv

MARKET = Path(__file__).resolve().parents[4] / "shared" / "data" / "market"
BITTREX_5M = ("ADA", "DASH", "ETC", "ETH", "LTC", "NXT", "TRX", "XLM", "XMR", "ZEC")


@pytest.fixture(scope="session")
def btc_1m() -> Candles:
    return read_ohlcv_csv(MARKET / "BTCUSD-coinbase-1m.csv")


@pytest.fixture(scope="session")
def eth_1m() -> Candles:
    return read_ohlcv_csv(MARKET / "ETHUSD-coinbase-1m.csv")


@pytest.fixture(scope="session")
def bittrex_rows() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """The ten *BTC-bittrex-5m series as 2-D rows (symbols, high, low, close), trimmed to the
    shortest, in satoshis: TA-Lib treats sums below an absolute 1e-8 as zero, which would make
    the oracle itself wrong on prices around 1e-5 BTC."""
    series = [read_ohlcv_csv(MARKET / f"{s}BTC-bittrex-5m.csv") for s in BITTREX_5M]
    n = min(len(c) for c in series)
    high = np.stack([c.high[-n:] for c in series]) * 1e8
    low = np.stack([c.low[-n:] for c in series]) * 1e8
    close = np.stack([c.close[-n:] for c in series]) * 1e8
    return [f"{s}BTC" for s in BITTREX_5M], high, low, close
