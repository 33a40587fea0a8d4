"""Where the paper market's clock resumes after a restart: never backwards."""

from __future__ import annotations

import pytest

from shared.market_clock import MarketClock, bar_after, resume_clock, wall_replay_delay

W = 1_800_000_030.0  # a run's start, 30 s into a minute


def test_a_new_account_starts_at_the_run_and_follows_the_wall() -> None:
    c = resume_clock(None, run_wall=W, now_wall=W + 10.0, bar_seconds=0.5)
    assert c.origin_ts == 1_800_000_000 and c.next_bar == 20 and c.run_bars == 0
    assert c.market_us == (1_800_000_000 + 20 * 60) * 1_000_000


def test_a_venue_restarted_in_its_run_catches_up_with_the_wall() -> None:
    saved = MarketClock(origin_ts=1_799_990_000, next_bar=510, run_wall=W, run_bars=500)
    c = resume_clock(saved, run_wall=W, now_wall=W + 30.0, bar_seconds=1.0)
    assert (c.origin_ts, c.run_bars, c.next_bar) == (1_799_990_000, 500, 530)


def test_a_new_run_resumes_where_the_last_one_stopped_hours_later() -> None:
    # The old behaviour restarted the market at the new run's wall clock: 10 h of a 60x market
    # (36,000 bars) behind the last run's fills. Nothing traded while the system was down.
    saved = MarketClock(origin_ts=1_799_000_000, next_bar=36_000, run_wall=W - 36_000, run_bars=0)
    c = resume_clock(saved, run_wall=W, now_wall=W + 2.0, bar_seconds=1.0)
    assert (c.origin_ts, c.run_bars, c.next_bar) == (1_799_000_000, 36_000, 36_002)
    assert c.market_us > saved.market_us - 1


def test_the_clock_never_starts_before_what_the_account_holds() -> None:
    saved = MarketClock(origin_ts=1_800_000_000, next_bar=100, run_wall=W, run_bars=90, joined={"SYN_0001": 40})
    # the wall says less than the saved position (a replay that ran ahead of its wall model)
    assert resume_clock(saved, run_wall=W, now_wall=W, bar_seconds=1.0).next_bar == 100
    # a fill from the journal, after the last snapshot: the clock resumes after it
    fill_us = (1_800_000_000 + 60 * 104 + 15) * 1_000_000
    c = resume_clock(saved, run_wall=W + 1, now_wall=W + 1, bar_seconds=1.0, newest_event_us=fill_us)
    assert c.next_bar == 105 and c.joined == {"SYN_0001": 40}
    # an account saved before the clock was (no saved clock): its fills still bound the start
    c = resume_clock(None, run_wall=W, now_wall=W, bar_seconds=1.0, newest_event_us=fill_us + 3_600_000_000)
    assert c.market_us > fill_us + 3_600_000_000


def test_bar_after_and_bad_input() -> None:
    assert bar_after(1_800_000_000, 0) == 0
    assert bar_after(1_800_000_000, 1_700_000_000_000_000) == 0
    assert bar_after(1_800_000_000, 1_800_000_000_000_000) == 1
    assert bar_after(1_800_000_000, (1_800_000_000 + 59) * 1_000_000) == 1
    with pytest.raises(ValueError, match="bar_seconds"):
        resume_clock(None, run_wall=W, now_wall=W, bar_seconds=0)
    with pytest.raises(ValueError, match="clock"):
        resume_clock(None, run_wall=W, now_wall=W, bar_seconds=60, clock="sundial")


# ---- the wall clock: the market's time is the wall's ----------------------------------------

def test_on_the_wall_clock_a_venue_restarted_in_its_run_resumes_at_the_bar_the_wall_is_in() -> None:
    first = resume_clock(None, run_wall=W, now_wall=W, bar_seconds=60, clock="wall")
    assert (first.origin_ts, first.next_bar) == (1_800_000_000, 0)
    # killed and restarted 50 s into the run (20 s into the next minute), nothing saved since
    # the start: the run-relative count says bar 0 (a minute behind); the wall is in bar 1
    c = resume_clock(first, run_wall=W, now_wall=W + 50, bar_seconds=60, clock="wall")
    assert c.next_bar == 1 and c.market_us <= (W + 50) * 1_000_000 < c.market_us + 60_000_000
    assert resume_clock(first, run_wall=W, now_wall=W + 50, bar_seconds=60).next_bar == 0  # replay: run time


def test_on_the_wall_clock_a_new_run_resumes_at_the_wall_not_where_the_last_run_stopped() -> None:
    # stopped at bar 10, started again ten hours later: the live market kept trading meanwhile
    saved = MarketClock(origin_ts=1_800_000_000, next_bar=10, run_wall=W, run_bars=0)
    later = W + 36_000
    c = resume_clock(saved, run_wall=later, now_wall=later, bar_seconds=60, clock="wall")
    assert c.next_bar == 600 and c.origin_ts == 1_800_000_000 and c.run_bars == 10
    assert resume_clock(saved, run_wall=later, now_wall=later, bar_seconds=60).next_bar == 10  # replay


def test_on_the_wall_clock_what_the_account_holds_still_bounds_the_start() -> None:
    # saved at stop during minute 5 (next bar 6), restarted in the same minute: bar 6, ahead of the
    # wall, never back into minute 5 where its last fills are
    saved = MarketClock(origin_ts=1_800_000_000, next_bar=6, run_wall=W, run_bars=0)
    now = 1_800_000_000 + 5 * 60 + 40
    assert resume_clock(saved, run_wall=now, now_wall=now, bar_seconds=60, clock="wall").next_bar == 6
    fill_us = (1_800_000_000 + 7 * 60 + 15) * 1_000_000  # in the journal only, a clock a replay run left
    assert resume_clock(saved, run_wall=now, now_wall=now, bar_seconds=60, newest_event_us=fill_us,
                        clock="wall").next_bar == 8


def test_the_wall_replay_catches_up_a_bar_or_waits_a_bar_for_the_wall_never_longer() -> None:
    bar_us = 1_800_000_060_000_000
    assert wall_replay_delay(bar_us, 1_800_000_080.0) == pytest.approx(-20.0)  # quarters past: replay at once
    assert wall_replay_delay(bar_us, 1_800_000_260.0) == -60.0  # at most one bar in a burst
    assert wall_replay_delay(bar_us, 1_800_000_035.0) == pytest.approx(25.0)  # resumed ahead: wait for the wall
    assert wall_replay_delay(bar_us, 1_800_000_060.0 - 3600) == 0.0  # an hour ahead: not waited out
