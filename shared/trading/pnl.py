"""Positions and PnL from fills, in exact decimals, for linear (vanilla) contracts.

notional = contracts x contract_value x price. Realised PnL is booked when a fill reduces the
position, against the average entry of what it closes; fees are kept apart (positive = paid,
negative = rebate, Delta's sign) so gross and net can both be shown.

Money is `Decimal` throughout. The venue's strings go in unchanged (`Decimal("69420.5")`); floats
go in by their shortest repr, which is the decimal a venue printed. The open position is kept as a
cost basis (sum of price x contracts) instead of a rounded average price, so closing part of it
divides once, at 40 significant digits; `cents()` rounds only for presentation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import TypedDict

import msgspec

from shared.trading.orders import Side

Number = Decimal | int | float | str
_CTX = Context(prec=40)
_CENT = Decimal("0.01")
ZERO = Decimal(0)


def to_decimal(value: Number) -> Decimal:
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    elif isinstance(value, (int, str)):
        try:
            d = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {value!r}") from None
    elif isinstance(value, float):
        d = Decimal(repr(value))
    else:
        raise TypeError(f"not a number: {value!r}")
    if not d.is_finite():
        raise ValueError(f"amount must be finite, got {value!r}")
    return d


def cents(value: Decimal) -> Decimal:
    """Presentation rounding, half away from zero like a ledger."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution as the venue reports it: the one type a fill has past the exchange edge.
    The gateway maps Delta's wire fill into it once (workers/gateway_exchange.py `domain_fill`);
    the gateway's messages carry it, the bot, the ledger (shared/store.py), PnL, the dashboard
    and the alerts read it as is, so a new field is one edit here. Amounts are decimal strings,
    as on the wire."""

    fill_id: str
    symbol: str
    side: Side
    size: int  # contracts, > 0
    price: str
    fee: str  # commission charged; negative is a rebate
    contract_value: str
    ts: float  # epoch seconds of the execution
    client_order_id: str = ""
    order_id: str = ""
    role: str = ""  # maker | taker ("" when the venue did not say, or a ledger row stored before roles were kept)

    def __post_init__(self) -> None:
        if not self.fill_id:
            raise ValueError("fill_id must not be empty")
        if self.side not in ("buy", "sell"):
            raise ValueError(f"fill side must be buy or sell, got {self.side!r}")
        if self.size <= 0:
            raise ValueError(f"fill size must be > 0 contracts, got {self.size}")
        if to_decimal(self.price) <= 0 or to_decimal(self.contract_value) <= 0:
            raise ValueError(f"fill price and contract_value must be > 0: {self.price}, {self.contract_value}")
        to_decimal(self.fee)


class Position(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    contract_value: Decimal
    contracts: int = 0  # signed: + long, - short
    cost_basis: Decimal = ZERO  # sum of entry price x contracts still open (always >= 0)
    realised: Decimal = ZERO  # gross of fees
    fees: Decimal = ZERO
    fills: int = 0
    last_fill_ts: float = 0.0

    @property
    def average_entry(self) -> Decimal:
        if self.contracts == 0:
            return ZERO
        return _CTX.divide(self.cost_basis, Decimal(abs(self.contracts)))


def flat_position(symbol: str, contract_value: Number) -> Position:
    return Position(symbol=symbol, contract_value=to_decimal(contract_value))


def apply_fill(position: Position, fill: Fill) -> Position:
    """The position after one fill (the caller guarantees each fill is applied once; the store
    does that by fill id)."""
    if fill.symbol != position.symbol:
        raise ValueError(f"fill for {fill.symbol} applied to the {position.symbol} position")
    cv = to_decimal(fill.contract_value)
    if cv != position.contract_value:
        raise ValueError(f"{fill.symbol}: fill contract value {cv} != position's {position.contract_value}")
    price = to_decimal(fill.price)
    signed = fill.size if fill.side == "buy" else -fill.size
    pos = position.contracts
    cost = position.cost_basis
    realised = position.realised
    if pos == 0 or (pos > 0) == (signed > 0):
        cost = _CTX.add(cost, _CTX.multiply(price, Decimal(fill.size)))
    else:
        closing = min(abs(signed), abs(pos))
        closed_cost = _CTX.divide(_CTX.multiply(cost, Decimal(closing)), Decimal(abs(pos)))
        exit_value = _CTX.multiply(price, Decimal(closing))
        gross = exit_value - closed_cost if pos > 0 else closed_cost - exit_value
        realised = _CTX.add(realised, _CTX.multiply(gross, cv))
        cost = _CTX.subtract(cost, closed_cost)
        opening = abs(signed) - closing
        if opening:  # flipped through zero: the rest opens at this price
            cost = _CTX.multiply(price, Decimal(opening))
    new_pos = pos + signed
    if new_pos == 0:
        cost = ZERO  # no dust from the division survives a flat position
    return msgspec.structs.replace(
        position, contracts=new_pos, cost_basis=cost, realised=realised,
        fees=_CTX.add(position.fees, to_decimal(fill.fee)), fills=position.fills + 1,
        last_fill_ts=max(position.last_fill_ts, fill.ts),
    )


def unrealised(position: Position, mark: Number) -> Decimal:
    """(mark - average entry) x contracts x contract_value, computed from the cost basis."""
    if position.contracts == 0:
        return ZERO
    m = to_decimal(mark)
    value = _CTX.multiply(m, Decimal(abs(position.contracts)))
    diff = value - position.cost_basis if position.contracts > 0 else position.cost_basis - value
    return _CTX.multiply(diff, position.contract_value)


def notional(contracts: int, contract_value: Number, price: Number) -> Decimal:
    return _CTX.multiply(_CTX.multiply(Decimal(abs(contracts)), to_decimal(contract_value)), to_decimal(price))


def fee_for(contracts: int, contract_value: Number, price: Number, rate: Number) -> Decimal:
    """Commission of a fill at `rate` of its notional (maker or taker), unrounded."""
    return _CTX.multiply(notional(contracts, contract_value, price), to_decimal(rate))


class SymbolPnl(msgspec.Struct, frozen=True, kw_only=True):
    symbol: str
    contracts: int
    average_entry: Decimal
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    mark: Decimal | None  # None when no mark is known (unrealised then 0)
    net: Decimal  # realised + unrealised - fees + funding (a field, so JSON output carries it)
    funding: Decimal = ZERO  # perpetual funding: + received, - paid


class PnlSummary(msgspec.Struct, frozen=True, kw_only=True):
    symbols: tuple[SymbolPnl, ...]
    realised: Decimal
    unrealised: Decimal
    fees: Decimal
    net: Decimal
    funding: Decimal = ZERO


def positions_from_fills(fills: Iterable[Fill]) -> dict[str, Position]:
    """Replays fills in the order given (callers pass them in execution order)."""
    positions: dict[str, Position] = {}
    for f in fills:
        p = positions.get(f.symbol) or flat_position(f.symbol, f.contract_value)
        positions[f.symbol] = apply_fill(p, f)
    return positions


def summarise(positions: Mapping[str, Position], marks: Mapping[str, Number],
              funding: Mapping[str, Number] | None = None) -> PnlSummary:
    """Per symbol and in total: realised, unrealised at `marks`, fees, `funding` (+ received,
    - paid, by symbol) and net = realised + unrealised - fees + funding."""
    funding = funding or {}
    rows = []
    for symbol in sorted(set(positions) | set(funding)):
        p = positions.get(symbol)
        paid = to_decimal(funding.get(symbol, ZERO))
        mark = to_decimal(marks[symbol]) if symbol in marks else None
        if p is None:  # funding on a symbol whose fills the ledger does not hold
            rows.append(SymbolPnl(symbol=symbol, contracts=0, average_entry=ZERO, realised=ZERO, unrealised=ZERO,
                                  fees=ZERO, mark=mark, net=paid, funding=paid))
            continue
        upnl = unrealised(p, mark) if mark is not None else ZERO
        rows.append(SymbolPnl(
            symbol=symbol, contracts=p.contracts, average_entry=p.average_entry, realised=p.realised,
            unrealised=upnl, fees=p.fees, mark=mark, net=p.realised + upnl - p.fees + paid, funding=paid,
        ))
    realised = sum((r.realised for r in rows), ZERO)
    upnl_total = sum((r.unrealised for r in rows), ZERO)
    fees = sum((r.fees for r in rows), ZERO)
    paid_total = sum((r.funding for r in rows), ZERO)
    return PnlSummary(
        symbols=tuple(rows), realised=realised, unrealised=upnl_total, fees=fees,
        net=realised + upnl_total - fees + paid_total, funding=paid_total,
    )


class MoneyJson(TypedDict):
    realised: str
    realised_cents: str
    unrealised: str
    unrealised_cents: str
    fees: str
    fees_cents: str
    funding: str
    funding_cents: str
    net: str
    net_cents: str


class SymbolPnlJson(MoneyJson):
    symbol: str
    contracts: int
    average_entry: str
    mark: str | None


class PnlSummaryJson(TypedDict):
    symbols: list[SymbolPnlJson]
    total: MoneyJson


def summary_to_builtins(summary: PnlSummary) -> PnlSummaryJson:
    """JSON-ready form for `orchestrate history --json`: amounts as exact decimal strings plus a
    `*_cents` string rounded for display."""
    def money(row: SymbolPnl | PnlSummary) -> MoneyJson:
        return MoneyJson(realised=str(row.realised), realised_cents=str(cents(row.realised)),
                         unrealised=str(row.unrealised), unrealised_cents=str(cents(row.unrealised)),
                         fees=str(row.fees), fees_cents=str(cents(row.fees)),
                         funding=str(row.funding), funding_cents=str(cents(row.funding)),
                         net=str(row.net), net_cents=str(cents(row.net)))

    return {
        "symbols": [
            {"symbol": r.symbol, "contracts": r.contracts, "average_entry": str(r.average_entry),
             "mark": None if r.mark is None else str(r.mark), **money(r)}
            for r in summary.symbols
        ],
        "total": money(summary),
    }
