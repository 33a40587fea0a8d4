"""The load test's and the soak's figures: typed records (msgspec Structs) and the pure functions
that make them from status snapshots, CPU times and memory readings, and check them against the
targets. No processes, no files: unit-tested alone."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from shared.arrivals import ARRIVALS
from shared.latency import HopSums
from shared.status import RateBudgetUse, StatusSnapshot

MB = 1024 * 1024
DEFAULT_ARRIVALS = "independent"  # the paper market's default (shared/arrivals.py, market.arrivals)
TICKS_PER_BAR = 4  # the paper venue's synthetic market: 4 ticks per 1m bar
MAX_SYMBOLS = 2000  # SYN_0001..SYN_9999 exist; far past what 2 cores carry
MAX_STEPS = 20
MAX_LOADTEST_DURATION_S = 3600.0
MAX_SOAK_DURATION_S = 24 * 3600.0
MAX_TICK_RATE = 50.0
STARTUP_POLL_S = 0.25  # start-up is resolved to this (plus one status round trip)
WINDOW_POLL_S = 2.0  # status polls during settle/measure: restarts, budget breaches, p99 trace
LATENCY_WINDOW_S = 60.0  # the workers' rolling histogram (workers/worker.py)
MAX_SERIES = 5000  # cap on any sample series kept in memory / in the report
STOP_TIMEOUT_S = 30.0
LOG_TAIL_CHARS = 3000

# --- records ---------------------------------------------------------------------------------

class Targets(msgspec.Struct, frozen=True, kw_only=True):
    """Issues 6 and 16's targets on this machine kind (2 cores). Up to `symbols` symbols the
    tight latency and start-up targets hold; above it (to `large_symbols` at `large_tick_rate`)
    the looser ones."""
    symbols: int = 200
    tick_rate: float = 2.0
    tick_to_signal_p99_us: float = 5000.0
    large_symbols: int = 1000
    large_tick_rate: float = 1.0
    large_tick_to_signal_p99_us: float = 20_000.0
    ticks_dropped: int = 0
    worker_uss_mb: float = 12.0
    total_pss_mb: float = 14 * 1024.0
    startup_s: float = 15.0
    large_startup_s: float = 60.0
    cpu_us_per_tick: float = 400.0  # across the whole tree, per tick received
    min_ticks_sent_ratio: float = 0.95  # the gateway must deliver the configured tick rate
    worker_rss_slope_mb_per_h: float = 1.0  # soak

    def p99_limit_us(self, symbols: int) -> float:
        return self.tick_to_signal_p99_us if symbols <= self.symbols else self.large_tick_to_signal_p99_us

    def startup_limit_s(self, symbols: int) -> float:
        return self.startup_s if symbols <= self.symbols else self.large_startup_s


class Floors(msgspec.Struct, frozen=True, kw_only=True):
    """What the bare machinery costs on this machine kind (../shared/docs/perf-floors.md), printed
    beside each figure: a figure near its floor has nothing left to win."""
    tick_to_signal_p50_us: float = 123.0  # asyncio+uvloop worker -> pool -> worker, TA-Lib, unpinned
    tick_to_signal_p99_us: float = 182.0
    cpu_us_per_tick: float = 75.0  # a sparse tick through the bare pipeline: 55-75 us of CPU
    worker_uss_mb: float = 6.2  # marginal USS of an idle forkserver child
    process_start_ms: float = 8.7  # forkserver start -> ready, preloaded


class Miss(msgspec.Struct, kw_only=True):
    target: str
    value: float | None
    limit: float
    unit: str
    over_by: float | None  # value - limit (None when the figure could not be measured)
    note: str = ""


class ProcMem(msgspec.Struct, kw_only=True):
    kind: str
    count: int
    uss_bytes: int
    pss_bytes: int
    rss_bytes: int


class WindowSample(msgspec.Struct, kw_only=True):
    t_s: float  # since the step's launch
    p99_worst_worker_us: float | None
    workers_running: int
    budgets_not_ok: int
    restarts: int


class HopMeans(msgspec.Struct, kw_only=True):
    """Mean microseconds per hop of the ticks the workers timed in the window, all of them and
    the slow ones (at or over their worker's rolling p99): which hop makes a slow tick slow.
    gateway_us precedes tick-to-signal; the other five add up to it."""
    ticks: int
    slow_ticks: int
    all_us: dict[str, float]  # hop -> mean us (gateway, worker, to_pool, pool, compute, back)
    slow_us: dict[str, float]


class StepResult(msgspec.Struct, kw_only=True):
    symbols: int
    tick_rate: float
    bar_seconds: float
    pool_size: int
    duration_s: float  # actual measurement window
    settle_s: float
    all_signalled: bool
    startup_s: float | None  # launch of `orchestrate` -> first signal seen on every symbol
    startup_worker_max_s: float | None  # supervisor's per-worker launch -> first signal, max
    tick_to_signal_p50_us: float | None
    tick_to_signal_p99_us: float | None
    tick_to_signal_p999_us: float | None
    tick_to_signal_p50_us_median_worker: float | None
    tick_to_signal_p99_us_worst_worker: float | None
    tick_to_signal_p999_us_worst_worker: float | None
    order_rtt_p50_us: float | None
    order_rtt_p99_us: float | None
    order_rtt_p99_us_worst_worker: float | None
    ticks_expected: int
    ticks_sent: int | None
    ticks_received: int
    ticks_dropped: int  # sequence gaps seen by workers in the window
    ticks_dropped_total: int  # since launch
    ticks_late: int | None  # ticks the workers did not apply in the window (late or repeated)
    signals: int
    signals_per_s: float
    cpu_cores: int
    cpu_percent_by_kind: dict[str, float]  # % of one core over the window
    cpu_percent_tree: float
    cpu_us_per_tick_by_kind: dict[str, float]  # CPU of each kind in the window / ticks received
    machine_cpu_percent: float  # all processes on the box, % of one core (max = cores * 100)
    outside_cpu_percent: float  # machine minus our tree: the other engineers' load
    pool_busy_fraction_max: float | None
    pool_requests: int | None  # signal requests served by the pool in the window
    pool_batches: int | None  # batches they were served in (one numpy pass each)
    pool_mean_batch: float | None
    pool_max_batch: int | None  # since launch
    pool_cpu_ms_per_batch: float | None  # pool CPU in the window / batches: what each batch costs
    loop_lag_ms_median: float | None
    loop_lag_ms_max: float | None
    worker_uss_bytes_median: int | None
    worker_uss_bytes_max: int | None
    worker_pss_bytes_median: int | None
    worker_pss_bytes_max: int | None
    total_pss_bytes: int | None
    memory_by_kind: list[ProcMem]
    restarts: int
    restart_reasons: dict[str, int]  # the supervisor's restarts by kind and cause, numbers masked
    quarantined: int
    startup_cpu_percent_by_kind: dict[str, float]  # launch -> all signalled (or the timeout)
    startup_machine_cpu_percent: float | None
    budget_breaches: int  # workers seen with a budget other than "ok"
    budget_notes: list[str]
    loadavg_at_launch: list[float]
    samples: list[WindowSample]
    misses: list[Miss] = []
    limits: list[str] = []
    error: str | None = None
    failed: bool = False  # the tree crashed or could not be driven: no figures for this step
    log_tail: str | None = None
    # The order round trip of the workers' start-up minute (their first grids, queued behind the
    # fleet's histories and reconciliations), apart from the steady state's order_rtt above; the
    # order refusals (Delta's or the gateway's: rate budget spent) in the window and the account's
    # rate budget left at its end, which say what the steady state's intents were.
    order_rtt_startup_p50_us: float | None = None
    order_rtt_startup_p99_us: float | None = None
    order_errors: int | None = None
    rate_budget_left: float | None = None
    rate_budget_capacity: float | None = None
    tick_hops: HopMeans | None = None  # where tick-to-signal time went in the window, by hop
    plans_skipped: int = 0  # signals in the window whose trading plan would have changed nothing: not made
    # The account's rate budget (the gateway's counters, exchange mode): units spent by what they
    # bought in the window and since the gateway started, and the order intents in the window.
    budget_use: BudgetUse | None = None
    # How the paper market's ticks arrived (shared/arrivals.py): "independent", each symbol at its own
    # seeded time; "lockstep", every market's tick in 8 bursts a quarter bar (the burst case)
    arrivals: str = DEFAULT_ARRIVALS


class BudgetUse(msgspec.Struct, kw_only=True):
    """What the account's rate budget bought, and whether order intents waited for it."""
    units_window: dict[str, int]  # by kind (shared/delta/ratelimit.SPEND_KINDS), biggest first
    units_total: dict[str, int]  # since the gateway started (its start-up included)
    intents_window: int  # order intents the gateway executed in the window
    intents_waited_window: int  # ...of which waited for budget (> 1 ms in all)
    intents_wait_s_window: float  # their waits, summed
    intents_refused_window: int  # ...of which had quotes refused: the budget would come too late
    intents_wait_max_s: float  # the longest wait of any intent since start
    requests_waiting_end: int  # requests waiting for budget at the window's end


class Machine(msgspec.Struct, kw_only=True):
    python: str = ""
    platform: str = ""
    cpus: int | None = None
    cpu_model: str = ""
    memory_total_bytes: int = 0
    loadavg: list[float] = []
    git_commit: str = ""
    git_dirty: bool = False


class LoadtestDoc(msgspec.Struct, kw_only=True):
    """One `orchestrate loadtest` run: what the JSON report holds and the markdown shows."""
    name: str
    started_utc: str
    command: str
    machine: Machine
    targets: Targets = Targets()
    floors: Floors = Floors()
    steps: list[StepResult] = []
    stopped_at: str | None = None
    loadavg_at_end: list[float] = []
    notes: list[str] = []
    plots: list[str] = []
    reports: dict[str, str] = {}
    kind: str = "loadtest"


class StepPlan(msgspec.Struct, frozen=True):
    """One step of a load test: this many symbols at this many ticks per second each, arriving as
    the paper market's arrival model says (shared/arrivals.py)."""
    symbols: int
    tick_rate: float
    arrivals: str = DEFAULT_ARRIVALS


# --- pure helpers (unit-tested) ---------------------------------------------------------------

def parse_steps(text: str, tick_rate: float, arrivals: str = DEFAULT_ARRIVALS) -> list[StepPlan]:
    """'200' or '10,50,200' (each step at `tick_rate`, ticks arriving as `arrivals`), or with a
    rate of its own as N@RATE and an arrival model of its own as N:MODEL ('10,200,200:lockstep,
    1000@1') -> steps in ascending symbol count (a count's independent step before its lockstep
    one), duplicates dropped; ValueError naming the option on anything else."""
    plans: set[StepPlan] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        step, colon, model = part.partition(":")
        count, at, rate = step.partition("@")
        try:
            plan = StepPlan(int(count), float(rate) if at else tick_rate, model.strip() if colon else arrivals)
        except ValueError:
            raise ValueError(f"--symbols expects a count or a comma-separated list of counts, each optionally "
                             f"with its own ticks per second as N@RATE and arrival model as N:MODEL; got "
                             f"{text!r}") from None
        if plan.arrivals not in ARRIVALS:
            raise ValueError(f"--symbols {part!r}: the arrival model must be one of {', '.join(ARRIVALS)}")
        if not (0 < plan.tick_rate <= MAX_TICK_RATE):
            raise ValueError(f"--symbols {part!r}: the tick rate must be in (0, {MAX_TICK_RATE:g}]")
        plans.add(plan)
    if not plans:
        raise ValueError("--symbols: no count given")
    if any(p.symbols < 1 or p.symbols > MAX_SYMBOLS for p in plans):
        raise ValueError(f"--symbols: each count must be 1..{MAX_SYMBOLS}")
    if len(plans) > MAX_STEPS:
        raise ValueError(f"--symbols: at most {MAX_STEPS} steps")
    return sorted(plans, key=lambda p: (p.symbols, -p.tick_rate, p.arrivals != DEFAULT_ARRIVALS, p.arrivals))


def synthetic_symbols(n: int) -> list[str]:
    return [f"SYN_{i:04d}" for i in range(1, n + 1)]


def merge_quantiles(workers: Sequence[tuple[float, Sequence[tuple[float, float | None]]]],
                    qs: Sequence[float]) -> list[float | None]:
    """Fleet quantiles from per-worker quantile points.

    workers: (weight, [(q, value), ...]) with q in (0, 1) ascending. Each worker's CDF is the
    piecewise-linear curve through (0, 0), its points, and 1 at its last value; the fleet CDF is
    the weight-averaged mixture. Workers with no points or weight <= 0 are skipped.
    """
    curves: list[tuple[float, np.ndarray, np.ndarray]] = []
    for weight, pts in workers:
        pts = [(q, v) for q, v in pts if v is not None and math.isfinite(v)]
        if weight <= 0 or not pts:
            continue
        ps = np.array([0.0] + [q for q, _ in pts] + [1.0])
        xs = np.array([0.0] + [v for _, v in pts] + [pts[-1][1]], dtype=float)
        # Quantiles from a histogram may tie (p99 == p99.9 with few samples): keep x strictly
        # increasing so interpolation is well defined; a 1e-6 us nudge changes nothing visible.
        for i in range(1, len(xs)):
            xs[i] = max(xs[i], xs[i - 1] + 1e-6)
        curves.append((weight, xs, ps))
    if not curves:
        return [None for _ in qs]
    grid = np.unique(np.concatenate([c[1] for c in curves]))
    if len(grid) > 20_000:  # bound the work for very large fleets; the CDF is smooth enough
        grid = np.unique(np.concatenate([[0.0], np.geomspace(max(grid[1], 1e-3), grid[-1], 20_000)]))
    total_w = sum(c[0] for c in curves)
    cdf = np.zeros_like(grid)
    for w, xs, ps in curves:
        cdf += w * np.interp(grid, xs, ps, left=0.0, right=1.0)
    cdf /= total_w
    out: list[float | None] = []
    for q in qs:
        i = int(np.searchsorted(cdf, q - 1e-12, side="left"))
        if i >= len(grid):
            out.append(float(grid[-1]))
        elif i == 0 or cdf[i] == cdf[i - 1]:
            out.append(float(grid[i]))
        else:  # the mixture is linear between grid points
            frac = (q - cdf[i - 1]) / (cdf[i] - cdf[i - 1])
            out.append(float(grid[i - 1] + frac * (grid[i] - grid[i - 1])))
    return out


def cpu_percent_by_kind(before: dict[int, float], after: dict[int, tuple[str, float]],
                        wall_s: float) -> dict[str, float]:
    """CPU seconds used in the window per process kind, as % of one core.

    before: pid -> cpu seconds at the window start; after: pid -> (kind, cpu seconds) at the end.
    A pid missing from `before` started inside the window, so all of its CPU counts. A process
    that died inside the window is missing from `after`; its share is lost (restarts are
    reported separately)."""
    out: dict[str, float] = {}
    if wall_s <= 0:
        return out
    for pid, (kind, cpu_end) in after.items():
        used = max(0.0, cpu_end - before.get(pid, 0.0))
        out[kind] = out.get(kind, 0.0) + used / wall_s * 100.0
    return {k: round(v, 2) for k, v in sorted(out.items())}


def cpu_per_tick(cpu_percent: dict[str, float], wall_s: float, ticks: int) -> dict[str, float]:
    """% of one core over wall_s -> CPU microseconds per tick received, per kind (and 'tree').
    Comparable with perf-floors' 55-75 us of CPU per sparse tick for the bare pipeline."""
    if ticks <= 0 or wall_s <= 0:
        return {}
    out = {k: round(v / 100.0 * wall_s / ticks * 1e6, 1) for k, v in cpu_percent.items() if k != "loadtest"}
    out["tree"] = round(sum(out.values()), 1)
    return out


def slope_per_hour(ts_s: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys against ts_s, per hour; None with < 3 points or no time spread."""
    if len(ts_s) < 3 or len(ts_s) != len(ys):
        return None
    t = np.asarray(ts_s, dtype=float)
    y = np.asarray(ys, dtype=float)
    tc = t - t.mean()
    den = float(np.dot(tc, tc))
    if den <= 0:
        return None
    return float(np.dot(tc, y - y.mean()) / den * 3600.0)


def median_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(vals) if vals else None


def max_or_none(xs: Iterable[float | None]) -> float | None:
    vals = [x for x in xs if x is not None and math.isfinite(x)]
    return max(vals) if vals else None


def check_step(s: StepResult, t: Targets) -> list[Miss]:
    """The targets a step misses, each with by how much."""
    misses: list[Miss] = []

    def over(name: str, value: float | None, limit: float, unit: str, note: str = "") -> None:
        if value is None:
            misses.append(Miss(target=name, value=None, limit=limit, unit=unit, over_by=None,
                               note=note or "not measured"))
        elif value > limit:
            misses.append(Miss(target=name, value=round(value, 3), limit=limit, unit=unit,
                               over_by=round(value - limit, 3), note=note))

    if not s.all_signalled:
        misses.append(Miss(target="startup_s", value=None, limit=t.startup_limit_s(s.symbols), unit="s",
                           over_by=None, note="not every symbol signalled before the start-up timeout"))
    else:
        over("startup_s", s.startup_s, t.startup_limit_s(s.symbols), "s")
    over("tick_to_signal_p99_us", s.tick_to_signal_p99_us, t.p99_limit_us(s.symbols), "us")
    over("ticks_dropped", float(s.ticks_dropped_total), float(t.ticks_dropped), "ticks")
    uss_mb = s.worker_uss_bytes_max / MB if s.worker_uss_bytes_max is not None else None
    over("worker_uss_mb", uss_mb, t.worker_uss_mb, "MB")
    if s.total_pss_bytes is not None:
        over("total_pss_mb", s.total_pss_bytes / MB, t.total_pss_mb, "MB")
    if s.cpu_us_per_tick_by_kind.get("tree") is not None:
        over("cpu_us_per_tick", s.cpu_us_per_tick_by_kind["tree"], t.cpu_us_per_tick, "us",
             "CPU of the whole tree over the window / ticks received")
    over("restarts", float(s.restarts), 0.0, "restarts")
    over("budget_breaches", float(s.budget_breaches), 0.0, "workers")
    if s.ticks_sent is not None and s.ticks_expected > 0:
        ratio = s.ticks_sent / s.ticks_expected
        if ratio < t.min_ticks_sent_ratio:
            misses.append(Miss(target="ticks_sent_ratio", value=round(ratio, 3), limit=t.min_ticks_sent_ratio,
                               unit="sent/expected", over_by=round(t.min_ticks_sent_ratio - ratio, 3),
                               note="the gateway did not deliver the configured tick rate"))
    return misses


def diagnose(s: StepResult, misses: Sequence[Miss]) -> list[str]:
    """Plain-language reasons for the misses, from the step's own figures."""
    out: list[str] = []
    cap = s.cpu_cores * 100.0
    kinds = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(s.cpu_percent_by_kind.items(), key=lambda kv: -kv[1]))
    if s.machine_cpu_percent >= 0.85 * cap:
        out.append(f"CPU saturated: the machine ran at {s.machine_cpu_percent:.0f}% of {cap:.0f}% "
                   f"(our tree {s.cpu_percent_tree:.0f}%: {kinds}; other load {s.outside_cpu_percent:.0f}%)")
    elif misses:
        out.append(f"CPU: machine {s.machine_cpu_percent:.0f}% of {cap:.0f}% (our tree "
                   f"{s.cpu_percent_tree:.0f}%: {kinds}; other load {s.outside_cpu_percent:.0f}%)")
    if s.outside_cpu_percent >= 0.25 * cap:
        out.append(f"other processes on this shared machine took {s.outside_cpu_percent:.0f}% of one core "
                   "during the window: figures are pessimistic")
    names = {m.target for m in misses}
    if "startup_s" in names and s.startup_s is not None and s.symbols:
        out.append(f"start-up: {s.startup_s / s.symbols * 1000:.0f} ms per symbol from launch to the last "
                   f"first signal (workers are started and warmed one after another)")
    if "startup_s" in names and s.startup_machine_cpu_percent is not None:
        kinds0 = ", ".join(f"{k} {v:.0f}%" for k, v in sorted(s.startup_cpu_percent_by_kind.items(),
                                                               key=lambda kv: -kv[1]))
        out.append(f"during start-up the machine ran at {s.startup_machine_cpu_percent:.0f}% of {cap:.0f}% "
                   f"(our tree, lower bound: {kinds0 or 'n/a'})")
    if s.restart_reasons:
        top = "; ".join(f"{k} x{v}" for k, v in list(s.restart_reasons.items())[:4])
        out.append(f"restarts by reason (supervisor's process table): {top}"
                   + (f"; {s.quarantined} quarantined" if s.quarantined else ""))
    if "worker_uss_mb" in names and s.worker_uss_bytes_median is not None:
        out.append(f"per-worker private memory (USS) median {s.worker_uss_bytes_median / MB:.1f} MB, max "
                   f"{(s.worker_uss_bytes_max or 0) / MB:.1f} MB: what each extra symbol costs beyond the "
                   "pages it shares with the forkserver")
    pool_share = s.cpu_percent_by_kind.get("pool", 0.0) / (100.0 * max(1, s.pool_size or s.cpu_cores))
    if pool_share >= 0.8:
        out.append(f"compute pool CPU {pool_share:.0%} of its cores: pool-bound")
    if "tick_to_signal_p99_us" in names:
        if s.machine_cpu_percent < 0.85 * cap:
            out.append(f"latency is not CPU-bound: the machine had {cap - s.machine_cpu_percent:.0f}% of one core "
                       "idle; the time goes in the tick -> pool -> worker path itself")
        if s.pool_mean_batch is not None and s.pool_cpu_ms_per_batch is not None:
            out.append(f"the pool served {s.pool_requests} requests in {s.pool_batches} batches (mean "
                       f"{s.pool_mean_batch:.1f}, max {s.pool_max_batch}) at {s.pool_cpu_ms_per_batch:.2f} ms of pool "
                       "CPU per batch: a request waits for its whole batch, so batch compute explains about "
                       f"{s.pool_cpu_ms_per_batch * 1000:.0f} us of the p50 of {s.tick_to_signal_p50_us or 0:.0f} us")
        per_tick = s.cpu_us_per_tick_by_kind
        if per_tick.get("tree"):
            top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(per_tick.items(), key=lambda kv: -kv[1])
                            if k != "tree")
            out.append(f"each tick costs {per_tick['tree']:.0f} us of CPU across the tree ({top}; the bare "
                       "tick->signal pipeline floor is 55-75 us)"
                       + (": ticks of all symbols arrive together, so that work queues on the cores in bursts "
                          "even when average CPU is low" if s.arrivals == "lockstep" else ""))
        h = s.tick_hops
        if h is not None and h.slow_ticks:
            inside = {k: v for k, v in h.slow_us.items() if k != "gateway"}  # tick-to-signal's own hops
            total = sum(inside.values())
            if total > 0:
                biggest = sorted(inside.items(), key=lambda kv: -kv[1])[:2]
                out.append(f"the slow ticks (at or over their worker's p99, {h.slow_ticks} of {h.ticks}) took "
                           f"{total:.0f} us on average, mostly " + " and ".join(
                               f"{k} {v:.0f} us ({v / total:.0%})" for k, v in biggest)
                           + f" (all ticks: {', '.join(f'{k} {v:.0f}' for k, v in h.all_us.items() if k != 'gateway')}"
                           "; to_pool: the request waits unread for the pool, back: the reply for its worker)")
        if s.loop_lag_ms_max is not None and s.machine_cpu_percent >= 0.85 * cap:
            out.append(f"worker event-loop lag max {s.loop_lag_ms_max:.1f} ms: processes wait for a core "
                       "(scheduler queueing) before they handle the tick")
    return out



