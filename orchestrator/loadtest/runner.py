"""Driving the real `orchestrate` tree for the load test and the soak: launch, poll, measure,
stop; the command-line entry points."""

from __future__ import annotations

import argparse
import datetime as dt
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import psutil

from shared.arrivals import ARRIVALS
from shared.status import StatusSnapshot
from workers.worker import LATENCY_WARMUP_S

from ..control import NotRunning, get_status
from .figures import (
    DEFAULT_ARRIVALS,
    LOG_TAIL_CHARS,
    MAX_LOADTEST_DURATION_S,
    MAX_SERIES,
    MAX_SOAK_DURATION_S,
    MAX_SYMBOLS,
    MAX_TICK_RATE,
    MB,
    STARTUP_POLL_S,
    STOP_TIMEOUT_S,
    TICKS_PER_BAR,
    WINDOW_POLL_S,
    LoadtestDoc,
    LoopLag,
    Machine,
    RssSample,
    SoakDoc,
    StepResult,
    Targets,
    WindowSample,
    _all_signalled,
    _assemble,
    _r,
    _restarts,
    _window_sample,
    check_step,
    cpu_percent_by_kind,
    diagnose,
    gateway_loop_lag_ms,
    max_or_none,
    median_or_none,
    parse_steps,
    restart_reasons,
    summarise_slopes,
    synthetic_symbols,
)
from .report import (
    LOADTEST_NOTES,
    _fmt,
    loadtest_markdown,
    loadtest_plots,
    soak_markdown,
    soak_plots,
    write_reports,
)

# --- machine and git -------------------------------------------------------------------------

def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_description() -> Machine:
    vm = psutil.virtual_memory()
    return Machine(python=platform.python_version(), platform=platform.platform(), cpus=os.cpu_count(),
                   cpu_model=_cpu_model(), memory_total_bytes=vm.total, loadavg=_loadavg(),
                   git_commit=_git("rev-parse", "HEAD"),
                   git_dirty=bool(_git("status", "--porcelain", "--untracked-files=no")))


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


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
                 config: str | None = None, arrivals: str = DEFAULT_ARRIVALS) -> None:
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = run_dir / "orchestrate.out"
        # Output goes to a file, never a pipe: a pipe nobody reads fills up and blocks the tree.
        self._log = open(self.log_path, "wb")
        self.launched = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--symbols", ",".join(symbols), "--run-dir", str(run_dir),
             "--bar-seconds", repr(bar_seconds), "--pool-size", str(pool_size), "--arrivals", arrivals,
             "--no-display", *(["--config", config] if config else [])],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.root = psutil.Process(self.proc.pid)
        self.seen: dict[int, psutil.Process] = {self.proc.pid: self.root}
        self.last_status: StatusSnapshot | None = None  # the newest answer: restarts after the window count

    def status(self) -> StatusSnapshot | None:
        try:
            snap = get_status(self.run_dir)
        except (NotRunning, OSError, msgspec.DecodeError):
            return None  # not up yet, or between restarts
        self.last_status = snap
        return snap

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



