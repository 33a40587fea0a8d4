"""The two number backends every signal component is written against, so each rule exists once.

A component takes `xp` and its inputs, which are either numpy columns (one row per symbol, or
per tick in the backtest's series) with `VEC`, or Python floats with `SCALAR` (a few symbols, where
numpy's ~1 us per call would dominate). Components use only `+ - * /`, comparisons, `&`, `|` and
the functions below, all elementwise IEEE operations, so the two backends give the same bits.
(The one difference, NaN inside max/sign, cannot arise: the engine evaluates only validated,
warmed-up rows.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Vec:
    """numpy columns."""

    where = staticmethod(np.where)
    sqrt = staticmethod(np.sqrt)
    sign = staticmethod(np.sign)
    maximum = staticmethod(np.maximum)
    floor = staticmethod(np.floor)
    isfinite = staticmethod(np.isfinite)
    logical_not = staticmethod(np.logical_not)

    @staticmethod
    def to_int(a: Any) -> Any:
        return np.asarray(a).astype(np.int64)

    @staticmethod
    def q_at(q: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q (n, n_states, n_actions), state (n,) -> the three action values per row."""
        qs = q[np.arange(state.shape[0]), state]
        return qs[:, 0], qs[:, 1], qs[:, 2]


def _where(cond: Any, a: Any, b: Any) -> Any:
    return a if cond else b


def _sign(v: float) -> float:
    return 1.0 if v > 0.0 else -1.0 if v < 0.0 else 0.0


class Scalar:
    """Python floats."""

    where = staticmethod(_where)
    sqrt = staticmethod(math.sqrt)
    sign = staticmethod(_sign)
    maximum = staticmethod(max)
    floor = staticmethod(math.floor)
    isfinite = staticmethod(math.isfinite)

    @staticmethod
    def logical_not(a: Any) -> bool:
        return not a

    to_int = staticmethod(int)

    @staticmethod
    def q_at(q: list[list[float]], state: int) -> list[float]:
        """q as nested lists [state][action] -> the three action values."""
        return q[state]


VEC = Vec()
SCALAR = Scalar()
Backend = Any  # VEC or SCALAR (duck-typed: the components only call the names above)