def _gateway_ticks(snap: StatusSnapshot) -> float | None:
    for p in snap.processes:
        if p.kind == "gateway" and p.load is not None:
            return p.load
    return None


def pool_counters(snap: StatusSnapshot) -> dict[str, tuple[int, int, int]]:
    """pool name -> (signal requests, batches, max batch) from its status row's typed fields;
    a member that has not reported yet is left out."""
    out = {}
    for p in snap.processes:
        if p.kind == "pool" and p.signal_requests is not None and p.signal_batches is not None:
            out[p.name] = (p.signal_requests, p.signal_batches, p.max_batch or 0)
    return out


def restart_reasons(snap: StatusSnapshot | None) -> tuple[dict[str, int], int]:
    """The supervisor's restarts by "kind: cause" (numbers as N, so '5.1s' and '5.3s' count
    together; from its process table through the status document), and how many processes are
    quarantined. Nothing known without a snapshot."""
    if snap is None:
        return {}, 0
    quarantined = sum(1 for w in snap.workers if w.state == "quarantined") + sum(
        1 for p in snap.processes if p.state == "quarantined")
    return dict(sorted(snap.restarts_by_cause.items(), key=lambda kv: -kv[1])), quarantined


def gateway_loop_lag_ms(snap: StatusSnapshot) -> list[float]:
    """The gateway's event-loop lag from its status row (none before it reports one)."""
    return [p.loop_lag_ms for p in snap.processes if p.kind == "gateway" and p.loop_lag_ms is not None]


