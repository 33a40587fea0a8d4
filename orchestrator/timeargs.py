"""UTC times as a trader types them on the command line (`--from 2017-01-01`, `--to
2017-03-01T12:00`), shared by `orchestrate backtest` and `orchestrate download`."""

from __future__ import annotations

import datetime as dt
import re

DAY_S = 86_400
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EPOCH = re.compile(r"^\d{9,11}$")


class TimeArgError(ValueError):
    """A time option that cannot be read; the message names the option and the text."""


def parse_utc(text: str, option: str, *, end_of_day: bool = False) -> int:
    """Epoch seconds of a UTC date (`YYYY-MM-DD`), ISO time (`YYYY-MM-DDTHH:MM[:SS]`, optional `Z`
    or offset; no offset means UTC) or epoch seconds. A bare date for an end bound
    (`end_of_day=True`) means the whole day: its last second, so `--to 2017-01-31` includes the
    bar that opens at 23:59."""
    raw = text.strip()
    if _EPOCH.match(raw):
        return int(raw)
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeArgError(f"{option} {text!r}: not a UTC date (YYYY-MM-DD), ISO time "
                           "(YYYY-MM-DDTHH:MM[:SS]) or epoch seconds") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = int(when.timestamp())
    if end_of_day and _DATE_ONLY.match(raw):
        seconds += DAY_S - 1
    return seconds


def utc_text(ts: float) -> str:
    """`2017-01-31 23:59` (UTC) for messages and tables."""
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%d %H:%M")


def duration_text(seconds: float) -> str:
    """`3 d 4 h`, `2 h 5 min`, `7 min`: how long a gap lasted, as a trader would say it."""
    s = int(seconds)
    d, rem = divmod(s, DAY_S)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min" if m else f"{s} s"


__all__ = ["TimeArgError", "duration_text", "parse_utc", "utc_text"]
