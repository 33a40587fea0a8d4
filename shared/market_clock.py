"""The paper venue's market clock across restarts: where the replay resumes, as a pure function.

The replayed market runs on its own clock (bar k opens at origin + 60 k, epoch seconds), faster
than the wall. That clock is part of the paper account: fills, orders and candles carry its
times, the bots' stop cool-down and the ledger's checkpoints read them, so it must never run
backwards. A restart resumes it:

- a venue restarted inside one run (a crash, a kill) catches up with the wall: the exchange
  "kept trading" while it was away, as a real venue would;
- a new run on the same run dir resumes where the last run stopped (nothing traded while the
  whole system was down, so no time passed on the paper market);
- either way, never before the last saved position or the newest fill or order update the
  account holds (a snapshot may be a couple of seconds older than the journal after a SIGKILL).

That is the "replay" clock. On the "wall" clock the market's time is the wall's (one bar per
wall minute), so a venue starting, in its run or a new one, resumes at the bar the wall is in:
the market kept trading while the system was down, as a live one does. The saved position and
the account's newest event still bound it from below; when they lie ahead of the wall (saved
in this very minute, or by a replay run that ran ahead), the replay waits for the wall up to
one bar (`wall_replay_delay`) and beyond that runs that far ahead: never backwards.
"""

from __future__ import annotations

import msgspec

from .marketdata import BAR_SECONDS


class MarketClock(msgspec.Struct, frozen=True, kw_only=True):
    """What the venue saves with the account (and restores at start)."""

    origin_ts: int  # epoch s the first live bar of the account's market opened (bar-aligned)
    next_bar: int  # lockstep index of the next bar to replay (bar k opens at origin_ts + 60 k)
    run_wall: float  # wall time (epoch s) the run that wrote this started: identifies the run
    run_bars: int  # next_bar when that run started
    # symbol -> lockstep index of the bar a market joined at (markets made after the first
    # bar, e.g. synthetic ones created on first reference); absent = 0
    joined: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def market_us(self) -> int:
        """The market time at which bar `next_bar` opens, in µs."""
        return (self.origin_ts + BAR_SECONDS * self.next_bar) * 1_000_000


def bar_after(origin_ts: int, ts_us: int) -> int:
    """Index of the first bar that opens strictly after `ts_us` (0 for times before the origin)."""
    if ts_us <= 0:
        return 0
    return max(0, (ts_us // 1_000_000 - origin_ts) // BAR_SECONDS + 1)


CLOCKS = ("replay", "wall")


def resume_clock(saved: MarketClock | None, *, run_wall: float, now_wall: float, bar_seconds: float,
                 newest_event_us: int = 0, clock: str = "replay") -> MarketClock:
    """The clock a venue starting now continues from. `run_wall`: when this run started (the
    supervisor's start; a standalone venue passes its own start, i.e. now). `bar_seconds`: wall
    seconds per replayed bar. `newest_event_us`: the newest fill or order time in the account.
    `clock`: "replay" or "wall" (the market's time is the wall's)."""
    if bar_seconds <= 0:
        raise ValueError(f"bar_seconds must be > 0, got {bar_seconds}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if saved is None:
        origin = int(run_wall) - int(run_wall) % BAR_SECONDS
        run_bars, floor, joined = 0, 0, {}
    else:
        origin, floor, joined = saved.origin_ts, saved.next_bar, dict(saved.joined)
        # The same run (a restarted venue): its anchor stands and the wall says how far the
        # market got. A new run: the market resumes where the last one stopped.
        run_bars = saved.run_bars if saved.run_wall == run_wall else saved.next_bar
    if clock == "wall":
        by_wall = max(0, (int(now_wall) - origin) // BAR_SECONDS)  # the bar the wall is in
    else:
        by_wall = run_bars + max(0, int((now_wall - run_wall) / bar_seconds))
    next_bar = max(floor, by_wall, bar_after(origin, newest_event_us))
    return MarketClock(origin_ts=origin, next_bar=next_bar, run_wall=run_wall, run_bars=run_bars, joined=joined)


def wall_replay_delay(market_us: int, now_wall: float) -> float:
    """Wall clock: seconds from now until the replay's first tick (at market time `market_us`,
    a bar's open) is due, so that tick times are the wall's. Negative, down to one bar: the
    market is behind by the quarters of the bar already past, replayed at once. Positive, up to
    one bar: the resumed clock is ahead of the wall (saved during this minute), so wait for it.
    A longer lead (a clock saved by a replay run) is not waited out: 0, the market runs at real
    time that far ahead rather than go silent for hours or back in time."""
    lead = market_us / 1e6 - now_wall
    if lead > BAR_SECONDS:
        return 0.0
    return max(lead, -float(BAR_SECONDS))


__all__ = ["CLOCKS", "MarketClock", "bar_after", "resume_clock", "wall_replay_delay"]
