"""The bots' start-up history reads, as the gateway serves them within the rate budget (pure: no I/O).

Every worker asks the gateway for its symbol's candles once at start; a worker with no answer in
30 s asks again, and one answered with an error asks again 2 s later (workers/worker.py). At 1,000
symbols the requests used to snowball once the budget was spent: each repeat was a read of its
own (a ticker for the venue's clock and the candles, 6 units), refused reads answered errors that
brought the repeats sooner, and the repeats queued behind each other. Now:

- one read per symbol: a repeat (or a second asker) while the symbol's read is queued or under way
  joins it and gets its answer (`ReadAskers`);
- a read refused for want of budget waits for the budget and goes again, in turn, instead of
  answering an error (HISTORY_BUDGET_WAIT_S bounds the wait; the repeats it would have drawn join
  it);
- the venue's clock comes from the trades the gateway already hears when one is fresh
  (`venue_clock_us`), so a read costs the candles' 3 units, not 6.
"""

from __future__ import annotations

# How long a history read may wait for rate budget in all before it answers an error: a window
# (Delta's 5 minutes) and a little more, so a spent window always refills within it.
HISTORY_BUDGET_WAIT_S = 330.0


class ReadAskers:
    """Who waits for which read: one read per key (a symbol's history, a bot's account read), every
    asker answered by it.

    A read takes its askers (`take`) when it is done for a history (any ask until then joins it:
    candles are candles) or when it starts for an account read (an ask after that starts a read of
    its own: a read already under way may predate the asker's last orders). Bounded: one entry per
    key waiting (`max_keys`), each holding the distinct askers (a worker's ZeroMQ identity)."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
        self.max_keys = max_keys
        self._waiting: dict[str, dict[bytes, None]] = {}  # key -> askers, in order of asking
        self.joined = 0  # asks that joined a read already waiting (repeats), since start

    def ask(self, key: str, asker: bytes) -> bool:
        """An asker wants `key`: True if a read must start for it, False if it joins the one
        waiting. Beyond `max_keys` keys waiting every ask starts its own read, unremembered."""
        askers = self._waiting.get(key)
        if askers is None:
            if len(self._waiting) >= self.max_keys:
                return True
            self._waiting[key] = {asker: None}
            return True
        askers[asker] = None
        self.joined += 1
        return False

    def take(self, key: str, asker: bytes) -> list[bytes]:
        """The read `asker` started for `key` takes everyone to answer (the asker first); a later
        ask for `key` starts a new read."""
        askers = self._waiting.get(key)
        if askers is None or asker not in askers:
            return [asker]  # an unremembered read (beyond the bound), or a second read of the key
        del self._waiting[key]
        return list(askers)

    @property
    def reads_waiting(self) -> int:
        return len(self._waiting)


def venue_clock_us(heard: tuple[int, float] | None, now_mono_s: float, bar_seconds: float) -> int | None:
    """The venue's market clock (µs) for a history read's window, from the newest trade heard:
    `heard` = (its exchange timestamp in µs, the monotonic second it was heard). None when no
    trade was heard within `bar_seconds` of wall time (the time one 1m bar takes on the venue's
    market): the read asks the venue's ticker instead. Within that bound the estimate trails the
    venue's clock by at most one bar, inside the two bars of slack the read's window has, and it is
    never ahead of it (no scaling by a replay speed the gateway might have wrong)."""
    if heard is None:
        return None
    exch_us, at = heard
    if exch_us <= 0 or not 0.0 <= now_mono_s - at <= bar_seconds:
        return None
    return exch_us
