"""Market series for the signal tests: the real 1m series shipped in the package, and seeded
synthetic rows at altcoin-in-BTC prices. Nothing outside the repository is read."""

from __future__ import annotations

import numpy as np
import pytest

from shared.marketdata import Candles, shipped_candles, synthetic_candles

LOW_PRICED = 10  # rows of the 2-D tests


@pytest.fixture(scope="session")
def btc_1m() -> Candles:
    return shipped_candles("BTCUSD")


@pytest.fixture(scope="session")
def eth_1m() -> Candles:
    return shipped_candles("ETHUSD")


@pytest.fixture(scope="session")
def bittrex_rows() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Ten seeded series at altcoin-in-BTC prices (around 1e-5), as 2-D rows (symbols, high,
    low, close), in satoshis: TA-Lib treats sums below an absolute 1e-8 as zero, which would make
    the oracle itself wrong on prices that small. (Formerly the bittrex 5m files beside the
    repository; a clone alone must pass, so the rows are generated.)"""
    symbols = [f"ALT{i}BTC" for i in range(LOW_PRICED)]
    series = [synthetic_candles(s, 3000, seed=7) for s in symbols]
    scale = [1e-5 / float(c.close[0]) for c in series]
    high = np.stack([c.high * k for c, k in zip(series, scale, strict=True)]) * 1e8
    low = np.stack([c.low * k for c, k in zip(series, scale, strict=True)]) * 1e8
    close = np.stack([c.close * k for c, k in zip(series, scale, strict=True)]) * 1e8
    return symbols, high, low, close
