"""Which of the venue's fills are news for the ledger, read in the venue's own order.

Delta lists fills newest first in pages (`page_size`, then the `after` cursor of each page for
older ones). The gateway reads from the newest page back until it reaches fills it already
knows, and hands the ones it did not know to the ledger, oldest first. Nothing here compares
times of ours with times of the venue's: a venue whose clock jumped (a paper market restarted
hours behind) or fills made while we were down cannot be skipped.

"Known" is a bounded set of fill ids: those the store held at start (the newest of them) and
those handed on since. A scan stops at the first page whose fills, from the first known one
on, are all known. A fill that could not be handed on stays unknown with everything newer, so
the next scan reads it again; an older hole in the ledger is read again when it lies in that
last page, a deeper one is beyond any bounded read. With nothing known (an empty ledger) a
scan may be given a floor: fills older than it are history (the live account's earlier days),
not news. A scan reads at most `max_pages`; past that the rest is reported as not read.

The same pass reads the wallet ledger's funding entries (workers/gateway_funding.py): any list a
venue pages newest first with stable ids is read this way.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

KNOWN_FILLS_MAX = 50_000  # ids remembered (bounded); a scan only ever needs the newest few pages
MAX_SCAN_PAGES = 200  # 10,000 fills of 50 a page, 2,000 of the account's 10,000 rate units


class KnownFills:
    """A bounded, insertion-ordered set of fill ids."""

    def __init__(self, ids: Iterable[str] = (), max_size: int = KNOWN_FILLS_MAX) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._max = max_size
        for i in ids:
            self.add(i)

    def add(self, fill_id: str) -> None:
        self._ids[fill_id] = None
        self._ids.move_to_end(fill_id)
        while len(self._ids) > self._max:
            self._ids.popitem(last=False)

    def __contains__(self, fill_id: object) -> bool:
        return fill_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


class FillScan(Generic[T]):
    """One newest-first pass over the venue's fill list. Feed it pages with `take` until it says
    stop; `news()` then lists the fills to hand on, oldest first."""

    def __init__(self, known: KnownFills, *, fill_id: Callable[[T], str], ts_us: Callable[[T], int | None],
                 floor_us: int | None = None, max_pages: int = MAX_SCAN_PAGES) -> None:
        if max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {max_pages}")
        self._known = known
        self._id = fill_id
        self._ts = ts_us
        self._floor = floor_us
        self._max_pages = max_pages
        self._fresh: list[T] = []  # newest first, as read
        self._ids: set[str] = set()
        self.pages = 0
        self.truncated = False  # stopped at max_pages with older pages unread
        self.done = False

    def take(self, page: Sequence[T], *, more: bool) -> bool:
        """Fold in the next (older) page; `more`: the venue says older pages exist. True when
        the scan is complete and no further page should be read."""
        if self.done:
            raise RuntimeError("a finished fill scan was given another page")
        self.pages += 1
        seen_known = False
        all_known_since = True  # every fill from the first known one on was known
        below_floor = False
        for f in page:
            fid = self._id(f)
            if fid in self._known:
                seen_known = True
                continue
            if seen_known:
                all_known_since = False
            ts = self._ts(f)
            if self._floor is not None and ts is not None and ts < self._floor:
                below_floor = True
                continue  # history before the floor: not news
            if fid not in self._ids:  # a fill moving between pages while we read shows twice
                self._ids.add(fid)
                self._fresh.append(f)
        if (seen_known and all_known_since) or below_floor or not more or not page:
            self.done = True
        elif self.pages >= self._max_pages:
            self.done = self.truncated = True
        return self.done

    def news(self) -> list[T]:
        """The unknown fills read, oldest first (the venue's order, reversed)."""
        return list(reversed(self._fresh))


__all__ = ["FillScan", "KnownFills", "KNOWN_FILLS_MAX", "MAX_SCAN_PAGES"]
