"""Turning ticks into 1-minute bars: a pure rule the worker applies before writing its ring."""

from __future__ import annotations

from typing import NamedTuple

from .marketdata import BAR_SECONDS


class BarUpdate(NamedTuple):
    kind: str  # "new" (start a bar), "update" (change the forming bar), "late" (older than the forming bar: ignored)
    ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float


def apply_tick(last_bar: tuple[float, float, float, float, float, float] | None, price: float,
               size: float, exch_ts_us: int) -> BarUpdate:
    bar_ts = float((exch_ts_us // 1_000_000) // BAR_SECONDS * BAR_SECONDS)
    if last_bar is None or bar_ts > last_bar[0]:
        return BarUpdate("new", bar_ts, price, price, price, price, size)
    ts, o, h, low, _c, v = last_bar
    if bar_ts < ts:
        return BarUpdate("late", bar_ts, o, h, low, _c, v)
    return BarUpdate("update", ts, o, max(h, price), min(low, price), price, v + size)
