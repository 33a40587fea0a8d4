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
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil

from shared.status import StatusSnapshot

from .control import NotRunning, get_status

MB = 1024 * 1024
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
    """Issue 6's targets on this machine kind (2 cores)."""
    symbols: int = 200
    tick_rate: float = 2.0
    tick_to_signal_p99_us: float = 5000.0
    ticks_dropped: int = 0
    worker_uss_mb: float = 12.0
    startup_s: float = 15.0
    min_ticks_sent_ratio: float = 0.95  # the gateway must deliver the configured tick rate
    worker_rss_slope_mb_per_h: float = 1.0  # soak


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
    ticks_late: int | None  # not in the status document (see notes)
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
    restart_reasons: dict[str, int]  # from the supervisor's log, numbers masked: why things restarted
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


# --- pure helpers (unit-tested) ---------------------------------------------------------------

def parse_steps(text: str) -> list[int]:
    """'200' or '10,50,200' -> ascending distinct counts; ValueError on anything else."""
    try:
        steps = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"--symbols expects a count or a comma-separated list of counts, got {text!r}") from None
    if not steps:
        raise ValueError("--symbols: no count given")
    if any(n < 1 or n > MAX_SYMBOLS for n in steps):
        raise ValueError(f"--symbols: each count must be 1..{MAX_SYMBOLS}")
    if len(steps) > MAX_STEPS:
        raise ValueError(f"--symbols: at most {MAX_STEPS} steps")
    return sorted(set(steps))


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
        misses.append(Miss(target="startup_s", value=None, limit=t.startup_s, unit="s", over_by=None,
                           note="not every symbol signalled before the start-up timeout"))
    else:
        over("startup_s", s.startup_s, t.startup_s, "s")
    over("tick_to_signal_p99_us", s.tick_to_signal_p99_us, t.tick_to_signal_p99_us, "us")
    over("ticks_dropped", float(s.ticks_dropped_total), float(t.ticks_dropped), "ticks")
    uss_mb = s.worker_uss_bytes_max / MB if s.worker_uss_bytes_max is not None else None
    over("worker_uss_mb", uss_mb, t.worker_uss_mb, "MB")
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
        out.append(f"restarts by reason (supervisor log): {top}"
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
                       "tick->signal pipeline floor is 55-75 us): ticks of all symbols arrive together, so that "
                       "work queues on the cores in bursts even when average CPU is low")
        if s.loop_lag_ms_max is not None and s.machine_cpu_percent >= 0.85 * cap:
            out.append(f"worker event-loop lag max {s.loop_lag_ms_max:.1f} ms: processes wait for a core "
                       "(scheduler queueing) before they handle the tick")
    return out


# --- machine and git -------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(), "memory_total_bytes": vm.total, "loadavg": [round(x, 2) for x in os.getloadavg()],
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
                 + getattr(t, "steal", 0.0))


# --- driving one run of the real tree ---------------------------------------------------------

