"""Reading a venue's fills newest first back to the known ones: nothing skipped, nothing twice."""

from __future__ import annotations

import pytest

from shared.trading.fill_cursor import FillScan, KnownFills

# (id, time µs): the venue's list, newest first, like Delta's pages
Fill = tuple[str, int]


def venue(n: int, *, ts: list[int] | None = None) -> list[Fill]:
    times = ts or list(range(n))
    return [(f"f{i:03d}", times[i]) for i in reversed(range(n))]


def scan(fills: list[Fill], known: KnownFills, *, size: int = 5, floor: int | None = None,
         max_pages: int = 200) -> tuple[list[str], FillScan[Fill]]:
    s: FillScan[Fill] = FillScan(known, fill_id=lambda f: f[0], ts_us=lambda f: f[1], floor_us=floor,
                                 max_pages=max_pages)
    for start in range(0, len(fills) + 1, size):
        page = fills[start:start + size]
        if s.take(page, more=start + size < len(fills)):
            break
    return [f[0] for f in s.news()], s


def test_the_news_is_everything_past_the_known_ones_oldest_first_whatever_the_times() -> None:
    # times run BACKWARDS past f010 (a venue clock that restarted behind): no matter
    times = list(range(10)) + [-1000 - i for i in range(10)]
    fills = venue(20, ts=times)
    news, s = scan(fills, KnownFills(f"f{i:03d}" for i in range(10)))
    assert news == [f"f{i:03d}" for i in range(10, 20)]
    assert s.pages == 3 and not s.truncated  # two pages of news, then a page all known


def test_a_hole_in_the_page_that_reaches_the_known_fills_is_read_again() -> None:
    known = KnownFills(f"f{i:03d}" for i in range(20) if i != 17)
    news, s = scan(venue(21), known)  # page 1: f020 (new) f019 f018 f017 (hole) f016
    assert news == ["f017", "f020"] and s.pages == 2


def test_a_fill_not_handed_on_stays_news() -> None:
    # f015 could not be handed on, so neither was anything newer: all of it is unknown
    news, _ = scan(venue(20), KnownFills(f"f{i:03d}" for i in range(15)))
    assert news == [f"f{i:03d}" for i in range(15, 20)]


def test_nothing_new_costs_one_page() -> None:
    news, s = scan(venue(30), KnownFills(f"f{i:03d}" for i in range(30)))
    assert news == [] and s.pages == 1


def test_an_empty_ledger_reads_everything_or_down_to_a_floor() -> None:
    assert scan(venue(12), KnownFills())[0] == [f"f{i:03d}" for i in range(12)]
    news, s = scan(venue(12), KnownFills(), floor=7)
    assert news == [f"f{i:03d}" for i in range(7, 12)] and s.pages == 2


def test_a_scan_is_bounded_and_says_so() -> None:
    news, s = scan(venue(100), KnownFills(), max_pages=3)
    assert s.truncated and s.pages == 3 and news == [f"f{i:03d}" for i in range(85, 100)]


def test_a_fill_that_moves_between_pages_is_taken_once() -> None:
    s: FillScan[Fill] = FillScan(KnownFills(["a"]), fill_id=lambda f: f[0], ts_us=lambda f: f[1])
    assert not s.take([("d", 4), ("c", 3)], more=True)
    assert s.take([("c", 3), ("b", 2), ("a", 1)], more=True)  # a new fill pushed c down a page
    assert [f[0] for f in s.news()] == ["b", "c", "d"]
    with pytest.raises(RuntimeError):
        s.take([], more=False)


def test_known_fills_are_bounded_oldest_out() -> None:
    k = KnownFills(["a", "b", "c"], max_size=2)
    assert "a" not in k and "b" in k and "c" in k and len(k) == 2
    k.add("b")  # seen again: now the newest
    k.add("d")
    assert "b" in k and "c" not in k
    with pytest.raises(ValueError):
        KnownFills(max_size=0)
