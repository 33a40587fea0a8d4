"""The signal engine: per-symbol streaming state, evaluated for many symbols in one numpy pass.

Per call, for each window: bars that closed since the last call are committed to the symbol's
streaming state (indicators, multi-timeframe EMAs, learner, RL table), then the forming bar is
evaluated tentatively (advanced on copies, never committed). With no state, with a gap in the
bar numbering, or with more new closed bars than the window holds, the symbol is rebuilt from
the window's closed bars. Work per call is O(new bars), not O(window).

Bad prices (NaN, inf, <= 0) never reach a signal:
- a bad forming bar makes that call's result invalid and commits nothing of it;
- a bad newly closed bar drops the symbol's indicator state; the rebuild that follows warms up
  from the bars after the last bad bar in the window (invalid until `min_bars` good bars);
- nothing raises out of `evaluate_batch` for bad input: the result says why it is invalid.
Only bars not yet committed are checked (the new closed bars and the forming bar; the whole
window on a rebuild): committed history is trusted, which keeps a tick O(1).

Each strategy is one component in strategies.py (a named state layout + pure functions); the
engine only lays their states side by side in one float64 row per symbol (`_Layout`) and calls
them. Speed: numpy pays ~1 us per call whatever the array size, so batches of more than
_SCALAR_MAX_ROWS symbols run the components over numpy columns (rows = symbols), smaller ones over
Python floats; it is the same component code on two backends (backend.py), with sums in a fixed
left-to-right order, no BLAS dot products and a hash instead of a shared RNG, so batch == single
bit for bit. The backtest's series.py runs the same components over rows = ticks.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from itertools import accumulate
from typing import Annotated, Any, NamedTuple

import msgspec
import numpy as np
from msgspec import Meta
from numpy.lib.stride_tricks import sliding_window_view

from . import strategies as st
from .backend import SCALAR, VEC, Backend
from .streaming import (
    BB_PERIOD,
    CLOSES_LEN,
    N_STATE,
    O_MACD,
    O_RSI,
    O_SMA,
    S_N,
    S_PREV_CLOSE,
    WARM_BARS,
    BollingerPrep,
    IndicatorState,
    advance,
    atr_wilder_step,
    bar_terms,
    bollinger_forming,
    ema_fast_step,
    ema_slow_step,
    new_state,
    outputs,
    rsi_of,
    rsi_wilder_step,
    signal_step,
    steady_step,
)

BAR_SECONDS = 60.0
_SCALAR_MAX_ROWS = 4  # up to this many warm rows, Python floats beat numpy's per-call overhead
MAX_WINDOW = 65536  # a sanity bound on one window; the pool sends 1024


class BarWindow(NamedTuple):
    symbol: str
    bar_count: int  # total bars ever written for the symbol, incl. the forming one
    ts: np.ndarray  # float64 bar open time, epoch seconds; oldest first
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    # all float64, same length W; the LAST element is the forming (open) bar
    # Index of ts[0] in the caller's whole window, when it passes only the newest bars of it (see
    # SignalEngine.tail_suffices): results name bars by their index in the whole window.
    first_index: int = 0


def _default_consensus_weights() -> dict[str, float]:
    return {name: 1.0 for name in st.COMPONENTS}


class SignalConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every tunable of the signal engine (the `[signal]` table of the TOML config). Defaults are
    the original bot's rules, with its defects fixed."""

    # closed bars before any vote (the original's ML predictor needed 100)
    min_bars: Annotated[int, Meta(ge=WARM_BARS, le=100_000)] = 100
    # trend score: weights of sign(close-SMA20), RSI zone, sign(MACD), sign(momentum)
    trend_weights: list[Annotated[float, Meta(ge=-100, le=100)]] = msgspec.field(
        default_factory=lambda: [0.25, 0.15, 0.20, 0.20])
    # no effect: the trend vote's own confidence never reached the consensus (which weighs votes);
    # kept only because configs/default.toml sets it and unknown keys are refused
    trend_confidence_scale: Annotated[float, Meta(gt=0, le=100)] = 0.8
    rsi_overbought: Annotated[float, Meta(gt=0, lt=100)] = 70.0
    momentum_bars: Annotated[int, Meta(ge=1, le=CLOSES_LEN - 1)] = 10
    # online learner (logistic regression by SGD on the trend features); when on, it casts the
    # trend vote instead of the fixed score
    learner: bool = False
    learner_rate: Annotated[float, Meta(gt=0, le=10)] = 0.05
    learner_l2: Annotated[float, Meta(ge=0, le=10)] = 1e-4
    # multi-timeframe: trend per timeframe = sign(close - EMA of that timeframe's closed bars)
    timeframes: list[Annotated[int, Meta(ge=1, le=1440)]] = msgspec.field(default_factory=lambda: [1, 5, 15])  # minutes
    mtf_ema_period: Annotated[int, Meta(ge=1, le=1000)] = 20
    mtf_min_agree: Annotated[int, Meta(ge=1, le=1440)] = 2
    # volatility (Bollinger 20, 2)
    volatility_rule: str = "mean_reversion"  # or "breakout"
    volatility_min: Annotated[float, Meta(ge=0, le=10)] = 0.015
    volatility_max: Annotated[float, Meta(ge=0, le=10)] = 0.05
    volatility_changes: Annotated[int, Meta(ge=2, le=CLOSES_LEN - 1)] = 20
    # RL agent
    rl_alpha: Annotated[float, Meta(gt=0, le=1)] = 0.1
    rl_gamma: Annotated[float, Meta(ge=0, lt=1)] = 0.9
    rl_epsilon: Annotated[float, Meta(ge=0, le=1)] = 0.1
    rl_epsilon_decay: Annotated[float, Meta(gt=0, le=1)] = 0.995
    rl_epsilon_min: Annotated[float, Meta(ge=0, le=1)] = 0.01
    rl_momentum_bars: Annotated[int, Meta(ge=1, le=CLOSES_LEN - 1)] = 5
    rl_vol_bars: Annotated[int, Meta(ge=2, le=CLOSES_LEN)] = 5
    rl_vol_thresholds: list[Annotated[float, Meta(gt=0, le=10)]] = msgspec.field(default_factory=lambda: [0.02])
    # consensus
    consensus_weights: dict[str, Annotated[float, Meta(ge=0, le=100)]] = msgspec.field(
        default_factory=_default_consensus_weights)
    consensus_threshold: Annotated[float, Meta(gt=0, le=100)] = 2.0
    max_symbols: Annotated[int, Meta(ge=1, le=100_000)] = 4096  # bound on per-symbol state kept by one engine

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"signal config: {msg}")

        if self.min_bars < WARM_BARS:
            bad(f"min_bars must be >= {WARM_BARS} (bars before MACD's signal line exists), "
                f"got {self.min_bars}")
        if len(self.trend_weights) != st.N_TREND_FEATURES:
            bad(f"trend_weights needs {st.N_TREND_FEATURES} numbers, got {len(self.trend_weights)}")
        if not all(math.isfinite(w) for w in self.trend_weights):
            bad("trend_weights must be finite")
        if not self.trend_confidence_scale > 0:
            bad("trend_confidence_scale must be > 0")
        if not 0 < self.rsi_overbought < 100:
            bad(f"rsi_overbought must be in (0, 100), got {self.rsi_overbought}")
        for name, low in (("momentum_bars", 1), ("volatility_changes", 2), ("rl_momentum_bars", 1)):
            v = getattr(self, name)
            if not low <= v <= CLOSES_LEN - 1:
                bad(f"{name} must be in {low}..{CLOSES_LEN - 1}, got {v}")
        if not 2 <= self.rl_vol_bars <= CLOSES_LEN:
            bad(f"rl_vol_bars must be in 2..{CLOSES_LEN}, got {self.rl_vol_bars}")
        if not (self.learner_rate > 0 and self.learner_l2 >= 0):
            bad("learner_rate must be > 0 and learner_l2 >= 0")
        if not self.timeframes or any(t < 1 for t in self.timeframes) \
                or len(set(self.timeframes)) != len(self.timeframes):
            bad(f"timeframes must be distinct positive minutes, got {self.timeframes}")
        if self.mtf_ema_period < 1:
            bad("mtf_ema_period must be >= 1")
        if not 1 <= self.mtf_min_agree <= len(self.timeframes):
            bad(f"mtf_min_agree must be in 1..{len(self.timeframes)}, got {self.mtf_min_agree}")
        if self.volatility_rule not in ("mean_reversion", "breakout"):
            bad(f"volatility_rule must be 'mean_reversion' or 'breakout', got {self.volatility_rule!r}")
        if not 0 <= self.volatility_min < self.volatility_max:
            bad("need 0 <= volatility_min < volatility_max")
        if not (0 < self.rl_alpha <= 1 and 0 <= self.rl_gamma < 1):
            bad("need 0 < rl_alpha <= 1 and 0 <= rl_gamma < 1")
        if not (0 <= self.rl_epsilon_min <= self.rl_epsilon <= 1 and 0 < self.rl_epsilon_decay <= 1):
            bad("need 0 <= rl_epsilon_min <= rl_epsilon <= 1 and 0 < rl_epsilon_decay <= 1")
        if list(self.rl_vol_thresholds) != sorted(self.rl_vol_thresholds) \
                or any(not t > 0 for t in self.rl_vol_thresholds):
            bad("rl_vol_thresholds must be positive and ascending")
        if set(self.consensus_weights) != set(st.COMPONENTS):
            bad(f"consensus_weights needs exactly the keys {list(st.COMPONENTS)}, "
                f"got {sorted(self.consensus_weights)}")
        if any(not (w >= 0 and math.isfinite(w)) for w in self.consensus_weights.values()) \
                or sum(self.consensus_weights.values()) <= 0:
            bad("consensus_weights must be finite, >= 0, and not all 0")
        if not self.consensus_threshold > 0:
            bad("consensus_threshold must be > 0")
        if self.max_symbols < 1:
            bad("max_symbols must be >= 1")