def _restarts(snap: StatusSnapshot) -> int:
    return sum(w.restarts for w in snap.workers) + sum(p.restarts for p in snap.processes)


def _window_sample(snap: StatusSnapshot, t_s: float) -> WindowSample:
    return WindowSample(t_s=round(t_s, 2),
                        p99_worst_worker_us=max_or_none(w.tick_to_signal_p99_us for w in snap.workers),
                        workers_running=sum(1 for w in snap.workers if w.state == "running"),
                        budgets_not_ok=sum(1 for w in snap.workers if w.budget != "ok"),
                        restarts=_restarts(snap))


def _all_signalled(snap: StatusSnapshot, n: int) -> bool:
    return len(snap.workers) == n and all(w.first_signal_after_launch_s is not None for w in snap.workers)



def _assemble(n: int, tick_rate: float, bar_seconds: float, pool_size: int, window: float, settle_s: float,
              startup_s: float | None, s0: StatusSnapshot | None, s1: StatusSnapshot | None,
              last: StatusSnapshot | None, cpu_before: dict[int, float], cpu_after: dict[int, tuple[str, float]],
              machine_busy: float, mem: dict[int, tuple[str, int, int, int]], samples: list[WindowSample],
              loadavg: list[float], error: str | None, tail: str | None) -> StepResult:
    end = s1 or last
    workers = end.workers if end else []
    start_by_sym = {w.symbol: w for w in s0.workers} if s0 else {}

    def delta(field: str) -> int:
        total = 0
        for w in workers:
            b = start_by_sym.get(w.symbol)
            # A worker restarted in the window counts from zero again: take its end value.
            before = getattr(b, field) if b is not None and b.pid == w.pid else 0
            total += max(0, getattr(w, field) - before)
        return total

    measured = s0 is not None and s1 is not None
    signals = delta("signals") if measured else 0
    weights = {w.symbol: max(0, w.signals - (start_by_sym[w.symbol].signals if w.symbol in start_by_sym else 0))
               for w in workers}
    lat = merge_quantiles(
        [(float(weights.get(w.symbol, 0) or 1), [(0.5, w.tick_to_signal_p50_us), (0.99, w.tick_to_signal_p99_us),
                                                  (0.999, w.tick_to_signal_p999_us)])
         for w in workers if w.tick_to_signal_p50_us is not None], (0.5, 0.99, 0.999)) if measured else [None] * 3
    rtt = merge_quantiles(
        [(1.0, [(0.5, w.order_rtt_p50_us), (0.99, w.order_rtt_p99_us)])
         for w in workers if w.order_rtt_p50_us is not None], (0.5, 0.99)) if measured else [None] * 2
    rtt_startup = merge_quantiles(
        [(1.0, [(0.5, w.order_rtt_startup_p50_us), (0.99, w.order_rtt_startup_p99_us)])
         for w in workers if w.order_rtt_startup_p50_us is not None], (0.5, 0.99)) if measured else [None] * 2
    g0 = _gateway_ticks(s0) if s0 else None
    g1 = _gateway_ticks(s1) if s1 else None
    sent = int(g1 - g0) if g0 is not None and g1 is not None and g1 >= g0 else None
    wmem = [m for m in mem.values() if m[0] == "worker"]
    uss = sorted(m[1] for m in wmem)
    pss = sorted(m[2] for m in wmem)
    by_kind: dict[str, ProcMem] = {}
    for kind, u, p, r in mem.values():
        pm = by_kind.setdefault(kind, ProcMem(kind=kind, count=0, uss_bytes=0, pss_bytes=0, rss_bytes=0))
        pm.count += 1
        pm.uss_bytes += u
        pm.pss_bytes += p
        pm.rss_bytes += r
    cpu = cpu_percent_by_kind(cpu_before, cpu_after, window) if measured else {}
    tree_cpu = sum(v for k, v in cpu.items() if k != "loadtest")
    pool_busy = max_or_none(p.load for p in end.processes if p.kind == "pool") if end else None
    preq = pbat = pmax = None
    if s0 is not None and s1 is not None:  # measured
        c0, c1 = pool_counters(s0), pool_counters(s1)
        pairs = [(a, b) for k, b in c1.items() if (a := c0.get(k)) is not None]
        if c1 and len(pairs) == len(c1) and all(a[0] <= b[0] and a[1] <= b[1] for a, b in pairs):
            preq = sum(b[0] - a[0] for a, b in pairs)
            pbat = sum(b[1] - a[1] for a, b in pairs)
            pmax = max(b[2] for _, b in pairs)
    pool_cpu_s = cpu.get("pool", 0.0) / 100.0 * window
    step = StepResult(
        symbols=n, tick_rate=tick_rate, bar_seconds=bar_seconds, pool_size=pool_size, duration_s=round(window, 2),
        settle_s=settle_s, all_signalled=startup_s is not None, startup_s=_r(startup_s, 2),
        startup_worker_max_s=_r(max_or_none(w.first_signal_after_launch_s for w in workers), 2),
        tick_to_signal_p50_us=_r(lat[0], 1), tick_to_signal_p99_us=_r(lat[1], 1),
        tick_to_signal_p999_us=_r(lat[2], 1),
        tick_to_signal_p50_us_median_worker=_r(median_or_none(w.tick_to_signal_p50_us for w in workers), 1),
        tick_to_signal_p99_us_worst_worker=_r(max_or_none(w.tick_to_signal_p99_us for w in workers), 1),
        tick_to_signal_p999_us_worst_worker=_r(max_or_none(w.tick_to_signal_p999_us for w in workers), 1),
        order_rtt_p50_us=_r(rtt[0], 1), order_rtt_p99_us=_r(rtt[1], 1),
        order_rtt_p99_us_worst_worker=_r(max_or_none(w.order_rtt_p99_us for w in workers), 1),
        ticks_expected=int(round(n * tick_rate * window)) if measured else 0, ticks_sent=sent,
        ticks_received=delta("ticks") if measured else 0,
        ticks_dropped=delta("ticks_dropped") if measured else 0,
        ticks_dropped_total=sum(w.ticks_dropped for w in workers), ticks_late=delta("ticks_late") if measured else None,
        signals=signals, signals_per_s=round(signals / window, 2) if measured and window > 0 else 0.0,
        cpu_cores=os.cpu_count() or 1, cpu_percent_by_kind=cpu, cpu_percent_tree=round(tree_cpu, 1),
        cpu_us_per_tick_by_kind=cpu_per_tick(cpu, window, delta("ticks") if measured else 0),
        machine_cpu_percent=round(machine_busy, 1), outside_cpu_percent=round(max(0.0, machine_busy - tree_cpu
                                                                                  - cpu.get("loadtest", 0.0)), 1),
        pool_busy_fraction_max=_r(pool_busy, 3), pool_requests=preq, pool_batches=pbat,
        pool_mean_batch=round(preq / pbat, 2) if preq is not None and pbat else None, pool_max_batch=pmax,
        pool_cpu_ms_per_batch=round(pool_cpu_s / pbat * 1000.0, 3) if pbat else None,
        loop_lag_ms_median=_r(median_or_none(w.loop_lag_ms for w in workers), 2),
        loop_lag_ms_max=_r(max_or_none(w.loop_lag_ms for w in workers), 2),
        worker_uss_bytes_median=int(statistics.median(uss)) if uss else None,
        worker_uss_bytes_max=max(uss) if uss else None,
        worker_pss_bytes_median=int(statistics.median(pss)) if pss else None,
        worker_pss_bytes_max=max(pss) if pss else None,
        total_pss_bytes=sum(m[2] for m in mem.values()) if mem else None,
        memory_by_kind=sorted(by_kind.values(), key=lambda m: m.kind),
        restarts=_restarts(end) if end else 0, restart_reasons={}, quarantined=0, startup_cpu_percent_by_kind={},
        startup_machine_cpu_percent=None, budget_breaches=0, budget_notes=[], loadavg_at_launch=loadavg,
        samples=samples, error=error, log_tail=tail,
        order_rtt_startup_p50_us=_r(rtt_startup[0], 1), order_rtt_startup_p99_us=_r(rtt_startup[1], 1),
        order_errors=delta("order_errors") if measured else None,
        rate_budget_left=end.rate_budget_left if end else None,
        rate_budget_capacity=end.rate_budget_capacity if end else None,
        tick_hops=hop_means(s0, s1) if s0 is not None and s1 is not None else None,
        plans_skipped=delta("plans_skipped") if measured else 0,
        budget_use=budget_use(s0, s1) if measured else None)
    return step


