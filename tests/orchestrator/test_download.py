"""`orchestrate download` against the paper venue's /v2/history/candles over real sockets: the real
CLI process pages the venue (2,000 bars a call), writes the backtest's CSV format, resumes without
duplicating, survives a torn page and a Ctrl-C, and keeps inside a tight rate budget. Never
against the real exchange."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.download_cmd import recover
from shared.funding import last_boundary
from shared.marketdata import Candles, read_ohlcv_csv
from workers.venue import PaperVenue, VenueSettings

REPO = Path(__file__).resolve().parents[2]
HISTORY = 4_500  # three pages of 2,000 bars
SETTINGS = VenueSettings(history_bars=HISTORY, bar_seconds=60.0)  # a slow clock: no live bar interferes


async def cli(*args: str, timeout: float = 60.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator.cli", "download", *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def start_venue(settings: VenueSettings = SETTINGS) -> PaperVenue:
    venue = PaperVenue(settings, ["BTCUSD"])
    await venue.start()
    return venue


@pytest.fixture
async def venue() -> AsyncIterator[PaperVenue]:
    v = await start_venue()
    yield v
    await v.stop()


def history(venue: PaperVenue) -> Candles:
    return venue.markets["BTCUSD"].history


def assert_same_bars(got: Candles, want: Candles) -> None:
    assert len(got) == len(want)
    for name, a, b in zip(Candles._fields, got, want, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


def args(venue: PaperVenue, out: Path, first: int, last: int, symbol: str = "BTCUSD") -> list[str]:
    return ["--venue", "paper", "--base-url", venue.rest_url, "--symbol", symbol, "--resolution", "1m",
            "--from", str(first), "--to", str(last), "--out", str(out), "--progress", "never"]


@pytest.mark.parametrize("name", ["btc.csv", "btc.csv.gz"])
async def test_pages_the_venue_into_the_backtest_format(venue: PaperVenue, tmp_path: Path, name: str) -> None:
    h = history(venue)
    out = tmp_path / name
    code, text = await cli(*args(venue, out, int(h.ts[0]), int(h.ts[-1])))
    assert code == 0, text
    assert f"{HISTORY:,} new bar(s) of BTCUSD 1m" in text and "in 3 page(s)" in text, text
    assert_same_bars(read_ohlcv_csv(out), h)
    if name.endswith(".gz"):
        assert out.read_bytes()[:2] == b"\x1f\x8b"
        assert gzip.decompress(out.read_bytes()).startswith(b"ts,open,high,low,close,volume\n")
    else:
        assert out.read_text().startswith("ts,open,high,low,close,volume\n")


async def test_resume_appends_from_the_last_bar_without_duplicates(venue: PaperVenue, tmp_path: Path) -> None:
    h = history(venue)
    out = tmp_path / "btc.csv.gz"
    mid = int(h.ts[2_345])
    code, text = await cli(*args(venue, out, int(h.ts[0]), mid))
    assert code == 0 and "2,346 new bar(s)" in text, text
    code, text = await cli(*args(venue, out, int(h.ts[0]), int(h.ts[-1])))
    assert code == 0, text
    assert "resuming" in text and f"{HISTORY - 2_346:,} new bar(s)" in text, text
    assert_same_bars(read_ohlcv_csv(out), h)
    code, text = await cli(*args(venue, out, int(h.ts[0]), int(h.ts[-1])))
    assert code == 0 and "nothing to fetch" in text, text
    assert_same_bars(read_ohlcv_csv(out), h)


@pytest.mark.parametrize("name", ["btc.csv", "btc.csv.gz"])
async def test_a_torn_last_page_is_cut_off_and_fetched_again(venue: PaperVenue, tmp_path: Path, name: str) -> None:
    h = history(venue)
    out = tmp_path / name
    code, text = await cli(*args(venue, out, int(h.ts[0]), int(h.ts[2_999])))
    assert code == 0, text
    whole = out.stat().st_size
    # what a download killed in the middle of writing its next page leaves behind
    torn = "\n".join(f"{int(h.ts[i])},1,2,0.5,1.5,3" for i in range(3_000, 3_010)) + "\n" + f"{int(h.ts[3_010])},1,2"
    with open(out, "ab") as fh:
        raw = torn.encode()
        fh.write(gzip.compress(raw)[:40] if name.endswith(".gz") else raw)
    code, text = await cli(*args(venue, out, int(h.ts[0]), int(h.ts[-1])))
    assert code == 0, text
    if not name.endswith(".gz"):  # plain: the whole rows were kept, only the torn line was cut
        assert f"{HISTORY - 3_010:,} new bar(s)" in text, text
        got = read_ohlcv_csv(out)
        np.testing.assert_array_equal(got.ts, h.ts)
        assert got.close[3_005] == 1.5  # kept as written: resume never rewrites what is there
    else:  # gz: the half member was dropped whole
        assert f"{HISTORY - 3_000:,} new bar(s)" in text, text
        assert out.stat().st_size > whole
        assert_same_bars(read_ohlcv_csv(out), h)


async def test_ctrl_c_keeps_whole_pages_and_the_rerun_completes(tmp_path: Path) -> None:
    # 0.4 s a request: the first page lands, then Ctrl-C arrives while the next one is in flight
    v = await start_venue(VenueSettings(history_bars=HISTORY, bar_seconds=60.0, fault_latency_ms=400.0))
    try:
        h = history(v)
        out = tmp_path / "btc.csv.gz"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestrator.cli", "download", *args(v, out, int(h.ts[0]), int(h.ts[-1])),
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        for _ in range(600):  # until the first page is on disk (header member + a page member)
            if out.exists() and len(recover(out).splitlines()) > 1:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no page was written")
        os.kill(proc.pid, signal.SIGINT)
        text = (await asyncio.wait_for(proc.communicate(), 30))[0].decode()
        assert proc.returncode == 130, text
        assert "Traceback" not in text and "resumes from the last bar written" in text, text
        partial = read_ohlcv_csv(out)
        assert 0 < len(partial) < HISTORY and len(partial) % 2_000 == 0  # whole pages only
        code, text = await cli(*args(v, out, int(h.ts[0]), int(h.ts[-1])))
        assert code == 0 and "resuming" in text, text
        assert_same_bars(read_ohlcv_csv(out), h)
    finally:
        await v.stop()


async def test_stays_inside_a_tight_rate_budget(tmp_path: Path) -> None:
    # 6 units a second = two candle calls (weight 3): the venue answers 429 and the client's
    # limiter waits for the reset instead of failing the download
    v = await start_venue(VenueSettings(history_bars=HISTORY, bar_seconds=60.0, rate_limit_units=6,
                                        rate_limit_window_s=1.0))
    try:
        h = history(v)
        out = tmp_path / "btc.csv"
        code, text = await cli(*args(v, out, int(h.ts[0]), int(h.ts[-1])))
        assert code == 0, text
        assert_same_bars(read_ohlcv_csv(out), h)
        assert v.requests_refused >= 1  # the budget really was hit
    finally:
        await v.stop()


async def test_funding_and_mark_series(venue: PaperVenue, tmp_path: Path) -> None:
    h = history(venue)
    funding = tmp_path / "funding.csv"
    code, text = await cli(*args(venue, funding, int(h.ts[0]), int(h.ts[-1]), "FUNDING:BTCUSD"))
    assert code == 0, text
    f = read_ohlcv_csv(funding, signed=True)
    np.testing.assert_array_equal(f.ts, h.ts)
    # each bar: the rate the newest funding time at or before it charged (the seeded model's, no
    # series given), as a fraction: what `orchestrate backtest --funding` reads
    rates = venue.replay.funding
    want = [float(rates.rate("BTCUSD", last_boundary(int(t) * 1_000_000, rates.interval_s))) for t in f.ts]
    np.testing.assert_array_equal(f.close, np.array(want))
    assert np.any(f.close) and len(set(f.close.tolist())) > 1
    mark = tmp_path / "mark.csv"
    code, text = await cli(*args(venue, mark, int(h.ts[0]), int(h.ts[999]), "MARK:BTCUSD"))
    assert code == 0, text
    np.testing.assert_array_equal(read_ohlcv_csv(mark).close, h.close[:1000])  # paper mark = last trade


async def test_unknown_symbol_and_bad_files_exit_2(venue: PaperVenue, tmp_path: Path) -> None:
    h = history(venue)
    code, text = await cli(*args(venue, tmp_path / "x.csv", int(h.ts[0]), int(h.ts[-1]), "XRPUSD"))
    assert code == 2 and "invalid_contract" in text and "Traceback" not in text, text
    other = tmp_path / "other.csv"
    other.write_text("ts,open,high,low,close,volume\n60,1,2,0.5,1.5,3\n60,1,2,0.5,1.5,3\n")
    code, text = await cli(*args(venue, other, int(h.ts[0]), int(h.ts[-1])))
    assert code == 2 and "other.csv:3: duplicate timestamp 60" in text and "cannot resume" in text, text
    late = tmp_path / "late.csv"
    late.write_text(f"ts,open,high,low,close,volume\n{int(h.ts[100])},1,2,0.5,1.5,3\n")
    code, text = await cli(*args(venue, late, int(h.ts[0]), int(h.ts[-1])))
    assert code == 2 and "a download only appends" in text, text
    five = tmp_path / "five.csv"
    five.write_text(f"ts,open,high,low,close,volume\n{int(h.ts[0])},1,2,0.5,1.5,3\n{int(h.ts[5])},1,2,0.5,1.5,3\n")
    code, text = await cli(*args(venue, five, int(h.ts[0]), int(h.ts[-1])))
    assert code == 2 and "holds 300 s bars, not 1m" in text, text


@pytest.mark.parametrize("extra, message", [
    (["--venue", "moon"], "unknown venue 'moon'"),
    (["--venue", "paper", "--run-dir", "/nonexistent"], "--venue paper needs --base-url"),
    (["--venue", "india", "--symbol", "btc/usd"], "--symbol 'btc/usd'"),
    (["--venue", "india", "--to", "2019-01-01"], "--from 2020-01-01 00:00 UTC is after --to 2019-01-01 23:59 UTC"),
    (["--venue", "india", "--resolution", "7d"], "--resolution '7d'"),
    (["--venue", "india", "--out", "/nonexistent/x.csv"], "directory /nonexistent does not exist"),
    (["--venue", "india", "--from", "2020-02-30"], "--from '2020-02-30': not a UTC date"),
    (["--venue", "india", "--base-url", "ftp://x"], "--base-url 'ftp://x'"),
])
async def test_bad_options_exit_2_before_any_request(tmp_path: Path, extra: list[str], message: str) -> None:
    # a closed local port as the base URL: should a check ever regress, nothing leaves this machine
    base = {"--symbol": "BTCUSD", "--from": "2020-01-01", "--out": str(tmp_path / "x.csv"), "--to": "2020-01-02",
            "--base-url": "http://127.0.0.1:9"}
    if "paper" in extra:
        del base["--base-url"]
    argv: list[str] = []
    for k, val in base.items():
        if k not in extra:
            argv += [k, val]
    code, text = await cli(*argv, *extra)
    assert code == 2 and message in text and "Traceback" not in text, text
    assert not (tmp_path / "x.csv").exists()


def test_a_live_venue_download_stops_at_the_last_closed_bar(tmp_path: Path) -> None:
    from orchestrator.download_cmd import build_parser, plan_from_args
    now = 1_700_000_090.5  # 22:14:50 UTC, in the minute that opened at 1_700_000_040
    ns = build_parser().parse_args(["--venue", "india", "--symbol", "BTCUSD", "--from", "2023-11-14",
                                    "--out", str(tmp_path / "x.csv")])
    plan = plan_from_args(ns, now)
    assert plan.end == 1_699_999_980  # the bar that opened at 1_700_000_040 is still forming
    ns.resolution = "1h"
    assert plan_from_args(ns, now).end == 1_699_995_600  # 21:00: the hour from 22:00 is still forming
    ns.venue, ns.base_url = "paper", "http://127.0.0.1:9"  # the paper market clock runs ahead: no clamp
    assert plan_from_args(ns, now).end == int(now)


async def test_paper_venue_found_through_its_run_dir(venue: PaperVenue, tmp_path: Path) -> None:
    from workers.venue import write_venue_json
    write_venue_json(tmp_path, venue)
    h = history(venue)
    out = tmp_path / "btc.csv"
    code, text = await cli("--venue", "paper", "--run-dir", str(tmp_path), "--symbol", "BTCUSD",
                           "--from", str(int(h.ts[-100])), "--to", str(int(h.ts[-1])), "--out", str(out))
    assert code == 0, text
    assert venue.api_secret not in text  # venue.json holds the paper secret: never echoed
    np.testing.assert_array_equal(read_ohlcv_csv(out).close, h.close[-100:])