class SystemUnderTest:
    """One `orchestrate` process tree on its own run dir; stop() is safe to call twice."""

    def __init__(self, symbols: list[str], bar_seconds: float, pool_size: int, run_dir: Path,
                 config: str | None = None) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = run_dir / "orchestrate.out"
        # Output goes to a file, never a pipe: a pipe nobody reads fills up and blocks the tree.
        self._log = open(self.log_path, "wb")
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--symbols", ",".join(symbols), "--run-dir", str(run_dir),
             "--bar-seconds", repr(bar_seconds), "--pool-size", str(pool_size), "--no-display",
             *(["--config", config] if config else [])],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.root = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {self.proc.pid: self.root}

    def status(self) -> StatusSnapshot | None:
        try:
            return get_status(self.run_dir)
        except (NotRunning, OSError, msgspec.DecodeError):
            return None  # not up yet, or between restarts

    def exited(self) -> int | None:
        return self.proc.poll()

    def tree(self) -> list[psutil.Process]:
        try:
            kids = self.root.children(recursive=True)
        except psutil.Error:
            kids = []
        for k in kids:
            self.seen.setdefault(k.pid, k)
        return [self.root, *kids]

    def log_text(self) -> str:
        """The supervisor's console output, at most the last LOG_SCAN_BYTES."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_SCAN_BYTES))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()[-LOG_TAIL_CHARS:]
            return data.decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.tree()  # remember every child so a stuck one can be killed by pid
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        # Anything of ours still alive (a hung child, or a killed supervisor's orphans): by pid only.
        for p in list(self.seen.values()):
            try:
                if p.is_running():
                    p.kill()
            except psutil.Error:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def _classify(snap: StatusSnapshot | None, root_pid: int) -> dict[int, str]:
    kinds = {root_pid: "supervisor"}
    if snap is not None:
        for w in snap.workers:
            if w.pid:
                kinds[w.pid] = "worker"
        for p in snap.processes:
            if p.pid:
                kinds[p.pid] = p.kind
    return kinds


def _cpu_seconds(procs: Iterable[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _gateway_ticks(snap: StatusSnapshot) -> float | None:
    for p in snap.processes:
        if p.kind == "gateway" and p.load is not None:
            return p.load
    return None


_POOL_NOTE = re.compile(r"requests (\d+) batches (\d+) max batch (\d+)")


def pool_counters(snap: StatusSnapshot) -> dict[str, tuple[int, int, int]]:
    """pool name -> (requests, batches, max batch) parsed from its status note (the status
    document has no fields for them; see the report's asks)."""
    out = {}
    for p in snap.processes:
        m = _POOL_NOTE.search(p.note) if p.kind == "pool" else None
        if m:
            out[p.name] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return out


_FAILED = re.compile(r"WARNING (\w+) \S+ failed \((.*?)\); restart")
_QUARANTINED = re.compile(r"ERROR (\w+) \S+ quarantined: ")
_NUM = re.compile(r"(?<![A-Za-z_\d])\d+(\.\d+)?")  # numbers, not the 99 in p99
LOG_SCAN_BYTES = 4 * MB


def restart_reasons(log_text: str) -> tuple[dict[str, int], int]:
    """Count the supervisor's restart reasons by process kind and reason (numbers masked as N,
    so '5.1s' and '5.3s' count together), and the quarantines."""
    reasons: dict[str, int] = {}
    for m in _FAILED.finditer(log_text):
        key = f"{m.group(1)}: {_NUM.sub('N', m.group(2))}"
        reasons[key] = reasons.get(key, 0) + 1
    return dict(sorted(reasons.items(), key=lambda kv: -kv[1])), len(_QUARANTINED.findall(log_text))


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


def _progress(msg: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_step(n: int, tick_rate: float, duration_s: float, settle_s: float, pool_size: int, run_dir: Path,
             startup_timeout_s: float, config: str | None = None) -> StepResult:
    """Launch, wait for every first signal, settle, measure, stop. Never leaves the tree running."""
    bar_seconds = TICKS_PER_BAR / tick_rate
    loadavg = [round(x, 2) for x in os.getloadavg()]
    sut = SystemUnderTest(synthetic_symbols(n), bar_seconds, pool_size, run_dir, config)
    samples: deque[WindowSample] = deque(maxlen=MAX_SERIES)
    breached: set[str] = set()  # symbols seen with a budget other than "ok" (bounded by n)
    budget_notes: list[str] = []  # the first few, verbatim
    error: str | None = None
    failed = False
    startup_s: float | None = None
    snap: StatusSnapshot | None = None
    s0 = s1 = None
    window = 0.0
    cpu_after: dict[int, tuple[str, float]] = {}
    cpu_before: dict[int, float] = {}
    machine_busy = 0.0
    mem: dict[int, tuple[str, int, int, int]] = {}

    def note_budgets(s: StatusSnapshot) -> None:
        for w in s.workers:
            if w.budget != "ok" and w.symbol not in breached:
                breached.add(w.symbol)
                if len(budget_notes) < 10:
                    budget_notes.append(f"{w.symbol}: {w.budget}")

    busy_launch = _machine_busy_s()
    startup_cpu: dict[str, float] = {}
    startup_machine: float | None = None
    try:
        deadline = sut.launched + startup_timeout_s
        while time.monotonic() < deadline:
            if sut.exited() is not None:
                raise RuntimeError(f"orchestrate exited with code {sut.exited()} during start-up")
            snap = sut.status()
            if snap is not None and _all_signalled(snap, n):
                startup_s = time.monotonic() - sut.launched
                break
            time.sleep(STARTUP_POLL_S)
        # Start-up CPU: every process of the tree began after launch, so its whole CPU time is
        # start-up work (processes that died and were replaced are lost: a lower bound).
        elapsed = time.monotonic() - sut.launched
        startup_machine = round((_machine_busy_s() - busy_launch) / elapsed * 100.0, 1)
        kinds0 = _classify(snap, sut.proc.pid)
        startup_cpu = cpu_percent_by_kind({}, {pid: (kinds0.get(pid, "other"), c)
                                                for pid, c in _cpu_seconds(sut.tree()).items()}, elapsed)
        if startup_s is None:
            signalled = sum(1 for w in snap.workers if w.first_signal_after_launch_s is not None) if snap else 0
            error = f"{signalled}/{n} symbols signalled within the start-up timeout ({startup_timeout_s:.0f} s)"
            if snap is None:
                error += "; the supervisor never answered a status request"
            # Some symbols late is a finding about scale; none at all means the tree is broken.
            failed = signalled == 0
        else:
            _progress(f"{n} symbols: all signalled {startup_s:.1f} s after launch; settling {settle_s:.0f} s")
            end_settle = time.monotonic() + settle_s
            while time.monotonic() < end_settle:
                time.sleep(min(WINDOW_POLL_S, max(0.0, end_settle - time.monotonic())))
                s = sut.status()
                if s is not None:
                    samples.append(_window_sample(s, time.monotonic() - sut.launched))
                    note_budgets(s)
            # --- measurement window ---
            s0 = sut.status()
            tree = sut.tree()
            cpu_before = _cpu_seconds(tree)
            cpu_before[-1] = sum(os.times()[:2])  # this process: the measurement's own cost
            busy0, t0 = _machine_busy_s(), time.monotonic()
            end = t0 + duration_s
            while time.monotonic() < end:
                if sut.exited() is not None:
                    raise RuntimeError(f"orchestrate exited with code {sut.exited()} during the measurement")
                time.sleep(min(WINDOW_POLL_S, max(0.0, end - time.monotonic())))
                s = sut.status()
                if s is not None:
                    samples.append(_window_sample(s, time.monotonic() - sut.launched))
                    note_budgets(s)
            tree = sut.tree()
            cpu_end = _cpu_seconds(tree)
            busy1, t1 = _machine_busy_s(), time.monotonic()
            s1 = sut.status()
            if s1 is not None:
                note_budgets(s1)
            window = t1 - t0
            machine_busy = (busy1 - busy0) / window * 100.0 if window > 0 else 0.0
            kinds = _classify(s1 or s0, sut.proc.pid)
            cpu_after = {pid: (kinds.get(pid, "other"), c) for pid, c in cpu_end.items()}
            cpu_after[-1] = ("loadtest", sum(os.times()[:2]))
            for p in tree:  # USS/PSS parse smaps (~0.5 ms a process): once, at the end of the window
                try:
                    mi = p.memory_full_info()
                    mem[p.pid] = (kinds.get(p.pid, "other"), mi.uss, getattr(mi, "pss", 0), mi.rss)
                except psutil.Error:
                    pass
    except Exception as exc:  # the step is reported as failed; the sequence stops
        error = f"{type(exc).__name__}: {exc}"
        failed = True
    finally:
        tail = sut.log_tail() if error else None
        sut.stop()
        reasons, quarantined = restart_reasons(sut.log_text())
    step = _assemble(n, tick_rate, bar_seconds, pool_size, window, settle_s, startup_s, s0, s1, snap,
                     cpu_before, cpu_after, machine_busy, mem, list(samples), loadavg, error, tail)
    step.budget_breaches = len(breached)
    step.restart_reasons, step.quarantined = reasons, quarantined
    step.startup_cpu_percent_by_kind, step.startup_machine_cpu_percent = startup_cpu, startup_machine
    step.budget_notes = budget_notes
    step.failed = failed
    return step


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
        ticks_dropped_total=sum(w.ticks_dropped for w in workers), ticks_late=None,
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
        samples=samples, error=error, log_tail=tail)
    return step


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, nd)


