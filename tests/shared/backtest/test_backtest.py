"""The backtest's promises: same input, same bytes; the PnL is what the fills say; nothing is
decided or filled on a price the market had not yet reached; a halt acts as it does live."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import msgspec
import numpy as np
import pytest

from shared.backtest import BacktestError, run_backtest
from shared.backtest.market import TICK_SECONDS, replay_bars, round_price
from shared.marketdata import Candles, find_gaps
from shared.trading import client_order_id as coid

from .conftest import SPEC, SYMBOL, busy_config


def _run(candles: Candles, cfg=None, **kw):
    return run_backtest(cfg or busy_config(), {SYMBOL: candles}, specs={SYMBOL: SPEC}, balance_usd=10_000.0, **kw)


def _bytes(result) -> bytes:
    return msgspec.structs.replace(result, elapsed_s=0.0).to_json()


def test_two_runs_give_byte_identical_json(eth: Candles) -> None:
    a, b = _run(eth), _run(eth)
    assert a.summary.fills > 50  # the comparison means something only if there was trading
    assert _bytes(a) == _bytes(b)


def test_net_pnl_is_what_the_fills_say_to_the_cent(eth: Candles) -> None:
    rate = 0.0003  # a FUNDING:ETHUSD series: 0.03% per 8 h interval, longs pay
    n = len(eth)
    funding = Candles(eth.ts.copy(), np.full(n, rate), np.full(n, rate), np.full(n, rate), np.full(n, rate),
                      np.zeros(n))
    r = _run(eth, funding={SYMBOL: funding})
    assert r.summary.fills == len(r.fills) > 50
    cv = SPEC.contract_value
    cash = sum((f.size if f.side == "sell" else -f.size) * cv * f.price for f in r.fills)
    position = sum(f.size if f.side == "buy" else -f.size for f in r.fills)
    fees = sum(f.fee for f in r.fills)
    last_close = float(round_price(np.array([eth.close[-1]]), SPEC)[0])
    net = cash + position * cv * last_close - fees + r.summary.funding
    assert r.per_symbol[SYMBOL].position == position
    assert r.summary.net_pnl == pytest.approx(net, abs=0.005)
    s = r.summary
    assert s.net_pnl == pytest.approx(s.realised_pnl + s.unrealised_pnl - s.fees + s.funding, abs=1e-6)
    assert r.funding_source == {SYMBOL: "series"}
    assert s.funding != 0.0  # positions were held across 8 h boundaries, so funding was charged
    assert _run(eth).funding_source == {SYMBOL: "none"}


def test_a_fill_only_happens_at_a_price_the_market_traded_through_after_the_order_rested(eth: Candles) -> None:
    r = _run(eth)
    bars = replay_bars(eth, SPEC, 0)
    trade_at = {float(t) + k * TICK_SECONDS: float(bars.ticks[i, k])
                for i, t in enumerate(bars.ts) for k in range(4)}
    lives: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    makers = [f for f in r.fills if f.role == "maker"]
    assert len(makers) > 50
    for f in makers:
        traded = trade_at[f.ts]
        # strictly through the limit: touching it is not a fill on the paper venue
        assert (traded < f.price) if f.side == "buy" else (traded > f.price), f
    for start, end, side, price, _purpose in r.timeline[SYMBOL].orders:
        lives[f"{side}{price}"].append((start, end, price))
    for f in makers:
        # the order rested at this price from a trade no later than the fill's
        assert any(start <= f.ts <= end for start, end, _ in lives[f"{f.side}{f.price}"]), f


def test_decisions_before_a_time_do_not_change_when_later_bars_change(eth: Candles) -> None:
    cut = 1200
    w_open, w_high, w_low, w_close = (np.concatenate([col[:cut], col[cut:] * 1.7])
                                      for col in (eth.open, eth.high, eth.low, eth.close))
    wild = Candles(eth.ts.copy(), w_open, w_high, w_low, w_close, eth.volume.copy())
    a, b = _run(eth), _run(wild)
    cut_ts = float(eth.ts[cut])
    before_a = [f for f in a.fills if f.ts < cut_ts]
    before_b = [f for f in b.fills if f.ts < cut_ts]
    assert len(before_a) > 20
    assert before_a == before_b
    # (lives still open at the cut end differently, and so are listed in a different order)
    orders_a = sorted(o[:1] + o[2:] for o in a.timeline[SYMBOL].orders if o[0] < cut_ts)
    orders_b = sorted(o[:1] + o[2:] for o in b.timeline[SYMBOL].orders if o[0] < cut_ts)
    assert orders_a == orders_b
    assert a.fills != b.fills  # and the later bars did matter


def test_an_order_decided_on_a_trade_cannot_fill_on_that_trade(eth: Candles) -> None:
    """With latency L, the first trade an order can meet is L trades after the decision: the
    order lives in the timeline start L x 15 s after a trade, never on the decision's own."""
    for latency in (1, 3):
        r = _run(eth.slice(0, 1000), latency_ticks=latency)
        starts = [o[0] for o in r.timeline[SYMBOL].orders]
        assert starts
        # the bot's first decision is on the first traded trade; its orders rest L trades later
        assert min(starts) == r.start_ts + latency * TICK_SECONDS