class IndicatorSnapshot(msgspec.Struct, frozen=True):
    """Indicator values at the forming bar (NaN where undefined)."""

    close: float
    sma20: float
    ema12: float
    ema26: float
    rsi14: float
    macd: float
    macd_signal: float
    macd_hist: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    atr14: float


_NAN_SNAPSHOT = IndicatorSnapshot(*([math.nan] * 12))
_NO_VOTES = {name: "NONE" for name in st.COMPONENTS}


class SignalResult(msgspec.Struct, frozen=True):
    symbol: str
    bar_ts: float  # open time of the forming bar the signal was computed on
    bar_count: int
    direction: str  # "UP" | "DOWN" | "NONE"
    confidence: float
    votes: dict[str, str]  # trend, mtf, volatility, rl -> UP/DOWN/LONG/SHORT/HOLD/NONE
    indicators: IndicatorSnapshot
    valid: bool
    reason: str  # "" when valid


class RLTable(msgspec.Struct, frozen=True, kw_only=True):
    """Serialised Q-table of one symbol (export/import format, msgpack)."""

    version: int
    symbol: str
    vol_thresholds: list[float]
    n_states: int
    n_actions: int
    q: list[float]
    epsilon: float


_RL_ENCODER = msgspec.msgpack.Encoder()
_RL_DECODER = msgspec.msgpack.Decoder(RLTable)


class _Plan(NamedTuple):
    slot: int
    kind: int  # _NONE, _STEP, _REBUILD
    k: int  # new closed bars to commit (kind _STEP)


_NOOP, _STEP, _REBUILD, _BAD = range(4)


class _Layout:
    """Where each component's state sits in a symbol's strategy row (the engine's `X`): the
    components' NamedTuples side by side, then one MtfFrame per timeframe."""

    def __init__(self, n_tf: int) -> None:
        blocks: list[tuple[str, Any]] = [("trend", st.TrendState), ("bollinger", BollingerPrep),
                                          ("volatility", st.VolatilityState), ("rl", st.RLState)]
        blocks += [(f"mtf{j}", st.MtfFrame) for j in range(n_tf)]
        self.slices: dict[str, slice] = {}
        at = 0
        for name, kind in blocks:
            self.slices[name] = slice(at, at + len(kind._fields))
            at += len(kind._fields)
        self.width = at
        self.frames = [self.slices[f"mtf{j}"] for j in range(n_tf)]
        t, r = self.slices["trend"].start, self.slices["rl"].start
        self.learner_weights = slice(t + st.TREND_WEIGHTS.start, t + st.TREND_WEIGHTS.stop)
        self.learner_inputs = slice(t + st.TREND_INPUTS.start, t + st.TREND_INPUTS.stop)
        self.rl_state = r + st.RLState._fields.index("state")
        self.rl_action = r + st.RLState._fields.index("action")
        self.rl_epsilon = r + st.RLState._fields.index("epsilon")
        self.knowledge = [self.learner_weights, slice(self.rl_epsilon, self.rl_epsilon + 1)]
        self.trend_momentum_ref = t + st.TrendState._fields.index("momentum_ref")
        self.rl_momentum_ref = r + st.RLState._fields.index("momentum_ref")
        self.rl_mean = r + st.RLState._fields.index("mean")
        self.bollinger = self.slices["bollinger"].start
        self.volatility = self.slices["volatility"].start
        self._named = [(kind, self.slices[name]) for name, kind in blocks[:4]]

    def named(self, x: Any) -> tuple[st.TrendState, BollingerPrep, st.VolatilityState, st.RLState,
                                     list[st.MtfFrame]]:
        """The components' states from a row (list of floats) or from columns (X.T)."""
        make = tuple.__new__  # NamedTuple._make without its length check: the slices fit
        (t, ts), (b, bs), (v, vs), (r, rs) = self._named
        return (make(t, x[ts]), make(b, x[bs]), make(v, x[vs]), make(r, x[rs]),
                [make(st.MtfFrame, x[f]) for f in self.frames])


