"""What the websocket's loss events oblige the gateway to read again (pure: no I/O).

`DeltaWebSocket` says when events may have been missed: `Disconnected` (the socket went away),
`SequenceGap` (a symbol's order events skipped a number), `DataGap` (its bounded queue dropped
events). Each turns into a per-symbol resync, read over REST by workers/gateway_resync.py:

- market: trades the feed missed while its socket was down, read back from the symbol's recent
  trades (newer than the last one heard, oldest first) before the socket resubscribes, so the
  bots' tick stream has no hole;
- orders: the symbol's open orders and the account's fills (a missed order event or fill).

Requests are coalesced per symbol (a storm of gaps costs one read each), so the pending set is
bounded by the symbols served.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

DISCONNECT = "disconnect"
SEQUENCE_GAP = "sequence gap"
DATA_GAP = "data gap"


class MarketTrade(NamedTuple):
    ts_us: int
    price: float
    size: float


class ResyncBook:
    """Which symbols need their orders read again and why, the last trade heard per symbol, and
    the counts the gateway's status shows."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = tuple(symbols)
        self._served = frozenset(self.symbols)
        self.pending: dict[str, str] = {}  # symbol -> first reason since the last read
        self.reasons: Counter[str] = Counter()  # events acted on, by reason
        self.resyncs = 0  # per-symbol REST snapshots read
        self.recovered = 0  # missed trades read back and handed on
        self.last_trade_us: dict[str, int] = {}

    # ---- events ----------------------------------------------------------------------------
    def on_disconnected(self, symbols: Iterable[str]) -> None:
        self.reasons[DISCONNECT] += 1
        self._want(symbols, DISCONNECT)

    def on_sequence_gap(self, symbol: str) -> None:
        self.reasons[SEQUENCE_GAP] += 1
        self._want([symbol], SEQUENCE_GAP)

    def on_data_gap(self) -> None:
        self.reasons[DATA_GAP] += 1
        self._want(self.symbols, DATA_GAP)

    def _want(self, symbols: Iterable[str], reason: str) -> None:
        for s in symbols:
            if s in self._served:
                self.pending.setdefault(s, reason)

    def take(self) -> list[tuple[str, str]]:
        """The pending (symbol, reason) pairs, cleared."""
        out = list(self.pending.items())
        self.pending.clear()
        return out

    # ---- trades ----------------------------------------------------------------------------
    def heard(self, symbol: str, ts_us: int) -> bool:
        """A trade arrived; False if it is not newer than the last one (a repeat: drop it)."""
        last = self.last_trade_us.get(symbol)
        if last is not None and ts_us <= last:
            return False
        self.last_trade_us[symbol] = ts_us
        return True

    def missed(self, symbol: str, recent: Sequence[MarketTrade]) -> list[MarketTrade]:
        """Of a symbol's recent trades (any order), those newer than the last heard, oldest first;
        they count as heard. With nothing heard yet, none: there is no hole to fill."""
        last = self.last_trade_us.get(symbol)
        if last is None:
            return []
        out = sorted((t for t in recent if t.ts_us > last), key=lambda t: t.ts_us)
        if out:
            self.last_trade_us[symbol] = out[-1].ts_us
            self.recovered += len(out)
        return out

    def note(self) -> str:
        """For the gateway's status line ("" until something happened)."""
        if not self.resyncs and not self.reasons:
            return ""
        why = ", ".join(f"{r} {n}" for r, n in sorted(self.reasons.items()))
        return f"; resyncs {self.resyncs} ({why}), {self.recovered} missed trades read back"
