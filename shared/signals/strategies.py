"""Strategy components and consensus as pure functions over rows (one row per symbol).

Votes travel as small integer codes (VOTE_NAMES gives the trader's words) so a whole batch is
one numpy array. Nothing here keeps state or does I/O; the engine owns the per-symbol state and
passes it in.
"""

from __future__ import annotations

import math

import numpy as np

NONE, UP, DOWN, LONG, SHORT, HOLD = range(6)
VOTE_NAMES = ("NONE", "UP", "DOWN", "LONG", "SHORT", "HOLD")
COMPONENTS = ("trend", "mtf", "volatility", "rl")

# RL actions, in Q-table column order
ACT_UP, ACT_DOWN, ACT_HOLD = 0, 1, 2
N_ACTIONS = 3
ACTION_VOTES = np.array([UP, DOWN, HOLD], dtype=np.int8)

N_TREND_FEATURES = 4  # price vs SMA20, RSI zone, MACD sign, momentum sign
N_LEARNER_WEIGHTS = N_TREND_FEATURES + 1  # plus a bias


# ---------------------------------------------------------------- trend score ("ML predictor")

def trend_features(close: np.ndarray, sma20: np.ndarray, rsi: np.ndarray, macd: np.ndarray,
                   momentum: np.ndarray, rsi_overbought: float = 70.0) -> np.ndarray:
    """(n, 4) features in {-1, 0, +1}: sign(close-SMA20), +1 if RSI < overbought else -1,
    sign(MACD), sign(momentum). (The original's RSI term is +1 below 70, -1 otherwise.)"""
    f = np.empty((close.shape[0], N_TREND_FEATURES))
    f[:, 0] = np.sign(close - sma20)
    f[:, 1] = np.where(rsi < rsi_overbought, 1.0, -1.0)
    f[:, 2] = np.sign(macd)
    f[:, 3] = np.sign(momentum)
    return f


def trend_vote(features: np.ndarray, weights: np.ndarray,
               confidence_scale: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score, vote UP/DOWN, confidence = min(1, |score|/scale)). UP if score > 0 else DOWN."""
    score = features @ weights
    vote = np.where(score > 0.0, UP, DOWN).astype(np.int8)
    conf = np.minimum(1.0, np.abs(score) / confidence_scale)
    return score, vote, conf


def learner_inputs(features: np.ndarray) -> np.ndarray:
    x = np.empty((features.shape[0], N_LEARNER_WEIGHTS))
    x[:, 0] = 1.0
    x[:, 1:] = features
    return x


def learner_probability(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(next bar closes up) of the logistic model, row by row."""
    z = np.einsum("ij,ij->i", weights, x)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def learner_update(weights: np.ndarray, x: np.ndarray, went_up: np.ndarray,
                   learn: np.ndarray, rate: float, l2: float) -> np.ndarray:
    """One SGD step of logistic regression on rows where `learn` is true; returns new weights."""
    p = learner_probability(weights, x)
    grad = (went_up - p)[:, None] * x - l2 * weights
    return np.where(learn[:, None], weights + rate * grad, weights)


def learner_vote(p: np.ndarray) -> np.ndarray:
    """UP above 0.5, DOWN below, NONE at exactly 0.5 (an untrained model has no opinion)."""
    return np.where(p > 0.5, UP, np.where(p < 0.5, DOWN, NONE)).astype(np.int8)


# ---------------------------------------------------------------- multi-timeframe trend

def mtf_vote(trends: np.ndarray, min_agree: int = 2) -> np.ndarray:
    """trends (n, n_timeframes) in {-1, 0, +1} (0 = no opinion) -> UP/DOWN when at least
    `min_agree` timeframes agree, else NONE."""
    ups = (trends > 0).sum(axis=1)
    downs = (trends < 0).sum(axis=1)
    return np.where(ups >= min_agree, UP, np.where(downs >= min_agree, DOWN, NONE)).astype(np.int8)


# ---------------------------------------------------------------- volatility (Bollinger)

def relative_volatility(closes: np.ndarray, changes: int = 20) -> np.ndarray:
    """Population std of the last `changes` close-to-close changes / mean of the last `changes`
    closes. `closes` (n, >= changes+1), oldest first."""
    tail = closes[:, -(changes + 1):]
    d = tail[:, 1:] - tail[:, :-1]
    dm = d.mean(axis=1)
    dd = d - dm[:, None]
    return np.sqrt((dd * dd).mean(axis=1)) / tail[:, 1:].mean(axis=1)


def volatility_vote(close: np.ndarray, upper: np.ndarray, lower: np.ndarray,
                    rel_vol: np.ndarray, vol_min: float, vol_max: float,
                    rule: str = "mean_reversion") -> np.ndarray:
    """Close outside the bands while vol_min < relative volatility < vol_max.
    mean_reversion: above upper -> SHORT, below lower -> LONG. breakout: the opposite."""
    in_band = (rel_vol > vol_min) & (rel_vol < vol_max)
    above = in_band & (close > upper)
    below = in_band & (close < lower)
    if rule == "mean_reversion":
        hi, lo = SHORT, LONG
    elif rule == "breakout":
        hi, lo = LONG, SHORT
    else:
        raise ValueError(f"volatility rule must be 'mean_reversion' or 'breakout', got {rule!r}")
    return np.where(above, hi, np.where(below, lo, NONE)).astype(np.int8)


