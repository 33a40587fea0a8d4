"""The account journal: snapshot + the events drained after it restore the account exactly, so
a venue killed between snapshots loses no order or fill and never reuses a fill id."""

from __future__ import annotations

import random
from decimal import Decimal as D

import msgspec
import pytest

from shared.matching import MatchingEngine, OrderRequest, VenueError
from shared.matching.engine import EngineState, Event, apply_journal, decode_journal, encode_journal_entry
from shared.products import synthetic_spec
from shared.trading.orders import Side

from .support import BTC, Clock

SYN = synthetic_spec("SYN_0007")


def state_of(e: MatchingEngine) -> EngineState:
    return msgspec.json.decode(e.snapshot(max_history=100_000), type=EngineState)


def comparable(st: EngineState) -> tuple:
    return (st.balance, st.realized_pnl_total, st.fees_total,
            sorted((p.spec.product_id, p.leverage, p.position.size, p.position.entry_price,
                    p.position.realized_pnl, p.position.commission) for p in st.products),
            sorted(msgspec.json.encode(o) for o in st.open_orders),
            sorted(msgspec.json.encode(o) for o in st.closed_orders),
            [msgspec.json.encode(f) for f in st.fills], st.last_order_id, st.last_priority, st.last_fill_seq,
            st.funding_total, [msgspec.json.encode(f) for f in st.funding],
            sorted((p.spec.product_id, p.last_funding_us, p.position.funding) for p in st.products))


def random_session(e: MatchingEngine, rng: random.Random, clock: Clock, steps: int,
                   journal: list[Event]) -> None:
    """Orders, cancels, stops, leverage and market trades at random on every product of the
    account; every drain goes to `journal`."""
    for _ in range(steps):
        clock.now += 1_000
        spec = rng.choice(e.specs())
        sym, pid = spec.symbol, spec.product_id
        last = e.last_price(pid) or D(100)
        try:
            r = rng.random()
            if r < 0.45:
                tick = e.product(pid).tick_size
                off = D(repr(tick)) * rng.randint(-20, 20)
                e.place_order(OrderRequest(product_id=pid, side=rng.choice(["buy", "sell"]), size=rng.randint(1, 5),
                                           limit_price=max(last + off, D(repr(tick))),
                                           client_order_id=f"c{clock.now}" if rng.random() < 0.5 else None))
            elif r < 0.55:
                e.place_order(OrderRequest(product_id=pid, side=rng.choice(["buy", "sell"]), size=rng.randint(1, 3),
                                           order_type="market_order"))
            elif r < 0.62 and e.position(pid).size:
                side: Side = "sell" if e.position(pid).size > 0 else "buy"
                tick_d = D(repr(e.product(pid).tick_size))
                stop = last - 5 * tick_d if side == "sell" else last + 5 * tick_d
                e.place_order(OrderRequest(product_id=pid, side=side, size=abs(e.position(pid).size),
                                           order_type="market_order", reduce_only=True,
                                           stop_order_type="stop_loss_order", stop_price=stop))
            elif r < 0.72 and e.open_orders():
                e.cancel_order(order_id=rng.choice(e.open_orders()).id)
            elif r < 0.75:
                e.set_leverage(pid, rng.choice([5, 10, 20]))
            elif r < 0.80:  # a funding time passes (the venue settles each one once)
                e.charge_funding(pid, D(rng.randint(-50, 50)) / 100_000, clock.now)
            else:
                move = D(repr(e.product(pid).tick_size)) * rng.randint(-8, 8)
                e.on_market_trade(sym, float(last + move), rng.randint(1, 6), clock.now)
        except VenueError:
            pass
        journal.extend(e.drain_events())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_plus_journal_is_the_account(seed: int) -> None:
    rng, clock = random.Random(seed), Clock()
    e = MatchingEngine(initial_balance_usd=50_000, default_leverage=10, clock=clock)
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    before: list[Event] = []
    random_session(e, rng, clock, 200, before)
    e.add_product(SYN)  # a product born after the snapshot must come back from the journal alone
    e.on_market_trade(SYN.symbol, 100.0, 1, clock.now)
    snap = e.snapshot()
    after: list[Event] = []
    random_session(e, rng, clock, 400, after)
    assert any(type(ev).__name__ == "FillEvent" for ev in after)
    assert any(type(ev).__name__ == "FundingEvent" for ev in after)
    want = comparable(state_of(e))
    restored = MatchingEngine.restore(snap, clock=clock, journal=after)
    assert comparable(state_of(restored)) == want
    # A journal that outlived its snapshot (crash between snapshot and truncation) replays to
    # the same account: fills are skipped by sequence, orders and positions take the last state.
    assert comparable(apply_journal(msgspec.json.decode(snap, type=EngineState), before[-50:] + after)) == want
    # ... and the restored engine carries on with fresh ids, never one already handed out.
    clock.now += 1_000
    o = restored.place_order(OrderRequest(product_id=27, side="buy", size=1, order_type="market_order"))
    assert o.id == state_of(e).last_order_id + 1
    assert restored.fills[-1].seq == state_of(e).last_fill_seq + 1


def test_a_run_that_died_before_its_first_snapshot_comes_back_from_the_journal() -> None:
    clock = Clock()
    e = MatchingEngine(initial_balance_usd=10_000, default_leverage=10, clock=clock)
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    e.place_order(OrderRequest(product_id=27, side="buy", size=3, order_type="market_order"))
    journal = e.drain_events()
    back = MatchingEngine.fresh(initial_balance_usd=10_000, default_leverage=10, clock=clock, journal=journal)
    assert back.position(27).size == 3 and back.balance == e.balance < 10_000
    assert [f.id for f in back.fills] == [f.id for f in e.fills]


def test_journal_file_format_drops_a_torn_tail_and_refuses_a_damaged_middle() -> None:
    clock = Clock()
    e = MatchingEngine(initial_balance_usd=10_000, default_leverage=10, clock=clock)
    e.add_product(BTC)
    e.on_market_trade("BTCUSD", 50_000.0, 1, 1)
    first = encode_journal_entry(e.drain_events())
    e.place_order(OrderRequest(product_id=27, side="buy", size=1, order_type="market_order"))
    second = encode_journal_entry(e.drain_events())
    assert len(decode_journal(first + second)) > len(decode_journal(first))
    torn = first + second[: len(second) // 2]  # killed mid-write: that drain was never published
    assert decode_journal(torn) == decode_journal(first)
    with pytest.raises(ValueError, match="line 1"):
        decode_journal(first[:10] + b"\n" + second)