def test_a_halt_cancels_entries_flattens_and_stops_trading_as_live(eth: Candles) -> None:
    r = _run(eth, busy_config(daily_loss_limit=5.0, flatten_on_halt=True))
    assert r.halted.startswith("daily loss")
    after = [f for f in r.fills if f.ts > r.halted_ts]
    tags = [coid.decode(f.client_order_id, bot_id="g1", symbol=SYMBOL) for f in after]
    # after the halt only the flatten (a reduce-only market order, purpose stop) can trade
    assert all(t is not None and t.purpose == "stop" for t in tags), after
    assert [f.role for f in after] == ["taker"]  # the flatten: the position was held at the halt
    assert r.per_symbol[SYMBOL].position == 0
    assert not [o for o in r.timeline[SYMBOL].orders if o[0] > r.halted_ts + 2 * TICK_SECONDS]
    # nothing rests after the halt has been acted on: every life ends within two trades of it
    assert all(o[1] <= r.halted_ts + 2 * TICK_SECONDS for o in r.timeline[SYMBOL].orders)


def test_a_halt_without_flatten_keeps_the_protective_stop(eth: Candles) -> None:
    r = _run(eth, busy_config(daily_loss_limit=5.0, flatten_on_halt=False))
    assert r.halted
    entries_after = [o for o in r.timeline[SYMBOL].orders if o[4] != "stop" and o[1] > r.halted_ts + 2 * TICK_SECONDS]
    assert not entries_after
    if r.per_symbol[SYMBOL].position:
        assert r.timeline[SYMBOL].stop[-1][1] > 0  # the position stays protected


def _position_after(r, ts: float) -> int:
    return sum(f.size if f.side == "buy" else -f.size for f in r.fills if f.ts <= ts)


def test_a_loss_on_a_days_first_bar_counts_against_that_day(eth: Candles) -> None:
    """The account limits are checked at each bar's end; the day's loss is measured from the
    equity at the boundary (the previous bar's end), so a gap against the position on the day's
    first bar halts at that bar, as a trader reads the daily loss limit."""
    day = 86_400
    n = 1_500
    src = eth.slice(0, n)
    # The shipped bars re-timed one a minute, the 523rd starting a UTC day (about the 208th traded).
    boundary_bar = 523
    t0 = 20_030 * day - 60 * boundary_bar

    def bars(factor: float) -> Candles:
        k = np.ones(n)
        k[boundary_bar:] = factor  # every price from the day's first bar on: a gap at the boundary
        return Candles((t0 + 60 * np.arange(n)).astype(np.int64), src.open * k, src.high * k, src.low * k,
                       src.close * k, src.volume.copy())

    no_limits = busy_config(daily_loss_limit=1e9, max_drawdown_fraction=1.0)
    last_trade_before = t0 + 60 * boundary_bar - TICK_SECONDS
    held = _position_after(_run(bars(1.0), no_limits), last_trade_before)
    assert abs(held) >= 50, f"precondition: a position is held into the day boundary (held {held})"
    gapped = bars(0.8 if held > 0 else 1.25)
    # Fills before the gap do not depend on it: the day before ends as it did without the gap.
    assert _position_after(_run(gapped, no_limits), last_trade_before) == held
    r = _run(gapped, busy_config(daily_loss_limit=60.0, max_drawdown_fraction=1.0))
    first_bar_checked = t0 + 60 * boundary_bar + 3 * TICK_SECONDS  # the first bar's last trade
    assert r.halted.startswith("daily loss") and r.halted_ts == first_bar_checked, (r.halted, r.halted_ts)
    # the drawdown from the day's peak alike: the boundary's equity is the new day's first peak
    r = _run(gapped, busy_config(daily_loss_limit=1e9, max_drawdown_fraction=0.006))
    assert r.halted.startswith("drawdown") and r.halted_ts == first_bar_checked, (r.halted, r.halted_ts)