class SignalEngine:
    """Signals for many symbols. Not thread-safe: one engine per pool process."""

    def __init__(self, config: SignalConfig | None = None, seed: int = 0) -> None:
        cfg = config if config is not None else SignalConfig()
        self.config = cfg
        self.seed = int(seed)
        self._tf = np.array(cfg.timeframes, dtype=np.float64) * BAR_SECONDS
        self._tf_list = self._tf.tolist()
        self._n_tf = len(cfg.timeframes)
        self._tf_k = 2.0 / (cfg.mtf_ema_period + 1.0)
        self._trend_w = np.array(cfg.trend_weights, dtype=np.float64)
        self._cons_w = np.array([cfg.consensus_weights[c] for c in st.COMPONENTS])
        self._cons_list = [float(cfg.consensus_weights[c]) for c in st.COMPONENTS]
        self._cons_total = self._cons_list[0] + self._cons_list[1] + self._cons_list[2] + self._cons_list[3]
        self._vol_thr = np.array(cfg.rl_vol_thresholds, dtype=np.float64)
        self._vol_thr_list = [float(t) for t in cfg.rl_vol_thresholds]
        self._n_states = st.rl_n_states(tuple(cfg.rl_vol_thresholds))
        self._rl_ready = max(cfg.rl_momentum_bars + 1, cfg.rl_vol_bars)
        self._lay = _Layout(self._n_tf)
        self._n_x = self._lay.width
        self._cap = 0
        self._S = np.empty((0, N_STATE))
        self._C = np.empty((0, CLOSES_LEN))
        self._X = np.empty((0, self._n_x))
        self._Q = np.empty((0, self._n_states, st.N_ACTIONS))
        self._slots: dict[str, int] = {}
        self._free: list[int] = []
        self._closed: list[int] = []  # closed bars committed, absolute count; -1 = rebuild
        self._last_ts: list[float] = []
        self._keys = np.empty(0, dtype=np.uint64)
        self._note: list[str] = []  # why the last rebuild skipped bars (kept for the result)
        # slot -> its state as Python floats (S row, named strategy state, Q), kept between the
        # ticks of a bar (the state only changes when a bar closes); at most one per slot
        self._rows: dict[int, tuple[list[float], list[float], Any, list[list[float]]]] = {}

    # ------------------------------------------------------------------ public API

    def evaluate(self, window: BarWindow) -> SignalResult:
        return self.evaluate_batch([window])[0]

    def evaluate_batch(self, windows: Sequence[BarWindow]) -> list[SignalResult]:
        """One result per window, in order. Never raises for bad input."""
        seen: set[object] = set()
        cut = 0
        results: list[SignalResult] = []
        for j, w in enumerate(windows):
            sym = getattr(w, "symbol", None)
            key = sym if isinstance(sym, str) else id(w)
            if key in seen:  # the same symbol twice: evaluate in order, in separate passes
                results.extend(self._evaluate_unique(windows[cut:j]))
                cut = j
                seen = set()
            seen.add(key)
        results.extend(self._evaluate_unique(windows[cut:]))
        return results

    def tail_suffices(self, symbol: str, bar_count: int, bars: int, ts: np.ndarray | None = None) -> bool:
        """Whether the newest `bars` bars of the symbol's window, `bar_count` bars written in all,
        give the same result as its whole window: the symbol's state is kept and the bars closed
        since it was committed, with the last committed one (whose time is checked), fit in
        them, so nothing is rebuilt (a rebuild reads the whole window). The pool then copies a
        few bars a request instead of its whole window, which was ~7 us of a 45 us request
        (process time, round-robin over 200 symbols: the copy evicts the engine's state).
        `ts`: the tail's bar times once read; the last committed bar's time must be where the
        state expects it, or the window is other data (a worker reloaded its history) and the
        rebuild it calls for needs the whole window, never the tail."""
        slot = self._slots.get(symbol)
        if slot is None:
            return False
        have = self._closed[slot]
        k = bar_count - 1 - have
        if not (have > 0 and 0 <= k <= bars - 2):
            return False
        if ts is None:
            return True
        at = len(ts) - 2 - k
        return at >= 0 and float(ts[at]) == self._last_ts[slot]

    def forget(self, symbol: str) -> None:
        slot = self._slots.pop(symbol, None)
        if slot is not None:
            self._rows.pop(slot, None)
            self._closed[slot] = -1
            self._note[slot] = ""
            self._free.append(slot)

    def state_nbytes(self, symbol: str) -> int:
        """Bytes of numeric streaming state held for the symbol (0 if none)."""
        if symbol not in self._slots:
            return 0
        return 8 * (N_STATE + CLOSES_LEN + self._n_x + self._n_states * st.N_ACTIONS + 2)

    def export_rl_table(self, symbol: str) -> bytes:
        slot = self._slots.get(symbol)
        if slot is None:
            raise KeyError(f"{symbol}: no RL table (symbol never evaluated or imported)")
        table = RLTable(version=1, symbol=symbol, vol_thresholds=list(self.config.rl_vol_thresholds),
                        n_states=self._n_states, n_actions=st.N_ACTIONS,
                        q=self._Q[slot].ravel().tolist(), epsilon=float(self._X[slot, self._lay.rl_epsilon]))
        return _RL_ENCODER.encode(table)

    def import_rl_table(self, symbol: str, data: bytes) -> None:
        """Load a table exported by `export_rl_table` (validated before anything changes)."""
        try:
            table = _RL_DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{symbol}: RL table is not a valid export ({exc})") from None
        if table.version != 1:
            raise ValueError(f"{symbol}: RL table version {table.version} not supported")
        if table.n_states != self._n_states or table.n_actions != st.N_ACTIONS \
                or list(table.vol_thresholds) != list(self.config.rl_vol_thresholds) \
                or len(table.q) != self._n_states * st.N_ACTIONS:
            raise ValueError(f"{symbol}: RL table shape {table.n_states}x{table.n_actions} with "
                             f"thresholds {table.vol_thresholds} does not match this config "
                             f"({self._n_states}x{st.N_ACTIONS}, {self.config.rl_vol_thresholds})")
        q = np.array(table.q, dtype=np.float64)
        if not np.isfinite(q).all() or not 0.0 <= table.epsilon <= 1.0:
            raise ValueError(f"{symbol}: RL table has non-finite values or epsilon outside [0, 1]")
        slot = self._slots.get(symbol)
        if slot is None:
            slot = self._allocate(symbol)
            if slot < 0:
                raise ValueError(f"{symbol}: engine already holds max_symbols="
                                 f"{self.config.max_symbols} symbols")
        self._Q[slot] = q.reshape(self._n_states, st.N_ACTIONS)
        self._X[slot, self._lay.rl_epsilon] = table.epsilon
        self._rows.pop(slot, None)

    # ------------------------------------------------------------------ slots

    def _allocate(self, symbol: str) -> int:
        if self._free:
            slot = self._free.pop()
        else:
            slot = len(self._closed)
            if slot >= self.config.max_symbols:
                return -1
            if slot >= self._cap:
                self._grow(min(self.config.max_symbols, max(16, 2 * self._cap)))
            self._closed.append(-1)
            self._last_ts.append(math.nan)
            self._note.append("")
        self._slots[symbol] = slot
        self._closed[slot] = -1
        self._note[slot] = ""
        key = (zlib.crc32(symbol.encode()) << 32) ^ (self.seed & 0xFFFFFFFF)
        self._keys[slot] = np.uint64(key & 0xFFFFFFFFFFFFFFFF)
        self._rows.pop(slot, None)
        self._Q[slot] = 0.0
        self._X[slot] = np.nan
        self._X[slot, self._lay.learner_weights] = 0.0
        self._X[slot, self._lay.rl_epsilon] = self.config.rl_epsilon
        return slot

    def _grow(self, cap: int) -> None:
        def grow(a: np.ndarray) -> np.ndarray:
            b = np.zeros((cap,) + a.shape[1:], dtype=a.dtype)
            b[: a.shape[0]] = a
            return b

        self._S, self._C, self._X, self._Q = (grow(a) for a in (self._S, self._C, self._X, self._Q))
        self._keys = grow(self._keys)
        self._cap = cap

    # ------------------------------------------------------------------ one pass

    def _evaluate_unique(self, windows: Sequence[BarWindow]) -> list[SignalResult]:
        n = len(windows)
        if n == 0:
            return []
        plans: list[_Plan] = []
        errors: list[str] = [""] * n
        for j, w in enumerate(windows):
            plan, err = self._plan(w)
            plans.append(plan)
            errors[j] = err

        # commit newly closed bars: rebuilds, then incremental steps grouped by count
        rebuild = [j for j in range(n) if plans[j].kind == _REBUILD]
        if rebuild:
            self._rebuild([windows[j] for j in rebuild], [plans[j].slot for j in rebuild])
        by_k: dict[int, list[int]] = {}
        for j, p in enumerate(plans):
            if p.kind == _STEP:
                by_k.setdefault(p.k, []).append(j)
        for k, js in by_k.items():
            bad = self._step_windows([windows[j] for j in js], [plans[j].slot for j in js], k)
            for j, msg in zip(js, bad, strict=True):
                if msg:
                    errors[j] = msg
        return self._tentative(windows, plans, errors)

    def _plan(self, w: BarWindow) -> tuple[_Plan, str]:
        """Decide what to do with a window; structural problems -> (_BAD, reason)."""
        try:
            sym = w.symbol
            if not isinstance(sym, str) or not sym:
                return _Plan(-1, _BAD, 0), "bad window: symbol must be a non-empty string"
            shape = w.close.shape
            if len(shape) != 1 or not (w.ts.shape == w.open.shape == w.high.shape == w.low.shape == shape):
                return _Plan(-1, _BAD, 0), (f"{sym}: bad window: ts/open/high/low/close must be 1-D "
                                            f"arrays of one length")
            size = shape[0]
            if not 1 <= size <= MAX_WINDOW or w.bar_count < size:
                return _Plan(-1, _BAD, 0), (f"{sym}: bad window: {size} bars with bar_count "
                                            f"{w.bar_count} (need 1 <= bars <= bar_count)")
        except (TypeError, AttributeError) as exc:
            return _Plan(-1, _BAD, 0), f"bad window: {exc}"
        slot = self._slots.get(sym)
        if slot is None:
            slot = self._allocate(sym)
            if slot < 0:
                return _Plan(-1, _BAD, 0), (f"{sym}: engine already holds max_symbols="
                                            f"{self.config.max_symbols} symbols")
        have = self._closed[slot]
        closed_now = int(w.bar_count) - 1
        k = closed_now - have
        if have < 0 or k < 0 or k > size - 1:
            return _Plan(slot, _REBUILD, 0), ""
        if have > 0:
            at = size - 2 - k  # where the last committed bar must sit in this window
            if at >= 0 and float(w.ts[at]) != self._last_ts[slot]:
                return _Plan(slot, _REBUILD, 0), ""
        return _Plan(slot, _STEP if k > 0 else _NOOP, k), ""

    @staticmethod
    def _bad_bars(w: BarWindow, lo: int, hi: int) -> np.ndarray:
        """Mask of bad bars in w[lo:hi]: a price not finite or <= 0, or ts not finite."""
        ok = np.isfinite(w.ts[lo:hi])
        for a in (w.open, w.high, w.low, w.close):
            seg = a[lo:hi]
            ok &= np.isfinite(seg) & (seg > 0.0)
        bad: np.ndarray = ~ok
        return bad

    def _rebuild(self, windows: list[BarWindow], slots: list[int]) -> None:
        """Reset indicator state and warm up from each window's closed bars (after the last bad
        bar, if any). RL table, epsilon and learner weights are kept: they are knowledge."""
        groups: dict[int, list[tuple[BarWindow, int, int]]] = {}
        for w, slot in zip(windows, slots, strict=True):
            size = len(w.close)
            bad = self._bad_bars(w, 0, size - 1)
            ts = w.ts[: size - 1]
            if size > 2:
                bad[1:] |= ~(ts[1:] > ts[:-1])
            start = 0
            note = ""
            if bad.any():
                last_bad = int(np.flatnonzero(bad)[-1])
                start = last_bad + 1
                note = (f"{w.symbol}: bad bar at window index {_first(w) + last_bad} (ts={float(w.ts[last_bad])!r}, "
                        f"close={float(w.close[last_bad])!r}); warming up from the "
                        f"{size - 1 - start} bars after it")
            self._note[slot] = note
            groups.setdefault(size - 1 - start, []).append((w, slot, start))
            self._closed[slot] = int(w.bar_count) - 1
            self._last_ts[slot] = float(ts[-1]) if size > 1 else math.nan
        for n_bars, items in groups.items():
            rows = np.array([slot for _, slot, _ in items])
            S, C = new_state(len(items))
            X = self.reset_rows(self._X[rows])
            Q = self._Q[rows]
            # a few rows: numpy only through the seeding bars, then all the rest at once per row
            # (commit_bars: bit-identical, much faster than numpy on tiny arrays)
            scalar_tail = not self.config.learner and len(items) <= _SCALAR_MAX_ROWS
            n_vec = min(n_bars, WARM_BARS) if scalar_tail else n_bars
            cols: list[np.ndarray] = []
            first_bar = np.empty(0, dtype=np.int64)
            if n_bars > 0:
                cols = [np.stack([getattr(w, name)[s: s + n_bars] for w, _, s in items]).astype(np.float64)
                        for name in ("high", "low", "close", "ts")]
                first_bar = np.array([int(w.bar_count) - 1 - n_bars for w, _, _ in items], dtype=np.int64)
                keys = self._keys[rows]
                for t in range(n_vec):
                    S, C = self._commit(S, C, X, Q, cols[0][:, t], cols[1][:, t], cols[2][:, t],
                                        cols[3][:, t], first_bar + t, keys)
                self._precompute(X, C)
            self._S[rows], self._C[rows], self._X[rows], self._Q[rows] = S, C, X, Q
            self._forget_rows(rows)
            if n_bars > n_vec:
                for q, (_, slot, _) in enumerate(items):
                    one = slice(slot, slot + 1)
                    S1, C1, X1, Q1 = self._S[one], self._C[one], self._X[one], self._Q[one]
                    h, lo, c, ts = (col[q, n_vec:] for col in cols)
                    self.commit_bars(S1, C1, X1, Q1, self._keys[one], h, lo, c, ts, int(first_bar[q]) + n_vec)
                    self._precompute(X1, C1)
                    self._S[one], self._C[one], self._X[one], self._Q[one] = S1, C1, X1, Q1

    def _step_windows(self, windows: list[BarWindow], slots: list[int], k: int) -> list[str]:
        """Commit the k newest closed bars of each window; rows with a bad bar are dropped to
        rebuild on the next call. Returns a reason per window ("" if fine)."""
        if k == 1 and not self.config.learner and len(windows) <= _SCALAR_MAX_ROWS \
                and all(self._S[slot, S_N] >= WARM_BARS for slot in slots):
            return self._step_one_scalar(windows, slots)
        size = np.array([w.close.shape[0] for w in windows])
        if k == 1:  # the common case: one bar closed since the last call
            one = np.array([(w.open.item(-2), w.high.item(-2), w.low.item(-2), w.close.item(-2),
                             w.ts.item(-2)) for w in windows], dtype=np.float64)
            o, h, lo, c, ts = (one[:, q:q + 1] for q in range(5))
        else:
            o, h, lo, c, ts = (np.stack([getattr(w, name)[w.close.shape[0] - 1 - k: w.close.shape[0] - 1]
                                         for w in windows]).astype(np.float64)
                               for name in ("open", "high", "low", "close", "ts"))
        last_ts = np.array([self._last_ts[s] for s in slots])
        prev_ts = np.concatenate([last_ts[:, None], ts[:, :-1]], axis=1)
        ok = np.isfinite(ts) & (ts > prev_ts)
        for a in (o, h, lo, c):
            ok &= np.isfinite(a) & (a > 0.0)
        row_ok = ok.all(axis=1)
        reasons = [""] * len(windows)
        for r in np.flatnonzero(~row_ok).tolist():
            at = int(np.flatnonzero(~ok[r])[0])
            idx = int(size[r]) - 1 - k + at
            w = windows[r]
            reasons[r] = _bad_closed_reason(w, idx, float(ts[r, at]), float(o[r, at]), float(h[r, at]),
                                            float(lo[r, at]), float(c[r, at]))
            self._closed[slots[r]] = -1
        good = np.flatnonzero(row_ok)
        if good.size == 0:
            return reasons
        rows = np.array(slots)[good]
        S, C, X, Q = self._S[rows], self._C[rows], self._X[rows], self._Q[rows]
        keys = self._keys[rows]
        good_list = good.tolist()
        closed_now = [int(windows[r].bar_count) - 1 for r in good_list]
        first_bar = np.array(closed_now, dtype=np.int64) - k
        if good.size < len(windows):
            h, lo, c, ts = h[good], lo[good], c[good], ts[good]
        for t in range(k):
            S, C = self._commit(S, C, X, Q, h[:, t], lo[:, t], c[:, t], ts[:, t], first_bar + t, keys)
        self._precompute(X, C)
        self._S[rows], self._C[rows], self._X[rows], self._Q[rows] = S, C, X, Q
        self._forget_rows(rows)
        for r, n_closed, last in zip(good_list, closed_now, ts[:, -1].tolist(), strict=True):
            self._closed[slots[r]] = n_closed
            self._last_ts[slots[r]] = last
        return reasons

    def _step_one_scalar(self, windows: list[BarWindow], slots: list[int]) -> list[str]:
        """`_step_windows` for one new closed bar on a few warm rows, without numpy overhead."""
        reasons = [""] * len(windows)
        for r, (w, slot) in enumerate(zip(windows, slots, strict=True)):
            o, h, lo, c, t = (float(w.open[-2]), float(w.high[-2]), float(w.low[-2]),
                              float(w.close[-2]), float(w.ts[-2]))
            if not (0.0 < o < math.inf and 0.0 < h < math.inf and 0.0 < lo < math.inf
                    and 0.0 < c < math.inf and math.isfinite(t) and t > self._last_ts[slot]):
                reasons[r] = _bad_closed_reason(w, w.close.shape[0] - 2, t, o, h, lo, c)
                self._closed[slot] = -1
                continue
            self._commit_scalar(slot, h, lo, c, t, int(w.bar_count) - 2)
            self._closed[slot] = int(w.bar_count) - 1
            self._last_ts[slot] = t
        return reasons

    def reset_rows(self, X: np.ndarray) -> np.ndarray:
        """Strategy rows after their indicator state is dropped: everything NaN but what was
        learned (the learner's weights, the RL exploration rate; the Q-table sits apart)."""
        keep = [X[:, s].copy() for s in self._lay.knowledge]
        X[:] = np.nan
        for s, v in zip(self._lay.knowledge, keep, strict=True):
            X[:, s] = v
        for f in self._lay.frames:
            X[:, f] = st.MTF_RESET
        return X

    def _commit(self, S: np.ndarray, C: np.ndarray, X: np.ndarray, Q: np.ndarray,
                h: np.ndarray, lo: np.ndarray, c: np.ndarray, ts: np.ndarray,
                bar_no: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Commit one closed bar for every row (any warm-up stage, learner on or off). X and Q are
        updated in place (local copies)."""
        cfg = self.config
        lay = self._lay
        prev_close = S[:, S_PREV_CLOSE]
        S2, C2 = advance(S, C, h, lo, c)
        n_after = S2[:, S_N]
        with np.errstate(invalid="ignore"):
            bar_ret = (c - prev_close) / prev_close  # NaN on the first bar
        if cfg.learner:
            xprev = X[:, lay.learner_inputs]
            learn = np.isfinite(xprev[:, 0]) & (c != prev_close) & np.isfinite(bar_ret)
            X[:, lay.learner_weights] = st.learner_update(X[:, lay.learner_weights], np.nan_to_num(xprev),
                                                          (c > prev_close).astype(np.float64), learn,
                                                          cfg.learner_rate, cfg.learner_l2)
            if n_after.min() >= WARM_BARS:
                out = outputs(S2, C2)
                feats = st.trend_features(VEC, c, out[:, O_SMA], out[:, O_RSI], out[:, O_MACD],
                                          c - C2[:, -1 - cfg.momentum_bars], cfg.rsi_overbought)
                X[:, lay.learner_inputs] = st.learner_inputs(np.stack(feats, axis=1))
            else:
                X[:, lay.learner_inputs] = np.nan
        for f, tf in zip(lay.frames, self._tf_list, strict=True):
            fr = st.mtf_commit(VEC, st.MtfFrame(*X[:, f].T), ts, c, tf, self._tf_k)
            for q in range(4):
                X[:, f.start + q] = fr[q]
        ready = n_after >= self._rl_ready
        if ready.any():
            s_now = st.rl_state(C2, cfg.rl_momentum_bars, cfg.rl_vol_bars, self._vol_thr)
            a_prev = X[:, lay.rl_action]
            learn = ready & np.isfinite(a_prev) & np.isfinite(bar_ret)
            r_idx = np.arange(S.shape[0])
            if learn.any():
                rl = r_idx[learn]
                sp = X[learn, lay.rl_state].astype(np.int64)
                ap = a_prev[learn].astype(np.int64)
                target = st.rl_target(VEC, ap, bar_ret[learn], Q[rl, s_now[learn]].max(axis=1), cfg.rl_gamma)
                Q[rl, sp, ap] = st.rl_learn(Q[rl, sp, ap], target, cfg.rl_alpha)
            q_now = Q[r_idx, s_now]
            greedy = st.rl_greedy(VEC, q_now[:, 0], q_now[:, 1], q_now[:, 2])
            mix = st.bar_key(keys, bar_no)
            eps = X[:, lay.rl_epsilon]
            explore = st.uniform_hash(mix, 1) < eps
            random_action = np.minimum((st.uniform_hash(mix, 2) * st.N_ACTIONS).astype(np.int64),
                                       st.N_ACTIONS - 1)
            action = np.where(explore, random_action, greedy)
            X[:, lay.rl_state] = np.where(ready, s_now, np.nan)
            X[:, lay.rl_action] = np.where(ready, action, np.nan)
            X[:, lay.rl_epsilon] = np.where(ready, np.maximum(cfg.rl_epsilon_min,
                                                              eps * cfg.rl_epsilon_decay), eps)
        return S2, C2

    def commit_row(self, s: list[float], x: list[float], q: list[list[float]], closes: list[float],
                   h: float, lo: float, c: float, ts: float, bar_no: int, key: int) -> list[float]:
        """`_commit` for one warm row (S_N >= WARM_BARS, learner off) on Python floats, through
        the same components; x, q and closes (the row's strategy state, Q-table and last closes)
        are updated in place, the new indicator state is returned. Prep (`_prepare_one`) is
        left to the caller: the engine runs it after each commit, the series over all bars at once."""
        cfg = self.config
        lay = self._lay
        prev = s[S_PREV_CLOSE]
        new = steady_step(SCALAR, tuple.__new__(IndicatorState, s), h, lo, c)
        del closes[0]
        closes.append(c)
        bar_ret = (c - prev) / prev
        for f, tf in zip(lay.frames, self._tf_list, strict=True):
            x[f] = st.mtf_commit(SCALAR, tuple.__new__(st.MtfFrame, x[f]), ts, c, tf, self._tf_k)
        s_now = st.rl_state_scalar(closes, cfg.rl_momentum_bars, cfg.rl_vol_bars, self._vol_thr_list)
        a_prev = x[lay.rl_action]
        if math.isfinite(a_prev) and math.isfinite(bar_ret):
            sp, ap = int(x[lay.rl_state]), int(a_prev)
            qn = q[s_now]
            target = st.rl_target(SCALAR, ap, bar_ret, max(qn[0], max(qn[1], qn[2])), cfg.rl_gamma)
            q[sp][ap] = st.rl_learn(q[sp][ap], target, cfg.rl_alpha)
        qu, qd, qh = q[s_now]
        mix = st.bar_key_scalar(key, bar_no)
        eps = x[lay.rl_epsilon]
        if st.uniform_hash_scalar(mix, 1) < eps:
            action = min(int(st.uniform_hash_scalar(mix, 2) * st.N_ACTIONS), st.N_ACTIONS - 1)
        else:
            action = st.rl_greedy(SCALAR, qu, qd, qh)
        x[lay.rl_state] = float(s_now)
        x[lay.rl_action] = float(action)
        x[lay.rl_epsilon] = max(cfg.rl_epsilon_min, eps * cfg.rl_epsilon_decay)
        return list(new)

    def commit_bars(self, S: np.ndarray, C: np.ndarray, X: np.ndarray, Q: np.ndarray, key: np.ndarray,
                    h: np.ndarray, lo: np.ndarray, c: np.ndarray, ts: np.ndarray, first_bar: int,
                    record: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Commit m consecutive good closed bars of ONE warm symbol (S_N >= WARM_BARS, learner
        off) at once, exactly as `commit_row` would bar by bar: one tight loop per recursion
        (`itertools.accumulate` over the same *_step functions), the RL table in one plain loop
        through the same component functions, everything else vectorised over the bars. S, C, X, Q
        are the symbol's (1, ...) rows, overwritten with the state after the last bar (X without
        prep). With `record`, also returns the state after each bar: (S, C, X, Q flattened), m rows."""
        cfg, lay = self.config, self._lay
        m = c.shape[0]
        s0 = IndicatorState(*S[0].tolist())
        prev = np.concatenate([[s0.prev_close], c[:-1]])
        g, ls, tr = bar_terms(VEC, h, lo, c, prev)
        es = _run(ema_slow_step, s0.ema_slow, c)
        mf = _run(ema_fast_step, s0.macd_fast, c)
        rec_s = np.column_stack([s0.n + np.arange(1.0, m + 1.0), c, _run(ema_fast_step, s0.ema_fast, c), es, mf,
                                 _run(signal_step, s0.signal, mf - es), _run(rsi_wilder_step, s0.gain, g),
                                 _run(rsi_wilder_step, s0.loss, ls), _run(atr_wilder_step, s0.atr, tr)])
        closes = np.concatenate([C[0], c])
        rec_x = np.repeat(X, m, axis=0) if record else X.copy()
        last = slice(None) if record else slice(-1, None)  # rows of rec_x: every bar or the last
        k = self._tf_k
        for f, tf in zip(lay.frames, self._tf_list, strict=True):
            fr0 = st.MtfFrame(*X[0, f].tolist())
            bucket = np.floor(ts / tf)
            before_bucket = np.concatenate([[fr0.bucket], bucket[:-1]])
            before_last = np.concatenate([[fr0.last], c[:-1]])
            complete = (bucket != before_bucket) & np.isfinite(before_last)
            done = fr0.done + np.cumsum(complete)
            vals = before_last[complete]
            step = partial(st.mtf_ema_step, k=k)
            if vals.size and fr0.done > 0:
                emas = _run(step, fr0.ema, vals)
            elif vals.size:  # the first complete bucket seeds the EMA
                emas = np.concatenate([vals[:1], _run(step, vals[0], vals[1:])])
            rank = np.cumsum(complete) - 1
            ema = np.where(rank >= 0, emas[np.maximum(rank, 0)] if vals.size else fr0.ema, fr0.ema)
            rec_x[:, f.start], rec_x[:, f.start + 1], rec_x[:, f.start + 2], rec_x[:, f.start + 3] = \
                ema[last], done[last], bucket[last], c[last]
        # RL: states, returns and exploration draws for the whole run, the table in one loop
        span = max(cfg.rl_momentum_bars + 1, cfg.rl_vol_bars)
        wins = sliding_window_view(closes, span)[CLOSES_LEN - span + 1:]
        s_now = st.rl_state(wins, cfg.rl_momentum_bars, cfg.rl_vol_bars, self._vol_thr).tolist()
        bar_ret = ((c - prev) / prev).tolist()
        mix = st.bar_key(key, np.arange(first_bar, first_bar + m, dtype=np.int64))
        explore = (st.uniform_hash(mix, 1)).tolist()
        random_action = np.minimum((st.uniform_hash(mix, 2) * st.N_ACTIONS).astype(np.int64),
                                   st.N_ACTIONS - 1).tolist()
        q0 = Q[0].ravel().copy()
        q = Q[0].tolist()
        sp, ap = int(X[0, lay.rl_state]), int(X[0, lay.rl_action])
        eps = float(X[0, lay.rl_epsilon])
        gamma, alpha, eps_min, decay = cfg.rl_gamma, cfg.rl_alpha, cfg.rl_epsilon_min, cfg.rl_epsilon_decay
        rl_target, rl_learn, rl_greedy = st.rl_target, st.rl_learn, st.rl_greedy
        n_act = st.N_ACTIONS
        cells: list[int] = []
        values: list[float] = []
        actions: list[int] = []
        epsilons: list[float] = []
        for i in range(m):
            sn = s_now[i]
            qn = q[sn]
            row = q[sp]
            v = rl_learn(row[ap], rl_target(SCALAR, ap, bar_ret[i], max(qn[0], max(qn[1], qn[2])), gamma), alpha)
            row[ap] = v
            cells.append(sp * n_act + ap)
            values.append(v)
            ap = random_action[i] if explore[i] < eps else rl_greedy(SCALAR, qn[0], qn[1], qn[2])
            sp = sn
            eps = max(eps_min, eps * decay)
            actions.append(ap)
            epsilons.append(eps)
        rec_x[:, lay.rl_state] = s_now[last]
        rec_x[:, lay.rl_action] = actions[last]
        rec_x[:, lay.rl_epsilon] = epsilons[last]
        S[0] = rec_s[-1]
        C[0] = closes[-CLOSES_LEN:]
        X[0] = rec_x[-1]
        Q[0] = np.array(q)
        if not record:
            return None
        rec_q = np.empty((m, self._n_states * n_act))
        cell_arr, val_arr, idx = np.array(cells), np.array(values), np.arange(m)
        for cell in range(rec_q.shape[1]):  # each cell's latest value: forward-fill its updates
            upd = np.maximum.accumulate(np.where(cell_arr == cell, idx, -1))
            rec_q[:, cell] = np.where(upd >= 0, val_arr[np.maximum(upd, 0)], q0[cell])
        return rec_s, sliding_window_view(closes, CLOSES_LEN)[1:], rec_x, rec_q

    def _precompute(self, X: np.ndarray, C: np.ndarray) -> None:
        """Fill the components' prep columns the forming bar is evaluated from, rows at once.
        Called once after the last commit of a call, not per committed bar."""
        cfg = self.config
        lay = self._lay
        for f in lay.frames:
            b = f.start
            X[:, b + 4], X[:, b + 5] = st.mtf_prepare(VEC, X[:, b], X[:, b + 1], X[:, b + 3], self._tf_k)
        mean_m2 = st.seq_mean_m2
        X[:, lay.trend_momentum_ref] = C[:, -cfg.momentum_bars]
        b = lay.bollinger
        X[:, b], X[:, b + 1] = mean_m2(C[:, -(BB_PERIOD - 1):])
        k = cfg.volatility_changes
        v = lay.volatility
        X[:, v] = mean_m2(C[:, -(k - 1):])[0]
        tail = C[:, -k:]
        X[:, v + 1], X[:, v + 2] = mean_m2(tail[:, 1:] - tail[:, :-1])
        X[:, lay.rl_momentum_ref] = C[:, -cfg.rl_momentum_bars]
        r = lay.rl_mean
        X[:, r], X[:, r + 1] = mean_m2(C[:, -(cfg.rl_vol_bars - 1):])

    def _precompute_scalar(self, x: list[float], closes: list[float]) -> None:
        """`_precompute` for one row of Python floats (same order of operations)."""
        cfg = self.config
        lay = self._lay
        for f in lay.frames:
            b = f.start
            x[b + 4], x[b + 5] = st.mtf_prepare(SCALAR, x[b], x[b + 1], x[b + 3], self._tf_k)
        mean_m2 = st.seq_mean_m2_scalar
        x[lay.trend_momentum_ref] = closes[-cfg.momentum_bars]
        b = lay.bollinger
        x[b], x[b + 1] = mean_m2(closes[-(BB_PERIOD - 1):])
        k = cfg.volatility_changes
        v = lay.volatility
        x[v] = mean_m2(closes[-(k - 1):])[0]
        tail = closes[-k:]
        x[v + 1], x[v + 2] = mean_m2([tail[i + 1] - tail[i] for i in range(k - 1)])
        x[lay.rl_momentum_ref] = closes[-cfg.rl_momentum_bars]
        r = lay.rl_mean
        x[r], x[r + 1] = mean_m2(closes[-(cfg.rl_vol_bars - 1):])

    def _commit_scalar(self, slot: int, h: float, lo: float, c: float, ts: float, bar_no: int) -> None:
        """Commit one closed bar of one warm row (learner off) on Python floats."""
        row = self._rows.pop(slot, None)  # the lists the last tick used, if any: reused, not copied
        if row is None:
            s, x, q = self._S[slot].tolist(), self._X[slot].tolist(), self._Q[slot].tolist()
        else:
            s, x, _, q = row
        closes = self._C[slot].tolist()
        s = self.commit_row(s, x, q, closes, h, lo, c, ts, bar_no, int(self._keys[slot]))
        self._precompute_scalar(x, closes)
        self._S[slot] = s
        self._X[slot] = x
        self._Q[slot] = q
        self._C[slot] = closes
        self._rows[slot] = (s, x, self._lay.named(x), q)

    def _forget_rows(self, rows: np.ndarray) -> None:
        if self._rows:
            for r in rows.tolist():
                self._rows.pop(r, None)

    def _tentative(self, windows: Sequence[BarWindow], plans: list[_Plan],
                   errors: list[str]) -> list[SignalResult]:
        """Evaluate every window's forming bar against the committed state (nothing stored)."""
        cfg = self.config
        n = len(windows)
        results: list[SignalResult | None] = [None] * n
        live: list[int] = []
        for j in range(n):
            if plans[j].kind == _BAD or errors[j]:
                w = windows[j]
                bar_ts = math.nan if plans[j].kind == _BAD else float(w.ts[-1])
                results[j] = _invalid(w, errors[j], bar_ts)
            else:
                live.append(j)
        if not live:
            return results  # type: ignore[return-value]  # every slot was filled above: no None left
        slots = [plans[j].slot for j in live]
        fb_rows = [[w.open.item(-1), w.high.item(-1), w.low.item(-1), w.close.item(-1), w.ts.item(-1)]
                   for w in (windows[j] for j in live)]
        ok: list[bool]
        closed: list[float]
        if len(live) <= _SCALAR_MAX_ROWS:  # a few windows: Python floats beat numpy's call overhead
            last = self._last_ts
            ok = [0.0 < r[0] < math.inf and 0.0 < r[1] < math.inf and 0.0 < r[2] < math.inf
                  and 0.0 < r[3] < math.inf and math.isfinite(r[4]) and not r[4] <= last[sl]
                  for r, sl in zip(fb_rows, slots, strict=True)]
            closed = [self._S.item(sl, S_N) for sl in slots]
        else:
            fb_all = np.array(fb_rows, dtype=np.float64)
            prices = fb_all[:, :4]
            last_ts = np.array([self._last_ts[sl] for sl in slots])
            with np.errstate(invalid="ignore"):
                ok = ((np.isfinite(prices) & (prices > 0.0)).all(axis=1) & np.isfinite(fb_all[:, 4])
                      & ~(fb_all[:, 4] <= last_ts)).tolist()
            closed = self._S[slots, S_N].tolist()
        warm_idx = [i for i in range(len(live)) if ok[i] and closed[i] >= WARM_BARS]
        # rows evaluated in full: (index into live) -> (snapshot row, vote codes, direction, conf)
        full: dict[int, tuple[list[float], list[int], int, float]] = {}
        if 0 < len(warm_idx) <= _SCALAR_MAX_ROWS:
            for i in warm_idx:
                full[i] = self._core_one(slots[i], *fb_rows[i][1:])
        elif warm_idx:
            rows = np.array([slots[i] for i in warm_idx])
            sub = np.array([fb_rows[i] for i in warm_idx], dtype=np.float64)
            snaps, vote_rows, dirs, confs = self._core_rows(rows, sub[:, 1], sub[:, 2], sub[:, 3], sub[:, 4])
            for q, i in enumerate(warm_idx):
                full[i] = (snaps[q], vote_rows[q], dirs[q], confs[q])
        names, comps = st.VOTE_NAMES, st.COMPONENTS
        cold_snaps: dict[int, list[float]] | None = None
        for i, j in enumerate(live):
            w = windows[j]
            bar_ts = fb_rows[i][4]
            if not ok[i]:
                results[j] = _invalid(w, f"{w.symbol}: bad forming bar at window index {_first(w) + len(w.close) - 1} "
                                         f"(ts={bar_ts!r}, open/high/low/close="
                                         f"{'/'.join(repr(v) for v in fb_rows[i][:4])}); not evaluated",
                                      bar_ts)
                continue
            if closed[i] >= cfg.min_bars:
                snap, vr, d, conf = full[i]
                results[j] = SignalResult(
                    w.symbol, bar_ts, int(w.bar_count), names[d], conf,
                    {comps[0]: names[vr[0]], comps[1]: names[vr[1]], comps[2]: names[vr[2]],
                     comps[3]: names[vr[3]]},
                    IndicatorSnapshot(*snap), True, "")
                continue
            if i in full:
                snap = full[i][0]
            else:  # not warmed up: the general (seeding) path, for the report only
                if cold_snaps is None:
                    cold = [q for q in range(len(live)) if ok[q] and q not in full]
                    cold_snaps = dict(zip(cold, self._cold_snapshots(
                        [slots[q] for q in cold], np.array([fb_rows[q] for q in cold], dtype=np.float64)), strict=True))
                snap = cold_snaps[i]
            note = self._note[slots[i]]
            reason = f"{w.symbol}: {int(closed[i])} closed bars, need {cfg.min_bars}"
            results[j] = SignalResult(w.symbol, bar_ts, int(w.bar_count), "NONE", 0.0, dict(_NO_VOTES),
                                      IndicatorSnapshot(*snap), False,
                                      f"{reason} ({note})" if note else reason)
        return results  # type: ignore[return-value]  # each window got its result: no None left

    def _cold_snapshots(self, slots: list[int], fb: np.ndarray) -> list[list[float]]:
        S2, C2 = advance(self._S[slots], self._C[slots], fb[:, 1], fb[:, 2], fb[:, 3])
        rows: list[list[float]] = np.concatenate([fb[:, 3:4], outputs(S2, C2)], axis=1).tolist()
        return rows

    def core(self, xp: Backend, s: Any, parts: Any, q: Any, h: Any, lo: Any, c: Any,
             ts: Any) -> tuple[tuple[Any, ...], tuple[Any, Any, Any, Any], Any, Any]:
        """The forming bar of warm rows (closed bars >= WARM_BARS), given the committed state:
        (snapshot in IndicatorSnapshot order, votes in COMPONENTS order, direction, confidence).
        `s`: the indicator state, `parts`: the components' states (`_Layout.named`), `q`: the
        Q-table; as columns (S.T, named(X.T), q (n, states, actions)) with VEC, or one row of
        Python floats (q nested lists) with SCALAR; prices likewise."""
        cfg = self.config
        trend, bb, vol, rl, frames = parts
        ind = tuple.__new__(IndicatorState, s)
        new = steady_step(xp, ind, h, lo, c)
        line = new.macd_fast - new.ema_slow
        rsi = rsi_of(xp, new.gain, new.loss)
        upper, mid, lower = bollinger_forming(xp, bb, c)
        f = st.trend_features(xp, c, mid, rsi, line, c - trend.momentum_ref, cfg.rsi_overbought)
        if cfg.learner:
            trend_v = st.learner_vote(xp, st.learner_z(trend[st.TREND_WEIGHTS], f))
        else:
            trend_v = st.trend_vote(xp, st.trend_score(f, cfg.trend_weights))
        ups: Any = 0
        downs: Any = 0
        for fr, tf in zip(frames, self._tf_list, strict=True):
            up, down = st.mtf_trend(xp, fr, ts, c, tf, cfg.mtf_ema_period)
            ups = ups + up
            downs = downs + down
        mtf_v = st.mtf_vote(xp, ups, downs, cfg.mtf_min_agree)
        rel_vol = st.relative_volatility(xp, vol, c, c - ind.prev_close, cfg.volatility_changes)
        vol_v = st.volatility_vote(xp, c, upper, lower, rel_vol, cfg.volatility_min,
                                   cfg.volatility_max, cfg.volatility_rule)
        state = st.rl_forming_state(xp, rl, c, cfg.rl_vol_bars, self._vol_thr_list)
        rl_v = st.rl_vote(xp, st.rl_greedy(xp, *xp.q_at(q, state)))
        votes = (trend_v, mtf_v, vol_v, rl_v)
        direction, conf = st.consensus(xp, votes, self._cons_list, cfg.consensus_threshold)
        snap = (c, mid, new.ema_fast, new.ema_slow, rsi, line, new.signal, line - new.signal,
                upper, mid, lower, new.atr)
        return snap, votes, direction, conf

    def _core_rows(self, rows: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray,
                   ts: np.ndarray) -> tuple[list[list[float]], list[list[int]], list[int], list[float]]:
        snap, votes, direction, conf = self.core(VEC, self._S[rows].T, self._lay.named(self._X[rows].T),
                                                 self._Q[rows], h, lo, c, ts)
        return (np.stack(snap, axis=1).tolist(), np.stack(votes, axis=1).tolist(), direction.tolist(),
                conf.tolist())

    def _core_one(self, slot: int, h: float, lo: float, c: float,
                  ts: float) -> tuple[list[float], list[int], int, float]:
        row = self._rows.get(slot)
        if row is None:
            x = self._X[slot].tolist()
            row = self._rows[slot] = (self._S[slot].tolist(), x, self._lay.named(x), self._Q[slot].tolist())
        snap, votes, direction, conf = self.core(SCALAR, row[0], row[2], row[3], h, lo, c, ts)
        return list(snap), list(votes), direction, conf


def _run(step: Callable[[Any, Any], Any], y0: float, xs: np.ndarray) -> np.ndarray:
    """y_i = step(y_{i-1}, x_i) from y0, as a tight C-driven loop over Python floats."""
    out = np.fromiter(accumulate(xs.tolist(), step, initial=y0), dtype=np.float64, count=xs.shape[0] + 1)
    return out[1:]


def _bad_closed_reason(w: BarWindow, idx: int, ts: float, o: float, h: float, lo: float,
                       c: float) -> str:
    return (f"{w.symbol}: bad closed bar at window index {_first(w) + idx} (ts={ts!r}, "
            f"open/high/low/close={o!r}/{h!r}/{lo!r}/{c!r}); state dropped, rebuilding "
            "from the bars after it")


def _first(w: BarWindow) -> int:
    return int(getattr(w, "first_index", 0))


def _invalid(w: BarWindow, reason: str, bar_ts: float = math.nan) -> SignalResult:
    sym = w.symbol if isinstance(getattr(w, "symbol", None), str) else ""
    try:
        count = int(w.bar_count)
    except (TypeError, ValueError, AttributeError):
        count = 0
    return SignalResult(sym, bar_ts, count, "NONE", 0.0, dict(_NO_VOTES), _NAN_SNAPSHOT, False, reason)