def _progress(msg: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_step(n: int, tick_rate: float, duration_s: float, settle_s: float, pool_size: int, run_dir: Path,
             startup_timeout_s: float, config: str | None = None, arrivals: str = DEFAULT_ARRIVALS) -> StepResult:
    """Launch, wait for every first signal, settle, measure, stop. Never leaves the tree running.
    `arrivals`: the paper market's arrival model (shared/arrivals.py), given to `orchestrate
    --arrivals` (over the config's market.arrivals)."""
    bar_seconds = TICKS_PER_BAR / tick_rate
    loadavg = [round(x, 2) for x in os.getloadavg()]
    sut = SystemUnderTest(synthetic_symbols(n), bar_seconds, pool_size, run_dir, config, arrivals)
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
                    # Budgets are judged in the window only: the settle is the workers' start-up
                    # minute, whose queueing they drop from their latency windows when it ends.
                    samples.append(_window_sample(s, time.monotonic() - sut.launched))
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
        if sut.exited() is None:
            sut.status()  # the supervisor's restart tally up to the stop
        sut.stop()
        reasons, quarantined = restart_reasons(sut.last_status)
    step = _assemble(n, tick_rate, bar_seconds, pool_size, window, settle_s, startup_s, s0, s1, snap,
                     cpu_before, cpu_after, machine_busy, mem, list(samples), loadavg, error, tail)
    step.budget_breaches = len(breached)
    step.restart_reasons, step.quarantined = reasons, quarantined
    step.startup_cpu_percent_by_kind, step.startup_machine_cpu_percent = startup_cpu, startup_machine
    step.budget_notes = budget_notes
    step.failed = failed
    step.arrivals = arrivals
    return step



# --- loadtest entry point --------------------------------------------------------------------

def _loadtest_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestrate loadtest",
                                description="Step the symbol count and measure the whole system.")
    p.add_argument("--symbols", required=True,
                   help="a count (200) or steps (10,50,100,200) of SYN_ symbols; a step may name its own ticks "
                        "per second as N@RATE (10,200,1000@1)")
    p.add_argument("--tick-rate", type=float, default=2.0, help="ticks per second per symbol (default 2)")
    p.add_argument("--arrivals", default=DEFAULT_ARRIVALS,
                   help="how the paper market's ticks arrive (shared/arrivals.py): independent (each symbol at its "
                        "own seeded time, the default) or lockstep (every market's tick in 8 bursts a quarter bar, "
                        "the burst case); a step may name its own as N:MODEL (200,200:lockstep)")
    p.add_argument("--duration", type=float, default=20.0, help="measurement seconds per step (default 20)")
    p.add_argument("--settle", type=float, default=None,
                   help=f"seconds between all-signalled and the window (default {LATENCY_WARMUP_S:g}: each worker "
                        "drops its start-up minute from its latency window, so the window's figures are steady "
                        "state only)")
    p.add_argument("--pool-size", type=int, default=0, help="compute-pool processes (0 = one per core)")
    p.add_argument("--startup-timeout", type=float, default=None,
                   help="seconds to wait for every first signal (default 30 + 0.2 s per symbol)")
    p.add_argument("--config", default=None,
                   help="orchestrate config file for every step (e.g. budgets.action = 'warn' to watch the raw "
                        "system without budget restarts); default: the built-in defaults")
    p.add_argument("--run-dir", default=None,
                   help="parent of the per-step run dirs (default: a new directory under the system temp dir, "
                        "kept for its results; the steps' run dirs in it are removed after each step)")
    p.add_argument("--name", default="loadtest", help="report file name prefix")
    p.add_argument("--results-dir", default=None, help="where the reports go (default: RUN_DIR/results)")
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
        if not (0 < args.tick_rate <= MAX_TICK_RATE):
            raise ValueError(f"--tick-rate must be in (0, {MAX_TICK_RATE:g}]")
        if args.arrivals not in ARRIVALS:
            raise ValueError(f"--arrivals must be one of {', '.join(ARRIVALS)}")
        steps = parse_steps(args.symbols, args.tick_rate, args.arrivals)
        name = _validate_name(args.name)
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
    settle = args.settle if args.settle is not None else LATENCY_WARMUP_S
    started = dt.datetime.now(dt.UTC)
    doc = LoadtestDoc(name=name, started_utc=started.isoformat(timespec="seconds"),
                      command="orchestrate loadtest " + " ".join(argv), machine=machine_description(),
                      notes=list(LOADTEST_NOTES))
    # Results live with the run, never in the current directory: a temp parent is kept for them.
    temp_parent = args.run_dir is None
    parent = Path(tempfile.mkdtemp(prefix="dgo-loadtest-")) if temp_parent else Path(args.run_dir)
    results_dir = Path(args.results_dir) if args.results_dir else parent / "results"
    rc = 0
    try:
        for plan in steps:
            n, rate, arrivals = plan.symbols, plan.tick_rate, plan.arrivals
            run_dir = parent / f"step-{n}-{rate:g}-{arrivals}"
            if run_dir.exists():
                shutil.rmtree(run_dir, ignore_errors=True)  # our own leftovers from an earlier step run
            _progress(f"step: {n} symbols at {rate:g} ticks/s, {arrivals} arrivals, {args.duration:g} s "
                      f"(load average {_loadavg()})")
            timeout = args.startup_timeout if args.startup_timeout is not None else 30.0 + 0.2 * n
            try:
                step = run_step(n, rate, args.duration, settle, args.pool_size, run_dir, timeout,
                                str(Path(args.config).resolve()) if args.config else None, arrivals)
            finally:
                if temp_parent:
                    shutil.rmtree(run_dir, ignore_errors=True)
            step.misses = check_step(step, doc.targets)
            step.limits = diagnose(step, step.misses)
            doc.steps.append(step)
            _progress(f"{n} symbols ({arrivals}): p99 {step.tick_to_signal_p99_us} us, CPU per tick "
                      f"{step.cpu_us_per_tick_by_kind.get('tree')} us, start-up {step.startup_s} s, "
                      f"misses {[m.target for m in step.misses] or 'none'} (load average {_loadavg()})")
            if step.failed:
                rc = 1
            if (step.misses or step.failed) and not args.keep_going:
                later = [f"{p.symbols}@{p.tick_rate:g}:{p.arrivals}" for p in steps[steps.index(plan) + 1:]]
                doc.stopped_at = (f"{n} symbols missed " + ", ".join(
                    f"{m.target} ({_fmt(m.value, nd=3)} {m.unit} vs {m.limit:g})" for m in step.misses)
                    + (f"; later steps not run: {later}" if later else ""))
                break
    except KeyboardInterrupt:
        doc.stopped_at = "interrupted by the operator"
        rc = 1
    doc.loadavg_at_end = _loadavg()
    publish(doc, results_dir, loadtest_markdown, loadtest_plots, as_json=args.json)
    return rc


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
    p.add_argument("--run-dir", default=None,
                   help="run dir parent (default: a new directory under the system temp dir, kept for its results)")
    p.add_argument("--name", default="soak")
    p.add_argument("--results-dir", default=None, help="where the reports go (default: RUN_DIR/results)")
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
    temp_parent = args.run_dir is None
    parent = Path(tempfile.mkdtemp(prefix="dgo-soak-")) if temp_parent else Path(args.run_dir)
    run_dir = parent / "soak"
    results_dir = Path(args.results_dir) if args.results_dir else parent / "results"
    series: dict[str, tuple[str, list[float], list[float], list[float]]] = {}
    rss_trace: deque[RssSample] = deque(maxlen=MAX_SERIES)
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
                gw_lag.extend(gateway_loop_lag_ms(snap))
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
            rss_trace.append(RssSample(t_s=round(t_s, 1), rss_mb_median_by_kind={
                k: round(statistics.median(v), 2) for k, v in by_kind.items()}))
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
        if temp_parent:
            shutil.rmtree(run_dir, ignore_errors=True)
    kinds_summary, flagged = summarise_slopes(series, Targets().worker_rss_slope_mb_per_h)
    doc = SoakDoc(
        name=name, started_utc=started.isoformat(timespec="seconds"), command="orchestrate soak " + " ".join(argv),
        machine=machine, symbols=n, tick_rate=args.tick_rate, duration_s=args.duration,
        sample_interval_s=args.sample_interval, warmup_s=warmup, samples=len(rss_trace), kinds=kinds_summary,
        flagged_workers=flagged,
        loop_lag_ms=LoopLag(worker_median=_r(median_or_none(worker_lag_med), 2),
                            worker_max=_r(max_or_none(worker_lag_max), 2),
                            gateway_median=_r(median_or_none(gw_lag), 2), gateway_max=_r(max_or_none(gw_lag), 2)),
        p99_worst_worker_us_median=_r(median_or_none(p99s), 1), p99_worst_worker_us_max=_r(max_or_none(p99s), 1),
        restarts=restarts, ticks_dropped_total=dropped, rss_trace=list(rss_trace), error=error,
        notes=[
            "RSS/USS of every process of the tree (psutil memory_full_info) at each sample; slopes are least "
            "squares over the samples after the warm-up, per process, in MB/hour, then median/max per kind.",
            "A short soak's slope is dominated by allocator warm-up and bar-ring growth; only a 30-minute "
            "or longer soak says whether memory is flat.",
            "Loop lag: workers' loop_lag_ms from the status document (median and max across workers per "
            "sample); gateway: its status row's loop_lag_ms.",
        ])
    publish(doc, results_dir, soak_markdown, soak_plots, as_json=args.json)
    return rc


def publish(doc: LoadtestDoc | SoakDoc, results_dir: Path, markdown: Callable[[Any], str],
            plots: Callable[[Any, Path], tuple[list[Path], str | None]], *, as_json: bool) -> None:
    """Write the reports, then show the run on stdout: its JSON document, or its markdown and
    where the reports went."""
    doc.reports = write_reports(doc, results_dir, markdown, plots)
    if as_json:
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    else:
        print(markdown(doc))
        print("reports: " + ", ".join(doc.reports.values()))
