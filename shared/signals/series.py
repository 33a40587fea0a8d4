"""Whole-series signal evaluation for the backtest: what the live pool would have answered at every
tick of one symbol's history, without one engine call per tick.

The live path: the bot worker turns each trade tick into the forming bar (open = first tick,
high/low = running max/min of the ticks so far, close = this tick; `shared.bars.apply_tick`), and
the pool calls `SignalEngine.evaluate_batch` on the window of closed bars + that forming bar. At
the first tick of a bar the engine commits the bar that just closed, then evaluates the forming
bar tentatively. `evaluate_series` returns, for every (bar, tick), exactly that answer: the same
direction, confidence and ATR bit for bit, the same component votes, the same validity (invalid
before `min_bars` closed bars, on a bad forming bar, at the tick a bad bar closes, and while warming
up again after it). The window size does not matter: a rebuild only happens at the start and after
a bad bar, and then warms up from the bars after it either way.

`evaluate_series_reference` is the slow definition (one `SignalEngine.evaluate` per tick); the
tests hold `evaluate_series` equal to it.

How it is fast: the state a tick is evaluated against changes only when a bar closes, so the bars
are committed first, and every tick of a chunk of bars is then evaluated in one vectorised call of
the engine's own `SignalEngine.core` (the strategy components) over rows = bars x ticks. Bars
after warm-up are committed by `SignalEngine.commit_bars`, the engine's bulk commit (one tight loop
per recursion over the same *_step functions, in the same IEEE order; the engine warms symbols up
with it too); warm-up bars, and every bar with the learner on, go through the engine's own
`_commit`, bar by bar.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import msgspec
import numpy as np

from ..marketdata import Candles
from . import strategies as st
from .backend import Vec
from .engine import BarWindow, RLTable, SignalConfig, SignalEngine
from .streaming import O_ATR, S_N, WARM_BARS, advance, new_state, outputs

LIVE_WINDOW_BARS = 1024  # what the pool reads from shared memory per request
_DIRECTION_CODE = {name: code for code, name in enumerate(st.VOTE_NAMES)}


class SignalSeries(NamedTuple):
    """One symbol's signals at every tick; arrays (n_bars, ticks_per_bar) unless noted."""

    bar_ts: np.ndarray  # (n_bars,) float64, open time of each bar (epoch seconds)
    tick_price: np.ndarray  # float64, the forming bar's close at that tick
    direction: np.ndarray  # int8 codes of strategies.VOTE_NAMES: NONE (0), UP (1), DOWN (2)
    confidence: np.ndarray  # float64, 0.0 when NONE
    atr14: np.ndarray  # float64, the engine's indicators.atr14 (NaN when it reports NaN)
    valid: np.ndarray  # bool
    votes: np.ndarray  # (n_bars, ticks_per_bar, 4) int8 codes in strategies.COMPONENTS order


def candle_tick_prices(candles: Candles) -> np.ndarray:
    """(n_bars, 4) tick prices, row by row `shared.marketdata.candle_ticks` (open, the nearer
    extreme, the farther extreme, close), vectorised."""
    o, h, lo, c = candles.open, candles.high, candles.low, candles.close
    high_first = np.abs(h - o) <= np.abs(o - lo)
    return np.stack([o, np.where(high_first, h, lo), np.where(high_first, lo, h), c], axis=1)


