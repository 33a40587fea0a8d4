"""Each strategy component and the consensus on constructed cases, on both number backends (numpy
columns and Python floats: the engine runs the same component code on each)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.signals import strategies as st
from shared.signals.backend import SCALAR, VEC
from shared.signals.streaming import push_mean_var

W = np.array([0.25, 0.15, 0.20, 0.20])


def test_trend_features_follow_the_original_rules() -> None:
    close, sma20 = np.array([101.0, 99.0, 100.0]), np.array([100.0, 100.0, 100.0])
    rsi, macd, mom = np.array([50.0, 70.0, 69.9]), np.array([0.5, -0.5, 0.0]), np.array([1.0, -2.0, 0.0])
    f = np.stack(st.trend_features(VEC, close, sma20, rsi, macd, mom), axis=1)
    np.testing.assert_array_equal(f, [[1, 1, 1, 1], [-1, -1, -1, -1], [0, 1, 0, 0]])
    for r in range(3):
        one = st.trend_features(SCALAR, *(float(a[r]) for a in (close, sma20, rsi, macd, mom)))
        assert list(one) == f[r].tolist()


def test_trend_score_and_vote() -> None:
    f = np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, -1, 1], [0, 1, 0, 0], [-1, 1, 0, 0]], float)
    score = st.trend_score(f.T, W)
    np.testing.assert_allclose(score, [0.8, -0.8, 0.1, 0.15, -0.10])
    assert [st.VOTE_NAMES[v] for v in st.trend_vote(VEC, score)] == ["UP", "DOWN", "UP", "UP", "DOWN"]
    # zero score is DOWN, as in the original ("UP if score > 0 else DOWN")
    assert st.VOTE_NAMES[st.trend_vote(SCALAR, st.trend_score([0.0] * 4, W.tolist()))] == "DOWN"


def test_learner_moves_towards_the_observed_outcome() -> None:
    w = np.zeros((2, 5))
    f = np.array([[1, 1, 1, 1], [1, 1, 1, 1]], float)
    x = st.learner_inputs(f)
    assert (st.learner_vote(VEC, st.learner_z(w.T, f.T)) == st.NONE).all()  # untrained: no opinion
    for _ in range(20):
        w = st.learner_update(w, x, np.array([1.0, 0.0]), np.array([True, True]), 0.1, 0.0)
    p = st.learner_probability(w, x)
    assert p[0] > 0.8 and p[1] < 0.2
    assert [st.VOTE_NAMES[v] for v in st.learner_vote(VEC, st.learner_z(w.T, f.T))] == ["UP", "DOWN"]
    frozen = st.learner_update(w, x, np.array([0.0, 1.0]), np.array([False, False]), 0.1, 0.0)
    np.testing.assert_array_equal(frozen, w)


def test_mtf_needs_two_of_three_agreeing() -> None:
    trends = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 0], [-1, -1, 1], [0, 0, 1], [-1, 0, -1]], float)
    ups, downs = (trends > 0).sum(axis=1), (trends < 0).sum(axis=1)
    assert [st.VOTE_NAMES[v] for v in st.mtf_vote(VEC, ups, downs, 2)] == ["UP", "UP", "NONE", "DOWN", "NONE", "DOWN"]
    assert [st.VOTE_NAMES[v] for v in st.mtf_vote(VEC, ups, downs, 3)] == ["UP", "NONE", "NONE", "NONE", "NONE", "NONE"]


def test_mtf_frame_completes_a_bucket_when_a_later_one_starts() -> None:
    k = 2.0 / 3.0
    fr = st.MtfFrame(*st.MTF_RESET)
    closes = [10.0, 11.0, 12.0, 13.0, 14.0]  # 1m bars at 0, 60, ..., 240 s in 2-minute buckets
    for i, c in enumerate(closes):
        fr = st.mtf_commit(SCALAR, fr, 60.0 * i, c, 120.0, k)
    # buckets [10, 11] and [12, 13] completed with closes 11 and 13; 14 is in the open bucket
    assert fr.done == 2.0 and fr.ema == 11.0 + k * (13.0 - 11.0) and fr.last == 14.0
    ema_next, done_next = st.mtf_prepare(SCALAR, fr.ema, fr.done, fr.last, k)
    fr = fr._replace(ema_next=ema_next, done_next=done_next)
    # forming bar in the same bucket as the last close: the completed EMA; in a later one: with 14
    assert st.mtf_trend(SCALAR, fr, 270.0, 14.5, 120.0, 2) == (True, False)
    assert fr.ema_next == st.mtf_ema_step(fr.ema, 14.0, k) and fr.done_next == 3.0
    assert st.mtf_trend(SCALAR, fr, 360.0, 13.0, 120.0, 3) == (False, True)


def test_relative_volatility_is_std_of_changes_over_mean_close() -> None:
    closes = np.array([100.0 + 3.0 * (i % 2) for i in range(32)])
    d = np.diff(closes[-21:])
    want = d.std() / closes[-20:].mean()
    k = 20
    prep = st.VolatilityState(closes[-k:-1].mean(), d[:-1].mean(), ((d[:-1] - d[:-1].mean()) ** 2).sum())
    got = st.relative_volatility(SCALAR, prep, closes[-1], d[-1], k)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0.015 < want < 0.05  # this constructed series is inside the default band


def test_push_mean_var_is_one_welford_step() -> None:
    xs = np.array([3.0, 7.0, 1.0, 9.0, 4.0])
    m, m2 = xs[:-1].mean(), ((xs[:-1] - xs[:-1].mean()) ** 2).sum()
    mean, var = push_mean_var(m, m2, xs[-1], len(xs))
    assert mean == pytest.approx(xs.mean()) and var == pytest.approx(xs.var())


@pytest.mark.parametrize("rule,above,below", [("mean_reversion", "SHORT", "LONG"), ("breakout", "LONG", "SHORT")])
def test_volatility_rule_directions(rule: str, above: str, below: str) -> None:
    close = np.array([110.0, 90.0, 100.0, 110.0, 110.0])
    upper = np.full(5, 105.0)
    lower = np.full(5, 95.0)
    vol = np.array([0.02, 0.02, 0.02, 0.01, 0.06])  # last two outside (1.5%, 5%)
    got = [st.VOTE_NAMES[v] for v in st.volatility_vote(VEC, close, upper, lower, vol, 0.015, 0.05, rule)]
    assert got == [above, below, "NONE", "NONE", "NONE"]
    one = [st.VOTE_NAMES[st.volatility_vote(SCALAR, float(close[r]), 105.0, 95.0, float(vol[r]), 0.015, 0.05, rule)]
           for r in range(5)]
    assert one == got


def test_volatility_rule_unknown_is_an_error() -> None:
    with pytest.raises(ValueError, match="mean_reversion"):
        st.volatility_vote(VEC, np.ones(1), np.ones(1), np.ones(1), np.ones(1), 0.0, 1.0, "momentum")


def test_rl_state_is_momentum_sign_times_volatility_level() -> None:
    flat_up = np.linspace(100.0, 100.5, 32)[None, :]
    flat_down = flat_up[:, ::-1].copy()
    wild_up = np.array([100.0] * 26 + [80.0, 120.0, 80.0, 120.0, 80.0, 130.0])[None, :]
    thr = np.array([0.02])
    closes = np.concatenate([flat_up, flat_down, wild_up])
    np.testing.assert_array_equal(st.rl_state(closes, 5, 5, thr), [1, 0, 3])
    assert st.rl_n_states((0.02,)) == 4 and st.rl_n_states((0.01, 0.03)) == 6


def test_rl_forming_state_equals_the_committed_rule() -> None:
    closes = np.array([100.0, 101.0, 99.0, 104.0, 97.0, 103.0, 98.0])
    m, m2 = st.seq_mean_m2(closes[None, -5:-1])
    prep = st.RLState(0.0, 0.0, 0.1, closes[-1 - 5], m[0], m2[0])
    for thr in ([0.02], [0.01, 0.03], [0.1]):
        forming = st.rl_forming_state(SCALAR, prep, float(closes[-1]), 5, thr)
        assert forming == st.rl_state(closes[None, :], 5, 5, np.array(thr))[0]
        assert forming == st.rl_state_scalar(closes.tolist(), 5, 5, thr)


def test_rl_greedy_ties_resolve_to_hold() -> None:
    q = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1], [0, 0, -1], [-1, -2, -3]], float)
    got = [st.VOTE_NAMES[v] for v in st.rl_vote(VEC, st.rl_greedy(VEC, q[:, 0], q[:, 1], q[:, 2]))]
    assert got == ["HOLD", "UP", "DOWN", "HOLD", "HOLD", "HOLD", "UP"]
    assert [st.VOTE_NAMES[st.rl_vote(SCALAR, st.rl_greedy(SCALAR, *row))] for row in q.tolist()] == got


def test_rl_target_rewards_the_right_side() -> None:
    acts = np.array([st.ACT_UP, st.ACT_DOWN, st.ACT_HOLD])
    np.testing.assert_allclose(st.rl_target(VEC, acts, np.full(3, 0.001), np.zeros(3), 0.9), [10.0, -10.0, 0.0])
    assert st.rl_target(SCALAR, st.ACT_UP, 0.001, 2.0, 0.5) == 0.001 * 1e4 + 1.0
    assert st.rl_learn(1.0, 3.0, 0.1) == 1.0 + 0.1 * (3.0 - 1.0)


def test_uniform_hash_is_deterministic_and_spread() -> None:
    keys = np.arange(10_000, dtype=np.uint64)
    u = st.uniform_hash(keys, 1)
    np.testing.assert_array_equal(u, st.uniform_hash(keys, 1))
    assert not np.array_equal(u, st.uniform_hash(keys, 2))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02 and abs((u < 0.1).mean() - 0.1) < 0.02


V = {name: code for code, name in enumerate(st.VOTE_NAMES)}


@pytest.mark.parametrize("votes,direction,conf", [
    (("UP", "UP", "NONE", "HOLD"), "UP", 0.5),
    (("UP", "NONE", "LONG", "UP"), "UP", 0.75),
    (("DOWN", "SHORT", "NONE", "HOLD"), "DOWN", 0.5),
    (("UP", "DOWN", "LONG", "SHORT"), "UP", 0.5),  # 2 vs 2: UP is checked first, as the original
    (("UP", "DOWN", "NONE", "HOLD"), "NONE", 0.0),
    (("HOLD", "HOLD", "HOLD", "HOLD"), "NONE", 0.0),
    (("DOWN", "DOWN", "SHORT", "DOWN"), "DOWN", 1.0),
])
def test_consensus_original_rule(votes: tuple[str, ...], direction: str, conf: float) -> None:
    codes = [np.array([V[v]]) for v in votes]
    d, c = st.consensus(VEC, codes, [1.0] * 4, 2.0)
    assert st.VOTE_NAMES[d[0]] == direction
    assert c[0] == conf
    assert st.consensus(SCALAR, [V[v] for v in votes], [1.0] * 4, 2.0) == (V[direction], conf)


def test_consensus_weights_and_threshold() -> None:
    codes = [V["UP"], V["NONE"], V["NONE"], V["DOWN"]]
    d, c = st.consensus(SCALAR, codes, [2.0, 1.0, 1.0, 1.0], 2.0)  # trend counts double
    assert st.VOTE_NAMES[d] == "UP" and c == pytest.approx(0.4)
    d, _ = st.consensus(SCALAR, [V["UP"], V["UP"], V["NONE"], V["NONE"]], [1.0] * 4, 3.0)
    assert st.VOTE_NAMES[d] == "NONE"