def budget_use(s0: StatusSnapshot | None, s1: StatusSnapshot | None) -> BudgetUse | None:
    """The gateway's rate-budget counters differenced over the window; None when the gateway
    reported none (replay mode) at either end. A gateway restarted in the window counts from zero."""
    a = s0.rate_budget_use if s0 is not None else None
    b = s1.rate_budget_use if s1 is not None else None
    if a is None or b is None:
        return None
    if b.intents < a.intents or any(b.units_by_kind.get(k, 0) < v for k, v in a.units_by_kind.items()):
        a = RateBudgetUse()

    def biggest_first(d: dict[str, int]) -> dict[str, int]:
        return dict(sorted(((k, v) for k, v in d.items() if v), key=lambda kv: (-kv[1], kv[0])))
    return BudgetUse(
        units_window=biggest_first({k: v - a.units_by_kind.get(k, 0) for k, v in b.units_by_kind.items()}),
        units_total=biggest_first(dict(b.units_by_kind)), intents_window=b.intents - a.intents,
        intents_waited_window=b.intents_waited - a.intents_waited,
        intents_wait_s_window=round(b.intents_wait_s - a.intents_wait_s, 3),
        intents_refused_window=b.intents_refused - a.intents_refused, intents_wait_max_s=b.intents_wait_max_s,
        requests_waiting_end=b.requests_waiting)


