"""The strategy components and the consensus: the one implementation the engine runs.

Each component is a named state layout (a NamedTuple whose fields are the engine's state
columns for it) and pure functions over it, written once against a number backend (`xp`, see
backend.py): numpy columns, one row per symbol (or per tick in the backtest's series), or Python
floats for one symbol. Votes travel as small integer codes (VOTE_NAMES gives the trader's words).
Nothing here keeps state or does I/O; the engine owns the rows and passes them in.

Each component's state holds what it learns (RL table aside: the engine keeps it beside) and a
"prep" part recomputed at every committed bar from the last closes, so evaluating the forming bar
costs O(1) elementwise work.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np

from .backend import Backend
from .streaming import push_mean_var

NONE, UP, DOWN, LONG, SHORT, HOLD = range(6)
VOTE_NAMES = ("NONE", "UP", "DOWN", "LONG", "SHORT", "HOLD")
COMPONENTS = ("trend", "mtf", "volatility", "rl")

# RL actions, in Q-table column order
ACT_UP, ACT_DOWN, ACT_HOLD = 0, 1, 2
N_ACTIONS = 3

N_TREND_FEATURES = 4  # price vs SMA20, RSI zone, MACD sign, momentum sign
N_LEARNER_WEIGHTS = N_TREND_FEATURES + 1  # plus a bias


def seq_mean_m2(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise mean and sum of squared deviations of cols (n, k), summed left to right. The fixed
    order lets `seq_mean_m2_scalar` reproduce it bit for bit on Python floats."""
    k = cols.shape[1]
    m = np.cumsum(cols, axis=1)[:, -1] / k  # cumsum adds strictly left to right
    d = cols - m[:, None]
    return m, np.cumsum(d * d, axis=1)[:, -1]


def seq_mean_m2_scalar(xs: Sequence[float]) -> tuple[float, float]:
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


# ---------------------------------------------------------------- trend score ("ML predictor")

class TrendState(NamedTuple):
    """Trend component: the reference close for momentum (prep), the online learner's weights
    (bias first) and its inputs at the last closed bar (learned from when the next bar closes)."""

    momentum_ref: Any
    w_bias: Any
    w_sma: Any
    w_rsi: Any
    w_macd: Any
    w_momentum: Any
    x_bias: Any
    x_sma: Any
    x_rsi: Any
    x_macd: Any
    x_momentum: Any


TREND_WEIGHTS = slice(1, 1 + N_LEARNER_WEIGHTS)  # TrendState fields of the learner's weights
TREND_INPUTS = slice(1 + N_LEARNER_WEIGHTS, 1 + 2 * N_LEARNER_WEIGHTS)


def trend_features(xp: Backend, close: Any, sma20: Any, rsi: Any, macd: Any, momentum: Any,
                   rsi_overbought: float = 70.0) -> tuple[Any, Any, Any, Any]:
    """Features in {-1, 0, +1}: sign(close-SMA20), +1 if RSI < overbought else -1, sign(MACD),
    sign(momentum). (The original's RSI term is +1 below 70, -1 otherwise.)"""
    return (xp.sign(close - sma20), xp.where(rsi < rsi_overbought, 1.0, -1.0), xp.sign(macd),
            xp.sign(momentum))


def trend_score(f: Sequence[Any], weights: Sequence[float]) -> Any:
    """The original's fixed score, summed left to right."""
    return f[0] * weights[0] + f[1] * weights[1] + f[2] * weights[2] + f[3] * weights[3]


def trend_vote(xp: Backend, score: Any) -> Any:
    """UP if score > 0 else DOWN, as the original ("UP if score > 0 else DOWN")."""
    return xp.where(score > 0.0, UP, DOWN)


def learner_z(w: Sequence[Any], f: Sequence[Any]) -> Any:
    """The learner's log-odds that the next bar closes up: bias + weights . features."""
    return w[0] + w[1] * f[0] + w[2] * f[1] + w[3] * f[2] + w[4] * f[3]


def learner_vote(xp: Backend, z: Any) -> Any:
    """UP above even odds, DOWN below, NONE at exactly even (an untrained model has no opinion)."""
    return xp.where(z > 0.0, UP, xp.where(z < 0.0, DOWN, NONE))


def learner_inputs(features: np.ndarray) -> np.ndarray:
    """(n, 5) inputs of the learner: a bias column of ones, then the four features (n, 4)."""
    x = np.empty((features.shape[0], N_LEARNER_WEIGHTS))
    x[:, 0] = 1.0
    x[:, 1:] = features
    return x


