from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from shared.trading.orders import Side
from shared.trading.pnl import (
    Fill,
    apply_fill,
    cents,
    fee_for,
    flat_position,
    notional,
    positions_from_fills,
    summarise,
    summary_to_builtins,
    to_decimal,
    unrealised,
)

D = Decimal
_n = iter(range(1, 10**9))


def fill(side: Side, size: int, price: str, fee: str = "0", symbol: str = "BTCUSD", cv: str = "0.001") -> Fill:
    return Fill(fill_id=f"f{next(_n)}", symbol=symbol, side=side, size=size, price=price, fee=fee,
                contract_value=cv, ts=1.0)


def test_open_add_reduce_close_long() -> None:
    p = flat_position("BTCUSD", "0.001")
    p = apply_fill(p, fill("buy", 10, "60000", fee="0.12"))
    p = apply_fill(p, fill("buy", 10, "61000", fee="0.122"))
    assert p.contracts == 20 and p.average_entry == D("60500")
    # mark 62,000: (62,000 - 60,500) x 20 x 0.001 = 30
    assert unrealised(p, "62000") == D("30")
    p = apply_fill(p, fill("sell", 5, "62000", fee="0.155"))
    assert p.realised == D("7.5")  # 1,500 x 5 x 0.001
    assert p.contracts == 15 and p.average_entry == D("60500")
    p = apply_fill(p, fill("sell", 15, "59500", fee="0.44625"))
    assert p.realised == D("7.5") - D("15")  # -1,000 x 15 x 0.001
    assert p.contracts == 0 and p.cost_basis == 0 and unrealised(p, "1") == 0
    assert p.fees == D("0.84325") and cents(p.fees) == D("0.84")


def test_short_and_flip_through_zero() -> None:
    p = flat_position("ETHUSD", "0.01")
    p = apply_fill(p, fill("sell", 3, "2000", symbol="ETHUSD", cv="0.01"))
    assert p.contracts == -3 and unrealised(p, "1990") == D("0.3")
    p = apply_fill(p, fill("buy", 5, "1990", symbol="ETHUSD", cv="0.01"))  # close 3, open 2 long
    assert p.realised == D("0.3") and p.contracts == 2 and p.average_entry == D("1990")
    assert unrealised(p, "2000") == D("0.2")


def test_repeating_average_is_exact_to_the_cent() -> None:
    # average of 3 buys at 100, 100, 101 is 100.333...; closing all at 102 must realise exactly
    # (3 x 102 - 301) x cv
    p = flat_position("X", "1")
    for price in ("100", "100", "101"):
        p = apply_fill(p, fill("buy", 1, price, symbol="X", cv="1"))
    p = apply_fill(p, fill("sell", 1, "102", symbol="X", cv="1"))
    p = apply_fill(p, fill("sell", 2, "102", symbol="X", cv="1"))
    assert p.realised == D("5")


def test_matches_an_independent_cash_ledger_to_the_cent() -> None:
    # A random walk of fills; the ledger is cash flow: sells bring price x size x cv, buys cost it.
    # When the position is flat, realised PnL must equal the net cash flow exactly.
    rng = random.Random(7)
    p = flat_position("ETHUSD", "0.01")
    cash = D(0)
    fees = D(0)
    for _ in range(2_000):
        side: Side = rng.choice(("buy", "sell"))
        size = rng.randint(1, 40)
        price = D(rng.randint(30_000, 50_000)) * D("0.05")
        fee = fee_for(size, "0.01", price, "0.0005")
        p = apply_fill(p, fill(side, size, str(price), str(fee), symbol="ETHUSD", cv="0.01"))
        flow = price * size * D("0.01")
        cash += flow if side == "sell" else -flow
        fees += fee
    closing_price = D("2000.05")
    # realised + unrealised at a mark == cash + value of the open position at that mark
    ledger = cash + p.contracts * closing_price * D("0.01")
    assert cents(p.realised + unrealised(p, closing_price)) == cents(ledger)
    assert abs(p.realised + unrealised(p, closing_price) - ledger) < D("1e-20")
    assert p.fees == fees


def test_summary_per_symbol_and_total() -> None:
    fills = [fill("buy", 10, "60000"), fill("sell", 4, "2000", "0.04", symbol="ETHUSD", cv="0.01"),
             fill("sell", 10, "60100", "0.3")]
    s = summarise(positions_from_fills(fills), {"ETHUSD": "1995", "BTCUSD": "1"})
    by = {r.symbol: r for r in s.symbols}
    assert by["BTCUSD"].realised == D("1") and by["BTCUSD"].unrealised == 0
    assert by["ETHUSD"].unrealised == D("0.2") and by["ETHUSD"].contracts == -4
    assert s.realised == D("1") and s.unrealised == D("0.2") and s.fees == D("0.34")
    assert s.net == D("0.86")
    assert by["ETHUSD"].net == D("0.2") - D("0.04")
    assert summarise(positions_from_fills(fills), {}).symbols[1].mark is None
    as_json = msgspec.json.decode(msgspec.json.encode(summary_to_builtins(s)))
    assert D(as_json["total"]["net"]) == D("0.86") and as_json["total"]["fees_cents"] == "0.34"
    assert as_json["symbols"][0]["symbol"] == "BTCUSD" and as_json["symbols"][1]["mark"] == "1995"


def test_float_inputs_go_in_by_their_decimal_repr() -> None:
    assert to_decimal(0.1) == D("0.1")
    assert notional(-3, 0.01, 2000.05) == D("60.0015")
    with pytest.raises(ValueError):
        to_decimal(float("nan"))
    with pytest.raises(TypeError):
        to_decimal(True)


@pytest.mark.parametrize("kw", [{"size": 0}, {"side": "long"}, {"price": "0"}, {"price": "abc"},
                                {"fill_id": ""}, {"fee": "NaN"}])
def test_bad_fills_are_rejected(kw: dict[str, Any]) -> None:
    # Any: the point is to hand Fill values its types forbid
    args: dict[str, Any] = dict(fill_id="x", symbol="X", side="buy", size=1, price="1", fee="0", contract_value="1",
                                ts=0.0)
    args.update(kw)
    with pytest.raises(ValueError):
        Fill(**args)


def test_fill_for_another_symbol_or_contract_value_is_refused() -> None:
    p = flat_position("BTCUSD", "0.001")
    with pytest.raises(ValueError):
        apply_fill(p, fill("buy", 1, "1", symbol="ETHUSD"))
    with pytest.raises(ValueError):
        apply_fill(p, fill("buy", 1, "1", cv="0.01"))
