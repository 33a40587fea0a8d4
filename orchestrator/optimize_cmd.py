"""`orchestrate optimize`: search config values over history with Optuna, run every trial as a real
backtest on a Dask cluster, re-run the best on a test range the search never saw, and write a
report with `best.toml`.

    orchestrate optimize --data BTCUSD=btc.csv.gz --config base.toml --space space.toml --trials 100
        --objective net_pnl --train 2018-04-04..2018-04-05 --test 2018-04-06..2018-04-06
        [--jobs K | --scheduler tcp://host:8786] [--study NAME] [--storage URL] [--run-dir DIR]
        [--report DIR] [--seed S] [--top K] [--walk-forward N]

Exit codes: 0 done, 1 runtime failure, 2 bad input (names the key, file or option), 130 interrupted
(the study keeps every finished trial; the same command resumes it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from shared.config import Config, ConfigError, config_to_toml_dict, load_config
from shared.optimize.objective import OBJECTIVES
from shared.optimize.space import Dimension, SpaceError, load_space
from shared.optimize.trial import MarketData, TrialOutcome, evaluate
from shared.optimize.windows import RangeError, WalkForwardWindow, Window, bars_in, walk_forward
from shared.products import ProductSpec
from shared.symbol_settings import unused_symbol_tables

from .rundir import DEFAULT_RUN_DIR


class InputError(ValueError):
    """Bad command-line input: exit 2 with this message."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orchestrate optimize",
        description="Tune config values over historical candles (Optuna search, Dask execution), "
                    "with the best trials re-run on a test range the search never saw.")
    p.add_argument("--data", action="append", default=[], metavar="SYMBOL=FILE", required=True,
                   help="OHLCV CSV or CSV.gz (ts,open,high,low,close,volume); repeat per symbol")
    p.add_argument("--spec", action="append", default=[], metavar="SYMBOL=CV:TICK:MAKER:TAKER",
                   help="product spec of a symbol the paper catalogue does not know")
    p.add_argument("--config", help="base config TOML (the live run's format); default: built-in defaults")
    p.add_argument("--space", required=True, help="space.toml: config keys with ranges or choices")
    p.add_argument("--trials", type=int, default=50, help="trials to run (resumed ones count; default 50)")
    p.add_argument("--objective", choices=OBJECTIVES, default="net_pnl")
    p.add_argument("--train", required=True, metavar="FROM..TO", help="range the search scores trials on")
    p.add_argument("--test", metavar="FROM..TO", help="range the best trials are re-run on")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="local Dask worker processes (default: one per core)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--study", help="study name (default: derived from the inputs, so the same command resumes)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB storage (SQLAlchemy URL); default sqlite in the run dir")
    p.add_argument("--run-dir", default=os.environ.get("ORCHESTRATE_RUN_DIR", DEFAULT_RUN_DIR))
    p.add_argument("--report", metavar="DIR", help="report directory (default: RUN_DIR/optimize/STUDY)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--top", type=int, default=5, help="best trials re-run on the test range (default 5)")
    p.add_argument("--walk-forward", type=int, default=0, metavar="N",
                   help="split the whole range (train through test) into N train/test windows")
    p.add_argument("--train-share", type=float, default=0.75,
                   help="walk-forward: share of each window's bars used for training (default 0.75)")
    p.add_argument("--as-symbol-table", action="store_true",
                   help="write best.toml's winning [grid]/[risk] values as [symbols.SYMBOL.grid]/"
                        "[symbols.SYMBOL.risk] tables (one --data symbol; grid.*/risk.* keys only), "
                        "so other symbols keep the global settings")
    p.add_argument("--stale-after", type=int, default=None, metavar="SECONDS",
                   help="a trial whose driver (this command, on any host sharing --storage) sent no "
                        "heartbeat for this long is failed and its values queued again (default 60)")
    p.add_argument("--warmup-bars", type=int, help="bars before each range that feed the indicators "
                                                   "(default: what the signal engine needs)")
    return p


# --- inputs: the backtest command's own parsing of --data/--spec and of times ---------------------

