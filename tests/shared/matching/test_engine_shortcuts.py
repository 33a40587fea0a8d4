"""The engine's shortcuts (lagging margins settled when read, the float proof of a margin check, the
float band around the liquidation price, float trade prices put on the tick grid without a Decimal)
must never change an answer: each is compared here with the exact path it skips."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from typing import Any

import msgspec
import pytest

from shared.matching import MatchingEngine, OrderRequest, VenueError
from shared.matching.engine import Order, Position, _Product
from shared.products import ProductSpec, synthetic_spec

from .support import BTC, Clock, make, two_product_account


def limit(side: str, size: int, price: str, **kw: Any) -> OrderRequest:
    return OrderRequest(product_id=27, side=side, size=size, limit_price=D(price), **kw)  # type: ignore[arg-type]  # test input


def reference_tick(price: float, tick: D) -> D:
    """The tick-grid rule of the module doc, written out: the float's shortest decimal, divided by
    the tick, rounded half-even to whole ticks."""
    return (D(repr(price)) / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


@pytest.mark.parametrize("tick_size", [0.5, 0.01, 0.05, 1.0, 0.001, 5.0, 0.25])
def test_trade_prices_go_on_the_tick_grid_digit_for_digit(tick_size: float) -> None:
    spec = msgspec.structs.replace(BTC, tick_size=tick_size)
    e = MatchingEngine(initial_balance_usd=1_000.0, default_leverage=10, clock=Clock())
    e.add_product(spec)
    tick = D(repr(tick_size))
    rng = random.Random(5)
    prices: list[float] = []
    for _ in range(3_000):
        n = rng.randint(1, 10_000_000)
        prices += [rng.uniform(0.001, 150_000.0),  # off the grid
                   n * tick_size,  # on it, as floats round it
                   (n + 0.5) * tick_size,  # a half tick: round half even
                   float(f"{rng.uniform(1.0, 1e5):.{rng.randint(1, 9)}g}")]  # short decimals
    for i, x in enumerate(prices):
        e.on_market_trade("BTCUSD", x, 1, i)
        got = e.last_price(27)
        want = reference_tick(x, tick)
        assert str(got) == str(want), (x, got, want)  # the same digits and exponent, not only the value


def test_a_margin_check_after_cancels_sees_the_exact_available_balance() -> None:
    e = make(balance=100.0, leverage=10.0)
    # 25 contracts x 0.001 x 40000 = 1000 notional, margin 100 at 10x: the whole balance
    first = e.place_order(limit("buy", 25, "40000"))
    e.cancel_order(order_id=first.id)  # the product's margins now lag the book until read
    again = e.place_order(limit("buy", 25, "40000"))  # exactly affordable again
    assert again.state == "open"
    with pytest.raises(VenueError) as err:
        e.place_order(limit("buy", 1, "40000"))
    assert err.value.code == "insufficient_margin"
    assert D(err.value.context["available_balance"]) == D("0")
    assert D(err.value.context["required_additional_balance"]) == D("4")
    # an edit is checked with the margin the order holds now given back: same size, lower price fits,
    # one more contract does not (4 short, as above)
    assert e.edit_order(again.id, limit_price=D("39999.5")).limit_price == D("39999.5")
    with pytest.raises(VenueError) as err:
        e.edit_order(again.id, size=26, limit_price=D("40000"))
    assert err.value.code == "insufficient_margin"
    assert D(err.value.context["required_additional_balance"]) == D("4")
    assert e.order_margin(27) == D("99.99875") and e.available_balance() == D("0.00125")


def test_liquidation_happens_at_the_exact_price_on_both_sides() -> None:
    # long 10 @ 50000.5 at 10x: margin 50.0005 + 0.01 x (m - 50000.5) <= 0.0005 x m  <=>  m <= 47368.947...
    e = make()
    e.place_order(OrderRequest(product_id=27, side="buy", size=10, order_type="market_order"))
    assert e.on_market_trade("BTCUSD", 47_369.0, 1, 2) == []  # one tick above: still alive
    assert [f.fill_type for f in e.on_market_trade("BTCUSD", 47_368.5, 1, 3)] == ["liquidation"]
    # short 10 @ 50000.0 at 10x: 50.0 - 0.01 x (m - 50000) <= 0.0005 x m  <=>  m >= 52380.95...
    e = make()
    e.place_order(OrderRequest(product_id=27, side="sell", size=10, order_type="market_order"))
    assert e.on_market_trade("BTCUSD", 52_380.5, 1, 2) == []
    assert [f.fill_type for f in e.on_market_trade("BTCUSD", 52_381.0, 1, 3)] == ["liquidation"]


def _exact_only(e: MatchingEngine) -> None:
    """Switch off the shortcuts that decide by floats: every margin check and liquidation check
    then runs the exact Decimal path."""
    inf = float("inf")

    def never_safe(p: _Product) -> tuple[Position, D, D, float, float]:
        return p.position, p.leverage, p.position_margin, inf, -inf

    def unproven(p: _Product, size: int, price: D, releasing: Order | None = None) -> bool:
        return False

    e._liquidation_safe = never_safe  # type: ignore[method-assign]  # the exact path, for comparison
    e._affordable = unproven  # type: ignore[method-assign]


def _session(e: MatchingEngine, specs: list[ProductSpec], px: dict[str, float], seed: int) -> Iterator[bytes]:
    """A random session near the account's limits (margin refusals, liquidations, leverage
    changes): every answer, error and event, encoded."""
    rng = random.Random(seed)
    enc = msgspec.json.Encoder(decimal_format="string")
    for step in range(2_500):
        s = rng.choice(specs)
        pid, tick = s.product_id, D(repr(s.tick_size))
        px[s.symbol] *= 1 + rng.gauss(0, 0.006)
        # some trades exactly on the grid or half a tick off it, most anywhere
        price = px[s.symbol] if rng.random() < 0.6 else \
            round(px[s.symbol] / s.tick_size) * s.tick_size + rng.choice([0.0, 0.5]) * s.tick_size
        yield enc.encode(e.on_market_trade(s.symbol, price, rng.randint(1, 30), step))
        bid, ask = e.touch(pid)
        r = rng.random()
        try:
            if r < 0.45:
                side = rng.choice(["buy", "sell"])
                lim = bid - tick * rng.randint(-3, 20) if side == "buy" else ask + tick * rng.randint(-3, 20)
                out: Any = e.place_order(OrderRequest(
                    product_id=pid, side=side, size=rng.randint(1, 400), limit_price=lim,  # type: ignore[arg-type]  # test input
                    reduce_only=rng.random() < 0.15, post_only=rng.random() < 0.5,
                    time_in_force=rng.choice(["gtc", "gtc", "ioc"]),
                    client_order_id=rng.choice([None, f"c{rng.randint(0, 30)}"])))
            elif r < 0.52:
                out = e.place_order(OrderRequest(product_id=pid, side=rng.choice(["buy", "sell"]),
                                                 size=rng.randint(1, 300), order_type="market_order",
                                                 reduce_only=rng.random() < 0.3))
            elif r < 0.7 and e.open_orders([pid]):
                o = rng.choice(e.open_orders([pid]))
                out = e.edit_order(o.id, size=o.filled_size + rng.randint(1, 400),
                                   limit_price=o.limit_price + tick * rng.randint(-4, 4))  # type: ignore[operator]  # resting orders have a limit
            elif r < 0.85 and e.open_orders([pid]):
                out = e.cancel_order(order_id=rng.choice(e.open_orders([pid])).id)
            elif r < 0.88:
                out = e.set_leverage(pid, rng.choice([2, 5, 10, 25, 50]))
            else:
                out = (e.available_balance(), e.order_margin(), e.position_margin(pid), e.wallet())
        except VenueError as exc:
            out = (exc.code, exc.context)
        yield enc.encode(out)
        yield enc.encode(e.drain_events())
    yield e.snapshot()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_shortcuts_change_no_answer_event_or_snapshot(seed: int) -> None:
    fast, specs, px = two_product_account(3_000)
    exact, _, px2 = two_product_account(3_000)
    _exact_only(exact)
    got, want = list(_session(fast, specs, px, seed)), list(_session(exact, specs, px2, seed))
    assert got == want
    answers = b"".join(got)
    # the session reached the limits the shortcuts decide near
    assert b"insufficient_margin" in answers and b"liquidation" in answers


def test_margins_read_right_after_a_change_are_current() -> None:
    e = make(balance=1_000.0)
    o = e.place_order(limit("buy", 10, "40000"))  # 10 x 0.001 x 40000 / 10 = 40
    assert e.order_margin(27) == D("40") and e.available_balance() == D("960")
    e.cancel_order(order_id=o.id)
    assert e.wallet().order_margin == D("0") and e.order_margin() == D("0")
    e.place_order(OrderRequest(product_id=27, side="buy", size=10, order_type="market_order"))  # @50000.5
    assert e.position_margin(27) == D("50.0005")
    assert e.wallet().available_balance == e.balance - D("50.0005")


def test_synthetic_symbols_go_on_their_own_grid() -> None:
    spec = synthetic_spec("SYN_0001")  # tick 0.01
    e = MatchingEngine(initial_balance_usd=1_000.0, default_leverage=10, clock=Clock())
    e.add_product(spec)
    for i, x in enumerate([100.1, 100.12, 100.125, 100.135, 100.0, 99.99999999]):
        e.on_market_trade(spec.symbol, x, 1, i)
        assert str(e.last_price(spec.product_id)) == str(reference_tick(x, D("0.01")))
