"""The paper venue's arrival model over a real websocket (shared/arrivals.py): every tick of
every bar arrives once and in order per symbol, at the prices of the bar's four ticks; inside a
quarter the symbols arrive in the order of their own seeded times ("independent") or in the
lockstep groups ("lockstep"); no tick is sent before its due time."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

import aiohttp
import numpy as np
import pytest

from shared.arrivals import SEND_WINDOW_S, quarter_phases, send_order, symbol_key
from shared.marketdata import BAR_SECONDS, candle_ticks
from workers.venue import PaperVenue, VenueSettings

SYMBOLS = [f"SYN_{i:04d}" for i in range(1, 7)]
BARS = 3  # whole bars checked per symbol
QUARTER_US = BAR_SECONDS // 4 * 1_000_000


class Send(NamedTuple):
    """One wake-up of the venue that sent ticks."""
    at: float  # loop time
    quarter_start: float  # loop time the quarter began (independent arrivals)
    market_s: int  # the quarter's market time
    symbols: list[str]


async def trades(venue: PaperVenue, bars: int) -> list[tuple[str, int, float]]:
    """(symbol, market µs, price) of compact `trades` frames, in arrival order, until every symbol
    has `bars` whole bars after its first bar start (bounded by frames, not wall time)."""
    out: list[tuple[str, int, float]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(venue.public_ws_url) as ws:
        await ws.send_json({"type": "subscribe", "payload": {"channels": [{"name": "trades", "symbols": SYMBOLS}]}})
        limit = len(SYMBOLS) * 4 * (bars + 3)
        while len(out) < limit:
            msg = await ws.receive(timeout=30)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            frame: dict[str, Any] = msg.json()
            if frame.get("type") == "trades":
                out.append((frame["sy"], frame["t"], float(frame["p"])))
    return out


def whole_bars(stream: Sequence[tuple[str, int, float]]) -> dict[str, list[tuple[int, float]]]:
    """Each symbol's (µs, price) from its first bar start on."""
    per: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for sym, t, p in stream:
        if per[sym] or t % (BAR_SECONDS * 1_000_000) == 0:
            per[sym].append((t, p))
    return per


async def run_venue(arrivals: str, bar_seconds: float = 0.4) -> tuple[PaperVenue, list[tuple[str, int, float]],
                                                                    list[Send]]:
    """A venue replaying SYMBOLS; its stream, and each send of ticks."""
    venue = PaperVenue(VenueSettings(bar_seconds=bar_seconds, history_bars=50, seed=3, arrivals=arrivals), SYMBOLS)
    replay = venue.replay
    sends: list[Send] = []
    quarter_start = [math.nan]
    loop = asyncio.get_running_loop()
    independent_quarter, send_ticks = replay._independent_quarter, replay._send_ticks

    async def observed_quarter(lp: asyncio.AbstractEventLoop, k: int, start: float, step: float) -> None:
        quarter_start[0] = start
        await independent_quarter(lp, k, start, step)

    def observed_send(k: int, markets: Sequence[Any]) -> None:
        sends.append(Send(loop.time(), quarter_start[0], replay.market_us // 1_000_000, [m.symbol for m in markets]))
        send_ticks(k, markets)

    replay._independent_quarter = observed_quarter  # type: ignore[method-assign,assignment]
    replay._send_ticks = observed_send  # type: ignore[method-assign]
    await venue.start()
    try:
        stream = await trades(venue, BARS)
    finally:
        await venue.stop()
    return venue, stream, sends


def check_every_tick_once_in_order(venue: PaperVenue, stream: Sequence[tuple[str, int, float]]) -> None:
    per = whole_bars(stream)
    assert set(per) == set(SYMBOLS)
    for sym, ticks in per.items():
        times = [t for t, _ in ticks]
        assert times == list(range(times[0], times[0] + QUARTER_US * len(times), QUARTER_US)), sym
        live = {b[0] * 1_000_000: b for b in venue.replay.markets[sym].live}
        complete = [i for i in range(0, len(ticks) - 3, 4)]
        assert len(complete) >= BARS, (sym, len(ticks))
        for i in complete:
            t0, o, h, low, c, _ = live[ticks[i][0]]
            assert [p for _, p in ticks[i:i + 4]] == pytest.approx(candle_ticks(o, h, low, c), rel=1e-12), sym


def quarter_orders(stream: Sequence[tuple[str, int, float]]) -> list[tuple[int, list[str]]]:
    """(market µs, symbols in arrival order) of every quarter all symbols traded in."""
    by_t: dict[int, list[str]] = defaultdict(list)
    for sym, t, _ in stream:
        by_t[t].append(sym)
    return [(t, syms) for t, syms in by_t.items() if sorted(syms) == sorted(SYMBOLS)]


async def test_independent_arrivals_every_tick_once_in_the_order_of_each_symbols_own_times() -> None:
    venue, stream, sends = await run_venue("independent")
    check_every_tick_once_in_order(venue, stream)
    keys = np.array([symbol_key(3, s) for s in SYMBOLS], dtype=np.uint64)
    quarters = quarter_orders(stream)
    assert len(quarters) >= 4 * BARS
    for t_us, syms in quarters:
        t_s = t_us // 1_000_000
        bar, k = t_s // BAR_SECONDS, t_s % BAR_SECONDS // (BAR_SECONDS // 4)
        expected = [SYMBOLS[i] for i in send_order(quarter_phases("independent", keys, bar, k))]
        assert syms == expected, (t_us, syms, expected)
    # Never before its time: each tick leaves at its own phase of its quarter at the earliest (less
    # the send window); lateness is the machine's and not checked here.
    step = venue.settings.bar_seconds / 4
    for send in sends:
        bar, k = send.market_s // BAR_SECONDS, send.market_s % BAR_SECONDS // (BAR_SECONDS // 4)
        phases = quarter_phases("independent", keys, bar, k)
        for sym in send.symbols:
            due = send.quarter_start + float(phases[SYMBOLS.index(sym)]) * step
            assert send.at >= due - SEND_WINDOW_S - 1e-6, (send, sym, due)
    # six symbols over a 100 ms quarter: most wake-ups send one tick (all six together would be lockstep)
    assert sum(len(s.symbols) == 1 for s in sends) >= len(sends) // 2


async def test_lockstep_arrivals_every_tick_once_in_groups() -> None:
    venue, stream, sends = await run_venue("lockstep")
    check_every_tick_once_in_order(venue, stream)
    quarters = quarter_orders(stream)
    assert len(quarters) >= 4 * BARS
    for _, syms in quarters:
        assert syms == SYMBOLS  # six markets, eight groups: one group each, in listing order
    assert all(len(s.symbols) == 1 for s in sends)
