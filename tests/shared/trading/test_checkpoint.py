"""Fill checkpoints: a restarted bot reads fills only since it last held nothing, and ends up
exactly where reading every fill would have put it."""

from __future__ import annotations

import random

from shared.products import PAPER_PRODUCTS
from shared.trading import client_order_id as coid
from shared.trading.bot import TradingBot
from shared.trading.checkpoint import find_checkpoint
from shared.trading.grid import GridConfig
from shared.trading.pnl import Fill
from shared.trading.risk import RiskConfig

ETH = PAPER_PRODUCTS["ETHUSD"]


def fill(n: int, side: str, purpose: str, level: int, price: str, size: int = 2, bot: str = "t1",
         ts: float | None = None) -> Fill:
    cid = coid.encode(bot_id=bot, symbol="ETHUSD", side=side, purpose=purpose, level=level,  # type: ignore[arg-type]
                      generation=n % 100)
    return Fill(fill_id=f"f{n:04d}", symbol="ETHUSD", side=side, size=size, price=price, fee="0.01",  # type: ignore[arg-type]
                contract_value="0.01", ts=1000.0 + 10 * n if ts is None else ts, client_order_id=cid)


def test_the_checkpoint_is_the_last_time_the_bot_held_nothing() -> None:
    fills = [fill(1, "buy", "entry", 1, "2000"), fill(2, "sell", "take_profit", 1, "2010"),  # flat
             fill(3, "buy", "entry", 1, "1990"),
             fill(4, "buy", "entry", 2, "1980", bot="zz"),  # another bot's: never counted
             fill(5, "sell", "take_profit", 1, "2000"),  # flat again: the checkpoint
             fill(6, "sell", "entry", 1, "2020")]  # held since
    cp = find_checkpoint(fills, bot_id="t1", symbol="ETHUSD")
    assert cp is not None
    assert cp.since_ts == fills[4].ts - 60.0
    assert set(cp.skip_fill_ids) == {f.fill_id for f in fills[:5] if f.ts >= cp.since_ts}
    assert cp.fills == 4 and float(cp.realised) == 2 * 0.01 * (10 + 10) and float(cp.fees) == 0.04
    assert find_checkpoint(fills[:1], bot_id="t1", symbol="ETHUSD") is None  # never flat


def bot() -> TradingBot:
    return TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(levels=3, width=0.002),
                      risk=RiskConfig(risk_percentage=2.0), bot_id="t1")


def test_reconciling_from_the_checkpoint_equals_reconciling_from_every_fill() -> None:
    rng = random.Random(4)
    fills: list[Fill] = []
    held: dict[tuple[str, int], int] = {}
    for n in range(1, 400):  # levels entering and closing at random, both sides, several bots
        level = rng.randint(1, 3)
        side = rng.choice(["buy", "sell"])
        key = (side, level)
        price = f"{2000 + rng.randint(-30, 30)}"
        if held.get(key):
            fills.append(fill(n, "sell" if side == "buy" else "buy", "take_profit", level, price, size=held.pop(key)))
        else:
            held[key] = rng.randint(1, 4)
            fills.append(fill(n, side, "entry", level, price, size=held[key]))
        if rng.random() < 0.1:
            fills.append(fill(1000 + n, side, "entry", level, price, bot="zz"))
    cp = find_checkpoint(fills, bot_id="t1", symbol="ETHUSD")
    assert cp is not None and cp.fills > 50
    everything, recent = bot(), bot()
    everything.reconcile_from([], fills, [])
    recent.reconcile_from([], [f for f in fills if f.ts >= cp.since_ts], [], checkpoint=cp)
    assert recent.position == everything.position
    assert recent.holdings == everything.holdings
    assert set(recent.seen_fills) <= set(everything.seen_fills)


def test_manual_fills_up_to_the_checkpoint_travel_with_it_and_the_bot_counts_the_rest() -> None:
    """The venue's position is the account's: the bot's own plus the manual fills on the product.
    The checkpoint carries the manual ones before it; the bot counts those it reads after."""
    manual = [Fill(fill_id=f"m{n}", symbol="ETHUSD", side=side, size=size, price="2000", fee="0.01",  # type: ignore[arg-type]
                   contract_value="0.01", ts=1000.0 + 10 * n, client_order_id="") for n, side, size in
              ((2, "buy", 7), (7, "sell", 2))]
    fills = sorted([fill(1, "buy", "entry", 1, "2000"), fill(3, "sell", "take_profit", 1, "2010"),  # flat at 3
                    fill(9, "sell", "entry", 1, "2020")] + manual, key=lambda f: f.ts)
    cp = find_checkpoint(fills, bot_id="t1", symbol="ETHUSD", overlap_s=0.0)
    assert cp is not None and cp.foreign_contracts == 7  # m2 before the flat point; m7 after
    bot = TradingBot(symbol="ETHUSD", product=ETH, grid=GridConfig(), risk=RiskConfig(), bot_id="t1")
    bot.reconcile_from([], [f for f in fills if f.ts >= cp.since_ts], [], checkpoint=cp)
    assert bot.position is not None and bot.position.contracts == -2
    assert bot.foreign_contracts == 7 - 2  # the venue would show -2 + 5 = +3
    bot.on_fill(Fill(fill_id="m10", symbol="ETHUSD", side="buy", size=1, price="2000", fee="0",  # type: ignore[arg-type]
                     contract_value="0.01", ts=1200.0))
    assert bot.foreign_contracts == 6 and bot.position.contracts == -2
