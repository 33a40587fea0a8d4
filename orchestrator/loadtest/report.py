"""Reports of a load test or soak: markdown tables, matplotlib curves, and the files they go to."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .figures import (
    DEFAULT_ARRIVALS,
    MB,
    LoadtestDoc,
    SoakDoc,
    StepResult,
    Targets,
)

# --- reports ---------------------------------------------------------------------------------

def _fmt(v: Any, scale: float = 1.0, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) or scale != 1.0:
        return f"{v / scale:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _hops(s: StepResult) -> str:
    h = s.tick_hops
    if h is None:
        return "n/a"
    def row(means: dict[str, float]) -> str:
        return " ".join(f"{k} {v:,.0f}" for k, v in means.items())
    return f"{row(h.all_us)} ({h.ticks:,} ticks) / {row(h.slow_us)} ({h.slow_ticks:,} ticks)"


def step_table(s: StepResult, t: Targets) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows of one step, for the markdown and the console."""
    kinds = ", ".join(f"{k} {v:.0f}" for k, v in s.cpu_percent_by_kind.items())
    return [
        ("start-up: launch to first signal on all (s)", _fmt(s.startup_s, nd=2), f"<= {t.startup_s:g}"),
        ("tick-to-signal p50 / p99 / p99.9, fleet (us)",
         f"{_fmt(s.tick_to_signal_p50_us)} / {_fmt(s.tick_to_signal_p99_us)} / {_fmt(s.tick_to_signal_p999_us)}",
         f"p99 <= {t.tick_to_signal_p99_us:g}"),
        ("tick-to-signal p99 / p99.9, worst worker (us)",
         f"{_fmt(s.tick_to_signal_p99_us_worst_worker)} / {_fmt(s.tick_to_signal_p999_us_worst_worker)}", ""),
        ("order intent -> ack p50 / p99, steady state (us)", order_rtt_text(s),
         "p50 <= 3000, p99 <= 20000 (issue 16, 100 symbols)"),
        ("order round trip, start-up minute, p50 / p99 (us)",
         f"{_fmt(s.order_rtt_startup_p50_us)} / {_fmt(s.order_rtt_startup_p99_us)}", ""),
        ("order refusals in the window / account rate budget left at its end (units)",
         f"{_fmt(s.order_errors)} / {_fmt(s.rate_budget_left)} of {_fmt(s.rate_budget_capacity)}", ""),
        *budget_rows(s),
        ("ticks expected / sent (gateway) / received (workers)",
         f"{_fmt(s.ticks_expected)} / {_fmt(s.ticks_sent)} / {_fmt(s.ticks_received)}", ""),
        ("ticks dropped: window / since launch", f"{s.ticks_dropped} / {s.ticks_dropped_total}", "0"),
        ("signals per second", _fmt(s.signals_per_s), ""),
        ("signals whose trading plan was skipped (nothing it reacts to moved)",
         f"{s.plans_skipped:,} of {s.signals:,}", ""),
        ("CPU by kind (% of one core)", kinds or "n/a", ""),
        ("CPU per tick received (us), by kind", ", ".join(f"{k} {v:.0f}" for k, v in
                                                           s.cpu_us_per_tick_by_kind.items()) or "n/a", ""),
        ("CPU: our tree / machine / other load (% of one core)",
         f"{s.cpu_percent_tree:.0f} / {s.machine_cpu_percent:.0f} / {s.outside_cpu_percent:.0f}",
         f"capacity {s.cpu_cores * 100}"),
        ("pool: requests / batches / mean batch / max batch",
         f"{_fmt(s.pool_requests)} / {_fmt(s.pool_batches)} / {_fmt(s.pool_mean_batch)} / "
         f"{_fmt(s.pool_max_batch)}", ""),
        ("pool CPU per batch (ms) / busy fraction, max", f"{_fmt(s.pool_cpu_ms_per_batch, nd=2)} / "
         f"{_fmt(s.pool_busy_fraction_max, nd=3)}", ""),
        ("tick-to-signal by hop, mean us: all ticks / slow ones (gateway precedes it)", _hops(s), ""),
        ("worker loop lag median / max (ms)",
         f"{_fmt(s.loop_lag_ms_median, nd=2)} / {_fmt(s.loop_lag_ms_max, nd=2)}", ""),
        ("worker USS median / max (MB)",
         f"{_fmt(s.worker_uss_bytes_median, MB, 2)} / {_fmt(s.worker_uss_bytes_max, MB, 2)}",
         f"max <= {t.worker_uss_mb:g}"),
        ("worker PSS median / max (MB)",
         f"{_fmt(s.worker_pss_bytes_median, MB, 2)} / {_fmt(s.worker_pss_bytes_max, MB, 2)}", ""),
        ("total PSS of the tree (MB)", _fmt(s.total_pss_bytes, MB, 1), ""),
        ("restarts / quarantined / workers with a budget breach",
         f"{s.restarts} / {s.quarantined} / {s.budget_breaches}",
         "0 / 0 / 0"),
        ("start-up CPU: machine / our tree by kind (% of one core)",
         f"{_fmt(s.startup_machine_cpu_percent, nd=0)} / " + (", ".join(
             f"{k} {v:.0f}" for k, v in s.startup_cpu_percent_by_kind.items()) or "n/a"), ""),
    ]


