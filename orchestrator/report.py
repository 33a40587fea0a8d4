"""What a backtest tells the trader: the console table, and `--report DIR` (the JSON, a markdown
summary and PNG plots). Everything here reads the backtest's JSON document (a dict), so a report
can be remade from a saved `backtest.json` and tested on a hand-made document.

Plots use matplotlib's Agg backend (files only, no display). matplotlib is imported only when a
report is written, so the console path starts fast.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.backtest.loop import MAX_GAPS_LISTED

from .timeargs import duration_text, utc_text

if TYPE_CHECKING:  # numpy is imported lazily, with matplotlib, only when a plot is drawn
    from numpy.typing import ArrayLike

JSON_NAME = "backtest.json"
SUMMARY_NAME = "summary.md"
EQUITY_PLOT = "equity.png"
PNL_PLOT = "pnl.png"
GAPS_SHADED = 200  # longest gaps drawn on a price plot; more would only grey the chart
GAP_SHADED_MIN_S = 900
TABLE_COLUMNS = ("SYMBOL", "NET USD", "FEES USD", "FUNDING USD", "MAX DD %", "FILLS", "ORDERS/H",
                 "POSITION")


class ReportUnavailable(RuntimeError):
    """The plotting library is missing; the message says how to install it."""


def price_plot_name(symbol: str) -> str:
    return f"price-{symbol}.png"


def _money(x: float) -> str:
    return f"{x:,.2f}"


def orders_per_hour(doc: Mapping[str, Any], fig: Mapping[str, Any]) -> float:
    """Orders placed, amended and cancelled per market hour traded. Taken from the document when
    the backtest reports it; otherwise from the counts and the traded span (1m bars)."""
    if "orders_per_hour" in fig:
        return float(fig["orders_per_hour"])
    actions = fig.get("orders_placed", 0) + fig.get("orders_amended", 0) + fig.get("orders_cancelled", 0)
    n_symbols = max(1, len(doc.get("symbols", [])))
    hours = doc.get("bars", 0) / n_symbols / 60.0
    return actions / hours if hours > 0 else 0.0


def summary_rows(doc: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """One row per symbol and a TOTAL row, cells already formatted (console and markdown share them)."""
    rows: list[tuple[str, ...]] = []

    def row(name: str, fig: Mapping[str, Any], position: str) -> tuple[str, ...]:
        return (name, _money(fig["net_pnl"]), _money(fig["fees"]), _money(fig["funding"]),
                f"{fig['max_drawdown_pct']:.2f}", f"{fig['fills']:,}", f"{orders_per_hour(doc, fig):.1f}",
                position)

    for sym in doc["symbols"]:
        fig = doc["per_symbol"][sym]
        pos = fig.get("position")
        rows.append(row(sym, fig, "" if pos is None else f"{pos:,}"))
    rows.append(row("TOTAL", doc["summary"], ""))
    return rows


def headline(doc: Mapping[str, Any]) -> list[str]:
    """The lines above the table: range, bars, balance, latency, funding, halts, interruption."""
    lines = []
    span = ""
    if doc.get("end_ts"):
        span = f"{utc_text(doc['start_ts'])} .. {utc_text(doc['end_ts'])} UTC, "
    lines.append(f"backtest {', '.join(doc['symbols'])}: {span}{doc['bars']:,} bars traded "
                 f"(+{doc.get('warmup_bars', 0):,} warm-up), {doc.get('elapsed_s', 0.0):.1f} s")
    s = doc["summary"]
    balance = doc.get("balance_usd")
    start = f"start {_money(balance)} USD, " if balance else ""
    lines.append(f"{start}net {_money(s['net_pnl'])} USD ({s['return_pct']:+.2f}%), realised "
                 f"{_money(s['realised_pnl'])}, unrealised {_money(s['unrealised_pnl'])}, fees "
                 f"{_money(s['fees'])}, funding {_money(s['funding'])}; sharpe {s['sharpe']:.2f}, "
                 f"max drawdown {s['max_drawdown_pct']:.2f}%, in market {s['time_in_market_pct']:.1f}% of bars")
    src = doc.get("funding_source") or {}
    if src:
        parts = [f"{sym} {'from the FUNDING series' if how == 'series' else 'none (no series given)'}"
                 for sym, how in src.items()]
        lines.append("funding: " + "; ".join(parts))
    if doc.get("latency_ticks"):
        lines.append(f"order latency: {doc['latency_ticks']} tick(s) (an order sent at tick t rests from t + n)")
    if doc.get("halted"):
        lines.append(f"HALTED by the account risk rules at {utc_text(doc.get('halted_ts', 0))} UTC: {doc['halted']}")
    if doc.get("fills_dropped"):
        lines.append(f"note: {doc['fills_dropped']:,} fills beyond the kept bound are counted but not listed")
    if doc.get("interrupted"):
        lines.append("INTERRUPTED: figures cover the bars replayed before the stop")
    return lines


def console_summary(doc: Mapping[str, Any]) -> str:
    """The summary printed after a run: headline lines and a fixed-width table per symbol."""
    rows = summary_rows(doc)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(TABLE_COLUMNS)]

    def fmt(cells: Sequence[str]) -> str:
        # every row has one cell per column (summary_rows builds them), so the zip is strict
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    out = headline(doc) + ["", fmt(TABLE_COLUMNS)]
    out += [fmt(r) for r in rows]
    return "\n".join(out) + "\n"


def markdown_summary(doc: Mapping[str, Any], command: str = "", plots: Sequence[str] = ()) -> str:
    lines = ["# Backtest", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [f"- {line}" for line in headline(doc)]
    lines += ["", "| " + " | ".join(TABLE_COLUMNS) + " |",
              "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in summary_rows(doc)]
    s = doc["summary"]
    lines += ["", f"Orders: {s['orders_placed']:,} placed, {s['orders_amended']:,} amended, "
              f"{s['orders_cancelled']:,} cancelled; {s['fills']:,} fills.",
              "Signs: fees positive = paid, funding positive = received; "
              "net = realised + unrealised - fees + funding, unrealised at the last close.", ""]
    gaps = doc.get("gaps") or {}
    for sym, items in gaps.items():
        if items:
            longest = max(items, key=lambda g: g[1])
            total = sum(g[1] for g in items)
            count = f"{len(items):,}" if len(items) < MAX_GAPS_LISTED else f"{len(items):,} or more (the first listed)"
            lines.append(f"Data gaps in {sym}: {count}, {duration_text(total)} without bars in those, "
                         f"longest {duration_text(longest[1])} from {utc_text(longest[0])} UTC "
                         "(traded through as a quiet market; no bars invented).")
    if gaps:
        lines.append("")
    for name in plots:
        lines += [f"![{name}]({name})", ""]
    lines += _config_lines(doc.get("config") or {})
    return "\n".join(lines)


def _config_lines(config: Mapping[str, Any]) -> list[str]:
    """The configuration the run used, as `[section]` lines of key = value (what a trader changes
    between runs: a saved report then says which settings made it)."""
    if not config:
        return []
    out = ["## Configuration", "", "```toml"]
    # plain keys before the first [section], or TOML would file them under the last one
    for section, values in sorted(config.items(), key=lambda kv: isinstance(kv[1], Mapping)):
        if isinstance(values, Mapping):
            out.append(f"[{section}]")
            out += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        else:
            out.append(f"{section} = {_toml_value(values)}")
    return out + ["```", ""]


def _toml_value(v: Any) -> str:
    if isinstance(v, Mapping):  # an inline table, e.g. consensus_weights
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)  # numbers, strings, booleans and lists read the same in TOML


# ------------------------------------------------------------------------------------- plots

def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ReportUnavailable(
            "--report draws its plots with matplotlib, which is not installed here: "
            "pip install 'matplotlib>=3.8' (or reinstall this package: pip install -e .)") from None
    matplotlib.use("Agg", force=True)  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt
    return plt


def _dates(ts: ArrayLike) -> Any:
    import matplotlib.dates as mdates
    import numpy as np
    return mdates.date2num(np.asarray(ts, dtype=np.float64).astype("int64").astype("datetime64[s]"))


def _side_colour(side: str) -> str:
    return "tab:green" if side == "buy" else "tab:red"


def _price_plot(plt: Any, doc: Mapping[str, Any], symbol: str, path: Path) -> None:
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    tl = (doc.get("timeline") or {}).get(symbol) or {}
    fig, ax = plt.subplots(figsize=(13, 6.5), dpi=110)
    price = tl.get("price") or []
    if price:
        p = np.asarray(price, dtype=np.float64)
        ax.plot(_dates(p[:, 0]), p[:, 1], color="0.25", lw=0.8, label="close", zorder=2)
    orders = tl.get("orders") or []
    # the protective stop is drawn from its own timeline below, so its order lives are skipped here
    styles = {"entry": "-", "take_profit": "--"}
    if orders:
        t0 = _dates([o[0] for o in orders])
        t1 = _dates([o[1] for o in orders])
        for purpose, style in styles.items():
            for side in ("buy", "sell"):
                segs = [[(a, o[3]), (b, o[3])] for a, b, o in zip(t0, t1, orders, strict=True)
                        if o[2] == side and o[4] != "stop"
                        and (o[4] == purpose or (purpose == "entry" and o[4] not in styles))]
                if segs:
                    ax.add_collection(LineCollection(segs, colors=_side_colour(side), linestyles=style,
                                                     linewidths=1.4, alpha=0.55, zorder=3))
    stop = tl.get("stop") or []
    if stop:
        s = np.asarray([(t, p if p else math.nan) for t, p in stop], dtype=np.float64)
        # the stop rests at a price until it moves: draw each level up to the next change
        xs = np.append(s[:, 0], price[-1][0] if price else s[-1, 0])
        ax.step(_dates(xs), np.append(s[:, 1], s[-1, 1]), where="post", color="tab:orange", lw=1.2,
                zorder=4)
    fills = [f for f in doc.get("fills", []) if f["symbol"] == symbol]
    for side, marker in (("buy", "^"), ("sell", "v")):
        pts = [f for f in fills if f["side"] == side]
        if pts:
            ax.scatter(_dates([f["ts"] for f in pts]), [f["price"] for f in pts], marker=marker, s=36,
                       c=_side_colour(side), edgecolors=["black" if f["role"] == "taker" else "none" for f in pts],
                       linewidths=0.8, zorder=5)
    # Shade the gaps a trader can see at this scale (a missing minute in a year is invisible).
    span = (price[-1][0] - price[0][0]) if len(price) > 1 else 0.0
    visible = max(GAP_SHADED_MIN_S, span / 400.0)
    gaps = sorted((g for g in (doc.get("gaps") or {}).get(symbol) or [] if g[1] >= visible),
                  key=lambda g: -g[1])[:GAPS_SHADED]
    for start, seconds in gaps:
        a, b = _dates([start, start + seconds])
        ax.axvspan(a, b, color="0.9", zorder=1, lw=0)
    handles = [Line2D([], [], color="0.25", lw=0.8, label="close"),
               Line2D([], [], color="tab:green", lw=1.4, label="buy order (resting)"),
               Line2D([], [], color="tab:red", lw=1.4, label="sell order (resting)"),
               Line2D([], [], color="0.4", lw=1.4, ls="--", label="take-profit"),
               Line2D([], [], color="tab:orange", lw=1.2, label="protective stop"),
               Line2D([], [], color="tab:green", marker="^", ls="", label="buy fill"),
               Line2D([], [], color="tab:red", marker="v", ls="", label="sell fill (black edge: taker)")]
    if gaps:
        handles.append(Line2D([], [], color="0.85", lw=6, label="no data (gap)"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
    dropped = tl.get("orders_dropped", 0)
    fig_ = doc["per_symbol"][symbol]
    title = (f"{symbol}: net {_money(fig_['net_pnl'])} USD, {fig_['fills']:,} fills, "
             f"{fig_['orders_placed']:,} orders placed")
    if dropped:
        title += f" ({dropped:,} order lives not drawn)"
    ax.set_title(title)
    ax.set_ylabel("price")
    ax.xaxis_date()
    ax.autoscale_view()
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def drawdown_pct(equity: Sequence[float]) -> list[float]:
    """Fall from the running peak, % of the peak (0 at a new high, negative below it)."""
    out, peak = [], -math.inf
    for e in equity:
        peak = max(peak, e)
        out.append((e / peak - 1.0) * 100.0 if peak > 0 else 0.0)
    return out


def _equity_plot(plt: Any, doc: Mapping[str, Any], path: Path) -> None:
    eq = doc.get("equity") or []
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 6.5), dpi=110, sharex=True,
                                   gridspec_kw={"height_ratios": [2, 1]})
    if eq:
        x = _dates([e[0] for e in eq])
        y = [e[1] for e in eq]
        ax1.plot(x, y, color="tab:blue", lw=1.0)
        if doc.get("balance_usd"):
            ax1.axhline(doc["balance_usd"], color="0.5", lw=0.8, ls="--", label="starting balance")
            ax1.legend(loc="upper left", fontsize=8)
        dd = drawdown_pct(y)
        ax2.fill_between(x, dd, 0.0, color="tab:red", alpha=0.4, lw=0)
    s = doc["summary"]
    ax1.set_title(f"Account equity: net {_money(s['net_pnl'])} USD ({s['return_pct']:+.2f}%), "
                  f"sharpe {s['sharpe']:.2f}")
    ax1.set_ylabel("equity, USD")
    ax2.set_ylabel("drawdown, %")
    ax2.set_title(f"max drawdown {s['max_drawdown_pct']:.2f}%", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis_date()
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pnl_plot(plt: Any, doc: Mapping[str, Any], path: Path) -> None:
    import numpy as np
    symbols = list(doc["symbols"])
    parts = (("realised_pnl", "realised", 1.0, "tab:blue"), ("unrealised_pnl", "unrealised", 1.0, "tab:cyan"),
             ("fees", "fees paid", -1.0, "tab:red"), ("funding", "funding", 1.0, "tab:purple"),
             ("net_pnl", "net", 1.0, "black"))
    x = np.arange(len(symbols))
    width = 0.8 / len(parts)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(symbols) + 3), 4.8), dpi=110)
    for k, (key, label, sign, colour) in enumerate(parts):
        vals = [sign * doc["per_symbol"][s][key] for s in symbols]
        ax.bar(x + (k - (len(parts) - 1) / 2) * width, vals, width, label=label, color=colour, alpha=0.85)
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xticks(x, symbols)
    ax.set_ylabel("USD")
    ax.set_title("PnL by symbol (fees drawn as a loss)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def check_report_support() -> None:
    """Raise ReportUnavailable before a long run if the report could not be drawn after it."""
    _pyplot()


def write_report(doc: Mapping[str, Any], json_bytes: bytes, out_dir: str | Path, *,
                 command: str = "") -> list[Path]:
    """Write `backtest.json` (exactly `json_bytes`, the document `--json` prints), `summary.md` and
    the plots into `out_dir` (created if needed). Returns the paths written, JSON first."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / JSON_NAME]
    written[0].write_bytes(json_bytes if json_bytes.endswith(b"\n") else json_bytes + b"\n")
    plots: list[str] = []
    _equity_plot(plt, doc, out / EQUITY_PLOT)
    plots.append(EQUITY_PLOT)
    _pnl_plot(plt, doc, out / PNL_PLOT)
    plots.append(PNL_PLOT)
    for sym in doc["symbols"]:
        name = price_plot_name(sym)
        _price_plot(plt, doc, sym, out / name)
        plots.append(name)
    md = out / SUMMARY_NAME
    md.write_text(markdown_summary(doc, command, plots), encoding="utf-8")
    written.append(md)
    written += [out / p for p in plots]
    return written


__all__ = ["ReportUnavailable", "check_report_support", "console_summary", "drawdown_pct",
           "markdown_summary", "orders_per_hour", "price_plot_name", "summary_rows", "write_report"]