# --- reports ---------------------------------------------------------------------------------

def _fmt(v: Any, scale: float = 1.0, nd: int = 1) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) or scale != 1.0:
        return f"{v / scale:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


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
        ("order round trip p50 / p99 (us)", f"{_fmt(s.order_rtt_p50_us)} / {_fmt(s.order_rtt_p99_us)}", ""),
        ("ticks expected / sent (gateway) / received (workers)",
         f"{_fmt(s.ticks_expected)} / {_fmt(s.ticks_sent)} / {_fmt(s.ticks_received)}", ""),
        ("ticks dropped: window / since launch", f"{s.ticks_dropped} / {s.ticks_dropped_total}", "0"),
        ("signals per second", _fmt(s.signals_per_s), ""),
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


def loadtest_markdown(doc: dict[str, Any]) -> str:
    t = msgspec.convert(doc["targets"], Targets)
    steps = [msgspec.convert(s, StepResult) for s in doc["steps"]]
    m = doc["machine"]
    lines = [f"# Load test `{doc['name']}` ({doc['started_utc']})", "",
             f"Machine: {m.get('cpu_model', '')}, {m.get('cpus')} CPUs, "
             f"{m.get('memory_total_bytes', 0) / 2**30:.1f} GiB, Python {m.get('python')}; "
             f"commit `{str(m.get('git_commit', ''))[:12]}`{' (dirty tree)' if m.get('git_dirty') else ''}; "
             f"load average at start {m.get('loadavg')}.", "",
             f"Command: `{doc['command']}`", "",
             f"Targets ({t.symbols} symbols at {t.tick_rate:g} ticks/s): tick-to-signal p99 <= "
             f"{t.tick_to_signal_p99_us:g} us, no dropped ticks, worker USS <= {t.worker_uss_mb:g} MB, "
             f"start-up <= {t.startup_s:g} s.", "",
             "## Summary", "",
             "| symbols | start-up s | p50 us | p99 us | p99.9 us | p99 worst worker us | dropped | "
             "sent/expected | signals/s | CPU tree % | machine % | worker USS med/max MB | total PSS MB | restarts | "
             "verdict |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in steps:
        ratio = f"{s.ticks_sent / s.ticks_expected:.3f}" if s.ticks_sent is not None and s.ticks_expected else "n/a"
        verdict = "error" if s.error else ("ok" if not s.misses else "MISS: " + ", ".join(x.target for x in s.misses))
        lines.append(
            f"| {s.symbols} | {_fmt(s.startup_s, nd=2)} | {_fmt(s.tick_to_signal_p50_us)} | "
            f"{_fmt(s.tick_to_signal_p99_us)} | {_fmt(s.tick_to_signal_p999_us)} | "
            f"{_fmt(s.tick_to_signal_p99_us_worst_worker)} | {s.ticks_dropped_total} | {ratio} | "
            f"{_fmt(s.signals_per_s)} | {s.cpu_percent_tree:.0f} | {s.machine_cpu_percent:.0f} | "
            f"{_fmt(s.worker_uss_bytes_median, MB, 2)}/{_fmt(s.worker_uss_bytes_max, MB, 2)} | "
            f"{_fmt(s.total_pss_bytes, MB, 0)} | {s.restarts} | {verdict} |")
    if doc.get("stopped_at"):
        lines += ["", f"**Stopped:** {doc['stopped_at']}"]
    for s in steps:
        lines += ["", f"## {s.symbols} symbols at {s.tick_rate:g} ticks/s ({s.duration_s:g} s measured after "
                      f"{s.settle_s:g} s settle; pool {s.pool_size})", "",
                  "| figure | value | target |", "|---|---|---|"]
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
    lines += ["", "## How the figures are made", ""] + [f"- {x}" for x in doc["notes"]]
    if doc.get("plots"):
        lines += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in doc["plots"]]
    return "\n".join(lines) + "\n"


