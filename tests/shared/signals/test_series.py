"""The backtest's whole-series signals equal the engine called at every tick, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.marketdata import Candles, candle_ticks, synthetic_candles
from shared.signals import SignalConfig, SignalEngine
from shared.signals import strategies as st
from shared.signals.series import (
    SignalSeries,
    candle_tick_prices,
    evaluate_series,
    evaluate_series_reference,
    iter_series,
)
from tests.shared.signals.test_engine import window

N_BARS = 2500


def assert_same(got: SignalSeries, want: SignalSeries) -> None:
    for name in SignalSeries._fields:
        a, b = getattr(got, name), getattr(want, name)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if a.dtype.kind == "f":  # bit for bit, NaN where NaN
            same = (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))
        else:
            same = a == b
        bad = np.argwhere(~same)
        assert bad.size == 0, f"{name} differs at (bar, tick...) {bad[:5].tolist()} of {len(bad)}"


def with_bad_bars(c: Candles) -> Candles:
    """A NaN close in the steady state, a negative high while warming up again, a zero open."""
    close, high, opn = c.close.copy(), c.high.copy(), c.open.copy()
    close[700] = math.nan
    high[730] = -1.0
    opn[1500] = 0.0
    return Candles(c.ts, opn, high, c.low, close, c.volume)


@pytest.mark.parametrize("series,cfg,seed", [
    ("btc_1m", SignalConfig(), 0),
    ("eth_1m", SignalConfig(rl_epsilon=0.3, volatility_min=0.0002, volatility_max=0.002), 3),
    ("synthetic_bad", SignalConfig(min_bars=50, timeframes=[1, 3, 7], mtf_min_agree=2), 1),
])
def test_series_equals_the_engine_at_every_tick(series: str, cfg: SignalConfig, seed: int,
                                                request: pytest.FixtureRequest) -> None:
    if series == "synthetic_bad":
        c = with_bad_bars(synthetic_candles("SYNX", N_BARS, seed=9))
    else:
        c = request.getfixturevalue(series).slice(0, N_BARS)
    got = evaluate_series(cfg, "SYM", c, seed=seed)
    want = evaluate_series_reference(cfg, "SYM", c, seed=seed)
    assert_same(got, want)
    # what was compared: warm-up, valid signals of both sides, and every component voting
    assert not want.valid[: cfg.min_bars].any() and want.valid[cfg.min_bars + 1:].any()
    assert {st.UP, st.DOWN} <= set(np.unique(want.direction[want.valid]).tolist())
    seen = {(k, int(v)) for k in range(4) for v in np.unique(want.votes[..., k][want.valid])}
    assert {(0, st.UP), (0, st.DOWN), (1, st.UP), (1, st.DOWN), (3, st.UP), (3, st.DOWN)} <= seen
    if series == "eth_1m":
        assert {(2, st.LONG), (2, st.SHORT)} <= seen


def test_bad_bars_invalidate_and_warm_up_again_like_the_engine() -> None:
    cfg = SignalConfig(min_bars=40)
    c = with_bad_bars(synthetic_candles("SYNB", 1700, seed=4))
    s = evaluate_series(cfg, "SYNB", c)
    assert_same(s, evaluate_series_reference(cfg, "SYNB", c))
    assert s.valid[700, :3].all() and not s.valid[700, 3]  # the NaN close is the bar's last tick
    assert np.isnan(s.atr14[701]).all()  # the bad bar closed: state dropped, nothing to report
    assert np.isnan(s.atr14[714]).all() and np.isfinite(s.atr14[715]).all()  # ATR after 14 bars
    assert not s.valid[730].all() and not s.valid[701:771].any()  # a second bad bar while warming
    assert s.valid[771].all()  # 40 good bars after it
    assert not s.valid[1500].any() and not s.valid[1501:1541].any() and s.valid[1541].all()


def test_chunks_custom_ticks_and_an_imported_rl_table(eth_1m: Candles) -> None:
    cfg = SignalConfig(rl_epsilon=0.5)
    c = eth_1m.slice(0, 900)
    whole = evaluate_series(cfg, "ETHUSD", c)
    parts = list(iter_series(cfg, "ETHUSD", c, chunk_bars=97))
    assert len(parts) == 10
    assert_same(SignalSeries(*(np.concatenate(p) for p in zip(*parts))), whole)
    ticks = np.stack([c.open, (c.open + c.close) / 2, c.close], axis=1)  # 3 ticks within the range
    eng = SignalEngine(cfg)
    for end in range(150, 400):
        eng.evaluate(window(c, "ETHUSD", end))
    table = eng.export_rl_table("ETHUSD")
    got = evaluate_series(cfg, "ETHUSD", c, ticks=ticks, ticks_per_bar=3, rl_table=table, seed=5)
    assert_same(got, evaluate_series_reference(cfg, "ETHUSD", c, ticks=ticks, ticks_per_bar=3,
                                               rl_table=table, seed=5))


def test_learner_on_goes_through_the_engine_and_still_matches(btc_1m: Candles) -> None:
    cfg = SignalConfig(learner=True)
    c = btc_1m.slice(0, 400)
    assert_same(evaluate_series(cfg, "BTCUSD", c), evaluate_series_reference(cfg, "BTCUSD", c))


def test_candle_tick_prices_are_the_venues_ticks(btc_1m: Candles) -> None:
    c = btc_1m.slice(0, 500)
    got = candle_tick_prices(c)
    want = [candle_ticks(float(o), float(h), float(lo), float(cl))
            for o, h, lo, cl in zip(c.open, c.high, c.low, c.close)]
    np.testing.assert_array_equal(got, np.array(want))


def test_bad_input_is_a_clear_error() -> None:
    c = synthetic_candles("SYNE", 50, seed=0)
    ts = c.ts.copy()
    ts[20] = ts[19]
    with pytest.raises(ValueError, match="bar 20: timestamp"):
        evaluate_series(SignalConfig(), "SYNE", Candles(ts, *c[1:]))
    with pytest.raises(ValueError, match=r"ticks must be \(50, 4\)"):
        evaluate_series(SignalConfig(), "SYNE", c, ticks=np.ones((50, 3)))
    with pytest.raises(ValueError, match="explicit tick prices"):
        evaluate_series(SignalConfig(), "SYNE", c, ticks_per_bar=2)
