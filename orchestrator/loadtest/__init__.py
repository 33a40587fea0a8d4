"""`orchestrate loadtest` and `orchestrate soak`: run the real process tree with synthetic symbols
and measure what a trader pays for each extra symbol.

Load test, per step (one symbol count):
  1. launch `orchestrate` (supervisor, venue, gateway, K pool members, N workers) on SYN_0001..,
     with bar_seconds = 4 / tick_rate (the synthetic market sends 4 ticks per bar);
  2. start-up: launch -> every worker has had its first signal (polled over the control socket);
  3. settle, so each worker's rolling latency window (last 50-60 s) holds only steady state;
  4. measure for `duration` seconds: counters are differenced between a status snapshot at the
     start and one at the end of the window, CPU is the psutil cpu_times delta of every process
     of the tree, memory (USS/PSS) is read once at the end;
  5. stop the tree, check the targets, and stop the sequence at the first step that misses one.

How per-worker latency figures are merged (the status gives each worker's p50/p99/p99.9 only, not
its histogram): every worker's distribution is modelled as the piecewise-linear CDF through
(0, 0), (p50, .5), (p99, .99), (p99.9, .999) and reaching 1 at p99.9; the fleet CDF is the mixture
weighted by each worker's signals in the window, and the fleet quantiles are read off it. This is
exact when workers agree and otherwise lies between the best and worst worker; the worst
worker's p99 is reported beside it (`tick_to_signal_p99_us_worst_worker`) because a trader runs
every symbol, not the average one.

Soak: one long run, sampling every process's RSS/USS and the status document at a fixed
interval; reports each process kind's RSS slope (least squares, MB/hour) and event-loop lag and
flags any worker slope above 1 MB/h.

Everything is bounded: symbol counts, steps, durations and sample series have caps; the tree is
stopped in `finally`; only 127.0.0.1 and unix sockets are used (the orchestrate defaults).

Modules: `figures` (typed records and the pure functions that make and check them), `report`
(markdown, plots, files) and `runner` (the real tree, the command-line entry points).
"""

from __future__ import annotations

from .figures import (
    MAX_STEPS,
    MAX_SYMBOLS,
    MB,
    Floors,
    KindSlope,
    LoadtestDoc,
    Machine,
    Miss,
    ProcMem,
    SoakDoc,
    StepPlan,
    StepResult,
    Targets,
    WindowSample,
    check_step,
    cpu_per_tick,
    cpu_percent_by_kind,
    diagnose,
    gateway_loop_lag_ms,
    merge_quantiles,
    parse_steps,
    pool_counters,
    restart_reasons,
    slope_per_hour,
    summarise_slopes,
    synthetic_symbols,
)
from .report import loadtest_markdown, loadtest_plots, readme_table, soak_markdown, soak_plots, write_reports
from .runner import SystemUnderTest, main_loadtest, main_soak, run_step

__all__ = [
    "MAX_STEPS", "MAX_SYMBOLS", "MB", "Floors", "KindSlope", "LoadtestDoc", "Machine", "Miss", "ProcMem", "SoakDoc",
    "StepPlan", "StepResult", "SystemUnderTest", "Targets", "readme_table",
    "WindowSample", "check_step", "cpu_per_tick", "cpu_percent_by_kind", "diagnose", "loadtest_markdown",
    "loadtest_plots", "main_loadtest", "main_soak", "merge_quantiles", "parse_steps", "pool_counters",
    "gateway_loop_lag_ms", "restart_reasons", "run_step", "slope_per_hour", "soak_markdown", "soak_plots",
    "summarise_slopes",
    "synthetic_symbols", "write_reports",
]