def load_market(data_args: list[str], spec_args: list[str]) -> tuple[MarketData, dict[str, str]]:
    """The candles and specs every trial needs, and each symbol's file (for warnings)."""
    from .backtest_cmd import InputError as BacktestInputError
    from .backtest_cmd import _pair, _read_files, parse_spec, resolve_specs

    try:
        given: dict[str, ProductSpec] = {}
        for i, text in enumerate(spec_args):
            spec = parse_spec(text, i + 1)
            if spec.symbol in given:
                raise InputError(f"--spec {spec.symbol} given twice")
            given[spec.symbol] = spec
        symbols = [_pair(t, "--data", "FILE")[0] for t in data_args]
        for sym in given:
            if sym not in symbols:
                raise InputError(f"--spec {sym}: no --data {sym}=FILE to trade it on")
        specs = resolve_specs(symbols, given)
        candles, files = _read_files(data_args, "--data", signed=False)
    except BacktestInputError as exc:
        raise InputError(str(exc)) from None
    return MarketData(candles=candles, specs={s: specs[s] for s in candles}), files


def data_warnings(market: MarketData, files: dict[str, str], plans: list[Plan], warmup: int) -> list[str]:
    """The backtest command's warnings for each range: gaps traded through, a warm-up across a gap."""
    from .backtest_cmd import gap_notes, warmup_notes

    notes: list[str] = []
    for plan in plans:
        for window in (plan.train, plan.test):
            if window is None:
                continue
            for sym, c in market.candles.items():
                start, end = int(window.start_ts), int(window.end_ts)
                for note in warmup_notes(sym, files[sym], c, start, warmup) + gap_notes(sym, files[sym], c, start, end):
                    if note not in notes:
                        notes.append(note)
    return notes


def parse_range(text: str, option: str) -> Window:
    """`FROM..TO`, each a UTC date, ISO time or epoch seconds as `orchestrate backtest --from/--to`
    read them (a date as TO means its whole day); both ends inclusive."""
    from .timeargs import TimeArgError, parse_utc

    if text.count("..") != 1:
        raise RangeError(f"{option}: expected FROM..TO (e.g. 2018-04-04..2018-04-05), got {text!r}")
    a, b = text.split("..")
    try:
        start, end = parse_utc(a, option), parse_utc(b, option, end_of_day=True)
    except TimeArgError as exc:
        raise RangeError(str(exc)) from None
    if start > end:
        raise RangeError(f"{option}: FROM {a} is after TO {b}")
    return Window(start_ts=float(start), end_ts=float(end))


# --- helpers ---------------------------------------------------------------------------------------

def fingerprint(base: dict[str, Any], dims: list[Dimension], objective: str, window: Window,
                market: MarketData, warmup_bars: int | None) -> str:
    """Same inputs, same study: a changed space, config, data, range or objective starts a new one."""
    h = hashlib.sha256()
    h.update(msgspec.json.encode([base, dims, objective, window, warmup_bars,
                                  {s: msgspec.to_builtins(p) for s, p in market.specs.items()}]))
    for symbol, c in sorted(market.candles.items()):
        h.update(symbol.encode())
        for col in c:
            h.update(np.ascontiguousarray(col).tobytes())
    return h.hexdigest()


def as_symbol_table(params: dict[str, Any], symbol: str) -> dict[str, Any]:
    """{"grid.levels": 3} -> {"symbols.BTCUSD.grid.levels": 3}: the same values as the symbol's
    own table (its effective settings are what the trial ran: `symbol_settings`)."""
    return {f"symbols.{symbol}.{key}": value for key, value in params.items()}


def check_symbol_table_use(dims: list[Dimension], base_cfg: Config, symbols: list[str], as_table: bool) -> None:
    """InputError when a searched key would not change what a symbol trades (its own table in the
    base config sets it), or when --as-symbol-table cannot write the winner as a table."""
    from shared.symbol_settings import ACCOUNT_WIDE_RISK, SECTIONS

    for d in dims:
        section, _, key = d.key.partition(".")
        for sym in symbols:
            table = base_cfg.symbols.get(sym)
            if table is not None and key in getattr(table, section, {}):
                raise InputError(f"space key '{d.key}': [symbols.{sym}.{section}] in --config sets {key}, so the "
                                 f"search would not change what {sym} trades; remove it there to tune it")
        if as_table and (section not in SECTIONS or (section == "risk" and key in ACCOUNT_WIDE_RISK)):
            raise InputError(f"--as-symbol-table: space key '{d.key}' cannot go in a symbol's table (only "
                             f"grid.* and the per-symbol risk.* keys can)")
    if as_table and len(symbols) != 1:
        raise InputError(f"--as-symbol-table writes one symbol's table: give one --data symbol, not "
                         f"{len(symbols)} ({', '.join(symbols)})")