def learner_probability(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """P(next bar closes up) of the logistic model, row by row (weights, x: (n, 5))."""
    z = (weights[:, 0] * x[:, 0] + weights[:, 1] * x[:, 1] + weights[:, 2] * x[:, 2]
         + weights[:, 3] * x[:, 3] + weights[:, 4] * x[:, 4])
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def learner_update(weights: np.ndarray, x: np.ndarray, went_up: np.ndarray,
                   learn: np.ndarray, rate: float, l2: float) -> np.ndarray:
    """One SGD step of logistic regression on rows where `learn` is true; returns new weights."""
    p = learner_probability(weights, x)
    grad = (went_up - p)[:, None] * x - l2 * weights
    return np.where(learn[:, None], weights + rate * grad, weights)


# ---------------------------------------------------------------- multi-timeframe trend

class MtfFrame(NamedTuple):
    """One timeframe of the multi-timeframe component: the EMA of its completed bars' closes, how
    many completed (0 after a reset, `MTF_RESET`), the bucket of the last committed 1m bar and its
    close; and (prep) the EMA and count if that bucket turns out complete when the forming bar is
    in a later one."""

    ema: Any
    done: Any
    bucket: Any
    last: Any
    ema_next: Any
    done_next: Any


MTF_RESET = (np.nan, 0.0, np.nan, np.nan, np.nan, np.nan)  # a frame before any bar


def mtf_ema_step(ema: Any, last: Any, k: float) -> Any:
    return ema + k * (last - ema)


def mtf_commit(xp: Backend, fr: MtfFrame, ts: Any, close: Any, tf_seconds: float,
               k: float) -> MtfFrame:
    """After a 1m bar closes: a bucket is complete when a bar of a later bucket arrives; its close
    (the last 1m close in it) feeds the timeframe's EMA (seeded by the first complete close)."""
    b = xp.floor(ts / tf_seconds)
    complete = (b != fr.bucket) & xp.isfinite(fr.last)
    ema = xp.where(complete, xp.where(fr.done > 0, mtf_ema_step(fr.ema, fr.last, k), fr.last), fr.ema)
    done = fr.done + complete
    return MtfFrame(ema, done, b, close, fr.ema_next, fr.done_next)


def mtf_prepare(xp: Backend, ema: Any, done: Any, last: Any, k: float) -> tuple[Any, Any]:
    """(ema_next, done_next) of a frame: its EMA and count if the bucket of the last committed bar
    turns out complete (the forming bar is in a later bucket)."""
    return xp.where(done > 0, mtf_ema_step(ema, last, k), last), done + 1.0


def mtf_trend(xp: Backend, fr: MtfFrame, ts: Any, close: Any, tf_seconds: float,
              period: int) -> tuple[Any, Any]:
    """(up, down) of one timeframe at the forming bar: close vs the EMA of completed bars, once
    `period` have completed."""
    same = xp.floor(ts / tf_seconds) == fr.bucket
    ema = xp.where(same, fr.ema, fr.ema_next)
    ready = xp.where(same, fr.done, fr.done_next) >= period
    return ready & (close > ema), ready & (close < ema)


def mtf_vote(xp: Backend, ups: Any, downs: Any, min_agree: int = 2) -> Any:
    """UP/DOWN when at least `min_agree` timeframes agree, else NONE."""
    return xp.where(ups >= min_agree, UP, xp.where(downs >= min_agree, DOWN, NONE))


# ---------------------------------------------------------------- volatility (Bollinger)

class VolatilityState(NamedTuple):
    """Volatility component prep: mean of the last k-1 closes, mean and squared-deviation sum of
    the last k-1 close-to-close changes (k = volatility_changes)."""

    close_mean: Any
    change_mean: Any
    change_m2: Any


def relative_volatility(xp: Backend, vs: VolatilityState, close: Any, change: Any, k: int) -> Any:
    """Population std of the last k close-to-close changes / mean of the last k closes, the
    forming bar's close and change last."""
    change_var = push_mean_var(vs.change_mean, vs.change_m2, change, k)[1]
    return xp.sqrt(change_var) / (vs.close_mean + (close - vs.close_mean) / k)


def volatility_vote(xp: Backend, close: Any, upper: Any, lower: Any, rel_vol: Any,
                    vol_min: float, vol_max: float, rule: str = "mean_reversion") -> Any:
    """Close outside the bands while vol_min < relative volatility < vol_max.
    mean_reversion: above upper -> SHORT, below lower -> LONG. breakout: the opposite."""
    if rule == "mean_reversion":
        hi, lo = SHORT, LONG
    elif rule == "breakout":
        hi, lo = LONG, SHORT
    else:
        raise ValueError(f"volatility rule must be 'mean_reversion' or 'breakout', got {rule!r}")
    in_band = (rel_vol > vol_min) & (rel_vol < vol_max)
    return xp.where(in_band & (close > upper), hi, xp.where(in_band & (close < lower), lo, NONE))


# ---------------------------------------------------------------- RL agent (tabular Q-learning)

class RLState(NamedTuple):
    """RL component: the state and action taken at the last closed bar (learned from when the next
    closes), the exploration rate; and (prep) the momentum reference close and the mean and
    squared-deviation sum of the last vol_bars-1 closes. The Q-table sits beside, per symbol."""

    state: Any
    action: Any
    epsilon: Any
    momentum_ref: Any
    mean: Any
    m2: Any


def rl_n_states(vol_thresholds: tuple[float, ...]) -> int:
    return 2 * (len(vol_thresholds) + 1)


def rl_forming_state(xp: Backend, rs: RLState, close: Any, vol_bars: int,
                     vol_thresholds: Sequence[float]) -> Any:
    """State index at the forming bar = 2 * volatility level + (1 if momentum up); volatility =
    population std / mean of the last `vol_bars` closes, level = thresholds it exceeds."""
    mean, var = push_mean_var(rs.mean, rs.m2, close, vol_bars)
    vol = xp.sqrt(var) / mean
    state = xp.to_int(close > rs.momentum_ref)
    for thr in vol_thresholds:
        state = state + 2 * (vol > thr)
    return state


def rl_state(closes: np.ndarray, momentum_bars: int, vol_bars: int,
             vol_thresholds: np.ndarray) -> np.ndarray:
    """State index after a bar closed, from the last closes (n, >= vol_bars), oldest first: the
    same rule as `rl_forming_state`, over the committed closes. NaN inputs give state 0."""
    up = closes[:, -1] > closes[:, -1 - momentum_bars]
    m, m2 = seq_mean_m2(closes[:, -vol_bars:])
    vol = np.sqrt(m2 / vol_bars) / m
    state = up.astype(np.int64)
    for thr in np.asarray(vol_thresholds).tolist():
        state += 2 * (vol > thr)
    return state


def rl_state_scalar(closes: Sequence[float], momentum_bars: int, vol_bars: int,
                    vol_thresholds: Sequence[float]) -> int:
    """`rl_state` for one symbol on Python floats (same order of operations)."""
    state = 1 if closes[-1] > closes[-1 - momentum_bars] else 0
    m, m2 = seq_mean_m2_scalar(closes[-vol_bars:])
    vol = math.sqrt(m2 / vol_bars) / m
    for thr in vol_thresholds:
        state += 2 * (vol > thr)
    return state


def rl_greedy(xp: Backend, q_up: Any, q_down: Any, q_hold: Any) -> Any:
    """Arg-max action; any tie at the top resolves to HOLD."""
    return xp.where((q_up > q_down) & (q_up > q_hold), ACT_UP,
                    xp.where((q_down > q_up) & (q_down > q_hold), ACT_DOWN, ACT_HOLD))


def rl_vote(xp: Backend, action: Any) -> Any:
    return xp.where(action == ACT_UP, UP, xp.where(action == ACT_DOWN, DOWN, HOLD))


def rl_target(xp: Backend, action: Any, bar_return: Any, q_next_best: Any, gamma: float) -> Any:
    """Q-learning target: the realised reward in basis points (+r for UP, -r for DOWN, 0 HOLD)
    plus the discounted best value of the state reached."""
    sign = xp.where(action == ACT_UP, 1.0, xp.where(action == ACT_DOWN, -1.0, 0.0))
    return sign * bar_return * 1e4 + gamma * q_next_best


def rl_learn(q_sa: Any, target: Any, alpha: float) -> Any:
    return q_sa + alpha * (target - q_sa)


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

def consensus(xp: Backend, votes: Sequence[Any], weights: Sequence[float], threshold: float,
              ) -> tuple[Any, Any]:
    """votes: one code (or column) per component, COMPONENTS order. UP/LONG weigh for the long
    side, DOWN/SHORT for the short side; UP if long weight >= threshold, else DOWN if short weight
    >= threshold (UP is checked first, as the original did), else NONE. Confidence = winning
    weight / total weight (= winning votes / 4 with unit weights); 0 when NONE."""
    v0, v1, v2, v3 = votes
    w0, w1, w2, w3 = weights
    long_w = (((v0 == UP) | (v0 == LONG)) * w0 + ((v1 == UP) | (v1 == LONG)) * w1
              + ((v2 == UP) | (v2 == LONG)) * w2 + ((v3 == UP) | (v3 == LONG)) * w3)
    short_w = (((v0 == DOWN) | (v0 == SHORT)) * w0 + ((v1 == DOWN) | (v1 == SHORT)) * w1
               + ((v2 == DOWN) | (v2 == SHORT)) * w2 + ((v3 == DOWN) | (v3 == SHORT)) * w3)
    total = w0 + w1 + w2 + w3
    go_up = long_w >= threshold
    go_down = xp.logical_not(go_up) & (short_w >= threshold)
    direction = xp.where(go_up, UP, xp.where(go_down, DOWN, NONE))
    return direction, xp.where(go_up, long_w / total, xp.where(go_down, short_w / total, 0.0))
