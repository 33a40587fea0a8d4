"""`orchestrate backtest`: replay historical candles through the product's own bots, signals,
risk rules and matching engine (shared/backtest) and show what they would have made.

This module is the shell: it reads and checks the inputs (every fault is exit 2 with a message
naming the file, line or option), runs the loop with a progress bar and Ctrl-C handling, and
prints the result (console table, `--json`, `--report DIR`).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import msgspec

from shared.backtest import BacktestError, BacktestResult, run_backtest
from shared.backtest.loop import default_warmup_bars
from shared.backtest.series_ahead import SeriesAheadError
from shared.config import Config, ConfigError, load_config
from shared.marketdata import BAR_SECONDS, CandleFileError, Candles, find_gaps, read_ohlcv_csv
from shared.products import (
    PAPER_PRODUCTS,
    SYNTHETIC_PREFIX,
    ProductSpec,
    UnknownSymbolError,
    is_synthetic,
    synthetic_spec,
)
from shared.symbol_settings import unused_symbol_tables

from .timeargs import TimeArgError, duration_text, parse_utc, utc_text

PROG = "orchestrate backtest"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
SPEC_FIELDS = ("contract_value", "tick_size", "maker_fee", "taker_fee")
SPEC_PRODUCT_ID_BASE = 800_000  # ids for --spec products: clear of Delta's and the synthetic 900_000+
MAX_FEE = 0.01  # 1% a fill: a larger figure is almost surely a percentage typed as a fraction
GAPS_LISTED = 3  # longest gaps named per file on stderr
WARMUP_GAP_WARN_S = 3_600  # a quiet minute in the warm-up is harmless; a missing hour or day is not
PROGRESS_DELAY_S = 2.0  # short runs show no bar at all
_SYMBOL_RE = re.compile(r"^[A-Z0-9_]{2,30}$")


class InputError(ValueError):
    """Bad backtest input; the message names the option, file or line."""


@dataclass
class Inputs:
    cfg: Config
    data: dict[str, Candles]
    files: dict[str, str]
    specs: dict[str, ProductSpec]
    funding: dict[str, Candles]
    balance_usd: float
    start_ts: int | None
    end_ts: int | None
    warmup_bars: int | None
    latency_ticks: int
    notes: list[str] = field(default_factory=list)  # warnings for stderr (gaps, clipped ranges)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse's own exit 2, with our prefix and no usage dump
        self.exit(EXIT_BAD_INPUT, f"{PROG}: {message} (see {PROG} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Replay historical 1m candles through the real bots, signals, "
                "risk rules and matching engine, and report what they would have made.")
    p.add_argument("--data", action="append", default=[], metavar="SYMBOL=FILE", required=True,
                   help="OHLCV CSV or CSV.gz (ts,open,high,low,close,volume; epoch seconds, bar open "
                        "time); repeat for more symbols")
    p.add_argument("--config", metavar="FILE", help="the same TOML the live run uses ([grid], [risk], [signal])")
    p.add_argument("--from", dest="from_", metavar="WHEN", help="first traded bar: UTC date or ISO time")
    p.add_argument("--to", metavar="WHEN", help="last traded bar: UTC date (whole day) or ISO time")
    p.add_argument("--warmup-bars", type=int, metavar="N",
                   help="bars before --from that feed the indicators and trade nothing "
                        "(default: what the indicators need)")
    p.add_argument("--balance", type=float, metavar="USD",
                   help="starting balance (default: market.initial_balance_usd of the config)")
    p.add_argument("--spec", action="append", default=[], metavar="SYMBOL=CV:TICK:MAKER:TAKER",
                   help="product spec for a symbol the paper catalogue does not know: contract value, "
                        "tick size, maker and taker fee as fractions (0.0005 = 0.05%%)")
    p.add_argument("--funding", action="append", default=[], metavar="SYMBOL=FILE",
                   help="a FUNDING:<symbol> series (rate per interval in close); without one funding is zero")
    p.add_argument("--latency-ticks", type=int, default=1, metavar="N",
                   help="an order sent at tick t rests from tick t+N (default 1: the next tick)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON document on stdout")
    p.add_argument("--report", metavar="DIR", help="write backtest.json, summary.md and PNG plots into DIR")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")
    return p


# ------------------------------------------------------------------------------ input parsing

def _pair(text: str, option: str, what: str) -> tuple[str, str]:
    sym, sep, value = text.partition("=")
    sym = sym.strip().upper()
    if not sep or not sym or not value.strip():
        raise InputError(f"{option} {text!r}: expected SYMBOL={what}")
    if not _SYMBOL_RE.match(sym):
        raise InputError(f"{option} {text!r}: {sym!r} is not a symbol (upper-case letters, digits, _)")
    return sym, value.strip()


def parse_spec(text: str, index: int) -> ProductSpec:
    """`SYMBOL=contract_value:tick_size:maker_fee:taker_fee` -> a ProductSpec (fees as fractions)."""
    sym, body = _pair(text, "--spec", ":".join(SPEC_FIELDS))
    parts = body.split(":")
    if len(parts) != len(SPEC_FIELDS):
        raise InputError(f"--spec {text!r}: expected {len(SPEC_FIELDS)} numbers "
                         f"{':'.join(SPEC_FIELDS)}, got {len(parts)}")
    values: dict[str, float] = {}
    for name, raw in zip(SPEC_FIELDS, parts, strict=True):  # lengths checked just above
        try:
            v = float(raw)
        except ValueError:
            raise InputError(f"--spec {text!r}: {name} {raw!r} is not a number") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise InputError(f"--spec {text!r}: {name} must be finite")
        values[name] = v
    for name in ("contract_value", "tick_size"):
        if values[name] <= 0:
            raise InputError(f"--spec {text!r}: {name} must be > 0")
    for name in ("maker_fee", "taker_fee"):
        if abs(values[name]) > MAX_FEE:
            raise InputError(f"--spec {text!r}: {name} {values[name]:g} is {values[name] * 100:g}% a fill; "
                             f"give fees as fractions (0.0005 = 0.05%)")
    return ProductSpec(symbol=sym, product_id=SPEC_PRODUCT_ID_BASE + index,
                       contract_value=values["contract_value"], tick_size=values["tick_size"],
                       maker_fee=values["maker_fee"], taker_fee=values["taker_fee"])


def known_spec(symbol: str) -> ProductSpec | None:
    if symbol in PAPER_PRODUCTS:
        return PAPER_PRODUCTS[symbol]
    if is_synthetic(symbol):
        return synthetic_spec(symbol)
    return None


def resolve_specs(symbols: Sequence[str], given: Mapping[str, ProductSpec]) -> dict[str, ProductSpec]:
    """--spec first (it may override a known product's fees), then the known products; an unknown
    symbol names the closest known ones and the option that would define it."""
    out: dict[str, ProductSpec] = {}
    for sym in symbols:
        spec = given.get(sym) or known_spec(sym)
        if spec is None:
            known = sorted(set(PAPER_PRODUCTS) | set(given) | {f"{SYNTHETIC_PREFIX}0001"})
            msg = str(UnknownSymbolError(sym, known, "the known products"))
            msg += "" if msg.endswith("?") else "."
            raise InputError(f"--data {sym}: {msg} For another contract give "
                             f"--spec {sym}={':'.join(SPEC_FIELDS)} (e.g. --spec {sym}=0.001:0.5:0.0002:0.0005)")
        out[sym] = spec
    return out


def _read_files(pairs: Sequence[str], option: str, *, signed: bool) -> tuple[dict[str, Candles], dict[str, str]]:
    data: dict[str, Candles] = {}
    files: dict[str, str] = {}
    for text in pairs:
        sym, path = _pair(text, option, "FILE")
        if sym in data:
            raise InputError(f"{option} {sym} given twice ({files[sym]} and {path})")
        try:
            data[sym] = read_ohlcv_csv(path, signed=signed)
        except CandleFileError as exc:
            raise InputError(f"{option} {sym}: {exc}") from None
        files[sym] = path
    return data, files


def _check_range(data: Mapping[str, Candles], files: Mapping[str, str], start: int | None, end: int | None) -> None:
    """--from/--to must fall inside every symbol's data (within one bar): a range the data does not
    cover would silently shorten the test."""
    if start is not None and end is not None and start > end:
        raise InputError(f"--from {utc_text(start)} UTC is after --to {utc_text(end)} UTC")
    for sym, c in data.items():
        first, last = int(c.ts[0]), int(c.ts[-1])
        held = f"{files[sym]} holds {utc_text(first)} .. {utc_text(last)} UTC"
        if start is not None and start > last:
            raise InputError(f"--from {utc_text(start)} UTC is after the last bar of {sym}: {held}")
        if end is not None and end < first:
            raise InputError(f"--to {utc_text(end)} UTC is before the first bar of {sym}: {held}")
        if start is not None and start < first - BAR_SECONDS:
            raise InputError(f"--from {utc_text(start)} UTC is before the first bar of {sym}: {held}")
        if end is not None and end > last + BAR_SECONDS:
            raise InputError(f"--to {utc_text(end)} UTC is after the last bar of {sym}: {held}")


def warmup_notes(sym: str, path: str, c: Candles, start: int | None, warmup: int) -> list[str]:
    """A warning when the warm-up bars straddle a long gap: the indicators would start the test
    from prices of another era (the shipped BTC file jumps from 620 to 4,600 across 328 days)."""
    first = warmup if start is None else int(c.ts.searchsorted(start, "left"))
    lo = max(0, first - warmup)
    gaps = [g for g in find_gaps(c.ts[lo:first + 1]) if g.seconds >= WARMUP_GAP_WARN_S]
    if not gaps:
        return []
    g = max(gaps, key=lambda x: x.seconds)
    return [f"{path}: {sym}'s {warmup} warm-up bars cross a gap of {duration_text(g.seconds)} from "
            f"{utc_text(g.from_ts)} UTC: the indicators start from prices before it (start later with --from, "
            "or lower --warmup-bars)"]


def gap_notes(sym: str, path: str, c: Candles, start: int | None, end: int | None) -> list[str]:
    """Warnings naming the stretches without bars in the traded range (the bot trades through
    them as a quiet market; no bar is invented)."""
    lo = 0 if start is None else int(c.ts.searchsorted(start, "left"))
    hi = len(c) if end is None else int(c.ts.searchsorted(end, "right"))
    gaps = find_gaps(c.ts[lo:hi])  # a gap just before --from is the warm-up's (warmup_notes)
    if not gaps:
        return []
    total = sum(g.seconds for g in gaps)
    longest = sorted(gaps, key=lambda g: -g.seconds)[:GAPS_LISTED]
    named = ", ".join(f"{duration_text(g.seconds)} from {utc_text(g.from_ts)}" for g in longest)
    return [f"{path}: {len(gaps):,} gap(s) in {sym}'s data, {duration_text(total)} without bars in all; "
            f"longest: {named} UTC; trading through them as a quiet market (no bars invented)"]


def prepare(args: argparse.Namespace) -> Inputs:
    """Every check that needs no backtest: raises InputError naming the option, file or line."""
    try:
        cfg, cfg_notes = load_config(args.config)
    except ConfigError as exc:
        raise InputError(f"--config: {exc}") from None
    notes = [f"{args.config}: {n}" for n in cfg_notes]
    if args.warmup_bars is not None and args.warmup_bars < 0:
        raise InputError(f"--warmup-bars {args.warmup_bars}: must be >= 0")
    if args.latency_ticks < 1:
        raise InputError(f"--latency-ticks {args.latency_ticks}: must be >= 1 (an order cannot fill on "
                         "the tick it was sent)")
    balance = cfg.market.initial_balance_usd if args.balance is None else args.balance
    if not balance > 0 or balance == float("inf"):
        raise InputError(f"--balance {args.balance}: must be a positive amount of USD")
    try:
        start = parse_utc(args.from_, "--from") if args.from_ else None
        end = parse_utc(args.to, "--to", end_of_day=True) if args.to else None
    except TimeArgError as exc:
        raise InputError(str(exc)) from None
    given: dict[str, ProductSpec] = {}
    for i, text in enumerate(args.spec):
        spec = parse_spec(text, i + 1)
        if spec.symbol in given:
            raise InputError(f"--spec {spec.symbol} given twice")
        given[spec.symbol] = spec
    symbols = [_pair(t, "--data", "FILE")[0] for t in args.data]
    for sym in given:
        if sym not in symbols:
            raise InputError(f"--spec {sym}: no --data {sym}=FILE to trade it on")
    specs = resolve_specs(symbols, given)  # before reading files: a typo costs no parse time
    notes += [f"{args.config}: {w}" for w in unused_symbol_tables(cfg, symbols)]
    data, files = _read_files(args.data, "--data", signed=False)
    funding, _ = _read_files(args.funding, "--funding", signed=True)
    for sym in funding:
        if sym not in data:
            raise InputError(f"--funding {sym}: no --data {sym}=FILE it would apply to")
    _check_range(data, files, start, end)
    warmup = default_warmup_bars(cfg) if args.warmup_bars is None else args.warmup_bars
    for sym, c in data.items():
        notes += gap_notes(sym, files[sym], c, start, end)
        notes += warmup_notes(sym, files[sym], c, start, warmup)
    return Inputs(cfg=cfg, data=data, files=files, specs=specs, funding=funding, balance_usd=balance,
                  start_ts=start, end_ts=end, warmup_bars=args.warmup_bars,
                  latency_ticks=args.latency_ticks, notes=notes)


# ------------------------------------------------------------------------------------ running

class _Progress:
    """tqdm on stderr, created at the first report and shown only once a run has lasted
    PROGRESS_DELAY_S (tqdm's `delay`), so short runs print nothing."""

    def __init__(self, enabled: bool, err: TextIO) -> None:
        self.enabled = enabled
        self.err = err
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="bar", unit_scale=True, delay=PROGRESS_DELAY_S,
                            file=self.err, desc="backtest", leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _StopFlag:
    """First Ctrl-C asks the loop to stop and report what it had; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: stopping after the current bar (Ctrl-C again to abort without a result)",
              file=sys.stderr, flush=True)


def _run_core(inputs: Inputs, progress: Callable[[int, int], None], should_stop: Callable[[], bool]) -> BacktestResult:
    return run_backtest(inputs.cfg, inputs.data, specs=inputs.specs, balance_usd=inputs.balance_usd,
                        start_ts=inputs.start_ts, end_ts=inputs.end_ts, warmup_bars=inputs.warmup_bars,
                        funding=inputs.funding or None, latency_ticks=inputs.latency_ticks,
                        progress=progress, should_stop=should_stop, signals_ahead=True)


def main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _main(argv, out, err)
    except KeyboardInterrupt:  # Ctrl-C while reading the inputs, before the run could stop cleanly
        print(f"{PROG}: interrupted before the backtest started; no result", file=err)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code in (0, None) else EXIT_BAD_INPUT
    try:
        inputs = prepare(args)
        if args.report:
            from .report import ReportUnavailable, check_report_support
            try:
                check_report_support()  # before the run, not after it
            except ReportUnavailable as exc:
                raise InputError(str(exc)) from None
            if Path(args.report).exists() and not Path(args.report).is_dir():
                raise InputError(f"--report {args.report}: exists and is not a directory")
    except InputError as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_BAD_INPUT
    for note in inputs.notes:
        print(f"{PROG}: warning: {note}", file=err)
    stop = _StopFlag()
    show = args.progress == "always" or (args.progress == "auto" and err.isatty())
    progress = _Progress(show, err)
    previous = signal.signal(signal.SIGINT, stop.on_sigint)
    try:
        result = _run_core(inputs, progress, stop)
    except BacktestError as exc:
        print(f"{PROG}: {exc}", file=err)
        return EXIT_BAD_INPUT
    except SeriesAheadError as exc:  # the run failed, not its input: one line, the helper's traceback on demand
        print(f"{PROG}: {exc}; no result", file=err)
        if exc.detail and os.environ.get("ORCHESTRATE_TRACEBACK") == "1":
            print(exc.detail, file=err)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{PROG}: aborted; no result", file=err)
        return EXIT_INTERRUPTED
    finally:
        progress.close()
        signal.signal(signal.SIGINT, previous)
    return emit(result.to_json(), args, out, err, command=_command_line(argv))


def _command_line(argv: Sequence[str]) -> str:
    return "orchestrate backtest " + " ".join(shlex.quote(a) for a in argv)


def emit(json_bytes: bytes, args: argparse.Namespace, out: TextIO, err: TextIO, *, command: str) -> int:
    """Print the result as the options ask (JSON alone on stdout, or the table), write the report.
    The JSON document is the core's own encoding, byte for byte, so two runs compare equal."""
    from .report import ReportUnavailable, console_summary, write_report
    doc = msgspec.json.decode(json_bytes)
    if args.json:
        out.write(json_bytes.decode("utf-8") + "\n")
    else:
        out.write(console_summary(doc))
    out.flush()
    if args.report:
        t0 = time.perf_counter()
        try:
            paths = write_report(doc, json_bytes, args.report, command=command)
        except (ReportUnavailable, OSError) as exc:
            print(f"{PROG}: --report {args.report}: {exc}", file=err)
            return EXIT_FAILED
        print(f"{PROG}: report in {Path(args.report)}/ ({', '.join(p.name for p in paths)}; "
              f"{time.perf_counter() - t0:.1f} s)", file=err)
    if doc.get("interrupted"):
        print(f"{PROG}: interrupted: the figures cover the bars replayed before Ctrl-C", file=err)
        return EXIT_INTERRUPTED
    return EXIT_OK


__all__ = ["InputError", "Inputs", "build_parser", "emit", "gap_notes", "main", "parse_spec", "prepare",
           "resolve_specs"]
