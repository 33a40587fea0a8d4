"""Bounded buffers of what the supervisor does not keep: each symbol's price and signal over time,
and the account's equity between the ledger's snapshots. Sampled from the workers' and the
gateway's heartbeats by the dashboard. (Halts are not sampled: the ledger keeps their log.)"""

from __future__ import annotations

import math
from collections import deque

from shared.dashboard import HISTORY_POINTS_MAX, history_points
from shared.messages import WorkerFigures


class SymbolHistory:
    """Columns of one symbol's samples (ts, price, confidence, signal, votes, position, PnL), each
    a deque of the same bounded length: the chart reads them as arrays."""

    __slots__ = ("ts", "price", "confidence", "signal", "votes", "position", "pnl")

    def __init__(self, points: int) -> None:
        self.ts: deque[float] = deque(maxlen=points)
        self.price: deque[float | None] = deque(maxlen=points)
        self.confidence: deque[float] = deque(maxlen=points)
        self.signal: deque[str] = deque(maxlen=points)
        self.votes: deque[str] = deque(maxlen=points)
        self.position: deque[float] = deque(maxlen=points)
        self.pnl: deque[float] = deque(maxlen=points)

    def add(self, ts: float, f: WorkerFigures) -> None:
        self.ts.append(round(ts, 3))
        self.price.append(f.last_price if math.isfinite(f.last_price) else None)
        self.confidence.append(round(f.confidence, 4))
        self.signal.append(f.signal)
        self.votes.append(" ".join(f"{k}:{v}" for k, v in sorted(f.votes.items())))
        self.position.append(f.position)
        self.pnl.append(round(f.realized_pnl + f.unrealized_pnl - f.fees, 8))

    def as_columns(self) -> dict[str, list[object]]:
        return {name: list(getattr(self, name)) for name in self.__slots__}


class FleetHistory:
    def __init__(self, symbols: tuple[str, ...]) -> None:
        points = history_points(len(symbols))
        self.points = points
        self.symbols: dict[str, SymbolHistory] = {s: SymbolHistory(points) for s in symbols}
        self.equity: deque[tuple[float, float]] = deque(maxlen=HISTORY_POINTS_MAX)  # (ts, account equity)

    def sample(self, ts: float, figures: dict[str, WorkerFigures]) -> None:
        for sym, f in figures.items():
            h = self.symbols.get(sym)
            if h is not None:
                h.add(ts, f)

    def note_equity(self, ts: float, equity: float) -> None:
        if math.isfinite(equity):
            self.equity.append((round(ts, 3), equity))

    def equity_series(self, stored: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """The ledger's snapshots (every 30 s, the whole run) up to where our samples (every 2 s,
        bounded) begin, then the samples."""
        start = self.equity[0][0] if self.equity else float("inf")
        return [p for p in stored if p[0] < start] + list(self.equity)