def hop_means(s0: StatusSnapshot, s1: StatusSnapshot) -> HopMeans | None:
    """The workers' per-hop counters differenced over the window (a worker restarted in it counts
    from its start); None when no tick was timed."""
    before = {w.symbol: w for w in s0.workers}
    names = [f.name for f in msgspec.structs.fields(HopSums) if f.name != "ticks"]
    tot = {"all": [0.0] * (len(names) + 1), "slow": [0.0] * (len(names) + 1)}
    for w in s1.workers:
        b = before.get(w.symbol)
        same = b is not None and b.pid == w.pid
        for part, acc in tot.items():
            end: HopSums = getattr(w.tick_hops, part)
            start: HopSums | None = getattr(b.tick_hops, part) if same and b is not None else None
            if start is not None and end.ticks < start.ticks:
                continue  # counters went back: not the same worker life
            acc[0] += end.ticks - (start.ticks if start else 0)
            for i, name in enumerate(names, 1):
                acc[i] += getattr(end, name) - (getattr(start, name) if start else 0.0)
    if not tot["all"][0]:
        return None

    def means(acc: list[float]) -> dict[str, float]:
        return {name.removesuffix("_us"): round(acc[i] / acc[0], 1) if acc[0] else 0.0
                for i, name in enumerate(names, 1)}
    return HopMeans(ticks=int(tot["all"][0]), slow_ticks=int(tot["slow"][0]), all_us=means(tot["all"]),
                    slow_us=means(tot["slow"]))


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


