"""What a backtest says: one msgspec Struct tree, encoded to the JSON the CLI prints (`--json`)
and the report reads. Field order is fixed by the Structs, so two runs of the same input encode
to the same bytes (apart from `elapsed_s`).

Money is in the settling currency (USD). Signs: `fees` positive = paid, `funding` positive =
received. `net_pnl = realised_pnl + unrealised_pnl - fees + funding`, unrealised marked at the
last close of the range.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ..trading.pnl import Fill


class Figures(msgspec.Struct, kw_only=True):
    """The trader's figures for the whole account (`summary`) or one symbol (`per_symbol`)."""

    net_pnl: float = 0.0
    realised_pnl: float = 0.0
    unrealised_pnl: float = 0.0
    fees: float = 0.0  # positive = paid
    funding: float = 0.0  # positive = received
    return_pct: float = 0.0  # net_pnl / starting balance x 100
    max_drawdown_pct: float = 0.0  # largest fall of equity from its running peak, % of the peak
    sharpe: float = 0.0  # mean / std of daily returns x sqrt(365); 0 with fewer than 2 days
    fills: int = 0
    orders_placed: int = 0
    orders_amended: int = 0
    orders_cancelled: int = 0
    time_in_market_pct: float = 0.0  # share of traded bars that ended with a position held
    position: int | None = None  # contracts at the end (per symbol only; None in the summary)
    orders_per_hour: float = 0.0  # orders placed + amended + cancelled per market hour traded


class FillRecord(msgspec.Struct, kw_only=True, array_like=False):
    """One fill as the result lists it (issue 12's shape: amounts as numbers), made from the
    domain fill the bot was given (`of`), so the two never disagree. Not the domain `Fill`
    itself: that one carries amounts as decimal strings and its venue ids, which would change
    the JSON every reader of a result (the report, the plots, the pinned digests) reads."""

    ts: float  # epoch seconds (market time of the trade that filled it)
    symbol: str
    side: Literal["buy", "sell"]
    size: int  # contracts
    price: float
    fee: float  # positive = paid
    role: Literal["maker", "taker"]
    client_order_id: str
    realised_pnl: float = 0.0  # what this fill closed, by the venue's average-entry rule

    @classmethod
    def of(cls, fill: Fill, realised_pnl: float) -> FillRecord:
        """The record of a domain fill (its price and fee are the shortest reprs of floats, so
        float() gives those floats back)."""
        if fill.role not in ("maker", "taker"):
            raise ValueError(f"a backtest fill has a role (maker or taker), got {fill.role!r}")
        return cls(ts=fill.ts, symbol=fill.symbol, side=fill.side, size=fill.size, price=float(fill.price),
                   fee=float(fill.fee), role=fill.role,  # type: ignore[arg-type]  # checked above
                   client_order_id=fill.client_order_id, realised_pnl=realised_pnl)


class Timeline(msgspec.Struct, kw_only=True):
    """What the plots draw for one symbol; each list is bounded (see loop.TIMELINE_*)."""

    price: list[tuple[float, float]] = msgspec.field(default_factory=list)  # [ts, close], downsampled
    # each resting order's life: [ts_from, ts_to, side, price, purpose (entry/take_profit/stop)]
    orders: list[tuple[float, float, str, float, str]] = msgspec.field(default_factory=list)
    # [ts, trigger price] at each change; 0 = no stop from then
    stop: list[tuple[float, float]] = msgspec.field(default_factory=list)
    orders_dropped: int = 0  # order lives not kept: past the bound, every other one is dropped evenly


class BacktestResult(msgspec.Struct, kw_only=True):
    symbols: list[str]
    bars: int  # traded bars (all symbols together), warm-up excluded
    elapsed_s: float
    summary: Figures
    per_symbol: dict[str, Figures]
    fills: list[FillRecord]
    # [ts, account equity] at bar closes, every k-th bar (<= loop.EQUITY_POINTS points)
    equity: list[tuple[float, float]]
    timeline: dict[str, Timeline] = msgspec.field(default_factory=dict)
    funding_source: dict[str, Literal["series", "none"]] = msgspec.field(default_factory=dict)
    config: dict[str, object] = msgspec.field(default_factory=dict)  # effective grid/risk/signal/market
    warmup_bars: int = 0
    interrupted: bool = False
    start_ts: float = 0.0  # first traded bar's open time
    end_ts: float = 0.0  # last traded bar's open time
    balance_usd: float = 0.0  # starting balance
    latency_ticks: int = 1
    halted: str = ""  # why the account risk rules halted trading ("" if they never did)
    halted_ts: float = 0.0
    fills_dropped: int = 0  # fills beyond the kept bound (figures still count them)
    gaps: dict[str, list[tuple[float, float]]] = msgspec.field(default_factory=dict)  # [from_ts, seconds]

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


def decode_result(data: bytes) -> BacktestResult:
    return msgspec.json.decode(data, type=BacktestResult)
