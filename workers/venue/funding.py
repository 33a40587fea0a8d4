"""The paper venue's funding: every listed product's open position is charged or paid at each
funding time its market clock passes (shared/funding.py has the rule, the rates and the sums;
the engine books each payment into the balance, the wallet ledger and the account journal).

Funding follows the market clock, never the wall: at 60x replay an 8 h interval passes every
8 wall minutes, and a venue restarted inside a run, catching up with the wall, settles the funding
times it missed on the positions it held (nothing traded while it was down). Each product
remembers the newest funding time it settled (saved with the account, restored from its journal),
so a restart never charges one twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal

from shared.funding import FundingRates, boundaries, last_boundary
from shared.matching import FundingPayment, MatchingEngine

log = logging.getLogger("workers.venue")
MAX_SETTLED_AT_ONCE = 10_000  # funding times one catch-up settles per product (a long outage at a tiny interval)


class VenueFunding:
    def __init__(self, rates: FundingRates, interval_s: int, origin_ts: int) -> None:
        if interval_s < 60 or interval_s % 60:
            raise ValueError(f"funding interval must be a whole number of minutes >= 60 s, got {interval_s}")
        self.rates = rates
        self.interval_s = interval_s
        self.origin_ts = origin_ts  # a series is laid out from the account's first bar
        self._checked_us = -1

    def rate(self, symbol: str, funding_us: int) -> Decimal:
        return self.rates.rate(symbol, funding_us, self.origin_ts)

    def next_time(self, now_us: int) -> int:
        """The next funding time after `now_us` (µs)."""
        return last_boundary(now_us, self.interval_s) + self.interval_s * 1_000_000

    def settle(self, engine: MatchingEngine, products: Iterable[tuple[str, int]], now_us: int) -> list[FundingPayment]:
        """Charge every (symbol, product_id) for the funding times up to `now_us` it has not
        settled yet. Cheap when none is due (the common case: one comparison a replay step)."""
        due = last_boundary(now_us, self.interval_s)
        if due <= self._checked_us:
            return []
        self._checked_us = due
        paid: list[FundingPayment] = []
        for symbol, pid in products:
            times = boundaries(engine.funding_settled_until(pid), now_us, self.interval_s)
            if len(times) > MAX_SETTLED_AT_ONCE:
                log.warning("%s: %d funding times to settle at once; the oldest %d are skipped", symbol,
                            len(times), len(times) - MAX_SETTLED_AT_ONCE)
                times = times[-MAX_SETTLED_AT_ONCE:]
            for t in times:
                fp = engine.charge_funding(pid, self.rate(symbol, t), t)
                if fp is not None:
                    paid.append(fp)
        return paid
