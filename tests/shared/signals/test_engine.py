"""SignalEngine: streaming state over closed bars, the forming bar evaluated tentatively,
batch == single, determinism, bad input, RL learning and persistence, config validation."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest
import talib

from shared.marketdata import Candles, synthetic_candles
from shared.signals import BarWindow, SignalConfig, SignalEngine, SignalResult
from shared.signals.engine import RLTable


def window(c: Candles, symbol: str, end: int, size: int = 300, forming_close: float | None = None,
           ) -> BarWindow:
    """Bars [end-size, end) of c; bar end-1 is the forming bar (its close optionally replaced)."""
    s = slice(max(0, end - size), end)
    o, h, lo, cl = (a[s].copy() for a in (c.open, c.high, c.low, c.close))
    if forming_close is not None:
        cl[-1] = forming_close
        h[-1] = max(h[-1], forming_close)
        lo[-1] = min(lo[-1], forming_close)
    return BarWindow(symbol, end, c.ts[s].astype(np.float64), o, h, lo, cl, c.volume[s].copy())


def encoded(r: SignalResult) -> bytes:
    return msgspec.msgpack.encode(r)  # byte equality also holds for NaN fields


def linear_candles(n: int, start: float, step: float) -> Candles:
    close = start + step * np.arange(n, dtype=np.float64)
    o = np.concatenate([[start], close[:-1]])
    ts = (1_700_000_000 + 60 * np.arange(n)).astype(np.int64)
    return Candles(ts, o, np.maximum(o, close) + 0.01, np.minimum(o, close) - 0.01, close, np.ones(n))


def test_snapshot_equals_talib_through_rebuild_steps_and_ticks(eth_1m: Candles) -> None:
    c = eth_1m
    eng = SignalEngine()
    first = eng.evaluate(window(c, "ETHUSD", 300))
    assert first.valid and first.reason == ""
    for end in range(301, 341):
        for tick in (0.998, 1.003):  # the forming bar moves before it closes
            eng.evaluate(window(c, "ETHUSD", end, forming_close=float(c.close[end - 1]) * tick))
        r = eng.evaluate(window(c, "ETHUSD", end))
    h, lo, cl = c.high[:340], c.low[:340], c.close[:340]
    macd, sig, hist = talib.MACD(cl, 12, 26, 9)
    up, mid, low = talib.BBANDS(cl, 20, 2, 2)  # matype defaults to SMA
    want = {"close": cl, "sma20": talib.SMA(cl, 20), "ema12": talib.EMA(cl, 12),
            "ema26": talib.EMA(cl, 26), "rsi14": talib.RSI(cl, 14), "macd": macd,
            "macd_signal": sig, "macd_hist": hist, "bb_upper": up, "bb_middle": mid, "bb_lower": low,
            "atr14": talib.ATR(h, lo, cl, 14)}
    for name, ref in want.items():
        assert getattr(r.indicators, name) == pytest.approx(ref[-1], rel=1e-9), name
    assert r.bar_ts == float(c.ts[339]) and r.bar_count == 340


def test_forming_bar_is_not_committed(btc_1m: Candles) -> None:
    c = btc_1m
    eng = SignalEngine()
    eng.evaluate(window(c, "BTCUSD", 400))
    base = eng.evaluate(window(c, "BTCUSD", 401))
    for tick in (0.95, 1.05, 1.0):  # wild forming prices, then back to the real one
        eng.evaluate(window(c, "BTCUSD", 401, forming_close=float(c.close[400]) * tick))
    again = eng.evaluate(window(c, "BTCUSD", 401))
    assert encoded(again) == encoded(base)


def test_batch_equals_single(btc_1m: Candles, eth_1m: Candles) -> None:
    cfg = SignalConfig(learner=True, rl_epsilon=0.3)
    series = {"BTCUSD": btc_1m, "ETHUSD": eth_1m, "SYN1": synthetic_candles("SYN1", 600, seed=3),
              "SYN2": synthetic_candles("SYN2", 600, seed=4)}
    batch, single = SignalEngine(cfg, seed=7), SignalEngine(cfg, seed=7)
    for end in [300, 301, 301, 303, 304, 310, 311, 312, 320, 321, 650 // 2 + 300]:
        end = min(end, 599)
        ws = [window(c, s, end, forming_close=float(c.close[end - 1]) * (1 + 1e-4 * (end % 3)))
              for s, c in series.items()]
        got = batch.evaluate_batch(ws)
        want = [single.evaluate(w) for w in ws]
        assert [encoded(r) for r in got] == [encoded(r) for r in want]
        assert all(r.valid for r in got)
    for s in series:
        assert batch.export_rl_table(s) == single.export_rl_table(s)


def test_same_seed_same_results_other_seed_other_exploration() -> None:
    c = synthetic_candles("DET", 900, seed=1)
    cfg = SignalConfig(rl_epsilon=0.5, rl_epsilon_decay=1.0)
    a, b, other = SignalEngine(cfg, seed=1), SignalEngine(cfg, seed=1), SignalEngine(cfg, seed=2)
    for end in range(300, 900, 37):
        w = window(c, "DET", end)
        ra, rb = a.evaluate(w), b.evaluate(w)
        other.evaluate(w)
        assert encoded(ra) == encoded(rb)
    assert a.export_rl_table("DET") == b.export_rl_table("DET")
    assert a.export_rl_table("DET") != other.export_rl_table("DET")


def test_too_few_bars_is_invalid_with_reason() -> None:
    c = synthetic_candles("FEW", 200, seed=0)
    r = SignalEngine().evaluate(window(c, "FEW", 60))
    assert not r.valid and r.direction == "NONE" and r.confidence == 0.0
    assert r.reason == "FEW: 59 closed bars, need 100"
    assert set(r.votes.values()) == {"NONE"}
    assert math.isfinite(r.indicators.macd)  # indicators are still reported when defined


def test_steady_rise_and_fall_give_up_and_down() -> None:
    up = SignalEngine().evaluate(window(linear_candles(400, 100.0, 0.05), "UPPY", 400))
    down = SignalEngine().evaluate(window(linear_candles(400, 200.0, -0.05), "DOWNY", 400))
    assert up.valid and up.direction == "UP" and up.votes["trend"] == "UP" and up.votes["mtf"] == "UP"
    assert down.valid and down.direction == "DOWN" and down.votes["trend"] == "DOWN"
    assert down.votes["mtf"] == "DOWN"
    assert up.confidence >= 0.5 and down.confidence >= 0.5


@pytest.mark.parametrize("rule,vote", [("mean_reversion", "SHORT"), ("breakout", "LONG")])
def test_volatility_component_votes_on_a_spike_above_the_band(rule: str, vote: str) -> None:
    n = 300
    close = 100.0 + 2.0 * (np.arange(n) % 2)  # ~2% relative volatility, inside (1.5%, 5%)
    close[-1] = 108.0  # forming bar far above the upper band
    o = np.concatenate([[100.0], close[:-1]])
    c = Candles((1_700_000_000 + 60 * np.arange(n)).astype(np.int64), o, np.maximum(o, close),
                np.minimum(o, close), close, np.ones(n))
    r = SignalEngine(SignalConfig(volatility_rule=rule)).evaluate(window(c, "VOL", n))
    assert r.valid and r.votes["volatility"] == vote
    assert r.indicators.close > r.indicators.bb_upper


def test_bad_forming_bar_is_invalid_and_commits_nothing(btc_1m: Candles) -> None:
    c = btc_1m
    eng, ref = SignalEngine(), SignalEngine()
    eng.evaluate(window(c, "BTCUSD", 300))
    ref.evaluate(window(c, "BTCUSD", 300))
    for bad in (math.nan, 0.0, -1.0):
        w = window(c, "BTCUSD", 301)
        w.close[-1] = bad
        r = eng.evaluate(w)
        assert not r.valid and r.direction == "NONE"
        assert "BTCUSD" in r.reason and "forming bar at window index 299" in r.reason
    assert encoded(eng.evaluate(window(c, "BTCUSD", 302))) == encoded(ref.evaluate(window(c, "BTCUSD", 302)))


@pytest.mark.parametrize("one_bar_at_a_time", [False, True])
def test_bad_closed_bar_drops_state_and_warms_up_after_it(one_bar_at_a_time: bool) -> None:
    c = synthetic_candles("GAP", 700, seed=5)
    close = c.close.copy()
    close[349] = math.nan  # bar 349 arrives bad and closes bad
    bad_c = Candles(c.ts, c.open, c.high, c.low, close, c.volume)
    eng = SignalEngine()
    assert eng.evaluate(window(c, "GAP", 349)).valid
    if one_bar_at_a_time:  # it is seen forming first, then closes alone (the scalar path)
        assert "bad forming bar" in eng.evaluate(window(bad_c, "GAP", 350)).reason
    r = eng.evaluate(window(bad_c, "GAP", 351))  # bar 349 is now a closed bar
    assert not r.valid and "bad closed bar at window index 298" in r.reason and "nan" in r.reason
    r = eng.evaluate(window(bad_c, "GAP", 352))
    assert not r.valid and "1 closed bars, need 100" in r.reason and "bad bar at window index" in r.reason
    for end in range(353, 452):
        r = eng.evaluate(window(bad_c, "GAP", end))
    assert r.valid, r.reason  # 100 good bars after the bad one
    assert all(math.isfinite(v) for v in msgspec.structs.astuple(r.indicators))


def test_gap_longer_than_the_window_rebuilds(btc_1m: Candles) -> None:
    c = btc_1m
    eng = SignalEngine()
    eng.evaluate(window(c, "BTCUSD", 300))
    r = eng.evaluate(window(c, "BTCUSD", 900))  # 600 bars closed, window holds 300
    fresh = SignalEngine().evaluate(window(c, "BTCUSD", 900))
    assert r.valid and r.indicators == fresh.indicators
    # a window whose history does not line up with the state (other data) also rebuilds
    other = window(c, "BTCUSD", 902)
    shifted = other._replace(ts=other.ts + 7.0)
    assert eng.evaluate(shifted).indicators == SignalEngine().evaluate(shifted).indicators


def test_malformed_windows_do_not_raise_and_do_not_spoil_the_batch(eth_1m: Candles) -> None:
    good = window(eth_1m, "ETHUSD", 300)
    short = good._replace(symbol="SHORT", high=good.high[:-1])
    count = good._replace(symbol="COUNT", bar_count=5)
    e = np.empty(0)
    empty = BarWindow("EMPTY", 0, e, e, e, e, e, e)
    nosym = good._replace(symbol="")
    listsym = good._replace(symbol=["not", "hashable"])  # type: ignore[arg-type]  # bad on purpose: must be rejected
    res = SignalEngine().evaluate_batch([short, good, count, empty, nosym, listsym, None])  # type: ignore[list-item]  # None on purpose: must be rejected
    assert [r.valid for r in res] == [False, True, False, False, False, False, False]
    assert "SHORT: bad window: ts/open/high/low/close" in res[0].reason
    assert "COUNT: bad window" in res[2].reason
    assert "EMPTY: bad window" in res[3].reason


def test_duplicate_symbol_in_a_batch_is_evaluated_in_order(eth_1m: Candles) -> None:
    w1, w2 = window(eth_1m, "ETHUSD", 300), window(eth_1m, "ETHUSD", 301)
    got = SignalEngine().evaluate_batch([w1, w2])
    ref = SignalEngine()
    assert [encoded(r) for r in got] == [encoded(ref.evaluate(w1)), encoded(ref.evaluate(w2))]


def test_rl_learns_to_prefer_up_in_an_uptrend() -> None:
    rng = np.random.default_rng(11)
    n = 900
    close = 100.0 * np.exp(np.cumsum(0.0008 + 0.0004 * rng.standard_normal(n)))
    o = np.concatenate([[100.0], close[:-1]])
    c = Candles((1_700_000_000 + 60 * np.arange(n)).astype(np.int64), o, np.maximum(o, close) * 1.0001,
                np.minimum(o, close) * 0.9999, close, np.ones(n))
    # gamma = 0: each Q converges to the mean immediate reward, so the order is strict
    for gamma in (0.9, 0.0):
        eng = SignalEngine(SignalConfig(rl_epsilon=0.3, rl_gamma=gamma), seed=3)
        eng.evaluate(window(c, "TREND", 120, size=120))
        for end in range(121, n + 1):
            r = eng.evaluate(window(c, "TREND", end, size=120))
        assert r.votes["rl"] == "UP"
        table = msgspec.msgpack.decode(eng.export_rl_table("TREND"), type=RLTable)
        q = np.array(table.q).reshape(table.n_states, table.n_actions)
        up_state = q[1]  # momentum up, low volatility: where this series spends its time
        assert up_state[0] > up_state[1]  # UP beats DOWN
        if gamma == 0.0:
            assert up_state[0] > up_state[2] > up_state[1]  # UP > HOLD > DOWN
        assert table.epsilon < 0.3  # exploration decayed


def test_rl_table_export_import_round_trip(eth_1m: Candles) -> None:
    a = SignalEngine(SignalConfig(rl_epsilon=0.5))
    for end in range(300, 340):
        a.evaluate(window(eth_1m, "ETHUSD", end))
    data = a.export_rl_table("ETHUSD")
    b = SignalEngine()
    b.import_rl_table("ETHUSD", data)
    assert b.export_rl_table("ETHUSD") == data
    # the imported knowledge is kept when the symbol's indicators are first built
    b.evaluate(window(eth_1m, "ETHUSD", 340))
    q_after = msgspec.msgpack.decode(b.export_rl_table("ETHUSD"), type=RLTable).q
    assert q_after != [0.0] * 12
    with pytest.raises(ValueError, match="not a valid export"):
        b.import_rl_table("ETHUSD", b"garbage")
    other = SignalEngine(SignalConfig(rl_vol_thresholds=[0.01, 0.03]))
    with pytest.raises(ValueError, match="does not match"):
        other.import_rl_table("ETHUSD", data)
    with pytest.raises(KeyError):
        other.export_rl_table("NOPE")


def test_forget_and_state_bytes(eth_1m: Candles) -> None:
    eng = SignalEngine()
    assert eng.state_nbytes("ETHUSD") == 0
    r1 = eng.evaluate(window(eth_1m, "ETHUSD", 300))
    assert 0 < eng.state_nbytes("ETHUSD") <= 1024
    eng.forget("ETHUSD")
    assert eng.state_nbytes("ETHUSD") == 0
    assert encoded(eng.evaluate(window(eth_1m, "ETHUSD", 300))) == encoded(r1)


def test_max_symbols_bounds_the_state(eth_1m: Candles) -> None:
    eng = SignalEngine(SignalConfig(max_symbols=2))
    res = eng.evaluate_batch([window(eth_1m, s, 120) for s in ("A", "B", "C")])
    assert [r.valid for r in res] == [True, True, False]
    assert "max_symbols=2" in res[2].reason
    eng.forget("A")
    assert eng.evaluate(window(eth_1m, "C", 120)).valid


def test_config_defaults_are_the_original_rules_and_toml_friendly() -> None:
    cfg = msgspec.convert({}, SignalConfig)
    assert cfg.trend_weights == [0.25, 0.15, 0.20, 0.20]
    assert (cfg.volatility_min, cfg.volatility_max, cfg.volatility_rule) == (0.015, 0.05, "mean_reversion")
    assert cfg.timeframes == [1, 5, 15] and cfg.consensus_threshold == 2.0
    roundtrip = msgspec.convert(msgspec.to_builtins(cfg), SignalConfig)
    assert roundtrip == cfg
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.convert({"min_bar": 5}, SignalConfig)


@pytest.mark.parametrize("kwargs,match", [
    ({"min_bars": 10}, "min_bars"),
    ({"trend_weights": [1.0, 2.0]}, "trend_weights"),
    ({"volatility_rule": "trend"}, "volatility_rule"),
    ({"volatility_min": 0.05, "volatility_max": 0.01}, "volatility_min"),
    ({"timeframes": [1, 1, 5]}, "timeframes"),
    ({"mtf_min_agree": 4}, "mtf_min_agree"),
    ({"rl_gamma": 1.0}, "rl_gamma"),
    ({"rl_epsilon": 2.0}, "rl_epsilon"),
    ({"consensus_weights": {"trend": 1.0}}, "consensus_weights"),
    ({"momentum_bars": 40}, "momentum_bars"),
])
def test_config_rejects_bad_values_clearly(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SignalConfig(**kwargs)


@pytest.mark.parametrize("learner", [False, True])
def test_vectorised_and_scalar_paths_agree_bit_for_bit(learner: bool) -> None:
    # a batch of 12 takes the vectorised path, single calls the scalar one (commit and evaluate)
    cfg = SignalConfig(learner=learner, volatility_min=0.0, rl_epsilon=0.5,
                       consensus_weights={"trend": 1.5, "mtf": 1.0, "volatility": 0.7, "rl": 0.8})
    series = {f"S{i}": synthetic_candles(f"S{i}", 400, seed=i) for i in range(12)}
    batch, single = SignalEngine(cfg, seed=5), SignalEngine(cfg, seed=5)
    seen_votes: set[str] = set()
    for end in [*range(250, 266), 280, 281, 282, 300]:  # single bars closing, and jumps
        for tick in (0.997, 1.004, 1.0):
            ws = [window(c, s, end, size=250, forming_close=float(c.close[end - 1]) * tick)
                  for s, c in series.items()]
            got = batch.evaluate_batch(ws)
            want = [single.evaluate(w) for w in ws]
            assert [encoded(r) for r in got] == [encoded(r) for r in want]
            for r in got:
                seen_votes.update(f"{k}={v}" for k, v in r.votes.items())
    # the comparison covered real disagreement between components, not one constant answer
    assert {"trend=UP", "trend=DOWN", "volatility=LONG", "volatility=SHORT"} <= seen_votes


def test_random_traffic_batch_equals_single_and_never_signals_on_bad_data() -> None:
    """Seeded random traffic: ticks, single closes, gaps beyond the window, tiny windows, bad
    bars (NaN, 0, negative). Batch and single agree byte for byte; valid results carry only
    finite indicator values; nothing raises."""
    rng = np.random.default_rng(0)
    data: dict[str, Candles] = {}
    for s in (f"F{i}" for i in range(7)):
        c = synthetic_candles(s, 900, seed=2)
        close = c.close.copy()
        for i in rng.choice(900, 3, replace=False):
            close[i] = rng.choice([math.nan, 0.0, -1.0])
        data[s] = Candles(c.ts, c.open, c.high, c.low, close, c.volume)
    pos = {s: int(rng.integers(1, 200)) for s in data}
    cfg = SignalConfig(min_bars=40)
    batch, single = SignalEngine(cfg, seed=3), SignalEngine(cfg, seed=3)
    n_valid = n_invalid = 0
    for _ in range(250):
        ws = []
        for s, c in data.items():
            r = rng.random()
            pos[s] = min(900, pos[s] + (0 if r < 0.5 else 1 if r < 0.9 else int(rng.integers(2, 400))))
            end = pos[s]
            start = max(0, end - int(rng.choice([1, 2, 50, 200])))
            close = c.close[start:end].copy()
            if rng.random() < 0.3 and close[-1] > 0:
                close[-1] *= 1 + rng.normal(0, 0.001)  # the forming bar moves
            ws.append(BarWindow(s, end, c.ts[start:end].astype(np.float64), c.open[start:end],
                                np.maximum(c.high[start:end], close),
                                np.minimum(c.low[start:end], np.abs(close)), close, c.volume[start:end]))
        got = batch.evaluate_batch(ws)
        want = [single.evaluate(w) for w in ws]
        assert [encoded(r) for r in got] == [encoded(r) for r in want]
        for result in got:
            if result.valid:
                n_valid += 1
                assert all(math.isfinite(v) for v in msgspec.structs.astuple(result.indicators))
                assert result.direction in ("UP", "DOWN", "NONE")
            else:
                n_invalid += 1
                assert result.direction == "NONE" and result.reason
    assert n_valid > 500 and n_invalid > 20  # both kinds of outcome were exercised


def _mtf_reference(ts: np.ndarray, close: np.ndarray, tf_minutes: int, period: int,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Per bar t (forming, at its final close): the EMA of the closes of the timeframe's buckets
    completed before bar t's bucket, and how many completed; written from the rule, not the engine."""
    bucket = np.floor(ts / (60.0 * tf_minutes))
    k = 2.0 / (period + 1.0)
    ema = np.full(len(close), np.nan)
    done = np.zeros(len(close))
    e, n = math.nan, 0
    for t in range(1, len(close)):
        if bucket[t] != bucket[t - 1]:  # bar t-1 closed its bucket
            e = close[t - 1] if n == 0 else e + k * (close[t - 1] - e)
            n += 1
        ema[t], done[t] = e, n
    return ema, done