def _best_config(base: dict[str, Any], params: dict[str, Any], symbols: list[str], as_table: bool = False) -> Config:
    """The winning config, with run.symbols naming the tuned symbols when the live run can trade
    them (so `orchestrate --config best.toml` starts the bots the search tuned); with `as_table`
    the values go in the symbol's [symbols.SYMBOL.*] tables instead of the global ones."""
    from .optimize_study import trial_config

    if as_table:
        params = as_symbol_table(params, symbols[0])
    cfg = trial_config(base, params)
    try:
        return trial_config(base, {**params, "run.symbols": symbols})
    except ConfigError:
        return cfg


def _reproduce_command(path: Path, args: argparse.Namespace, window: Window) -> str:
    """The `orchestrate backtest` line that replays a trial: same data, specs, range and warm-up;
    balance and order latency are the backtest's defaults, as in every trial."""
    def iso(ts: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M", time.gmtime(ts))
    parts = ["orchestrate", "backtest"]
    for d in args.data:
        parts += ["--data", d]
    for sp in args.spec:
        parts += ["--spec", sp]
    parts += ["--config", str(path), "--from", iso(window.start_ts), "--to", iso(window.end_ts)]
    if args.warmup_bars is not None:
        parts += ["--warmup-bars", str(args.warmup_bars)]
    return shlex.join(parts)


# --- the command ------------------------------------------------------------------------------------

class Plan(msgspec.Struct, kw_only=True):
    """One study: a train range, a test range (or None), and its name."""
    name: str
    train: Window
    test: Window | None
    index: int = 0  # walk-forward window (1-based), 0 = a single train/test split


def _plans(args: argparse.Namespace, market: MarketData, name: str) -> list[Plan]:
    train = parse_range(args.train, "--train")
    test = parse_range(args.test, "--test") if args.test else None
    all_ts = np.unique(np.concatenate([c.ts for c in market.candles.values()]))
    if args.walk_forward:
        whole = Window(start_ts=min(train.start_ts, test.start_ts if test else train.start_ts),
                       end_ts=max(train.end_ts, test.end_ts if test else train.end_ts))
        windows: list[WalkForwardWindow] = walk_forward(all_ts, whole, args.walk_forward, args.train_share)
        return [Plan(name=f"{name}-wf{w.index}of{len(windows)}", train=w.train, test=w.test, index=w.index)
                for w in windows]
    if bars_in(all_ts, train) == 0:
        raise RangeError(f"--train {args.train}: no bars of the data fall in it (data: "
                         f"{Window(start_ts=float(all_ts[0]), end_ts=float(all_ts[-1])).label()})")
    if test is not None:
        if bars_in(all_ts, test) == 0:
            raise RangeError(f"--test {args.test}: no bars of the data fall in it")
        if test.start_ts <= train.end_ts and test.end_ts >= train.start_ts:
            raise RangeError(f"--test {args.test} overlaps --train {args.train}: the test range must be "
                             f"data the search never saw")
    return [Plan(name=name, train=train, test=test)]


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return _run(args)
    except InputError as exc:
        print(f"orchestrate optimize: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .optimize_study import StudyMismatch

    if args.trials < 1 or args.top < 1 or args.jobs < 1:
        raise InputError("--trials, --top and --jobs must be >= 1")
    if args.stale_after is not None and args.stale_after < 2:
        raise InputError("--stale-after must be >= 2 seconds (the driver beats every quarter of it, at least 1 s)")
    if args.walk_forward < 0:
        raise InputError("--walk-forward must be >= 1")
    try:
        base_cfg, notes = load_config(args.config)
        space_path = Path(args.space)
        dims = load_space(space_path.read_text(encoding="utf-8"), str(space_path))
        market, files = load_market(args.data, args.spec)
    except (ConfigError, SpaceError) as exc:
        raise InputError(str(exc)) from None
    except OSError as exc:
        raise InputError(f"{args.space}: cannot read ({exc.strerror or exc})") from None
    for note in notes:
        print(f"orchestrate optimize: {args.config}: {note}", file=sys.stderr)
    base = config_to_toml_dict(base_cfg)
    symbols = list(market.candles)
    check_symbol_table_use(dims, base_cfg, symbols, args.as_symbol_table)
    for warning in unused_symbol_tables(base_cfg, symbols):
        print(f"orchestrate optimize: warning: {args.config}: {warning}", file=sys.stderr)
    try:
        train = parse_range(args.train, "--train")
        fp = fingerprint(base, dims, args.objective, train, market, args.warmup_bars)
        name = args.study or f"{'-'.join(symbols)}-{args.objective}-{fp[:10]}"
        plans = _plans(args, market, name)
    except RangeError as exc:
        raise InputError(str(exc)) from None
    from shared.backtest.loop import default_warmup_bars

    warmup = default_warmup_bars(base_cfg) if args.warmup_bars is None else args.warmup_bars
    for note in data_warnings(market, files, plans, warmup):
        print(f"orchestrate optimize: warning: {note}", file=sys.stderr)
    run_dir = Path(args.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    storage = args.storage or f"sqlite:///{run_dir / 'optimize.sqlite'}"
    report_dir = Path(args.report) if args.report else run_dir / "optimize" / name
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        return _optimize(args, plans, base, dims, market, symbols, storage, report_dir)
    except StudyMismatch as exc:
        raise InputError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"\norchestrate optimize: interrupted; finished trials are kept in {_safe_url(storage)} "
              f"(study {plans[0].name if len(plans) == 1 else name + '-wf*'}); run the same command "
              f"to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _safe_url(url: str) -> str:
    """A storage URL without its password (postgresql://user:secret@host -> user:***@host)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the storage"


def _optimize(args: argparse.Namespace, plans: list[Plan], base: dict[str, Any], dims: list[Dimension],
              market: MarketData, symbols: list[str], storage: str, report_dir: Path) -> int:
    from sqlalchemy.exc import ArgumentError, OperationalError

    from .optimize_report import (
        NO_TEST,
        best_markdown,
        best_rows,
        best_toml,
        top_trials,
        trial_score,
        write_plots,
        write_trials_csv,
    )
    from .optimize_study import (
        STALE_AFTER_S,
        counted_trials,
        dask_client,
        evaluate_many,
        fail_reason,
        open_study,
        reclaim_stale,
        run_trials,
        scatter_market,
        trial_config,
    )

    report_dir.mkdir(parents=True, exist_ok=True)
    where = args.scheduler or f"a local Dask cluster of {args.jobs} worker process(es)"
    print(f"orchestrate optimize: {len(plans)} stud{'y' if len(plans) == 1 else 'ies'} of {args.trials} trials "
          f"on {where}; storage {_safe_url(storage)}", file=sys.stderr)
    sections: list[str] = []
    summary_rows: list[tuple[Plan, Any]] = []
    best_path = report_dir / "best.toml"
    exit_code = 0
    studies = {}
    for plan in plans:  # storage and study checks before any worker starts
        fp = fingerprint(base, dims, args.objective, plan.train, market, args.warmup_bars)
        try:
            studies[plan.name] = open_study(storage, plan.name, fp, args.seed, len(dims),
                                            args.stale_after or STALE_AFTER_S)
        except (ArgumentError, OperationalError, ImportError) as exc:
            raise InputError(f"--storage {_safe_url(storage)}: {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0]}") from None
    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(args.jobs, args.scheduler))
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(f"--scheduler {args.scheduler}: cannot reach a Dask scheduler there ({exc})") from None
        market_future = scatter_market(client, market)
        for plan in plans:
            study = studies[plan.name]
            stale = reclaim_stale(study)
            if stale:
                print(f"orchestrate optimize: study {plan.name}: {stale} trial(s) left running by a stopped "
                      f"driver are queued again", file=sys.stderr)
            run_trials(study, client, market_future, base, dims, plan.train, args.objective, args.trials,
                       warmup_bars=args.warmup_bars, label=plan.name)
            trials = study.get_trials(deepcopy=False)
            stem = "" if plan.index == 0 else f"wf{plan.index}-"
            write_trials_csv(trials, dims, report_dir / f"{stem}trials.csv")
            counted = counted_trials(study)
            failed = [t for t in counted if t.state.name == "FAIL"]
            top = top_trials(trials, args.top)
            if not top:
                reasons = sorted({fail_reason(t) for t in failed})[:3]
                print(f"orchestrate optimize: study {plan.name}: no trial finished ({len(failed)} failed: "
                      f"{'; '.join(reasons)})", file=sys.stderr)
                exit_code = 1
                continue
            configs = [trial_config(base, dict(t.params)) for t in top]
            tests = (evaluate_many(client, market_future, configs, plan.test, args.objective, args.warmup_bars)
                     if plan.test is not None else [TrialOutcome(error=NO_TEST) for _ in top])
            rows = best_rows(top, tests, args.objective)
            title = (f"Walk-forward window {plan.index} of {len(plans)}" if plan.index else "Best trials")
            sections.append(best_markdown(rows, args.objective, title, plan.train.label(),
                                          plan.test.label() if plan.test else ""))
            summary_rows.append((plan, rows[0]))
            winner = top[0]
            cfg = _best_config(base, dict(winner.params), symbols, args.as_symbol_table)
            header = [f"orchestrate optimize: study {plan.name}, trial #{winner.number} of {len(counted)}",
                      f"train {plan.train.label()}: {args.objective} = {winner.value!r}",
                      *(f"test {plan.test.label()}: {args.objective} = {rows[0].test.score!r}"
                        for _ in [0] if plan.test is not None),
                      "reproduce: " + _reproduce_command(best_path if not plan.index else
                                                         report_dir / f"best-{stem[:-1]}.toml", args, plan.train)]
            text = best_toml(cfg, header)
            target = report_dir / (f"best-{stem[:-1]}.toml" if plan.index else "best.toml")
            target.write_text(text)
            if plan.index == len(plans) or plan.index == 0:
                if plan.index:
                    best_path.write_text(text)
                exit_code = max(exit_code, _check_reproduces(best_path, market, plan.train, args.objective,
                                                             args.warmup_bars, trial_score(winner), winner.number))
            notes = write_plots(study, report_dir) if plan.index in (0, len(plans)) else []
            for note in notes:
                print(f"orchestrate optimize: {note}", file=sys.stderr)
            for r in rows:
                if r.much_worse:
                    print(f"orchestrate optimize: warning: trial #{r.number} scores {r.train:.6g} on train but "
                          f"{'failed' if r.test.score is None else f'{r.test.score:.6g}'} on test: likely "
                          f"overfitted", file=sys.stderr)
    doc = ["# Optimize report", "", f"Symbols {', '.join(symbols)}; objective `{args.objective}`; "
           f"{args.trials} trials per study; seed {args.seed}; storage `{_safe_url(storage)}`.", ""]
    if len(plans) > 1:
        doc += ["## Walk-forward", "", f"| window | train | test | best trial | train {args.objective} | "
                f"test {args.objective} | |", "|---:|---|---|---:|---:|---:|---|"]
        for plan, row in summary_rows:
            test = "failed" if row.test.score is None else f"{row.test.score:.6g}"
            doc.append(f"| {plan.index} | {plan.train.label()} | {plan.test.label() if plan.test else ''} | "
                       f"#{row.number} | {row.train:.6g} | {test} | "
                       f"{'**much worse on test**' if row.much_worse else ''} |")
        doc += ["", "`best.toml` is the last window's winner (the most recent data); `best-wfN.toml` each "
                "window's.", ""]
    doc += sections
    (report_dir / "best.md").write_text("\n".join(doc) + "\n")
    sys.stdout.write("\n".join(sections))
    print(f"orchestrate optimize: report in {report_dir} (trials.csv, best.md, best.toml, plots)", file=sys.stderr)
    return exit_code


def _check_reproduces(path: Path, market: MarketData, window: Window, objective: str, warmup: int | None,
                      expected: float, number: int) -> int:
    """Re-run the winner from best.toml in this process, outside the cluster: the score must be the
    very same float, or best.toml is not what the trial ran."""
    cfg, _ = load_config(path)
    again = evaluate(cfg, market, window, objective, warmup)
    if again.score != expected:
        print(f"orchestrate optimize: error: {path} scores {again.score!r} ({again.error}), trial #{number} "
              f"scored {expected!r}", file=sys.stderr)
        return 1
    print(f"orchestrate optimize: {path} reproduces trial #{number}'s {objective} {expected!r} exactly",
          file=sys.stderr)
    return 0