def order_rtt_text(s: StepResult) -> str:
    """The steady state's order round trip, or plainly why there is none."""
    if s.order_rtt_p50_us is not None:
        return f"{_fmt(s.order_rtt_p50_us)} / {_fmt(s.order_rtt_p99_us)}"
    b = s.budget_use
    seen = f" ({b.intents_window:,} intents executed by the gateway in the window)" if b is not None else ""
    return "none: no order intent was answered after the start-up minute" + seen


def _units(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "none"


def budget_rows(s: StepResult) -> list[tuple[str, str, str]]:
    """What the account's rate budget bought, and whether order intents waited for it."""
    b = s.budget_use
    if b is None:
        return [("account rate units by kind", "n/a (no gateway figures)", "")]
    return [
        (f"account rate units spent in the window ({sum(b.units_window.values()):,}), by kind",
         _units(b.units_window), ""),
        (f"account rate units since start ({sum(b.units_total.values()):,}), by kind", _units(b.units_total),
         "10,000 per 5 min"),
        ("order intents in the window: executed / waited for budget (s in all) / quotes refused for budget",
         f"{b.intents_window:,} / {b.intents_waited_window:,} ({b.intents_wait_s_window:,.1f} s) / "
         f"{b.intents_refused_window:,}", ""),
        ("longest budget wait of an intent since start (s) / requests waiting for budget at the end",
         f"{b.intents_wait_max_s:,.2f} / {b.requests_waiting_end:,}", ""),
    ]


# The process kinds of the tree, in the order the CPU columns show them.
KINDS = ("worker", "pool", "gateway", "venue", "supervisor", "other")


def step_label(s: StepResult) -> str:
    """'200 x 2' for the default arrival model, '200 x 2, lockstep' for the burst case."""
    return f"{s.symbols} x {s.tick_rate:g}" + ("" if s.arrivals == DEFAULT_ARRIVALS else f", {s.arrivals}")


def readme_table(doc: LoadtestDoc) -> list[str]:
    """The README's performance table: one row per step, each figure beside its floor and target."""
    t, f = doc.targets, doc.floors
    lines = ["| symbols x ticks/s | start-up s | tick-to-signal p50 / p99 / p99.9 ms | p99 target ms | "
             "CPU per tick us: " + " / ".join(KINDS) + " | CPU per tick, tree us | worker USS max MB | "
             "total PSS MB | dropped | restarts |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| floor (perf-floors.md) | | {f.tick_to_signal_p50_us / 1000:.3f} / {f.tick_to_signal_p99_us / 1000:.3f}"
             f" / - | | | {f.cpu_us_per_tick:g} | {f.worker_uss_mb:g} | | | |"]
    for s in doc.steps:
        per = s.cpu_us_per_tick_by_kind
        lines.append(
            f"| {step_label(s)} | {_fmt(s.startup_s, nd=1)} (<= {t.startup_limit_s(s.symbols):g}) | "
            f"{_fmt(s.tick_to_signal_p50_us, 1000, 2)} / {_fmt(s.tick_to_signal_p99_us, 1000, 2)} / "
            f"{_fmt(s.tick_to_signal_p999_us, 1000, 2)} | {t.p99_limit_us(s.symbols) / 1000:g} | "
            + " / ".join(_fmt(per.get(k), nd=0) for k in KINDS) + f" | {_fmt(per.get('tree'), nd=0)} "
            f"(<= {t.cpu_us_per_tick:g}) | {_fmt(s.worker_uss_bytes_max, MB, 1)} (<= {t.worker_uss_mb:g}) | "
            f"{_fmt(s.total_pss_bytes, MB, 0)} (<= {t.total_pss_mb:g}) | {s.ticks_dropped_total} | {s.restarts} |")
    return lines


def loadtest_markdown(doc: LoadtestDoc) -> str:
    t = doc.targets
    m = doc.machine
    lines = [f"# Load test `{doc.name}` ({doc.started_utc})", "",
             f"Machine: {m.cpu_model}, {m.cpus} CPUs, {m.memory_total_bytes / 2**30:.1f} GiB, Python {m.python}; "
             f"commit `{m.git_commit[:12]}`{' (dirty tree)' if m.git_dirty else ''}; "
             f"load average at start {m.loadavg}, at the end {doc.loadavg_at_end}.", "",
             f"Command: `{doc.command}`", "",
             f"Targets: up to {t.symbols} symbols tick-to-signal p99 <= {t.tick_to_signal_p99_us:g} us and start-up "
             f"<= {t.startup_s:g} s; above (to {t.large_symbols} at {t.large_tick_rate:g} tick/s) p99 <= "
             f"{t.large_tick_to_signal_p99_us:g} us and start-up <= {t.large_startup_s:g} s; everywhere no dropped "
             f"ticks, no restarts, CPU per tick across the tree <= {t.cpu_us_per_tick:g} us, worker USS <= "
             f"{t.worker_uss_mb:g} MB, total PSS <= {t.total_pss_mb:g} MB.", "",
             "## Summary", "",
             "| symbols | ticks/s | arrivals | start-up s | p50 us | p99 us | p99.9 us | p99 worst worker us | "
             "dropped | sent/expected | signals/s | CPU tree % | machine % | worker USS med/max MB | total PSS MB | "
             "restarts | verdict |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in doc.steps:
        ratio = f"{s.ticks_sent / s.ticks_expected:.3f}" if s.ticks_sent is not None and s.ticks_expected else "n/a"
        verdict = "error" if s.error else ("ok" if not s.misses else "MISS: " + ", ".join(x.target for x in s.misses))
        lines.append(
            f"| {s.symbols} | {s.tick_rate:g} | {s.arrivals} | {_fmt(s.startup_s, nd=2)} | "
            f"{_fmt(s.tick_to_signal_p50_us)} | {_fmt(s.tick_to_signal_p99_us)} | {_fmt(s.tick_to_signal_p999_us)} | "
            f"{_fmt(s.tick_to_signal_p99_us_worst_worker)} | {s.ticks_dropped_total} | {ratio} | "
            f"{_fmt(s.signals_per_s)} | {s.cpu_percent_tree:.0f} | {s.machine_cpu_percent:.0f} | "
            f"{_fmt(s.worker_uss_bytes_median, MB, 2)}/{_fmt(s.worker_uss_bytes_max, MB, 2)} | "
            f"{_fmt(s.total_pss_bytes, MB, 0)} | {s.restarts} | {verdict} |")
    if doc.stopped_at:
        lines += ["", f"**Stopped:** {doc.stopped_at}"]
    lines += ["", "## For the README (figures beside their floors and targets)", ""] + readme_table(doc)
    for s in doc.steps:
        lines += ["", f"## {s.symbols} symbols at {s.tick_rate:g} ticks/s, {s.arrivals} arrivals ({s.duration_s:g} "
                      f"s measured after "
                      f"{s.settle_s:g} s settle; pool {s.pool_size}; load average at launch {s.loadavg_at_launch})",
                  "", "| figure | value | target |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in step_table(s, t)]
        if s.misses:
            lines += ["", "Missed:"]
            lines += [f"- `{x.target}`: {_fmt(x.value, nd=3)} {x.unit} against {x.limit:g}"
                      + (f", over by {x.over_by:g} {x.unit}" if x.over_by is not None else "")
                      + (f" ({x.note})" if x.note else "") for x in s.misses]
        if s.limits:
            lines += ["", "What limits it:"] + [f"- {x}" for x in s.limits]
        if s.budget_notes:
            lines += ["", "Budget breaches seen:"] + [f"- {x}" for x in s.budget_notes]
        if s.error:
            lines += ["", f"Error: {s.error}"]
    lines += ["", "## How the figures are made", ""] + [f"- {x}" for x in doc.notes]
    if doc.plots:
        lines += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in doc.plots]
    return "\n".join(lines) + "\n"


def _nan(v: float | int | None, scale: float = 1.0) -> float:
    return v / scale if v is not None else float("nan")


def loadtest_plots(doc: LoadtestDoc, base: Path) -> tuple[list[Path], str | None]:
    """Latency percentiles, CPU per tick by process kind and memory against symbol count;
    ([], reason) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[bench]'): plots skipped"
    steps = [s for s in doc.steps if s.tick_to_signal_p50_us is not None]
    if not steps:
        return [], "no measured step: plots skipped"
    # The curves follow the default arrival model; a step of another model (the lockstep burst
    # case) is drawn as its own markers at its symbol count.
    curve = [s for s in steps if s.arrivals == DEFAULT_ARRIVALS] or steps
    others = [s for s in steps if s not in curve]
    n = [s.symbols for s in curve]
    labels = [f"{s.symbols}\n@{s.tick_rate:g}/s" for s in curve]
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (("tick_to_signal_p50_us", "p50 (fleet)", "o-"),
                              ("tick_to_signal_p99_us", "p99 (fleet)", "s-"),
                              ("tick_to_signal_p999_us", "p99.9 (fleet)", "^-"),
                              ("tick_to_signal_p99_us_worst_worker", "p99 worst worker", "x--")):
        ax.plot(n, [_nan(getattr(s, key), 1000.0) for s in curve], style, label=label)
    for s in others:
        ax.plot([s.symbols], [_nan(s.tick_to_signal_p99_us, 1000.0)], "D", mfc="none",
                label=f"p99, {s.arrivals} arrivals ({s.symbols} @{s.tick_rate:g}/s)")
    t = doc.targets
    ax.step(n, [t.p99_limit_us(x) / 1000.0 for x in n], where="mid", color="red", lw=0.8, ls=":", label="p99 target")
    ax.axhline(doc.floors.tick_to_signal_p99_us / 1000.0, color="grey", lw=0.8, ls="--", label="p99 floor")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xticks(n, labels)
    ax.set_xlabel("symbols @ ticks/s per symbol")
    ax.set_ylabel("tick to signal (ms)")
    ax.set_title("Tick-to-signal vs symbols")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    p = base.with_name(base.name + "-latency.png")
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bottom = [0.0] * len(steps)
    for kind in KINDS:
        vals = [s.cpu_us_per_tick_by_kind.get(kind, 0.0) for s in steps]
        ax.bar(range(len(steps)), vals, bottom=bottom, label=kind)
        bottom = [a + b for a, b in zip(bottom, vals, strict=True)]
    ax.axhline(t.cpu_us_per_tick, color="red", lw=0.8, ls=":", label="target")
    ax.axhline(doc.floors.cpu_us_per_tick, color="grey", lw=0.8, ls="--", label="floor (bare pipeline)")
    ax.set_xticks(range(len(steps)), [f"{s.symbols}\n@{s.tick_rate:g}/s"
                                       + ("" if s.arrivals == DEFAULT_ARRIVALS else f"\n{s.arrivals}") for s in steps])
    ax.set_xlabel("symbols @ ticks/s per symbol")
    ax.set_ylabel("CPU per tick received (us)")
    ax.set_title("CPU per tick by process kind")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend()
    p = base.with_name(base.name + "-cpu.png")
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("worker_uss_bytes_median", "worker USS median", "o-"),
                              ("worker_uss_bytes_max", "worker USS max", "s-"),
                              ("worker_pss_bytes_median", "worker PSS median", "^-")):
        a1.plot(n, [_nan(getattr(s, key), MB) for s in curve], style, label=label)
    a1.axhline(t.worker_uss_mb, color="red", lw=0.8, ls=":", label="USS target")
    a1.set_xlabel("symbols")
    a1.set_ylabel("MB per worker")
    a1.set_ylim(bottom=0)
    a1.grid(True, alpha=0.3)
    a1.legend()
    a2.plot(n, [_nan(s.total_pss_bytes, MB) for s in curve], "o-")
    a2.set_xlabel("symbols")
    a2.set_ylabel("total PSS of the tree (MB)")
    a2.set_ylim(bottom=0)
    a2.grid(True, alpha=0.3)
    fig.suptitle("Memory vs symbols")
    p = base.with_name(base.name + "-memory.png")
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    return paths, None


def report_base(results_dir: Path, name: str, now: dt.datetime) -> Path:
    """benchmarks/results/<name>-<UTC date>; a second run the same day gets the time appended
    rather than overwriting a committed result."""
    base = results_dir / f"{name}-{now:%Y-%m-%d}"
    if base.with_suffix(".json").exists():
        base = results_dir / f"{name}-{now:%Y-%m-%dT%H%M%SZ}"
    return base


def write_reports(doc: LoadtestDoc | SoakDoc, results_dir: Path,
                  markdown: Callable[[Any], str], plots: Callable[[Any, Path], tuple[list[Path], str | None]],
                  ) -> dict[str, str]:
    """JSON, markdown and plots of `doc` under results_dir; returns their paths by kind."""
    results_dir.mkdir(parents=True, exist_ok=True)
    base = report_base(results_dir, doc.name, dt.datetime.now(dt.UTC))
    paths, why = plots(doc, base)
    doc.plots = [str(p) for p in paths]
    if why:
        doc.notes.append(why)
    base.with_suffix(".json").write_text(json.dumps(msgspec.to_builtins(doc), indent=1) + "\n")
    base.with_suffix(".md").write_text(markdown(doc))
    return {"json": str(base.with_suffix(".json")), "markdown": str(base.with_suffix(".md")),
            **{f"plot{i}": str(p) for i, p in enumerate(paths)}}


LOADTEST_NOTES = [
    "Each step is a fresh `orchestrate` tree (supervisor, paper venue, gateway, pool, one worker per symbol) "
    "on SYN_0001.. symbols; bar_seconds = 4 / tick rate (4 ticks per 1m bar).",
    "Arrivals (shared/arrivals.py, `--arrivals`, a step's own as N:MODEL): 'independent' (the default) sends "
    "each symbol's tick at its own seeded uniform time in its quarter bar, so the symbols together make "
    "Poisson arrivals at the configured rate, as each symbol trades on its own on an exchange; the venue "
    "sends the ticks due within 1 ms of each other in one wake-up. 'lockstep' sends every market's tick in 8 "
    "bursts a quarter bar (25 symbols at one instant at 200 symbols): the market-wide burst case. Prices, "
    "bars and market times are the same in both.",
    "start-up: wall time from launching `orchestrate` to the first status poll (every 0.25 s) that shows a "
    "first signal on every symbol; startup_worker_max_s is the supervisor's own launch-to-first-signal of "
    "the slowest worker.",
    "Latency: each worker reports p50/p99/p99.9 over its rolling last 50-60 s, and drops the first minute "
    "after its first signal from that window (start-up queueing); the values are read at the end of the "
    "window, after a settle of 60 s by default, so they cover steady state only. "
    "Fleet percentiles are read off the mixture of per-worker piecewise-linear CDFs through (p50, .5), "
    "(p99, .99), (p99.9, .999), weighted by each worker's signals in the window; the worst worker's p99 is "
    "reported beside it.",
    "CPU per tick: each kind's CPU seconds in the window divided by the ticks the workers received; on a "
    "shared machine this is the figure to compare (other load inflates wall-clock latency far more).",
    "Floors: ../shared/docs/perf-floors.md, measured on this machine kind: the bare round trip worker -> "
    "pool -> worker (asyncio+uvloop, TA-Lib) and the CPU of a sparse tick through the bare pipeline.",
    "Ticks: sent = gateway's published-ticks counter, received = sum of the workers' tick counters, both "
    "differenced over the window; the counters ride on heartbeats (1 s), so sent and received may differ "
    "by about one heartbeat's worth of ticks. Dropped = sequence gaps seen by the workers; late = "
    "ticks the workers did not apply (a sequence number already seen, or older than the bar).",
    "Order round trip: the workers' order_rtt p50/p99 (last ~5 min, without the intents sent in a worker's "
    "start-up minute, as for the ticks), merged the same way with equal weights; the start-up minute's intents "
    "(the fleet's first grids) are reported on their own row. Order refusals (the workers' order_errors over "
    "the window) and the rate budget left say whether the steady state's intents reached the venue: once the "
    "account's 10,000 units of a 5-minute window are spent, quotes are refused at the gateway at once.",
    "Rate budget: the gateway's units by what they bought (order actions by route; reads by purpose: fill read, "
    "reconcile = a bot's full read, resync = its regular or after-refusal re-read, account poll = equity for the "
    "risk limits) in the window and since start, and the order intents the gateway executed in the window: how "
    "many waited for budget and how many had quotes refused for want of it. The steady state's intent -> ack "
    "says 'none' plainly when no intent was answered after the start-up minute.",
    "CPU: psutil cpu_times (user+system, all threads) of every process of the tree, differenced over the "
    "window, as % of one core, by kind (supervisor, venue, gateway, pool, worker, other = forkserver and "
    "resource tracker; loadtest = this measuring process). machine = all CPUs busy time; other load = "
    "machine - ours (the machine is shared).",
    "Memory: psutil memory_full_info (USS, PSS) of every process of the tree at the end of the window; "
    "total PSS sums the tree (PSS divides shared pages among their users, so it adds up).",
    "Restarts: the supervisor's restart counters at the end; budget breaches: workers whose budget was "
    "not 'ok' in any status poll during the measurement window (the settle is the workers' start-up minute: "
    "their latency budgets may warn there, and the supervisor's log says so).",
]



def soak_markdown(doc: SoakDoc) -> str:
    m = doc.machine
    lines = [f"# Soak `{doc.name}` ({doc.started_utc})", "",
             f"Machine: {m.cpu_model}, {m.cpus} CPUs; commit `{m.git_commit[:12]}`"
             f"{' (dirty tree)' if m.git_dirty else ''}; load average at start {m.loadavg}.", "",
             f"Command: `{doc.command}`", "",
             f"{doc.symbols} symbols at {doc.tick_rate:g} ticks/s for {doc.duration_s:g} s; "
             f"{doc.samples} samples every {doc.sample_interval_s:g} s; slopes fitted after the first "
             f"{doc.warmup_s:g} s.", "",
             "| kind | processes | RSS slope median MB/h | RSS slope max MB/h | USS slope median MB/h | "
             "USS slope max MB/h | RSS first/last median MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k in doc.kinds:
        lines.append(f"| {k.kind} | {k.processes} | {_fmt(k.rss_slope_mb_per_h_median, nd=2)} | "
                     f"{_fmt(k.rss_slope_mb_per_h_max, nd=2)} | {_fmt(k.uss_slope_mb_per_h_median, nd=2)} | "
                     f"{_fmt(k.uss_slope_mb_per_h_max, nd=2)} | {_fmt(k.rss_mb_first_median, nd=1)}/"
                     f"{_fmt(k.rss_mb_last_median, nd=1)} |")
    lag = doc.loop_lag_ms
    lines += ["", "| event-loop lag (ms) | median | max |", "|---|---:|---:|",
              f"| workers (per sample median / max over all samples) | {_fmt(lag.worker_median, nd=2)} | "
              f"{_fmt(lag.worker_max, nd=2)} |",
              f"| gateway | {_fmt(lag.gateway_median, nd=2)} | {_fmt(lag.gateway_max, nd=2)} |", "",
              f"Tick-to-signal p99 worst worker over the soak: median {_fmt(doc.p99_worst_worker_us_median)} us, "
              f"max {_fmt(doc.p99_worst_worker_us_max)} us. Restarts: {doc.restarts}. "
              f"Ticks dropped: {doc.ticks_dropped_total}.", ""]
    if doc.flagged_workers:
        lines.append(f"**Flagged: {len(doc.flagged_workers)} worker(s) with RSS slope above "
                     f"{doc.flag_above_mb_per_h:g} MB/h:** " + ", ".join(
                         f"{f.process} ({f.rss_slope_mb_per_h:+.2f})" for f in doc.flagged_workers[:20]))
    else:
        lines.append(f"No worker's RSS slope is above {doc.flag_above_mb_per_h:g} MB/h.")
    if doc.error:
        lines += ["", f"Error: {doc.error}"]
    lines += ["", "## Notes", ""] + [f"- {x}" for x in doc.notes]
    if doc.plots:
        lines += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in doc.plots]
    return "\n".join(lines) + "\n"


def soak_plots(doc: SoakDoc, base: Path) -> tuple[list[Path], str | None]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[bench]'): plots skipped"
    trace = doc.rss_trace
    if len(trace) < 2:
        return [], "too few samples: plots skipped"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = [r.t_s / 60.0 for r in trace]
    for kind in sorted({k for r in trace for k in r.rss_mb_median_by_kind}):
        ax.plot(t, [r.rss_mb_median_by_kind.get(kind, float("nan")) for r in trace], label=f"{kind} (median)")
    ax.set_xlabel("minutes since all signalled")
    ax.set_ylabel("RSS (MB)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("Soak: RSS by process kind")
    p = base.with_name(base.name + "-rss.png")
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    return [p], None
