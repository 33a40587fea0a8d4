"""`orchestrate download`: a symbol's candles (or its FUNDING: / MARK: series) from Delta's
`/v2/history/candles` into the OHLCV CSV the backtest reads.

It pages 2,000 bars a request through the ordinary REST client (its rate limiter keeps the account
inside Delta's budget and waits out a 429), appends each page whole as soon as it arrives, and
resumes an interrupted file from its last bar: rows are never duplicated, bars the venue did not
send are never invented. A `.gz` name writes gzip, one gzip member per page, so a download killed
mid-page loses at most that page and the next run cuts it off and fetches it again.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import re
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from shared.delta.errors import BadSchema, DeltaError
from shared.delta.rest import RESOLUTION_S, DeltaRestClient, candle_windows
from shared.delta.venues import PAPER, VENUE_NAMES, UnknownVenueError, resolve_venue
from shared.marketdata import OHLCV_HEADER, CandleFileError, bar_interval, find_gaps, parse_ohlcv_text

from .rundir import DEFAULT_RUN_DIR
from .timeargs import TimeArgError, parse_utc, utc_text

PROG = "orchestrate download"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
HEADER_LINE = ",".join(OHLCV_HEADER) + "\n"
_SYMBOL_RE = re.compile(r"^((MARK|FUNDING):)?[A-Z0-9_]{2,30}$")


class InputError(ValueError):
    """Bad download input; the message names the option or file."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.exit(EXIT_BAD_INPUT, f"{PROG}: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Download Delta candles (or FUNDING:/MARK: series) into an OHLCV "
                "CSV; rerun the same command to resume an interrupted download.")
    p.add_argument("--venue", required=True, help=f"one of {', '.join(VENUE_NAMES)}")
    p.add_argument("--symbol", required=True, help="e.g. BTCUSD, MARK:BTCUSD, FUNDING:BTCUSD")
    p.add_argument("--resolution", default="1m", help=f"one of {', '.join(RESOLUTION_S)} (default 1m)")
    p.add_argument("--from", dest="from_", required=True, metavar="WHEN", help="UTC date or ISO time")
    p.add_argument("--to", metavar="WHEN", help="UTC date (whole day) or ISO time (default: now)")
    p.add_argument("--out", required=True, metavar="FILE", help="CSV to write (gzip if it ends .gz)")
    p.add_argument("--base-url", metavar="URL", help="REST base URL instead of the venue's own "
                   "(for paper: the running venue's URL; default: <run dir>/venue.json)")
    p.add_argument("--run-dir", default=DEFAULT_RUN_DIR,
                   help="where a paper run keeps venue.json (only for --venue paper without --base-url)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    return p


@dataclass(frozen=True)
class Plan:
    venue: str
    base_url: str
    symbol: str
    resolution: str
    start: int
    end: int
    out: Path
    signed: bool  # FUNDING rates may be zero or negative


def _base_url(args: argparse.Namespace) -> str:
    is_paper = args.venue.strip().lower() == PAPER
    if not is_paper:
        try:
            venue = resolve_venue(args.venue)
        except UnknownVenueError as exc:
            raise InputError(f"--venue: {exc}") from None
    if args.base_url:
        url = args.base_url.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", url):
            raise InputError(f"--base-url {args.base_url!r}: expected http(s)://host[:port]")
        return url
    if not is_paper:
        return venue.rest_url
    info = Path(args.run_dir) / "venue.json"
    try:
        url = json.loads(info.read_text())["rest_url"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"--venue paper needs --base-url URL, or a running paper venue's {info} "
                         "(orchestrate venue --run-dir DIR writes it)") from None
    return str(url).rstrip("/")


def plan_from_args(args: argparse.Namespace, now: float) -> Plan:
    symbol = args.symbol.strip().upper()
    if not _SYMBOL_RE.match(symbol):
        raise InputError(f"--symbol {args.symbol!r}: expected SYMBOL, MARK:SYMBOL or FUNDING:SYMBOL")
    if args.resolution not in RESOLUTION_S:
        raise InputError(f"--resolution {args.resolution!r}: one of {', '.join(RESOLUTION_S)}")
    try:
        start = parse_utc(args.from_, "--from")
        end = parse_utc(args.to, "--to", end_of_day=True) if args.to else int(now)
    except TimeArgError as exc:
        raise InputError(str(exc)) from None
    if start > end:
        raise InputError(f"--from {utc_text(start)} UTC is after --to {utc_text(end)} UTC")
    step = RESOLUTION_S[args.resolution]
    if args.venue.strip().lower() != PAPER:
        # The bar still forming would be written half-made and never revisited by a resume: stop
        # at the last closed one. (The paper venue's market clock runs ahead of the wall clock.)
        end = min(end, int(now) // step * step - step)
        if start > end:
            raise InputError(f"--from {utc_text(start)} UTC: no bar of {args.resolution} has closed since")
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory")
    if not out.parent.is_dir():
        raise InputError(f"--out {out}: directory {out.parent} does not exist")
    return Plan(venue=args.venue, base_url=_base_url(args), symbol=symbol, resolution=args.resolution,
                start=start, end=end, out=out, signed=symbol.startswith("FUNDING:"))


# ------------------------------------------------------------------------------ the file

def _is_gz(path: Path) -> bool:
    return path.suffix == ".gz"


def recover(path: Path) -> str:
    """The file's complete text, cutting off a page a killed download left half-written (a
    truncated last gzip member, or a last line without its newline). Returns "" for no file."""
    if not path.exists():
        return ""
    data = path.read_bytes()
    if _is_gz(path):
        parts: list[bytes] = []
        pos = good = 0
        while pos < len(data):
            d = zlib.decompressobj(wbits=31)
            try:
                chunk = d.decompress(data[pos:])
            except zlib.error:
                break
            if not d.eof:
                break
            parts.append(chunk)
            pos = len(data) - len(d.unused_data)
            good = pos
        text_bytes = b"".join(parts)
        keep = good
    else:
        text_bytes = data
        keep = len(data)
    cut = text_bytes.rfind(b"\n") + 1
    if cut < len(text_bytes):  # a row without its newline: never trust a half-written line
        text_bytes = text_bytes[:cut]
        if not _is_gz(path):
            keep = cut
        else:  # members end on whole pages; a torn line inside one means a foreign file
            raise InputError(f"--out {path}: its last row has no newline; it was not written by "
                             f"{PROG}: remove it or choose another --out")
    if keep < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(keep)
    try:
        return text_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--out {path}: exists and is not a text CSV: remove it or choose another --out") from None


def existing_last_ts(plan: Plan) -> int | None:
    """The last bar already in --out (None: no rows yet), after checking the file is this download's."""
    text = recover(plan.out)
    if not text.strip() or text.strip().lower() == HEADER_LINE.strip():
        return None
    try:
        c = parse_ohlcv_text(text, str(plan.out), signed=plan.signed)
    except CandleFileError as exc:
        raise InputError(f"--out {plan.out}: cannot resume: {exc}") from None
    step = RESOLUTION_S[plan.resolution]
    if len(c) >= 2 and bar_interval(c.ts) != step:
        raise InputError(f"--out {plan.out}: holds {bar_interval(c.ts)} s bars, not {plan.resolution}: "
                         "choose another --out")
    first, last = int(c.ts[0]), int(c.ts[-1])
    if first > plan.start + step:
        raise InputError(f"--out {plan.out}: starts at {utc_text(first)} UTC, after --from "
                         f"{utc_text(plan.start)}: a download only appends; choose another --out")
    return last


class _Appender:
    """Appends whole pages; a .gz file gets one complete gzip member per page."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.gz = _is_gz(path)
        fresh = not path.exists() or path.stat().st_size == 0
        self.fh = open(path, "ab")
        if fresh:
            self.write(HEADER_LINE)

    def write(self, text: str) -> None:
        raw = text.encode("utf-8")
        self.fh.write(gzip.compress(raw, mtime=0) if self.gz else raw)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _row(t: int, o: float, h: float, low: float, c: float, v: float) -> str:
    return f"{t},{o!r},{h!r},{low!r},{c!r},{v!r}\n"


# ------------------------------------------------------------------------------ fetching

@dataclass
class Outcome:
    rows: int = 0
    pages: int = 0
    first: int | None = None
    last: int | None = None
    error: str = ""
    bad_input: bool = False
    interrupted: bool = False


async def fetch(plan: Plan, after: int | None, outcome: Outcome, progress: bool, err: TextIO) -> None:
    """Page [start, end] through the client, appending each page as it arrives."""
    step = RESOLUTION_S[plan.resolution]
    lo = plan.start if after is None else max(plan.start, after + step)
    if lo > plan.end:
        return
    windows = candle_windows(lo, plan.end, plan.resolution)
    bar: Any = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(windows), unit="page", file=err, desc=plan.symbol, leave=False)
    last = after if after is not None else lo - 1
    appender = _Appender(plan.out)
    try:
        async with DeltaRestClient(plan.base_url, venue_name=plan.venue) as rest:
            for w_lo, w_hi in windows:
                candles = await rest.get_candles(plan.symbol, plan.resolution, w_lo, w_hi)
                rows = []
                for c in candles:
                    if not isinstance(c.time, int):  # get_candles keeps only bars with a time
                        continue
                    t = c.time // 1_000_000  # the client normalises every time to µs
                    if t <= last or t < w_lo or t > w_hi:
                        continue
                    if c.open is None or c.high is None or c.low is None or c.close is None:
                        continue  # a minute without trades: no bar, as in the venue's own files
                    rows.append(_row(t, c.open, c.high, c.low, c.close, float(c.volume)))
                    last = t
                if rows:
                    page = "".join(rows)
                    try:  # the same rules the backtest applies, before the page reaches the file
                        parse_ohlcv_text(page, f"{plan.symbol} {utc_text(w_lo)}..{utc_text(w_hi)}",
                                         signed=plan.signed)
                    except CandleFileError as exc:
                        outcome.error = f"the venue sent a bar the backtest could not read: {exc}"
                        return
                    appender.write(page)
                    outcome.rows += len(rows)
                    outcome.first = outcome.first if outcome.first is not None else int(rows[0].split(",", 1)[0])
                    outcome.last = last
                outcome.pages += 1
                if bar is not None:
                    bar.update(1)
    except BadSchema as exc:
        outcome.error, outcome.bad_input = f"{plan.venue} refused the request: {exc}", True
    except DeltaError as exc:
        outcome.error = f"{plan.venue}: {exc}"
        outcome.bad_input = exc.code == "invalid_contract"
    finally:
        appender.close()
        if bar is not None:
            bar.close()


def main(argv: Sequence[str], err: TextIO | None = None) -> int:
    err = err or sys.stderr
    try:
        args = build_parser().parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_BAD_INPUT
    try:
        plan = plan_from_args(args, time.time())
        after = existing_last_ts(plan)
    except InputError as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_BAD_INPUT
    if after is not None:
        if after + RESOLUTION_S[plan.resolution] > plan.end:
            print(f"{PROG}: {plan.out} already holds {plan.symbol} up to {utc_text(after)} UTC; nothing to fetch",
                  file=err)
            return EXIT_OK
        print(f"{PROG}: resuming {plan.out} after its last bar, {utc_text(after)} UTC", file=err)
    outcome = Outcome()
    show = args.progress == "always" or (args.progress == "auto" and err.isatty())
    t0 = time.monotonic()
    try:
        asyncio.run(fetch(plan, after, outcome, show, err))
    except KeyboardInterrupt:
        outcome.interrupted = True
    took = time.monotonic() - t0
    span = (f" ({utc_text(outcome.first)} .. {utc_text(outcome.last)} UTC)"
            if outcome.first is not None and outcome.last is not None else "")
    print(f"{PROG}: {plan.out}: {outcome.rows:,} new bar(s) of {plan.symbol} {plan.resolution}{span} "
          f"in {outcome.pages:,} page(s), {took:.1f} s", file=err)
    if outcome.interrupted or outcome.error:
        if outcome.error:
            print(f"{PROG}: {outcome.error}", file=err)
        print(f"{PROG}: stopped early; the same command resumes from the last bar written", file=err)
        return EXIT_INTERRUPTED if outcome.interrupted else (EXIT_BAD_INPUT if outcome.bad_input else EXIT_FAILED)
    _report_gaps(plan, err)
    return EXIT_OK


def _report_gaps(plan: Plan, err: TextIO) -> None:
    """Bars the venue did not have (quiet minutes, outages): named, never filled in."""
    text = recover(plan.out)
    if not text.strip() or text.strip().lower() == HEADER_LINE.strip():
        print(f"{PROG}: warning: the venue sent no bars for {plan.symbol} in the range", file=err)
        return
    c = parse_ohlcv_text(text, str(plan.out), signed=plan.signed)
    gaps = find_gaps(c.ts, RESOLUTION_S[plan.resolution])
    if gaps:
        missing = sum(g.seconds for g in gaps) // RESOLUTION_S[plan.resolution]
        print(f"{PROG}: note: {plan.out}: {len(gaps):,} gap(s), {missing:,} bar(s) the venue did not send "
              "(left missing; the backtest trades through them)", file=err)


__all__ = ["InputError", "Plan", "build_parser", "existing_last_ts", "fetch", "main", "recover"]
