"""Train/test ranges and walk-forward windows over the bars a range holds. Pure."""

from __future__ import annotations

import datetime as dt

import msgspec
import numpy as np

BAR_SECONDS = 60


class RangeError(ValueError):
    """A bad range; the message names the option."""


class Window(msgspec.Struct, frozen=True, kw_only=True):
    """Inclusive bar open times (epoch s) of a traded range."""

    start_ts: float
    end_ts: float

    def label(self) -> str:
        f = "%Y-%m-%d %H:%M"
        return (f"{dt.datetime.fromtimestamp(self.start_ts, dt.timezone.utc):{f}}.."
                f"{dt.datetime.fromtimestamp(self.end_ts, dt.timezone.utc):{f}}")


class WalkForwardWindow(msgspec.Struct, frozen=True, kw_only=True):
    index: int  # 1-based
    train: Window
    test: Window


def bars_in(ts: np.ndarray, window: Window) -> int:
    return int(np.count_nonzero((ts >= window.start_ts) & (ts <= window.end_ts)))


def walk_forward(ts: np.ndarray, whole: Window, n: int, train_fraction: float) -> list[WalkForwardWindow]:
    """N consecutive windows over the bars of `whole` (equal bar counts, so calendar gaps in the data
    do not leave a window empty); each window's first `train_fraction` of bars is its train range,
    the rest its test range. `ts`: sorted bar open times (the union over symbols)."""
    if n < 1:
        raise RangeError(f"--walk-forward: needs N >= 1, got {n}")
    if not 0.0 < train_fraction < 1.0:
        raise RangeError(f"--walk-forward: train share must be between 0 and 1, got {train_fraction}")
    inside = np.unique(ts[(ts >= whole.start_ts) & (ts <= whole.end_ts)])
    per = len(inside) // n
    n_train = int(per * train_fraction)
    if n_train < 2 or per - n_train < 2:
        raise RangeError(f"--walk-forward {n}: {len(inside)} bars in {whole.label()} make windows of "
                         f"{per} bars, too few to split into train and test")
    out = []
    for i in range(n):
        chunk = inside[i * per:(i + 1) * per] if i < n - 1 else inside[i * per:]
        out.append(WalkForwardWindow(
            index=i + 1,
            train=Window(start_ts=float(chunk[0]), end_ts=float(chunk[n_train - 1])),
            test=Window(start_ts=float(chunk[n_train]), end_ts=float(chunk[-1]))))
    return out