def loadtest_plots(doc: dict[str, Any], base: Path) -> tuple[list[Path], str | None]:
    """Latency percentiles and memory against symbol count; ([], reason) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[bench]'): plots skipped"
    steps = [s for s in doc["steps"] if s["tick_to_signal_p50_us"] is not None]
    if not steps:
        return [], "no measured step: plots skipped"
    n = [s["symbols"] for s in steps]
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (("tick_to_signal_p50_us", "p50 (fleet)", "o-"),
                              ("tick_to_signal_p99_us", "p99 (fleet)", "s-"),
                              ("tick_to_signal_p999_us", "p99.9 (fleet)", "^-"),
                              ("tick_to_signal_p99_us_worst_worker", "p99 worst worker", "x--")):
        ax.plot(n, [s[key] / 1000.0 if s[key] is not None else float("nan") for s in steps], style, label=label)
    ax.axhline(doc["targets"]["tick_to_signal_p99_us"] / 1000.0, color="red", lw=0.8, ls=":", label="p99 target")
    ax.set_yscale("log")
    ax.set_xlabel("symbols")
    ax.set_ylabel("tick to signal (ms)")
    ax.set_title(f"Tick-to-signal vs symbols at {steps[0]['tick_rate']:g} ticks/s per symbol")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    p = base.with_name(base.name + "-latency.png")
    fig.tight_layout()
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(p)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label, style in (("worker_uss_bytes_median", "worker USS median", "o-"),
                              ("worker_uss_bytes_max", "worker USS max", "s-"),
                              ("worker_pss_bytes_median", "worker PSS median", "^-")):
        a1.plot(n, [s[key] / MB if s[key] is not None else float("nan") for s in steps], style, label=label)
    a1.axhline(doc["targets"]["worker_uss_mb"], color="red", lw=0.8, ls=":", label="USS target")
    a1.set_xlabel("symbols")
    a1.set_ylabel("MB per worker")
    a1.set_ylim(bottom=0)
    a1.grid(True, alpha=0.3)
    a1.legend()
    a2.plot(n, [s["total_pss_bytes"] / MB if s["total_pss_bytes"] else float("nan") for s in steps], "o-")
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


def write_reports(doc: dict[str, Any], results_dir: Path, markdown: Any, plots: Any) -> dict[str, str]:
    results_dir.mkdir(parents=True, exist_ok=True)
    base = report_base(results_dir, doc["name"], dt.datetime.now(dt.UTC))
    paths, why = plots(doc, base)
    doc["plots"] = [str(p) for p in paths]
    if why:
        doc["notes"].append(why)
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    base.with_suffix(".md").write_text(markdown(doc))
    return {"json": str(base.with_suffix(".json")), "markdown": str(base.with_suffix(".md")),
            **{f"plot{i}": str(p) for i, p in enumerate(paths)}}


LOADTEST_NOTES = [
    "Each step is a fresh `orchestrate` tree (supervisor, paper venue, gateway, pool, one worker per symbol) "
    "on SYN_0001.. symbols; bar_seconds = 4 / tick rate (4 ticks per 1m bar).",
    "start-up: wall time from launching `orchestrate` to the first status poll (every 0.25 s) that shows a "
    "first signal on every symbol; startup_worker_max_s is the supervisor's own launch-to-first-signal of "
    "the slowest worker.",
    "Latency: each worker reports p50/p99/p99.9 over its rolling last 50-60 s; the values are read at the end "
    "of the window, after a settle of max(0, 60 - duration) s by default, so they cover steady state only. "
    "Fleet percentiles are read off the mixture of per-worker piecewise-linear CDFs through (p50, .5), "
    "(p99, .99), (p99.9, .999), weighted by each worker's signals in the window; the worst worker's p99 is "
    "reported beside it.",
    "Ticks: sent = gateway's published-ticks counter, received = sum of the workers' tick counters, both "
    "differenced over the window; the counters ride on heartbeats (1 s), so sent and received may differ "
    "by about one heartbeat's worth of ticks. Dropped = sequence gaps seen by the workers. Late ticks are "
    "counted by workers but not in the status document: reported as null.",
    "Order round trip: the workers' order_rtt p50/p99 (last ~5 min), merged the same way with equal weights.",
    "CPU: psutil cpu_times (user+system, all threads) of every process of the tree, differenced over the "
    "window, as % of one core, by kind (supervisor, venue, gateway, pool, worker, other = forkserver and "
    "resource tracker; loadtest = this measuring process). machine = all CPUs busy time; other load = "
    "machine - ours (the machine is shared).",
    "Memory: psutil memory_full_info (USS, PSS) of every process of the tree at the end of the window; "
    "total PSS sums the tree (PSS divides shared pages among their users, so it adds up).",
    "Restarts: the supervisor's restart counters at the end; budget breaches: workers whose budget was "
    "not 'ok' in any status poll during settle and measurement.",
]


# --- loadtest entry point --------------------------------------------------------------------

def _loadtest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrate loadtest",
                                description="Step the symbol count and measure the whole system.")
    p.add_argument("--symbols", required=True, help="a count (200) or steps (10,50,100,200) of SYN_ symbols")
    p.add_argument("--tick-rate", type=float, default=2.0, help="ticks per second per symbol (default 2)")
    p.add_argument("--duration", type=float, default=20.0, help="measurement seconds per step (default 20)")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds between all-signalled and the window (default max(0, 60 - duration), so "
                        "the workers' 60 s latency windows hold steady state only)")
    p.add_argument("--pool-size", type=int, default=0, help="compute-pool processes (0 = one per core)")
    p.add_argument("--startup-timeout", type=float, default=None,
                   help="seconds to wait for every first signal (default 30 + 0.2 s per symbol)")
    p.add_argument("--config", default=None,
                   help="orchestrate config file for every step (e.g. budgets.action = 'warn' to watch the raw "
                        "system without budget restarts); default: the built-in defaults")
    p.add_argument("--run-dir", default=None, help="parent of the per-step run dirs (default: a temp dir)")
    p.add_argument("--name", default="loadtest", help="report file name prefix")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument("--keep-going", action="store_true", help="run every step even after one misses a target")
    p.add_argument("--json", action="store_true", help="print one JSON document (all steps) on stdout")
    return p


def _validate_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise ValueError(f"--name {name!r}: letters, digits, '_', '.', '-' only (max 64)")
    return name


def main_loadtest(argv: list[str]) -> int:
    """Exit 0 when every step that ran was measured (targets missed or not: see the report),
    1 when a step could not be measured (the tree failed), 2 on bad input."""
    parser = _loadtest_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        steps = parse_steps(args.symbols)
        name = _validate_name(args.name)
        if not (0 < args.tick_rate <= MAX_TICK_RATE):
            raise ValueError(f"--tick-rate must be in (0, {MAX_TICK_RATE:g}]")
        if not (0 < args.duration <= MAX_LOADTEST_DURATION_S):
            raise ValueError(f"--duration must be in (0, {MAX_LOADTEST_DURATION_S:g}] seconds")
        if args.settle is not None and not (0 <= args.settle <= 600):
            raise ValueError("--settle must be in [0, 600] seconds")
        if args.pool_size < 0 or args.pool_size > 64:
            raise ValueError("--pool-size must be in [0, 64]")
        if args.config and not Path(args.config).is_file():
            raise ValueError(f"--config {args.config}: no such file")
    except ValueError as exc:
        print(f"orchestrate loadtest: {exc}", file=sys.stderr)
        return 2
    settle = args.settle if args.settle is not None else max(0.0, LATENCY_WINDOW_S - args.duration)
    targets = Targets()
    started = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "kind": "loadtest", "name": name, "started_utc": started.isoformat(timespec="seconds"),
        "command": "orchestrate loadtest " + " ".join(argv), "machine": machine_description(),
        "targets": msgspec.to_builtins(targets), "steps": [], "stopped_at": None,
        "notes": list(LOADTEST_NOTES)}
    tmp = None if args.run_dir else tempfile.TemporaryDirectory(prefix="dgo-loadtest-")
    parent = Path(tmp.name) if tmp is not None else Path(args.run_dir)
    rc = 0
    try:
        for n in steps:
            run_dir = parent / f"step-{n}"
            if run_dir.exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # our own leftovers from an earlier step run
            _progress(f"step: {n} symbols at {args.tick_rate:g} ticks/s, {args.duration:g} s")
            timeout = args.startup_timeout if args.startup_timeout is not None else 30.0 + 0.2 * n
            step = run_step(n, args.tick_rate, args.duration, settle, args.pool_size, run_dir, timeout,
                            str(Path(args.config).resolve()) if args.config else None)
            step.misses = check_step(step, targets)
            step.limits = diagnose(step, step.misses)
            doc["steps"].append(msgspec.to_builtins(step))
            _progress(f"{n} symbols: p99 {step.tick_to_signal_p99_us} us, start-up {step.startup_s} s, "
                      f"misses {[m.target for m in step.misses] or 'none'}")
            if step.failed:
                rc = 1
            if (step.misses or step.failed) and not args.keep_going:
                doc["stopped_at"] = (f"{n} symbols missed " + ", ".join(
                    f"{m.target} ({_fmt(m.value, nd=3)} {m.unit} vs {m.limit:g})" for m in step.misses)
                    + (f"; later steps not run: {[s for s in steps if s > n]}" if n != steps[-1] else ""))
                break
    except KeyboardInterrupt:
        doc["stopped_at"] = "interrupted by the operator"
        rc = 1
    finally:
        if tmp is not None:
            tmp.cleanup()
    paths = write_reports(doc, Path(args.results_dir), loadtest_markdown, loadtest_plots)
    doc["reports"] = paths
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print(loadtest_markdown(doc))
        print("reports: " + ", ".join(paths.values()))
    return rc


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


def summarise_slopes(series: dict[str, tuple[str, list[float], list[float], list[float]]],
                     flag_above: float) -> tuple[list[KindSlope], list[dict[str, Any]]]:
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
            flagged += [{"process": r[0], "rss_slope_mb_per_h": round(r[1], 3)}
                        for r in rows if r[1] is not None and r[1] > flag_above]
    return out, flagged


_GW_LAG = re.compile(r"loop lag ([0-9.]+) ms")


def soak_markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [f"# Soak `{doc['name']}` ({doc['started_utc']})", "",
             f"Machine: {m.get('cpu_model', '')}, {m.get('cpus')} CPUs; commit `{str(m.get('git_commit', ''))[:12]}`"
             f"{' (dirty tree)' if m.get('git_dirty') else ''}; load average at start {m.get('loadavg')}.", "",
             f"Command: `{doc['command']}`", "",
             f"{doc['symbols']} symbols at {doc['tick_rate']:g} ticks/s for {doc['duration_s']:g} s; "
             f"{doc['samples']} samples every {doc['sample_interval_s']:g} s; slopes fitted after the first "
             f"{doc['warmup_s']:g} s.", "",
             "| kind | processes | RSS slope median MB/h | RSS slope max MB/h | USS slope median MB/h | "
             "USS slope max MB/h | RSS first/last median MB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for k in doc["kinds"]:
        lines.append(f"| {k['kind']} | {k['processes']} | {_fmt(k['rss_slope_mb_per_h_median'], nd=2)} | "
                     f"{_fmt(k['rss_slope_mb_per_h_max'], nd=2)} | {_fmt(k['uss_slope_mb_per_h_median'], nd=2)} | "
                     f"{_fmt(k['uss_slope_mb_per_h_max'], nd=2)} | {_fmt(k['rss_mb_first_median'], nd=1)}/"
                     f"{_fmt(k['rss_mb_last_median'], nd=1)} |")
    lag = doc["loop_lag_ms"]
    lines += ["", "| event-loop lag (ms) | median | max |", "|---|---:|---:|",
              f"| workers (per sample median / max over all samples) | {_fmt(lag['worker_median'], nd=2)} | "
              f"{_fmt(lag['worker_max'], nd=2)} |",
              f"| gateway | {_fmt(lag['gateway_median'], nd=2)} | {_fmt(lag['gateway_max'], nd=2)} |", "",
              f"Tick-to-signal p99 worst worker over the soak: median {_fmt(doc['p99_worst_worker_us_median'])} us, "
              f"max {_fmt(doc['p99_worst_worker_us_max'])} us. Restarts: {doc['restarts']}. "
              f"Ticks dropped: {doc['ticks_dropped_total']}.", ""]
    if doc["flagged_workers"]:
        lines.append(f"**Flagged: {len(doc['flagged_workers'])} worker(s) with RSS slope above "
                     f"{doc['flag_above_mb_per_h']:g} MB/h:** " + ", ".join(
                         f"{f['process']} ({f['rss_slope_mb_per_h']:+.2f})" for f in doc["flagged_workers"][:20]))
    else:
        lines.append(f"No worker's RSS slope is above {doc['flag_above_mb_per_h']:g} MB/h.")
    if doc.get("error"):
        lines += ["", f"Error: {doc['error']}"]
    lines += ["", "## Notes", ""] + [f"- {x}" for x in doc["notes"]]
    if doc.get("plots"):
        lines += [""] + [f"![{Path(p).stem}]({Path(p).name})" for p in doc["plots"]]
    return "\n".join(lines) + "\n"


def soak_plots(doc: dict[str, Any], base: Path) -> tuple[list[Path], str | None]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "matplotlib is not installed (pip install -e '.[bench]'): plots skipped"
    trace = doc.get("rss_trace") or []
    if len(trace) < 2:
        return [], "too few samples: plots skipped"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    t = [r["t_s"] / 60.0 for r in trace]
    for kind in sorted({k for r in trace for k in r["rss_mb_median_by_kind"]}):
        ax.plot(t, [r["rss_mb_median_by_kind"].get(kind, float("nan")) for r in trace], label=f"{kind} (median)")
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


def main_soak(argv: list[str]) -> int:
    """`orchestrate soak --symbols 50 --duration 1800 [--sample-interval 30]`. Exit 0 when the soak
    ran to the end (flagged workers are findings in the report), 1 when the tree failed, 2 bad input."""
    p = argparse.ArgumentParser(prog="orchestrate soak", description="Long run: memory slope and loop lag.")
    p.add_argument("--symbols", type=int, default=50)
    p.add_argument("--duration", type=float, default=1800.0, help="seconds (default 1800)")
    p.add_argument("--sample-interval", type=float, default=30.0, help="seconds between samples (default 30)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds after all-signalled left out of the slope fit (default min(120, duration/5))")
    p.add_argument("--tick-rate", type=float, default=2.0)
    p.add_argument("--pool-size", type=int, default=0)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--name", default="soak")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument("--json", action="store_true")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    try:
        name = _validate_name(args.name)
        if not (1 <= args.symbols <= MAX_SYMBOLS):
            raise ValueError(f"--symbols must be 1..{MAX_SYMBOLS}")
        if not (0 < args.duration <= MAX_SOAK_DURATION_S):
            raise ValueError(f"--duration must be in (0, {MAX_SOAK_DURATION_S:g}]")
        if not (1.0 <= args.sample_interval <= args.duration):
            raise ValueError("--sample-interval must be in [1, duration]")
        if not (0 < args.tick_rate <= MAX_TICK_RATE):
            raise ValueError(f"--tick-rate must be in (0, {MAX_TICK_RATE:g}]")
    except ValueError as exc:
        print(f"orchestrate soak: {exc}", file=sys.stderr)
        return 2
    warmup = args.warmup if args.warmup is not None else min(120.0, args.duration / 5)
    n = args.symbols
    started = dt.datetime.now(dt.UTC)
    tmp = None if args.run_dir else tempfile.TemporaryDirectory(prefix="dgo-soak-")
    run_dir = (Path(tmp.name) if tmp is not None else Path(args.run_dir)) / "soak"
    series: dict[str, tuple[str, list[float], list[float], list[float]]] = {}
    rss_trace: deque[dict[str, Any]] = deque(maxlen=MAX_SERIES)
    worker_lag_med: list[float] = []
    worker_lag_max: list[float] = []
    gw_lag: list[float] = []
    p99s: list[float] = []
    error = None
    restarts = dropped = 0
    rc = 0
    machine = machine_description()
    sut = SystemUnderTest(synthetic_symbols(n), TICKS_PER_BAR / args.tick_rate, args.pool_size, run_dir)
    try:
        deadline = sut.launched + 30.0 + 0.2 * n
        t_ready = None
        while time.monotonic() < deadline:
            if sut.exited() is not None:
                raise RuntimeError(f"orchestrate exited with code {sut.exited()} during start-up")
            s = sut.status()
            if s is not None and _all_signalled(s, n):
                t_ready = time.monotonic()
                break
            time.sleep(STARTUP_POLL_S)
        if t_ready is None:
            raise RuntimeError("not every symbol signalled within the start-up timeout")
        _progress(f"soak: {n} symbols signalled; sampling every {args.sample_interval:g} s for {args.duration:g} s")
        k = 0
        while True:
            # Sample k is due k intervals after all-signalled; the last one exactly at the end.
            due = t_ready + min(k * args.sample_interval, args.duration)
            time.sleep(max(0.0, due - time.monotonic()))
            if sut.exited() is not None:
                raise RuntimeError(f"orchestrate exited with code {sut.exited()} during the soak")
            t_s = time.monotonic() - t_ready
            snap = sut.status()
            kinds = _classify(snap, sut.proc.pid)
            names = {}
            if snap is not None:
                names.update({w.pid: w.symbol for w in snap.workers if w.pid})
                names.update({x.pid: x.name for x in snap.processes if x.pid})
                lags = [w.loop_lag_ms for w in snap.workers if w.loop_lag_ms is not None]
                if lags:
                    worker_lag_med.append(statistics.median(lags))
                    worker_lag_max.append(max(lags))
                for x in snap.processes:
                    mm = _GW_LAG.search(x.note) if x.kind == "gateway" else None
                    if mm:
                        gw_lag.append(float(mm.group(1)))
                w99 = max_or_none(w.tick_to_signal_p99_us for w in snap.workers)
                if w99 is not None:
                    p99s.append(w99)
                restarts = _restarts(snap)
                dropped = sum(w.ticks_dropped for w in snap.workers)
            by_kind: dict[str, list[float]] = {}
            for proc in sut.tree():
                try:
                    mi = proc.memory_full_info()
                except psutil.Error:
                    continue
                kind = kinds.get(proc.pid, "other")
                by_kind.setdefault(kind, []).append(mi.rss / MB)
                if t_s < warmup:
                    continue
                # Keyed by pid too: a restarted process starts a new series, not a jump in the old one.
                key = f"{kind}:{names.get(proc.pid, proc.pid)}:{proc.pid}"
                if key in series or len(series) < 4 * MAX_SYMBOLS:
                    ser = series.setdefault(key, (kind, [], [], []))
                    if len(ser[1]) < MAX_SERIES:
                        ser[1].append(t_s)
                        ser[2].append(mi.rss / MB)
                        ser[3].append(mi.uss / MB)
            rss_trace.append({"t_s": round(t_s, 1), "rss_mb_median_by_kind":
                              {k: round(statistics.median(v), 2) for k, v in by_kind.items()}})
            if k * args.sample_interval >= args.duration:
                break
            k += 1
    except KeyboardInterrupt:
        error = "interrupted by the operator"
        rc = 1
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        rc = 1
    finally:
        sut.stop()
        if tmp is not None:
            tmp.cleanup()
    kinds_summary, flagged = summarise_slopes(series, Targets().worker_rss_slope_mb_per_h)
    doc: dict[str, Any] = {
        "kind": "soak", "name": name, "started_utc": started.isoformat(timespec="seconds"),
        "command": "orchestrate soak " + " ".join(argv), "machine": machine, "symbols": n,
        "tick_rate": args.tick_rate, "duration_s": args.duration, "sample_interval_s": args.sample_interval,
        "warmup_s": warmup, "samples": len(rss_trace), "kinds": msgspec.to_builtins(kinds_summary),
        "flag_above_mb_per_h": Targets().worker_rss_slope_mb_per_h, "flagged_workers": flagged,
        "loop_lag_ms": {"worker_median": _r(median_or_none(worker_lag_med), 2),
                        "worker_max": _r(max_or_none(worker_lag_max), 2),
                        "gateway_median": _r(median_or_none(gw_lag), 2), "gateway_max": _r(max_or_none(gw_lag), 2)},
        "p99_worst_worker_us_median": _r(median_or_none(p99s), 1), "p99_worst_worker_us_max": _r(max_or_none(p99s), 1),
        "restarts": restarts, "ticks_dropped_total": dropped, "rss_trace": list(rss_trace), "error": error,
        "notes": [
            "RSS/USS of every process of the tree (psutil memory_full_info) at each sample; slopes are least "
            "squares over the samples after the warm-up, per process, in MB/hour, then median/max per kind.",
            "A short soak's slope is dominated by allocator warm-up and bar-ring growth; only a 30-minute "
            "or longer soak says whether memory is flat.",
            "Loop lag: workers' loop_lag_ms from the status document (median and max across workers per "
            "sample); gateway: parsed from its status note ('loop lag X ms').",
        ]}
    paths = write_reports(doc, Path(args.results_dir), soak_markdown, soak_plots)
    doc["reports"] = paths
    if args.json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print(soak_markdown(doc))
        print("reports: " + ", ".join(paths.values()))
    return rc