# ---------------------------------------------------------------- RL agent (tabular Q-learning)

def rl_n_states(vol_thresholds: tuple[float, ...]) -> int:
    return 2 * (len(vol_thresholds) + 1)


def seq_mean_m2(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise mean and sum of squared deviations of cols (n, k), summed left to right. The fixed
    order lets `seq_mean_m2_scalar` reproduce it bit for bit on Python floats."""
    k = cols.shape[1]
    m = np.cumsum(cols, axis=1)[:, -1] / k  # cumsum adds strictly left to right
    d = cols - m[:, None]
    return m, np.cumsum(d * d, axis=1)[:, -1]


def seq_mean_m2_scalar(xs: list[float]) -> tuple[float, float]:
    total = xs[0]
    for v in xs[1:]:
        total += v
    m = total / len(xs)
    d = xs[0] - m
    m2 = d * d
    for v in xs[1:]:
        d = v - m
        m2 += d * d
    return m, m2


def rl_state(closes: np.ndarray, momentum_bars: int, vol_bars: int,
             vol_thresholds: np.ndarray) -> np.ndarray:
    """State index = 2 * volatility level + (1 if momentum up). Momentum: close vs the close
    `momentum_bars` earlier. Volatility: population std / mean of the last `vol_bars` closes,
    level = number of thresholds it exceeds. NaN inputs (too few bars) give state 0."""
    up = closes[:, -1] > closes[:, -1 - momentum_bars]
    m, m2 = seq_mean_m2(closes[:, -vol_bars:])
    vol = np.sqrt(m2 / vol_bars) / m
    state = up.astype(np.int64)
    for thr in np.asarray(vol_thresholds).tolist():
        state += 2 * (vol > thr)
    return state


def rl_state_scalar(closes: list[float], momentum_bars: int, vol_bars: int,
                    vol_thresholds: list[float]) -> int:
    state = 1 if closes[-1] > closes[-1 - momentum_bars] else 0
    m, m2 = seq_mean_m2_scalar(closes[-vol_bars:])
    vol = math.sqrt(m2 / vol_bars) / m
    for thr in vol_thresholds:
        state += 2 * (vol > thr)
    return state


def rl_greedy(q: np.ndarray) -> np.ndarray:
    """Arg-max action of q (n, 3); any tie at the top resolves to HOLD."""
    u, d, h = q[:, ACT_UP], q[:, ACT_DOWN], q[:, ACT_HOLD]
    return np.where((u > d) & (u > h), ACT_UP,
                    np.where((d > u) & (d > h), ACT_DOWN, ACT_HOLD)).astype(np.int64)


def rl_reward(action: np.ndarray, bar_return: np.ndarray) -> np.ndarray:
    """Realised reward of an action over a bar, in basis points: +r for UP, -r for DOWN, 0 HOLD."""
    sign = np.where(action == ACT_UP, 1.0, np.where(action == ACT_DOWN, -1.0, 0.0))
    return sign * bar_return * 1e4


_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_M64 = (1 << 64) - 1


def uniform_hash(key: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) from uint64 keys (splitmix64 finaliser). Used instead of
    a shared RNG so a symbol's draws depend only on (seed, symbol, bar), not on batch order."""
    with np.errstate(over="ignore"):
        z = key.astype(np.uint64) + np.uint64((_GOLDEN * (salt + 1)) & _M64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_MIX1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_MIX2)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def uniform_hash_scalar(key: int, salt: int) -> float:
    z = (key + ((_GOLDEN * (salt + 1)) & _M64)) & _M64
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    z = z ^ (z >> 31)
    return float(z >> 11) * (1.0 / 9007199254740992.0)


def bar_key(keys: np.ndarray, bar_no: np.ndarray) -> np.ndarray:
    """Per (symbol, bar) hash key."""
    with np.errstate(over="ignore"):
        return keys ^ (bar_no.astype(np.uint64) * np.uint64(_GOLDEN))


def bar_key_scalar(key: int, bar_no: int) -> int:
    return key ^ ((bar_no * _GOLDEN) & _M64)


# ---------------------------------------------------------------- consensus

def consensus(votes: np.ndarray, weights: np.ndarray,
              threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """votes (n, 4) codes in COMPONENTS order. UP/LONG weigh for the long side, DOWN/SHORT for
    the short side; UP if long weight >= threshold, else DOWN if short weight >= threshold (UP is
    checked first, as the original did), else NONE. Confidence = winning weight / total weight
    (= winning votes / 4 with unit weights); 0 when NONE."""
    long_w = ((votes == UP) | (votes == LONG)) @ weights
    short_w = ((votes == DOWN) | (votes == SHORT)) @ weights
    total = float(weights.sum())
    is_up = long_w >= threshold
    is_down = ~is_up & (short_w >= threshold)
    direction = np.where(is_up, UP, np.where(is_down, DOWN, NONE)).astype(np.int8)
    conf = np.where(is_up, long_w, np.where(is_down, short_w, 0.0)) / total
    return direction, conf
