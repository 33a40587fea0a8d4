"""`orchestrate`: the operator's command line.

    orchestrate [run] --symbols BTCUSD,ETHUSD [--config FILE] [--run-dir DIR] ...
    orchestrate status [--json] [--watch]     orchestrate stop [--cancel-orders]
    orchestrate pause SYMBOL                  orchestrate resume SYMBOL | --all
    orchestrate halt [--flatten] [--reason T] orchestrate clear-halt
    orchestrate flatten SYMBOL... | --all
    orchestrate indicators --csv FILE         orchestrate history [--symbol S] [--halts] [--json]
    orchestrate venue --port P --run-dir DIR  (the paper venue alone; writes DIR/venue.json)
    orchestrate loadtest --symbols 10,50,200 --tick-rate 2 --duration 20 [--json]
    orchestrate soak --symbols 50 --duration 1800
    orchestrate backtest --data BTCUSD=FILE [--config FILE] [--from D --to D] [--json] [--report DIR]
    orchestrate download --venue india --symbol BTCUSD --from D --to D --out FILE
    orchestrate optimize --data SYMBOL=FILE --space space.toml --train FROM..TO --test FROM..TO ...

Exit codes: 0 ok, 1 runtime failure, 2 bad input (config, arguments, files).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from shared.arrivals import ARRIVALS
from shared.config import ConfigError, alert_urls_from_env, load_config, secrets_from_env
from shared.status import render_table
from shared.symbol_settings import unused_symbol_tables

from .rundir import DEFAULT_RUN_DIR

SUBCOMMANDS = ("run", "status", "stop", "pause", "resume", "halt", "clear-halt", "flatten", "indicators", "history",
               "venue", "loadtest", "soak", "backtest", "download")
PASSTHROUGH = ("loadtest", "soak", "backtest", "download")  # parse their own arguments (their modules)


def _add_run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", default=os.environ.get("ORCHESTRATE_RUN_DIR", DEFAULT_RUN_DIR),
                   help=f"directory for everything a run keeps: lock, control socket, logs, SQLite "
                        f"(default: ./{DEFAULT_RUN_DIR}, or $ORCHESTRATE_RUN_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrate",
                                     description="Multi-symbol grid + signal trading on Delta Exchange")
    sub = parser.add_subparsers(dest="command")

    run = sub.add_parser("run", help="start the supervisor and one bot per symbol (the default)")
    _add_run_dir(run)
    run.add_argument("--symbols", help="comma-separated symbols, e.g. BTCUSD,ETHUSD")
    run.add_argument("--config", help="TOML config, or the original bot's config.json")
    run.add_argument("--mode", choices=("paper", "live"))
    run.add_argument("--venue", help="paper | india | india-testnet | global | global-testnet")
    run.add_argument("--pool-size", type=int, help="compute-pool processes (0 = one per core)")
    run.add_argument("--bar-seconds", type=float, help="paper replay: wall seconds per 1m bar")
    run.add_argument("--arrivals", choices=ARRIVALS,
                     help="paper replay: each symbol's ticks at its own seeded time (independent, the default) "
                          "or every market's in 8 bursts a quarter bar (lockstep)")
    run.add_argument("--metrics-port", type=int, help="Prometheus port on 127.0.0.1 (0 = any free port)")
    run.add_argument("--no-display", action="store_true", help="do not print the live status table")

    st = sub.add_parser("status", help="show every bot's status")
    _add_run_dir(st)
    st.add_argument("--json", action="store_true", help="print the status document as JSON (stable schema)")
    st.add_argument("--watch", action="store_true", help="refresh in place")
    st.add_argument("--interval", type=float, default=2.0)

    stop = sub.add_parser("stop", help="stop the running supervisor")
    _add_run_dir(stop)
    stop.add_argument("--cancel-orders", action="store_true", help="cancel every open order the bots own first")

    p = sub.add_parser("pause", help="pause trading on one symbol (no new entries)")
    _add_run_dir(p)
    p.add_argument("symbol")
    p = sub.add_parser("resume", help="resume one symbol, or with --all lift the account halt and resume every symbol")
    _add_run_dir(p)
    p.add_argument("symbol", nargs="?", default="")
    p.add_argument("--all", action="store_true", help="lift the account halt (logged with your user name) and "
                                                     "resume every symbol")

    h = sub.add_parser("halt", help="halt the whole account by hand: no new entries, orders cancelled, "
                                    "protective stops kept; lifted only by resume --all or clear-halt")
    _add_run_dir(h)
    h.add_argument("--flatten", action="store_true", help="also flatten every symbol (see flatten)")
    h.add_argument("--reason", default="", help="why (shown in status and kept in the ledger's halt log)")
    ch = sub.add_parser("clear-halt", help="lift the account halt (the symbols' pauses stay)")
    _add_run_dir(ch)
    fl = sub.add_parser("flatten", help="cancel the bots' orders on SYMBOLs and close their positions with "
                                        "reduce-only market orders, confirmed on the venue; the symbols stay paused")
    _add_run_dir(fl)
    fl.add_argument("symbols", nargs="*", metavar="SYMBOL")
    fl.add_argument("--all", action="store_true", help="every symbol of the run")

    hist = sub.add_parser("history", help="fills and PnL from the run's SQLite ledger")
    _add_run_dir(hist)
    hist.add_argument("--symbol", help="one symbol only")
    hist.add_argument("--json", action="store_true", help="print JSON (exact decimal strings)")
    hist.add_argument("--last", type=int, default=50, help="fills to show in the table (default 50)")
    hist.add_argument("--orders", action="store_true",
                      help="also list the newest order events (placed, amended, cancelled, rejected with "
                           "Delta's code, stop triggered), --last of them")
    hist.add_argument("--halts", action="store_true",
                      help="also list the account's halt log: each halt and its lifting, why and by whom")

    ven = sub.add_parser("venue", help="run the paper venue alone (Delta REST + websocket on 127.0.0.1)")
    _add_run_dir(ven)
    ven.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    ven.add_argument("--symbols", default="BTCUSD,ETHUSD", help="markets to replay (SYN_NNNN for synthetic)")
    ven.add_argument("--bar-seconds", type=float, default=1.0, help="wall seconds per replayed 1m bar")

    ind = sub.add_parser("indicators", help="print indicators of an OHLCV CSV (streaming form)")
    _add_run_dir(ind)
    ind.add_argument("--csv", required=True, help="file with ts,open,high,low,close,volume")
    return parser


# Which option set which key: a bad value is reported under the name the operator typed.
OPTION_NAMES = {"run.symbols": "--symbols", "run.mode": "--mode", "run.venue": "--venue",
                "processes.pool_size": "--pool-size", "market.bar_seconds": "--bar-seconds",
                "market.arrivals": "--arrivals",
                "status.metrics_port": "--metrics-port"}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}

    def put(section: str, key: str, value: Any) -> None:
        if value is not None:
            o.setdefault(section, {})[key] = value

    if args.symbols is not None:
        syms = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        put("run", "symbols", syms)
    put("run", "mode", args.mode)
    put("run", "venue", args.venue)
    if args.mode == "live" and args.venue is None:
        put("run", "venue", "india")
    put("processes", "pool_size", args.pool_size)
    put("market", "bar_seconds", args.bar_seconds)
    put("market", "arrivals", args.arrivals)
    put("status", "metrics_port", args.metrics_port)
    return o


def cmd_run(args: argparse.Namespace) -> int:
    from .rundir import RunDir, RunDirBusy, RunDirError
    from .supervisor import run_supervisor
    try:
        cfg, notes = load_config(args.config, _overrides(args), option_names=OPTION_NAMES)
        secrets = secrets_from_env()
        alert_urls = alert_urls_from_env(cfg.alerts)
        if alert_urls:
            from .alerts import check_urls
            check_urls(cfg.alerts, alert_urls)
    except ConfigError as exc:
        print(f"orchestrate: config error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"orchestrate: {args.config}: {note}", file=sys.stderr)
    for warning in unused_symbol_tables(cfg, cfg.run.symbols):
        print(f"orchestrate: warning: {args.config}: {warning}", file=sys.stderr)
    if cfg.dashboard.enabled:
        from .dashboard.server import DashboardError, token_from_env
        try:
            token_from_env()
        except DashboardError as exc:
            print(f"orchestrate: dashboard: {exc}", file=sys.stderr)
            return 2
    if cfg.market.funding_series and cfg.run.mode == "paper":
        from shared.funding import load_series
        try:  # read once here: a bad file must stop the start, not crash-loop the venue
            load_series(cfg.market.funding_series)
        except ValueError as exc:
            print(f"orchestrate: config error: {exc}", file=sys.stderr)
            return 2
    if cfg.run.mode == "live":
        if secrets is None:
            print("orchestrate: live mode needs DELTA_API_KEY and DELTA_API_SECRET in the environment",
                  file=sys.stderr)
            return 2
        if cfg.market.source != "venue":
            print("orchestrate: live mode trades through the exchange: set market.source = 'venue'", file=sys.stderr)
            return 2
        print(f"orchestrate: LIVE trading on Delta {cfg.run.venue} with real money "
              f"(key {secrets.api_key[:4]}…)", file=sys.stderr)
        problem = _check_live_symbols(cfg.run.venue, cfg.run.symbols)
        if problem:
            print(f"orchestrate: {problem}", file=sys.stderr)
            return 2
    if cfg.market.source == "live-prices":
        problem = _check_price_feed(cfg.run.venue, cfg.run.symbols)
        if problem:
            print(f"orchestrate: {problem}", file=sys.stderr)
            return 2
    if cfg.run.mode == "paper" and cfg.market.through_venue and cfg.market.paper_venue == "external":
        from .supervisor import external_venue_access
        try:
            external_venue_access(Path(args.run_dir))
        except ValueError as exc:
            print(f"orchestrate: market.paper_venue = 'external': {exc}", file=sys.stderr)
            return 2
    run_dir = RunDir(args.run_dir)
    try:
        run_dir.acquire()
    except (RunDirBusy, RunDirError) as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. <run dir>/logs is a file; the lock goes with our exit
        print(f"orchestrate: cannot use run dir {run_dir.path}: {exc.strerror or exc} ({exc.filename})",
              file=sys.stderr)
        return 2
    removed = run_dir.clean_leftovers()
    if removed:
        print(f"orchestrate: removed {len(removed)} leftover(s) of an earlier run", file=sys.stderr)
    try:
        return run_supervisor(cfg, run_dir, foreground=not args.no_display, alert_urls=tuple(alert_urls))
    finally:
        run_dir.release()


def _check_price_feed(venue_name: str, symbols: list[str]) -> str:
    """market.source = "live-prices": the source must list every symbol (or the run stops, exit 2)."""
    import os

    from shared.price_source import price_feed
    from workers.venue.live_feed import check_feed
    try:
        feed = price_feed(venue_name, os.environ)
    except ValueError as exc:
        return str(exc)
    return check_feed(feed, symbols)


def _check_live_symbols(venue_name: str, symbols: list[str]) -> str:
    """Refuse an unknown symbol before anything starts (names the closest listed symbols)."""
    import asyncio

    from shared.delta.errors import DeltaError
    from shared.delta.rest import DeltaRestClient
    from shared.delta.venues import resolve_venue
    from shared.products import UnknownSymbolError

    async def check() -> str:
        async with DeltaRestClient(resolve_venue(venue_name).rest_url) as rest:
            await rest.resolve_symbols(symbols)
        return ""
    try:
        return asyncio.run(check())
    except UnknownSymbolError as exc:
        return str(exc)
    except (DeltaError, OSError) as exc:
        return f"cannot read the product list of {venue_name}: {exc}"


def cmd_status(args: argparse.Namespace) -> int:
    from .control import NotRunning, get_status
    while True:
        try:
            snap = get_status(Path(args.run_dir))
        except NotRunning as exc:
            print(f"orchestrate: {exc}", file=sys.stderr)
            return 1
        if args.json:
            sys.stdout.write(msgspec.json.format(msgspec.json.encode(snap), indent=2).decode() + "\n")
        else:
            text = render_table(snap)
            sys.stdout.write(("\x1b[H\x1b[2J" if args.watch and sys.stdout.isatty() else "") + text + "\n")
        sys.stdout.flush()
        if not args.watch:
            return 0
        try:
            time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def cmd_simple(args: argparse.Namespace) -> int:
    from .control import NotRunning, command
    kw: dict[str, Any] = {}
    if args.command == "pause":
        kw["symbol"] = args.symbol.upper()
    if args.command == "resume":
        if bool(args.symbol) == bool(args.all):
            print("orchestrate resume: name one SYMBOL, or --all to lift the account halt and resume every "
                  "symbol", file=sys.stderr)
            return 2
        kw.update({"all": True} if args.all else {"symbol": args.symbol.upper()})
    if args.command == "stop":
        kw["cancel_orders"] = bool(args.cancel_orders)
    if args.command == "halt":
        kw.update(reason=args.reason, flatten=bool(args.flatten))
    if args.command == "flatten":
        if bool(args.symbols) == bool(args.all):
            print("orchestrate flatten: name the SYMBOLs to flatten, or --all (not both)", file=sys.stderr)
            return 2
        kw.update({"all": True} if args.all else {"symbols": [s.upper() for s in args.symbols]})
    try:
        reply = command(Path(args.run_dir), args.command, **kw)
    except NotRunning as exc:
        print(f"orchestrate: {exc}", file=sys.stderr)
        return 1
    if reply.get("bad_input"):
        print(f"orchestrate {args.command}: {reply.get('message', reply)}", file=sys.stderr)
        return 2
    print(reply.get("message", reply))
    return 0 if reply.get("ok") else 1


def cmd_history(args: argparse.Namespace) -> int:
    import sqlite3

    from shared.store import Store, StoreError, db_path
    from shared.trading.pnl import summary_to_builtins
    symbol = args.symbol.upper() if args.symbol else None
    path = db_path(args.run_dir)
    try:
        store = Store(path, readonly=True)
    except StoreError as exc:
        print(f"orchestrate: {exc} (no trades recorded in run dir {args.run_dir})", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"orchestrate: {path} cannot be read as this program's ledger ({exc})", file=sys.stderr)
        return 2
    try:
        with store:
            fills = store.fills(symbol)
            funding = store.funding(symbol)
            summary = summary_to_builtins(store.pnl_summary(symbol))
            orders = store.order_events(symbol, limit=max(1, args.last)) if args.orders else []
            halts = store.halt_events(limit=max(1, args.last)) if args.halts else []
    except sqlite3.Error as exc:  # not SQLite, or another program's database
        print(f"orchestrate: {path} is not a trading ledger written by orchestrate ({exc})", file=sys.stderr)
        return 2
    if args.json:
        doc = {"fills": [msgspec.to_builtins(f) for f in fills], "symbols": summary["symbols"],
               "pnl": summary["total"], "funding": [msgspec.to_builtins(f) for f in funding]}
        if args.orders:
            doc["order_events"] = [msgspec.to_builtins(o) for o in orders]
        if args.halts:
            doc["halts"] = [msgspec.to_builtins(h) for h in halts]
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n")
        return 0
    if args.orders:
        print(f"{'TIME (UTC)':<20} {'SYMBOL':<10} {'EVENT':<15} {'SIDE':<4} {'SIZE':>6} {'PRICE':>12}  "
              "CLIENT ORDER ID / DETAIL")
        for o in orders:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(o.ts))
            print(f"{when:<20} {o.symbol:<10} {o.event:<15} {o.side:<4} {o.size:>6} {o.price:>12}  "
                  f"{o.client_order_id or o.order_id}  {o.detail}")
        print(f"\n{len(orders)} order event(s)\n")
    if args.halts:  # the account's, whatever --symbol says
        print(f"{'TIME (UTC)':<20} {'EVENT':<6} {'BY':<24} REASON")
        for h in halts:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(h.ts))
            print(f"{when:<20} {'lifted' if h.event == 'clear' else h.event:<6} {h.by[:24]:<24} {h.reason}")
        print(f"\n{len(halts)} halt event(s)" + (" (none: the account was never halted)" if not halts else "") + "\n")
    print(f"{'TIME (UTC)':<20} {'SYMBOL':<10} {'SIDE':<4} {'SIZE':>6} {'PRICE':>12} {'FEE':>10} {'ROLE':<5}  "
          "CLIENT ORDER ID")
    for f in fills[-args.last:]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(f.ts))
        # "-": the venue did not say, or the fill was stored before the ledger kept roles
        print(f"{when:<20} {f.symbol:<10} {f.side:<4} {f.size:>6} {f.price:>12} {f.fee:>10} {f.role or '-':<5}  "
              f"{f.client_order_id}")
    print(f"\n{len(fills)} fill(s), {len(funding)} funding payment(s) (funding: + received, - paid)")
    print(f"{'SYMBOL':<10} {'POSITION':>9} {'REALISED':>12} {'UNREALISED':>12} {'FEES':>10} {'FUNDING':>10} "
          f"{'NET':>12}")
    for r in summary["symbols"]:
        print(f"{r['symbol']:<10} {r['contracts']:>9} {r['realised_cents']:>12} {r['unrealised_cents']:>12} "
              f"{r['fees_cents']:>10} {r['funding_cents']:>10} {r['net_cents']:>12}")
    t = summary["total"]
    print(f"{'TOTAL':<10} {'':>9} {t['realised_cents']:>12} {t['unrealised_cents']:>12} {t['fees_cents']:>10} "
          f"{t['funding_cents']:>10} {t['net_cents']:>12}")
    return 0


def cmd_venue(args: argparse.Namespace) -> int:
    from shared.config import allowed_range
    from workers.venue import VenueSettings, venue_main

    from .rundir import RunDirError, ensure_run_dir
    syms = [x.strip().upper() for x in args.symbols.split(",") if x.strip()]
    options = {"port": "--port", "bar_seconds": "--bar-seconds"}
    try:
        # convert, not the constructor: msgspec checks the ranges declared on the fields
        settings = msgspec.convert({"port": args.port, "bar_seconds": args.bar_seconds}, VenueSettings)
    except msgspec.ValidationError as exc:
        text, _, where = str(exc).partition(" - at `$.")
        field = where.rstrip("`")
        if field in options:
            text = (f"{options[field]} {getattr(args, field)} is out of range: allowed "
                    f"{allowed_range(field, VenueSettings)}")
        print(f"orchestrate venue: {text}", file=sys.stderr)
        return 2
    try:
        ensure_run_dir(Path(args.run_dir))
    except RunDirError as exc:
        print(f"orchestrate venue: {exc}", file=sys.stderr)
        return 2
    return venue_main(settings.port, args.run_dir, syms, settings)


def cmd_indicators(args: argparse.Namespace) -> int:
    from .indicators_cmd import run_indicators
    return run_indicators(args.csv, sys.stdout, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("backtest", "download"):  # parse their own arguments (their modules)
        from importlib import import_module
        own = import_module(f".{argv[0]}_cmd", __package__).main  # backtest_cmd / download_cmd
        own_argv = argv[1:]
        return _guarded(argv[0], lambda: own(own_argv))
    if argv and argv[0] in PASSTHROUGH:
        from . import loadtest
        return (loadtest.main_loadtest if argv[0] == "loadtest" else loadtest.main_soak)(argv[1:])
    if argv and argv[0] == "optimize":  # parses its own arguments (orchestrator/optimize_cmd.py)
        from .optimize_cmd import main as optimize_main
        return optimize_main(argv[1:])
    if not argv or argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["run", *argv]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    handlers = {"run": cmd_run, "status": cmd_status, "stop": cmd_simple, "pause": cmd_simple,
                "resume": cmd_simple, "halt": cmd_simple, "clear-halt": cmd_simple, "flatten": cmd_simple,
                "indicators": cmd_indicators, "history": cmd_history, "venue": cmd_venue}
    return _guarded(args.command, lambda: handlers[args.command](args))


def _guarded(command: str, run: Callable[[], int]) -> int:
    try:
        return run()
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an unforeseen environment: one line, not a traceback
        print(f"orchestrate: {command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("ORCHESTRATE_TRACEBACK") == "1":
            import traceback
            traceback.print_exc()
        else:
            print("orchestrate: set ORCHESTRATE_TRACEBACK=1 to see where", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
