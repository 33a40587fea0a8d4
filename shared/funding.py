"""Perpetual funding as pure functions: when it is charged, at what rate, and how much.

Delta charges (or pays) funding on every open perpetual position at the product's funding
interval (28,800 s on India BTCUSD, the `fi` of its funding_rate frames): a positive rate means
longs pay shorts. The amount is position x contract_value x mark x rate, in the settling asset,
and moves the wallet balance (a `funding` entry of the wallet ledger). Boundaries are aligned to
the epoch (00:00, 08:00, 16:00 UTC for 8 h), on the market's clock: the paper venue's market
clock runs faster than the wall, so on paper funding comes as often as the clock says.

Where the paper venue's rates come from:
- a `FUNDING:<symbol>` series when one is given (the OHLCV CSV `orchestrate download --symbol
  FUNDING:<sym>` writes, rate per interval as a fraction in `close`, the backtest's reading):
  laid end to end from the paper account's first bar, as the venue lays its price candles, and
  wrapped at its end; the rate of a boundary is the close of the last row at or before it;
- otherwise a seeded model (`seeded_rate`): one draw per (seed, symbol, boundary), so a
  restarted venue charges the same rate for the same boundary, mean 0.01% per interval (the
  usual resting rate of a perpetual), spread 0.02%, clamped to +-0.05% (the product's
  `funding_clamp_value` 0.05, read as percent: UNCONFIRMED). The rate is per funding event,
  whatever the interval: a short paper interval charges full-sized events more often.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np

from .marketdata import CandleFileError, Candles, read_ohlcv_csv

FUNDING_INTERVAL_S = 8 * 3600  # Delta India BTCUSD: `fi` 28800 in the funding_rate frames
MODEL_MEAN = 0.0001  # fraction per interval: 0.01%
MODEL_SPREAD = 0.0002
MODEL_CLAMP = 0.0005  # +-0.05%
RATE_QUANTUM = Decimal("1e-8")  # rates as exact decimals of 8 places (fractions)
MONEY = Decimal("0.00000001")


def boundaries(after_us: int, until_us: int, interval_s: int) -> range:
    """Funding times (µs, multiples of the interval since the epoch) with after < t <= until."""
    if interval_s <= 0:
        raise ValueError(f"funding interval must be > 0 s, got {interval_s}")
    step = interval_s * 1_000_000
    first = (after_us // step + 1) * step
    return range(first, until_us + 1, step)


def last_boundary(ts_us: int, interval_s: int) -> int:
    """The newest funding time at or before `ts_us`."""
    step = interval_s * 1_000_000
    return ts_us - ts_us % step


def seeded_rate(seed: int, symbol: str, boundary_us: int) -> Decimal:
    """The paper model's rate (fraction per interval) for one funding time: the same inputs
    always give the same rate (a string seed is hashed by SHA-512, not by PYTHONHASHSEED)."""
    z = random.Random(f"funding:{seed}:{symbol}:{boundary_us}").gauss(0.0, 1.0)
    rate = min(MODEL_CLAMP, max(-MODEL_CLAMP, MODEL_MEAN + MODEL_SPREAD * z))
    return Decimal(repr(rate)).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


def payment(position: int, contract_value: Decimal, mark: Decimal, rate: Decimal) -> Decimal:
    """What a position receives (+) or pays (-) at one funding time: positive rate, longs pay."""
    return (-position * contract_value * mark * rate).quantize(MONEY, rounding=ROUND_HALF_EVEN)


class FundingSeries:
    """A FUNDING:<symbol> series replayed on the paper market's clock (see module doc)."""

    def __init__(self, symbol: str, candles: Candles) -> None:
        if len(candles) == 0:
            raise ValueError(f"FUNDING:{symbol}: the series has no rows")
        self.symbol = symbol
        self._ts = np.asarray(candles.ts, dtype=np.int64)
        self._rate = np.asarray(candles.close, dtype=np.float64)
        step = int(np.median(np.diff(self._ts))) if len(self._ts) > 1 else 60
        self._span = int(self._ts[-1] - self._ts[0]) + max(1, step)

    def rate_at(self, boundary_us: int, origin_ts: int) -> Decimal:
        """The rate of a funding time on a market whose replay began at `origin_ts` (epoch s)."""
        offset = max(0, boundary_us // 1_000_000 - origin_ts) % self._span
        j = max(0, int(np.searchsorted(self._ts, self._ts[0] + offset, side="right")) - 1)
        return Decimal(repr(float(self._rate[j]))).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)


class FundingRates:
    """Which rate each symbol's funding time gets: its series when given, else the model."""

    def __init__(self, seed: int, series: Mapping[str, FundingSeries] | None = None) -> None:
        self.seed = seed
        self.series = dict(series or {})

    def rate(self, symbol: str, boundary_us: int, origin_ts: int) -> Decimal:
        s = self.series.get(symbol)
        return s.rate_at(boundary_us, origin_ts) if s is not None else seeded_rate(self.seed, symbol, boundary_us)

    def source(self, symbol: str) -> str:
        return "series" if symbol in self.series else "model"


def load_series(files: Mapping[str, str]) -> dict[str, FundingSeries]:
    """symbol -> FUNDING series from CSV files (`market.funding_series`). Raises ValueError
    naming the symbol and the file."""
    out = {}
    for symbol, path in files.items():
        try:
            out[symbol] = FundingSeries(symbol, read_ohlcv_csv(Path(path), signed=True))
        except (CandleFileError, OSError, ValueError) as exc:
            raise ValueError(f"market.funding_series.{symbol}: {path}: {exc}") from None
    return out


__all__ = ["FUNDING_INTERVAL_S", "FundingRates", "FundingSeries", "boundaries", "last_boundary", "load_series",
           "payment", "seeded_rate"]