def forming_bars(ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(open, high, low) of the forming bar at every tick, as `shared.bars.apply_tick` builds it:
    the open is the first tick, high/low the running max/min of the ticks so far (Python's
    max(high, price): a price replaces the high only if it is greater)."""
    high, low = ticks.copy(), ticks.copy()
    for k in range(1, ticks.shape[1]):
        p = ticks[:, k]
        high[:, k] = np.where(p > high[:, k - 1], p, high[:, k - 1])
        low[:, k] = np.where(p < low[:, k - 1], p, low[:, k - 1])
    return np.broadcast_to(ticks[:, :1], ticks.shape), high, low


def _check_inputs(candles: Candles, ticks: np.ndarray | None, ticks_per_bar: int) -> np.ndarray:
    n = len(candles)
    if ticks is None:
        if ticks_per_bar != 4:
            raise ValueError(f"ticks_per_bar={ticks_per_bar} needs explicit tick prices "
                             "(candle_ticks gives 4 per bar)")
        ticks = candle_tick_prices(candles)
    ticks = np.asarray(ticks, dtype=np.float64)
    if ticks.ndim != 2 or ticks.shape[0] != n or ticks.shape[1] != ticks_per_bar or ticks_per_bar < 1:
        raise ValueError(f"ticks must be ({n}, {ticks_per_bar}), got {ticks.shape}")
    ts = np.asarray(candles.ts, dtype=np.float64)
    bad = ~np.isfinite(ts)
    bad[1:] |= ~(ts[1:] > ts[:-1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"bar {i}: timestamp {ts[i]!r} is not finite or not after the previous bar's")
    return ticks


def _rl_blob(rl_table: bytes | RLTable | None) -> bytes | None:
    if rl_table is None or isinstance(rl_table, bytes):
        return rl_table
    return msgspec.msgpack.encode(rl_table)


def evaluate_series_reference(config: SignalConfig, symbol: str, candles: Candles, *,
                              ticks: np.ndarray | None = None, ticks_per_bar: int = 4,
                              rl_table: bytes | RLTable | None = None, seed: int = 0,
                              window_bars: int = LIVE_WINDOW_BARS) -> SignalSeries:
    """The definition: one `SignalEngine.evaluate` per tick on the window the live worker would
    send (up to `window_bars` bars, the forming one last). Slow; for tests and as the oracle."""
    ticks = _check_inputs(candles, ticks, ticks_per_bar)
    n, t_per = ticks.shape
    engine = SignalEngine(config, seed=seed)
    blob = _rl_blob(rl_table)
    if blob is not None:
        engine.import_rl_table(symbol, blob)
    fo, fh, fl = forming_bars(ticks)
    ts = candles.ts.astype(np.float64)
    direction = np.zeros((n, t_per), dtype=np.int8)
    confidence = np.zeros((n, t_per))
    atr = np.full((n, t_per), np.nan)
    valid = np.zeros((n, t_per), dtype=bool)
    votes = np.zeros((n, t_per, len(st.COMPONENTS)), dtype=np.int8)
    for b in range(n):
        s = slice(max(0, b + 1 - window_bars), b + 1)
        o, h, lo, c, v = (np.array(a[s], dtype=np.float64)
                          for a in (candles.open, candles.high, candles.low, candles.close, candles.volume))
        for k in range(t_per):
            o[-1], h[-1], lo[-1], c[-1] = fo[b, k], fh[b, k], fl[b, k], ticks[b, k]
            r = engine.evaluate(BarWindow(symbol, b + 1, ts[s], o, h, lo, c, v))
            direction[b, k] = _DIRECTION_CODE[r.direction]
            confidence[b, k] = r.confidence
            atr[b, k] = r.indicators.atr14
            valid[b, k] = r.valid
            votes[b, k] = [_DIRECTION_CODE[r.votes[name]] for name in st.COMPONENTS]
    return SignalSeries(ts, ticks, direction, confidence, atr, valid, votes)




class _TickRows(Vec):
    """numpy backend for rows = bars, columns = ticks: state columns are (bars, 1), prices
    (bars, ticks), the Q-table (bars, states, actions)."""

    @staticmethod
    def q_at(q: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        qs = q[np.arange(state.shape[0])[:, None], state]
        return qs[..., 0], qs[..., 1], qs[..., 2]


_TICK_ROWS = _TickRows()


class _Symbol:
    """One symbol's committed state as the engine holds it (one row of S, C, X, Q), advanced bar by
    bar as the engine would advance it when called at every tick."""

    def __init__(self, engine: SignalEngine, symbol: str, candles: Candles) -> None:
        self.eng = engine
        slot = engine._slots.get(symbol)
        if slot is None:
            slot = engine._allocate(symbol)
        self.key = engine._keys[slot:slot + 1].copy()
        self.X = engine.reset_rows(engine._X[slot:slot + 1].copy())
        self.Q = engine._Q[slot:slot + 1].copy()
        self.S, self.C = new_state(1)
        self.ts = np.asarray(candles.ts, dtype=np.float64)
        self.o, self.h, self.lo, self.c = (np.asarray(a, dtype=np.float64) for a in
                                           (candles.open, candles.high, candles.low, candles.close))
        with np.errstate(invalid="ignore"):
            self.good = (np.isfinite(self.o) & (self.o > 0.0) & np.isfinite(self.h) & (self.h > 0.0)
                         & np.isfinite(self.lo) & (self.lo > 0.0) & np.isfinite(self.c) & (self.c > 0.0))
        n = len(self.c)
        # next_bad[j]: index of the first bad bar at or after j (n if none)
        self.next_bad = np.minimum.accumulate(np.where(self.good, n, np.arange(n))[::-1])[::-1]

    def reset(self) -> None:
        """A bad bar closed: the indicators start again, what was learned stays (as the engine)."""
        self.S, self.C = new_state(1)
        self.X = self.eng.reset_rows(self.X)

    def commit_one(self, j: int) -> None:
        """Bar j through the engine's own `_commit` (warm-up, learner)."""
        s = slice(j, j + 1)
        self.S, self.C = self.eng._commit(self.S, self.C, self.X, self.Q, self.h[s], self.lo[s], self.c[s],
                                          self.ts[s], np.array([j], dtype=np.int64), self.key)

    def commit_run(self, j0: int, j1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Commit the good bars j0..j1-1 of a warm symbol (learner off) at once; returns the state
        after each."""
        sl = slice(j0, j1)
        rec = self.eng.commit_bars(self.S, self.C, self.X, self.Q, self.key, self.h[sl], self.lo[sl],
                                   self.c[sl], self.ts[sl], j0, record=True)
        assert rec is not None
        return rec

    def record(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The current state, as the state after one bar (S, C, X, Q flattened)."""
        return self.S.copy(), self.C.copy(), self.X.copy(), self.Q.reshape(1, -1).copy()


def iter_series(config: SignalConfig, symbol: str, candles: Candles, *,
                ticks: np.ndarray | None = None, ticks_per_bar: int = 4,
                rl_table: bytes | RLTable | None = None, seed: int = 0,
                chunk_bars: int = 16384) -> Iterator[SignalSeries]:
    """`evaluate_series` in consecutive chunks of up to `chunk_bars` bars (memory stays bounded by
    the chunk, whatever the length of the series)."""
    ticks = _check_inputs(candles, ticks, ticks_per_bar)
    if chunk_bars < 1:
        raise ValueError(f"chunk_bars must be >= 1, got {chunk_bars}")
    engine = SignalEngine(config, seed=seed)
    blob = _rl_blob(rl_table)
    if blob is not None:
        engine.import_rl_table(symbol, blob)
    sym = _Symbol(engine, symbol, candles)
    cfg = config
    n = len(candles)
    fast = not cfg.learner
    for b0 in range(0, n, chunk_bars):
        b1 = min(n, b0 + chunk_bars)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        err0 = np.zeros(b1 - b0, dtype=bool)  # tick 0 of the bar reports a bad closed bar
        b = b0
        while b < b1:
            if b == 0:
                parts.append(sym.record())
                b = 1
                continue
            j = b - 1  # the bar that closes at this bar's first tick
            if not sym.good[j]:
                sym.reset()
                err0[b - b0] = True
                parts.append(sym.record())
                b += 1
            elif fast and sym.S[0, S_N] >= WARM_BARS:
                end = min(b1 - 1, int(sym.next_bad[j]))  # commits j..end-1, records bars b..end
                parts.append(sym.commit_run(j, end))
                b = end + 1
            else:
                sym.commit_one(j)
                parts.append(sym.record())
                b += 1
        rec_s, rec_c, rec_x, rec_q = (np.concatenate([p[q] for p in parts]) for q in range(4))
        yield _evaluate_ticks(engine, rec_s, rec_c, rec_x, rec_q, err0, sym.ts[b0:b1], ticks[b0:b1])


def _evaluate_ticks(engine: SignalEngine, rec_s: np.ndarray, rec_c: np.ndarray, rec_x: np.ndarray,
                    rec_q: np.ndarray, err0: np.ndarray, bar_ts: np.ndarray,
                    ticks: np.ndarray) -> SignalSeries:
    """Every tick of a chunk of bars against the committed state recorded for its bar."""
    cfg = engine.config
    nb, t_per = ticks.shape
    fo, fh, fl = forming_bars(ticks)
    with np.errstate(invalid="ignore"):
        ok = np.ones(ticks.shape, dtype=bool)
        for a in (fo, fh, fl, ticks):
            ok &= np.isfinite(a) & (a > 0.0)
    ok[:, 0] &= ~err0
    closed = rec_s[:, S_N]
    direction = np.zeros((nb, t_per), dtype=np.int8)
    confidence = np.zeros((nb, t_per))
    atr = np.full((nb, t_per), np.nan)
    valid = np.zeros((nb, t_per), dtype=bool)
    votes = np.zeros((nb, t_per, len(st.COMPONENTS)), dtype=np.int8)
    warm = np.flatnonzero(closed >= WARM_BARS)
    if warm.size:
        x = rec_x[warm]
        with np.errstate(all="ignore"):
            engine._precompute(x, rec_c[warm])
            snap, vote, d, conf = engine.core(_TICK_ROWS, rec_s[warm].T[:, :, None],
                                              engine._lay.named(x.T[:, :, None]),
                                              rec_q[warm].reshape(warm.size, engine._n_states, st.N_ACTIONS),
                                              fh[warm], fl[warm], ticks[warm], bar_ts[warm][:, None])
        w_ok = ok[warm]
        v = w_ok & (closed[warm] >= cfg.min_bars)[:, None]
        atr[warm] = np.where(w_ok, snap[-1], np.nan)
        valid[warm] = v
        direction[warm] = np.where(v, d, st.NONE)
        confidence[warm] = np.where(v, conf, 0.0)
        votes[warm] = np.where(v[..., None], np.stack(np.broadcast_arrays(*vote), axis=-1), st.NONE)
    cold = np.flatnonzero(closed < WARM_BARS)
    if cold.size:  # warming up: only the ATR is reported, from the engine's general recursions
        with np.errstate(all="ignore"):
            S2, C2 = advance(np.repeat(rec_s[cold], t_per, axis=0), np.repeat(rec_c[cold], t_per, axis=0),
                             fh[cold].ravel(), fl[cold].ravel(), ticks[cold].ravel())
            cold_atr = outputs(S2, C2)[:, O_ATR].reshape(cold.size, t_per)
        atr[cold] = np.where(ok[cold], cold_atr, np.nan)
    return SignalSeries(bar_ts, ticks, direction, confidence, atr, valid, votes)


def evaluate_series(config: SignalConfig, symbol: str, candles: Candles, *,
                    ticks: np.ndarray | None = None, ticks_per_bar: int = 4,
                    rl_table: bytes | RLTable | None = None, seed: int = 0) -> SignalSeries:
    """What `SignalEngine(config, seed).evaluate` would answer at every tick of `candles`, called
    from the first bar on as the live worker calls it (closed bars + the forming bar).

    `ticks` (n_bars, ticks_per_bar): the trade prices within each bar, in order; default
    `candle_tick_prices(candles)` (the paper venue's 4 ticks). The bar committed when it closes is
    the candle's own open/high/low/close; bars are numbered from 0 (the RL agent's exploration
    draws depend on the bar number, as live on the ring's bar count). `rl_table`: an
    `export_rl_table` blob (or its decoded RLTable) to start from, as the pool's import would.
    `seed`: the engine's seed (the pool uses the market seed). Timestamps must increase strictly
    (ValueError otherwise); bad prices are handled as the engine handles them.
    For long series prefer `iter_series` (bounded memory); this concatenates its chunks.
    """
    chunks = list(iter_series(config, symbol, candles, ticks=ticks, ticks_per_bar=ticks_per_bar,
                              rl_table=rl_table, seed=seed))
    if not chunks:
        t = ticks_per_bar
        return SignalSeries(np.empty(0), np.empty((0, t)), np.empty((0, t), np.int8), np.empty((0, t)),
                            np.empty((0, t)), np.empty((0, t), bool), np.empty((0, t, 4), np.int8))
    return SignalSeries(*(np.concatenate(parts) for parts in zip(*chunks)))