# --- soak --------------------------------------------------------------------------------------

class KindSlope(msgspec.Struct, kw_only=True):
    kind: str
    processes: int
    rss_slope_mb_per_h_median: float | None
    rss_slope_mb_per_h_max: float | None
    uss_slope_mb_per_h_median: float | None
    uss_slope_mb_per_h_max: float | None
    rss_mb_first_median: float | None
    rss_mb_last_median: float | None


class FlaggedWorker(msgspec.Struct, kw_only=True):
    process: str
    rss_slope_mb_per_h: float


class LoopLag(msgspec.Struct, frozen=True, kw_only=True):
    """Event-loop lag over a soak, ms: workers (per-sample median and max across workers), gateway."""
    worker_median: float | None = None
    worker_max: float | None = None
    gateway_median: float | None = None
    gateway_max: float | None = None


class RssSample(msgspec.Struct, kw_only=True):
    t_s: float  # since all signalled
    rss_mb_median_by_kind: dict[str, float]


class SoakDoc(msgspec.Struct, kw_only=True):
    """One `orchestrate soak` run: what the JSON report holds and the markdown shows."""
    name: str
    started_utc: str
    command: str
    machine: Machine
    symbols: int
    tick_rate: float
    duration_s: float
    sample_interval_s: float
    warmup_s: float
    samples: int = 0
    kinds: list[KindSlope] = []
    flag_above_mb_per_h: float = Targets().worker_rss_slope_mb_per_h
    flagged_workers: list[FlaggedWorker] = []
    loop_lag_ms: LoopLag = LoopLag()
    p99_worst_worker_us_median: float | None = None
    p99_worst_worker_us_max: float | None = None
    restarts: int = 0
    ticks_dropped_total: int = 0
    rss_trace: list[RssSample] = []
    error: str | None = None
    notes: list[str] = []
    plots: list[str] = []
    reports: dict[str, str] = {}
    kind: str = "soak"


