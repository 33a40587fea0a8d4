"""The paper market's clock is part of the paper account: a restarted venue (a new run on the same
run dir, or a killed venue) continues it and never stamps anything before what it already said."""

from __future__ import annotations

import asyncio
import json
import time
from itertools import pairwise
from pathlib import Path

from shared.matching import OrderRequest
from workers.venue import PaperVenue, VenueSettings

FAST = 0.04  # wall seconds per replayed bar


def settings(state: Path, run_wall: float) -> VenueSettings:
    return VenueSettings(bar_seconds=FAST, history_bars=200, state_file=str(state), start_ts=run_wall)


def market_buy(venue: PaperVenue) -> int:
    """A market order's fill time (µs, the market clock)."""
    venue.engine.place_order(OrderRequest(product_id=27, side="buy", size=1, order_type="market_order"))
    venue.ws.publish_engine_events()
    return venue.engine.fills[-1].timestamp


async def test_a_new_run_resumes_the_market_clock_where_the_last_run_stopped(tmp_path: Path) -> None:
    state = tmp_path / "paper-account.json"
    first = PaperVenue(settings(state, time.time() - 4.0), ["BTCUSD", "ETHUSD"])  # 4 s in: ~100 bars
    await first.start()
    await asyncio.sleep(0.3)
    first_fill = market_buy(first)
    await first.stop()
    stopped_at = first.market_us
    assert stopped_at > (time.time() + 3600) * 1e6  # the 1500x market ran hours ahead of the wall
    saved = json.loads(state.read_text())["market_clock"]
    assert saved["next_bar"] >= 100

    # The next run starts now. Before, the market restarted at the wall clock: hours behind.
    second = PaperVenue(settings(state, time.time()), ["BTCUSD", "ETHUSD"])
    assert second.market_us >= stopped_at
    btc = second.markets["BTCUSD"]
    times = [int(t) for t in btc.history.ts] + [b[0] for b in btc.live]
    assert all(b - a == 60 for a, b in pairwise(times))  # one continuous series, no hole
    assert times[-1] * 1_000_000 < second.market_us <= (times[-1] + 60) * 1_000_000
    await second.start()
    try:
        assert market_buy(second) > first_fill
    finally:
        await second.stop()


async def test_a_killed_venue_resumes_after_every_fill_its_journal_holds(tmp_path: Path) -> None:
    """The snapshot (with the clock) is written every few seconds; a fill made after it is in the
    journal only. A venue killed then starts after that fill, not at the older saved clock."""
    state = tmp_path / "paper-account.json"
    first = PaperVenue(VenueSettings(bar_seconds=FAST, history_bars=200, state_file=str(state),
                                     state_save_interval_s=3600, start_ts=time.time()), ["BTCUSD"])
    await first.start()
    await asyncio.sleep(0.5)  # a dozen bars past the snapshot written at start
    fill_us = market_buy(first)
    for t in first._tasks:  # SIGKILL: no final snapshot
        t.cancel()
    await first._close_http()
    next_bar = json.loads(state.read_text())["market_clock"]["next_bar"]
    assert next_bar * 60 * 1_000_000 < fill_us - first._start_ts * 1_000_000
    second = PaperVenue(VenueSettings(bar_seconds=FAST, history_bars=200, state_file=str(state),
                                      start_ts=time.time()), ["BTCUSD"])
    assert second.market_us > fill_us
    assert [f.timestamp for f in second.engine.fills] == [fill_us]


async def test_a_market_that_joined_late_keeps_its_place_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "paper-account.json"
    first = PaperVenue(settings(state, time.time()), ["ETHUSD"])
    await first.start()
    for _ in range(300):
        if first.markets["ETHUSD"].bar[0]:
            break
        await asyncio.sleep(0.01)
    syn = first.market("SYN_0003")  # joins the lockstep at the next bar
    joined = syn.joined
    assert joined > 0
    await asyncio.sleep(0.3)
    await first.stop()
    second = PaperVenue(settings(state, time.time()), ["ETHUSD"])
    again = second.markets["SYN_0003"]
    assert again.joined == joined
    assert again.live[-1][0] == second.markets["ETHUSD"].live[-1][0]  # in lockstep
    assert int(again.history.ts[-1]) == second._start_ts + 60 * (joined - 1)  # same history as before