def test_the_runs_first_bar_is_checked_from_the_starting_balance(eth: Candles) -> None:
    # any loss at all halts: the first bar's fill fee (and its move) is one
    r = _run(eth, busy_config(daily_loss_limit=0.01))
    first_bar_checked = r.start_ts + 3 * TICK_SECONDS
    assert r.fills and r.fills[0].ts <= first_bar_checked  # precondition: the first bar trades
    assert r.halted.startswith("daily loss") and r.halted_ts == first_bar_checked, (r.halted, r.halted_ts)


def test_bad_input_is_refused_naming_what_is_wrong(eth: Candles) -> None:
    with pytest.raises(BacktestError, match="no product spec"):
        run_backtest(busy_config(), {"XRPUSD": eth}, specs={}, balance_usd=1000.0)
    with pytest.raises(BacktestError, match="after --to"):
        _run(eth, start_ts=float(eth.ts[900]), end_ts=float(eth.ts[800]))
    with pytest.raises(BacktestError, match="outside the data"):
        _run(eth, start_ts=float(eth.ts[-1]) + 86_400)
    with pytest.raises(BacktestError, match="warm-up"):
        _run(eth, start_ts=float(eth.ts[10]))
    with pytest.raises(BacktestError, match="latency"):
        _run(eth, latency_ticks=0)
    with pytest.raises(BacktestError, match="window_bars"):
        _run(eth, warmup_bars=1500)


def test_should_stop_returns_what_it_had(eth: Candles) -> None:
    calls = iter(range(10_000))
    r = _run(eth, should_stop=lambda: next(calls) >= 2)
    assert r.interrupted and 0 < r.bars < len(eth)


def test_timelines_are_bounded_and_cover_the_whole_run_evenly() -> None:
    from shared.backtest.loop import _thin_append

    kept: list[int] = []
    stride = 1
    for seen in range(100_000):
        stride = _thin_append(kept, seen, seen, stride, 1_000)
    assert 500 <= len(kept) < 1_000
    assert kept[0] == 0 and kept[-1] > 99_000  # the end of the run is there, not only its start
    assert len({b - a for a, b in pairwise(kept)}) == 1  # evenly spaced


def test_a_gap_is_reported_from_its_first_missing_bar_as_the_command_warns_it(eth: Candles) -> None:
    # ten bars cut out of the traded range: the result names the same gap `find_gaps` (the
    # command's warnings) does, from the first missing bar's open time, for as long as bars are missing
    holed = Candles(*(np.concatenate([a[:1000], a[1010:]]) for a in (eth.ts, eth.open, eth.high, eth.low,
                                                                     eth.close, eth.volume)))
    r = _run(holed, warmup_bars=200)
    assert (float(eth.ts[1000]), 600.0) in r.gaps[SYMBOL]  # (the shipped series has a gap of its own too)
    assert [(float(g.from_ts), float(g.seconds)) for g in find_gaps(holed.ts[200:])] == r.gaps[SYMBOL]