def summarise_slopes(series: dict[str, tuple[str, list[float], list[float], list[float]]],
                     flag_above: float) -> tuple[list[KindSlope], list[FlaggedWorker]]:
    """series: key -> (kind, t_s, rss_mb, uss_mb). Per-kind slope summary, and the flagged workers
    (RSS slope above flag_above MB/h)."""
    per_kind: dict[str, list[tuple[str, float | None, float | None, float, float]]] = {}
    for key, (kind, ts, rss, uss) in series.items():
        if len(ts) < 3:
            continue
        per_kind.setdefault(kind, []).append((key, slope_per_hour(ts, rss), slope_per_hour(ts, uss), rss[0], rss[-1]))
    out = []
    flagged = []
    for kind, rows in sorted(per_kind.items()):
        out.append(KindSlope(
            kind=kind, processes=len(rows),
            rss_slope_mb_per_h_median=_r(median_or_none(r[1] for r in rows), 3),
            rss_slope_mb_per_h_max=_r(max_or_none(r[1] for r in rows), 3),
            uss_slope_mb_per_h_median=_r(median_or_none(r[2] for r in rows), 3),
            uss_slope_mb_per_h_max=_r(max_or_none(r[2] for r in rows), 3),
            rss_mb_first_median=_r(median_or_none(r[3] for r in rows), 2),
            rss_mb_last_median=_r(median_or_none(r[4] for r in rows), 2)))
        if kind == "worker":
            flagged += [FlaggedWorker(process=r[0], rss_slope_mb_per_h=round(r[1], 3))
                        for r in rows if r[1] is not None and r[1] > flag_above]
    return out, flagged