# ---- the wall clock: the market's time is the wall's, and still never runs backwards ----------

def wall_settings(state: Path) -> VenueSettings:
    # lockstep arrivals: each quarter's tick at its start, so the replay lines up with the wall
    # as soon as the quarters already past are replayed (independent arrivals send the current
    # quarter's tick up to 15 s into it)
    return VenueSettings(clock="wall", history_bars=200, state_file=str(state), start_ts=time.time(),
                         arrivals="lockstep")


async def lined_up_with_the_wall(venue: PaperVenue) -> None:
    """Wait (bounded) until the quarters of this minute already past have replayed."""
    for _ in range(300):
        if venue.ticks_replayed and abs(venue.market_us / 1e6 - time.time()) <= 16:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"market {venue.market_us / 1e6:.0f} never lined up with the wall {time.time():.0f}")


async def test_a_wall_clock_venue_restarted_in_its_minute_waits_for_the_wall_after_its_fill(tmp_path: Path) -> None:
    if time.time() % 60 > 50:  # the restart must land in the minute of the fill: start one
        await asyncio.sleep(60.5 - time.time() % 60)
    state = tmp_path / "paper-account.json"
    first = PaperVenue(wall_settings(state), ["BTCUSD"])
    await first.start()
    await lined_up_with_the_wall(first)
    fill_us = market_buy(first)
    await first.stop()

    second = PaperVenue(wall_settings(state), ["BTCUSD"])
    # the fill's minute is not replayed again: the market resumes at the next one, ahead of
    # the wall by less than a bar...
    assert second.market_us > fill_us
    assert 0 < second.market_us / 1e6 - time.time() <= 60
    await second.start()
    try:
        await asyncio.sleep(0.3)
        assert second.ticks_replayed == 0  # ...and waits for the wall rather than run that far ahead
        assert market_buy(second) > fill_us
    finally:
        await second.stop()


async def test_a_wall_clock_account_resumes_at_the_wall_a_replay_one_where_it_stopped(tmp_path: Path) -> None:
    state = tmp_path / "paper-account.json"
    first = PaperVenue(wall_settings(state), ["BTCUSD"])
    await first.start()
    await lined_up_with_the_wall(first)
    await first.stop()
    # as the account was saved had it stopped ten minutes ago, in another run
    saved = json.loads(state.read_text())
    saved["market_clock"]["origin_ts"] -= 600
    saved["market_clock"]["run_wall"] -= 600
    state.write_text(json.dumps(saved))
    stopped_us = (saved["market_clock"]["origin_ts"] + 60 * saved["market_clock"]["next_bar"]) * 1_000_000

    wall = PaperVenue(wall_settings(state), ["BTCUSD"])  # the live market kept trading meanwhile
    now = time.time()
    assert wall.market_us > stopped_us
    assert 0 <= now - wall.market_us / 1e6 < 60  # the minute the wall is in
    btc = wall.markets["BTCUSD"]
    times = [int(t) for t in btc.history.ts] + [b[0] for b in btc.live]
    assert all(b - a == 60 for a, b in pairwise(times))  # the ten minutes replayed, no hole
    assert times[-1] * 1_000_000 < wall.market_us
    await wall.start()
    try:
        await lined_up_with_the_wall(wall)
    finally:
        await wall.stop()

    state.write_text(json.dumps(saved))  # the same account on the replay clock: nothing traded meanwhile
    replay = PaperVenue(VenueSettings(bar_seconds=FAST, history_bars=200, state_file=str(state),
                                      start_ts=time.time()), ["BTCUSD"])
    assert stopped_us <= replay.market_us < stopped_us + 2 * 60_000_000