@pytest.mark.parametrize("series", ["btc_1m", "eth_1m"])
def test_engine_votes_equal_the_components_on_real_series(series: str, request: pytest.FixtureRequest) -> None:
    """Property over the shipped series: at every bar the engine's votes are the components' rules
    applied to independently computed inputs (the full-series, TA-Lib-checked indicators, windows
    of closes, a bucket-by-bucket EMA, the exported Q-table), and its direction and confidence are
    the consensus of its votes. A disagreement is allowed only where an input sits within 1e-9
    (relative) of a threshold, where the two computations may round to different sides."""
    from shared.signals import indicators as ind
    from shared.signals import strategies as st
    from shared.signals.backend import VEC

    c: Candles = request.getfixturevalue(series)
    n = 2000
    cfg = SignalConfig(volatility_min=0.0002, volatility_max=0.002, rl_epsilon=0.2)
    eng = SignalEngine(cfg, seed=1)
    close = c.close[:n]
    got = np.zeros((n, 4), dtype=np.int64)
    direction = np.zeros(n, dtype=np.int64)
    conf = np.zeros(n)
    qs = np.full((n, 4, 3), np.nan)
    codes = {name: i for i, name in enumerate(st.VOTE_NAMES)}
    for t in range(cfg.min_bars, n):
        r = eng.evaluate(window(c, series, t + 1))
        assert r.valid
        got[t] = [codes[r.votes[k]] for k in st.COMPONENTS]
        direction[t], conf[t] = codes[r.direction], r.confidence
        qs[t] = np.array(msgspec.msgpack.decode(eng.export_rl_table(series), type=RLTable).q).reshape(4, 3)
    rows = np.arange(cfg.min_bars, n)
    sma, rsi, line = ind.sma(close, 20), ind.rsi(close, 14), ind.macd(close)[0]
    upper, _, lower = ind.bollinger(close, 20, 2.0)
    mom = np.full(n, np.nan)
    mom[cfg.momentum_bars:] = close[cfg.momentum_bars:] - close[:-cfg.momentum_bars]
    f = st.trend_features(VEC, close, sma, rsi, line, mom, cfg.rsi_overbought)
    want_trend = st.trend_vote(VEC, st.trend_score(f, cfg.trend_weights))
    trend_margin = np.minimum.reduce([abs(close - sma) / close, abs(line) / close,
                                      abs(rsi - cfg.rsi_overbought) / 100.0])
    ups = np.zeros(n, dtype=np.int64)
    downs = np.zeros(n, dtype=np.int64)
    mtf_margin = np.full(n, np.inf)
    for tf in cfg.timeframes:
        ema, done = _mtf_reference(c.ts[:n].astype(np.float64), close, tf, cfg.mtf_ema_period)
        ready = done >= cfg.mtf_ema_period
        ups += ready & (close > ema)
        downs += ready & (close < ema)
        mtf_margin = np.where(ready, np.minimum(mtf_margin, abs(close - ema) / close), mtf_margin)
    want_mtf = st.mtf_vote(VEC, ups, downs, cfg.mtf_min_agree)
    k = cfg.volatility_changes
    win = np.lib.stride_tricks.sliding_window_view(close, k + 1)
    rel = np.full(n, np.nan)
    rel[k:] = np.diff(win, axis=1).std(axis=1) / win[:, 1:].mean(axis=1)
    want_vol = st.volatility_vote(VEC, close, upper, lower, rel, cfg.volatility_min, cfg.volatility_max)
    vol_margin = np.minimum.reduce([abs(rel - cfg.volatility_min) / cfg.volatility_min,
                                    abs(rel - cfg.volatility_max) / cfg.volatility_max,
                                    abs(close - upper) / close, abs(close - lower) / close])
    kv = cfg.rl_vol_bars
    vwin = np.lib.stride_tricks.sliding_window_view(close, kv)
    rl_vol = np.full(n, np.nan)
    rl_vol[kv - 1:] = vwin.std(axis=1) / vwin.mean(axis=1)
    state = np.zeros(n, dtype=np.int64)
    state[cfg.rl_momentum_bars:] = close[cfg.rl_momentum_bars:] > close[:-cfg.rl_momentum_bars]
    for thr in cfg.rl_vol_thresholds:
        state += 2 * (rl_vol > thr)
    q = qs[rows, state[rows]]
    want_rl = np.zeros(n, dtype=np.int64)
    want_rl[rows] = st.rl_vote(VEC, st.rl_greedy(VEC, q[:, 0], q[:, 1], q[:, 2]))
    rl_margin = np.min([abs(rl_vol - t) / t for t in cfg.rl_vol_thresholds], axis=0)
    for j, (want, margin) in enumerate([(want_trend, trend_margin), (want_mtf, mtf_margin),
                                        (want_vol, vol_margin), (want_rl, rl_margin)]):
        differ = rows[got[rows, j] != want[rows]]
        assert (margin[differ] < 1e-9).all(), (st.COMPONENTS[j], differ[:5], margin[differ][:5])
        assert len(differ) <= 2, (st.COMPONENTS[j], differ)
    d, cf = st.consensus(VEC, list(got[rows].T), [cfg.consensus_weights[k] for k in st.COMPONENTS],
                         cfg.consensus_threshold)
    np.testing.assert_array_equal(d, direction[rows])
    np.testing.assert_array_equal(cf, conf[rows])
    # the comparison covered every component's votes, not one constant answer
    for j, kinds in enumerate([(st.UP, st.DOWN), (st.UP, st.DOWN), (st.LONG, st.SHORT)]):
        assert set(kinds) <= set(got[rows, j].tolist()), st.COMPONENTS[j]
    assert len(set(got[rows, 3].tolist())) >= 2  # the RL agent changed its mind
