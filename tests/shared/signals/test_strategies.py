"""Each strategy rule and the consensus on constructed cases."""

from __future__ import annotations

import numpy as np
import pytest

from shared.signals import strategies as st

W = np.array([0.25, 0.15, 0.20, 0.20])


def test_trend_features_follow_the_original_rules() -> None:
    f = st.trend_features(close=np.array([101.0, 99.0, 100.0]), sma20=np.array([100.0, 100.0, 100.0]),
                          rsi=np.array([50.0, 70.0, 69.9]), macd=np.array([0.5, -0.5, 0.0]),
                          momentum=np.array([1.0, -2.0, 0.0]))
    np.testing.assert_array_equal(f, [[1, 1, 1, 1], [-1, -1, -1, -1], [0, 1, 0, 0]])


def test_trend_vote_score_direction_and_confidence() -> None:
    f = np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [1, -1, -1, 1], [0, 1, 0, 0], [-1, 1, 0, 0]], float)
    score, vote, conf = st.trend_vote(f, W, 0.8)
    np.testing.assert_allclose(score, [0.8, -0.8, 0.1, 0.15, -0.10])
    assert [st.VOTE_NAMES[v] for v in vote] == ["UP", "DOWN", "UP", "UP", "DOWN"]
    np.testing.assert_allclose(conf, [1.0, 1.0, 0.125, 0.1875, 0.125])
    # zero score is DOWN, as in the original ("UP if score > 0 else DOWN")
    assert st.VOTE_NAMES[st.trend_vote(np.zeros((1, 4)), W)[1][0]] == "DOWN"


def test_learner_moves_towards_the_observed_outcome() -> None:
    w = np.zeros((2, 5))
    x = st.learner_inputs(np.array([[1, 1, 1, 1], [1, 1, 1, 1]], float))
    assert (st.learner_vote(st.learner_probability(w, x)) == st.NONE).all()  # untrained: no opinion
    for _ in range(20):
        w = st.learner_update(w, x, np.array([1.0, 0.0]), np.array([True, True]), 0.1, 0.0)
    p = st.learner_probability(w, x)
    assert p[0] > 0.8 and p[1] < 0.2
    frozen = st.learner_update(w, x, np.array([0.0, 1.0]), np.array([False, False]), 0.1, 0.0)
    np.testing.assert_array_equal(frozen, w)


def test_mtf_needs_two_of_three_agreeing() -> None:
    trends = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 0], [-1, -1, 1], [0, 0, 1], [-1, 0, -1]], float)
    assert [st.VOTE_NAMES[v] for v in st.mtf_vote(trends, 2)] == ["UP", "UP", "NONE", "DOWN", "NONE", "DOWN"]
    assert [st.VOTE_NAMES[v] for v in st.mtf_vote(trends, 3)] == ["UP", "NONE", "NONE", "NONE", "NONE", "NONE"]


def test_relative_volatility_is_std_of_changes_over_mean_close() -> None:
    closes = np.array([100.0 + 3.0 * (i % 2) for i in range(32)])[None, :]
    d = np.diff(closes[0, -21:])
    want = d.std() / closes[0, -20:].mean()
    np.testing.assert_allclose(st.relative_volatility(closes, 20), [want])
    assert 0.015 < want < 0.05  # this constructed series is inside the default band


@pytest.mark.parametrize("rule,above,below", [("mean_reversion", "SHORT", "LONG"), ("breakout", "LONG", "SHORT")])
def test_volatility_rule_directions(rule: str, above: str, below: str) -> None:
    close = np.array([110.0, 90.0, 100.0, 110.0, 110.0])
    upper = np.full(5, 105.0)
    lower = np.full(5, 95.0)
    vol = np.array([0.02, 0.02, 0.02, 0.01, 0.06])  # last two outside (1.5%, 5%)
    got = [st.VOTE_NAMES[v] for v in st.volatility_vote(close, upper, lower, vol, 0.015, 0.05, rule)]
    assert got == [above, below, "NONE", "NONE", "NONE"]


def test_volatility_rule_unknown_is_an_error() -> None:
    with pytest.raises(ValueError, match="mean_reversion"):
        st.volatility_vote(np.ones(1), np.ones(1), np.ones(1), np.ones(1), 0.0, 1.0, "momentum")


def test_rl_state_is_momentum_sign_times_volatility_level() -> None:
    flat_up = np.linspace(100.0, 100.5, 32)[None, :]
    flat_down = flat_up[:, ::-1].copy()
    wild_up = np.array([100.0] * 26 + [80.0, 120.0, 80.0, 120.0, 80.0, 130.0])[None, :]
    thr = np.array([0.02])
    closes = np.concatenate([flat_up, flat_down, wild_up])
    np.testing.assert_array_equal(st.rl_state(closes, 5, 5, thr), [1, 0, 3])
    assert st.rl_n_states((0.02,)) == 4 and st.rl_n_states((0.01, 0.03)) == 6


def test_rl_greedy_ties_resolve_to_hold() -> None:
    q = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 1], [0, 0, -1], [-1, -2, -3]], float)
    got = [st.VOTE_NAMES[st.ACTION_VOTES[a]] for a in st.rl_greedy(q)]
    assert got == ["HOLD", "UP", "DOWN", "HOLD", "HOLD", "HOLD", "UP"]


def test_rl_reward_signs() -> None:
    r = st.rl_reward(np.array([st.ACT_UP, st.ACT_DOWN, st.ACT_HOLD]), np.array([0.001, 0.001, 0.001]))
    np.testing.assert_allclose(r, [10.0, -10.0, 0.0])


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
    codes = np.array([[V[v] for v in votes]])
    d, c = st.consensus(codes, np.ones(4), 2.0)
    assert st.VOTE_NAMES[d[0]] == direction
    assert c[0] == conf


def test_consensus_weights_and_threshold() -> None:
    codes = np.array([[V["UP"], V["NONE"], V["NONE"], V["DOWN"]]])
    d, c = st.consensus(codes, np.array([2.0, 1.0, 1.0, 1.0]), 2.0)  # trend counts double
    assert st.VOTE_NAMES[d[0]] == "UP" and c[0] == pytest.approx(0.4)
    d, _ = st.consensus(np.array([[V["UP"], V["UP"], V["NONE"], V["NONE"]]]), np.ones(4), 3.0)
    assert st.VOTE_NAMES[d[0]] == "NONE"
