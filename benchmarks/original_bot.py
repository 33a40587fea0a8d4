"""The ORIGINAL bot's signal algorithm, re-implemented from the rules in
/work/shared/docs/original-bot.md (no code of it copied), defects included on purpose: it is the
cost baseline the benchmark compares against, never product code.

Input is the bot's price history: one last-trade price per 60 s cycle, at most 500 samples
(here: 1m closes). Readings of the rules where the document leaves room:
- RSI: mean gain / mean loss of the last 14 changes, no Wilder smoothing;
- "MACD": weighted average of the last 12 prices minus that of the last 26, weights exp(i/11)
  (i = 0 oldest), no signal line;
- volatility: Bollinger(20, 2) over the last 20 of the last 50 samples; relative volatility
  = std(diff(last 20)) / mean(last 20); the documented mean-reversion rule;
- RL: state (5-sample momentum up?, std/mean of last 5 > 2%), Q all zero, arg-max picks UP.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _weighted(prices: np.ndarray, n: int) -> float:
    w = np.exp(np.arange(n) / 11.0)
    return float(np.dot(prices[-n:], w) / w.sum())


def ml_predict(prices: np.ndarray) -> tuple[str, float] | None:
    if len(prices) < 100:
        return None
    price = prices[-1]
    sma20 = prices[-20:].mean()
    d = np.diff(prices[-15:])
    gain = d[d > 0].sum() / 14.0
    loss = -d[d < 0].sum() / 14.0
    rsi = 100.0 if loss == 0 else 100.0 - 100.0 / (1.0 + gain / loss)
    macd = _weighted(prices, 12) - _weighted(prices, 26)
    momentum = price - prices[-11]
    score = (0.25 * np.sign(price - sma20) + 0.15 * (1.0 if rsi < 70 else -1.0)
             + 0.20 * np.sign(macd) + 0.20 * np.sign(momentum))
    return ("UP" if score > 0 else "DOWN"), float(min(1.0, abs(score) / 0.8))


def multi_timeframe(prices: np.ndarray) -> str | None:
    def trend(sl: np.ndarray, short: bool) -> bool | None:
        if len(sl) < 10:
            return None
        if short:
            return bool(sl[-5:].mean() > sl[-10:-5].mean())
        return bool(sl.mean() > sl[: len(sl) // 2].mean())

    votes = [trend(prices[-100:], True), trend(prices[-300:-200], False), trend(prices[-500:-400], False)]
    ups = sum(v is True for v in votes)
    downs = sum(v is False for v in votes)
    if ups >= 2:
        return "UP"
    if downs >= 2:
        return "DOWN"
    return None


def volatility(prices: np.ndarray) -> str | None:
    recent = prices[-50:]
    last20 = recent[-20:]
    mid = last20.mean()
    sd = last20.std()
    upper, lower = mid + 2 * sd, mid - 2 * sd
    vol = np.diff(last20).std() / mid
    if 0.015 < vol < 0.05:
        if recent[-1] > upper:
            return "SHORT"
        if recent[-1] < lower:
            return "LONG"
    return None


_Q = {(m, v): {"UP": 0.0, "DOWN": 0.0, "HOLD": 0.0} for m in (True, False) for v in (True, False)}


def rl_action(prices: np.ndarray) -> str:
    last5 = prices[-5:]
    state = (bool(last5[-1] > last5[0]), bool(last5.std() / last5.mean() > 0.02))
    q = _Q[state]
    return max(q, key=lambda k: q[k])  # never updated, ties pick the first: UP, forever


def generate_consensus(prices: np.ndarray) -> dict[str, Any] | None:
    """The original cycle's consensus over the price history (>= 50 samples)."""
    if len(prices) < 50:
        return None
    votes: list[str] = []
    ml = ml_predict(prices)
    if ml is not None:
        votes.append(ml[0])
    mtf = multi_timeframe(prices)
    if mtf is not None:
        votes.append(mtf)
    vol = volatility(prices)
    if vol is not None:
        votes.append(vol)
    votes.append(rl_action(prices))
    long_votes = sum(v in ("UP", "LONG") for v in votes)
    short_votes = sum(v in ("DOWN", "SHORT") for v in votes)
    if long_votes >= 2:
        direction = "UP"
    elif short_votes >= 2:
        direction = "DOWN"
    else:
        return None
    return {"direction": direction, "confidence": max(long_votes, short_votes) / 4, "votes": votes}
