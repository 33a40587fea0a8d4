"""Optimizer figures (issue 13): trials per minute on a local Dask cluster of 1 and of 2 worker
processes on the same study, and the cluster's overhead per trial against calling the backtest
directly in one process.

The same 48 configs (drawn once from a seeded sampler) are enqueued into both studies, so both runs
do the very same backtests (two days of shipped BTC 1m bars each); cluster start-up is outside the
timing (it is paid once a study, not per trial). Target: 2 workers give >= 1.7x the trials per
minute of 1 (the trials are independent; what is lost is scheduling and data shipping).

On a shared, loaded machine wall times say more about the neighbours than about the cluster, so
the per-trial overhead is also given in CPU seconds, per thread: the driver's main thread (Optuna,
its SQLite storage, submitting and gathering) and its other threads (the in-process Dask scheduler,
nannies and client), each worker's busiest thread (the backtests) and its other threads (Dask's
housekeeping), beside a backtest's own CPU when called directly, with the load averages.

From those CPU figures the bench also gives the speed-up a quiet 2-core machine would show (the
model, printed with its inputs): with one worker the driver runs on the other core, so a trial
takes the worker's CPU, B + W1 (backtest + the worker's extras); with two workers the two cores
are the limit and carry both workers and the driver, so a trial takes (B + W2 + D2) / 2. Speed-up
= 2 (B + W1) / (B + W2 + D2), before the plain-process floor (two processes' own scaling, shown
too) and the tail of a 48-trial study.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import psutil
import sqlalchemy

from orchestrator.optimize_cmd import parse_range
from orchestrator.optimize_study import (
    dask_client,
    open_study,
    quiet_optuna,
    run_trials,
    scatter_market,
    train_result,
    trial_config,
)
from shared.config import Config, config_to_toml_dict
from shared.marketdata import shipped_candles
from shared.optimize.space import load_space
from shared.optimize.trial import MarketData, evaluate
from shared.products import PAPER_PRODUCTS

from .harness import print_table, row

N_TRIALS = 48  # enough that the last trial's tail (one worker idle) is a small share
TRAIN = "2018-04-05..2018-04-06"  # 2,880 bars; the day before feeds the indicators
SPACE = ('"grid.width" = {low = 0.001, high = 0.02, log = true}\n'
         '"grid.levels" = {low = 2, high = 10}\n'
         '"grid.min_confidence" = {low = 0.2, high = 0.8}\n'
         '"grid.spacing_mode" = ["fixed", "atr"]\n')
TARGET_SPEEDUP = 1.7
ROUNDS = 2


def _configs() -> list[dict[str, Any]]:
    """N_TRIALS param sets, the same every run."""
    quiet_optuna()
    dims = load_space(SPACE, "bench space")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=13))
    out = []
    from orchestrator.optimize_study import suggest
    for _ in range(N_TRIALS):
        t = study.ask()
        out.append(suggest(t, dims))
        study.tell(t, 0.0)
    return out


class StudyRun:
    """One timed study: wall seconds, seconds inside backtests (as the workers report them), and
    CPU seconds of the driver process (main thread, other threads) and of its worker processes
    (busiest thread, other threads)."""

    def __init__(self, wall: float, busy: float, driver_main: float, driver_other: float, worker_main: float,
                 worker_other: float, load: float, statements: int) -> None:
        self.wall, self.busy, self.load, self.statements = wall, busy, load, statements
        self.driver_main, self.driver_other = driver_main, driver_other
        self.worker_main, self.worker_other = worker_main, worker_other

    @property
    def driver_cpu(self) -> float:
        return self.driver_main + self.driver_other

    @property
    def workers_cpu(self) -> float:
        return self.worker_main + self.worker_other


def _threads(p: psutil.Process) -> dict[int, float]:
    """CPU seconds of each thread of the process (Linux thread ids)."""
    try:
        return {t.id: t.user_time + t.system_time for t in p.threads()}
    except psutil.Error:
        return {}


def _split(before: dict[int, float], after: dict[int, float], main: int | None) -> tuple[float, float]:
    """CPU of (the main thread, or the busiest if None; all the others) between two snapshots."""
    deltas = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    if not deltas:
        return 0.0, 0.0
    first = main if main is not None else max(deltas, key=lambda tid: deltas[tid])
    one = deltas.get(first, 0.0)
    return one, sum(deltas.values()) - one


def _study_seconds(jobs: int, params: list[dict[str, Any]], market: MarketData, tmp: Path) -> StudyRun:
    dims = load_space(SPACE, "bench space")
    base = config_to_toml_dict(Config())
    window = parse_range(TRAIN, "--train")
    tmp.mkdir(parents=True, exist_ok=True)
    study = open_study(f"sqlite:///{tmp / f'bench-{jobs}.sqlite'}", f"bench-{jobs}", "bench", 0, len(dims))
    for p in params:
        study.enqueue_trial(p)
    # SQL statements the driver sends its storage (a count: load does not disturb it)
    statements = [0]
    engine = study._storage._backend.engine  # type: ignore[attr-defined]
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda *_: statements.__setitem__(0, statements[0] + 1))
    me = psutil.Process()
    main = threading.main_thread().native_id
    with dask_client(jobs, None) as client:
        fut = scatter_market(client, market)
        client.run(lambda: None)  # every worker up and answering before the clock starts
        workers = me.children(recursive=True)
        d0, w0 = _threads(me), {w.pid: _threads(w) for w in workers}
        t0 = time.perf_counter()
        statements[0] = 0
        run_trials(study, client, fut, base, dims, window, "net_pnl", len(params), label=f"bench --jobs {jobs}")
        wall = time.perf_counter() - t0
        sent = statements[0]
        d1, w1 = _threads(me), {w.pid: _threads(w) for w in workers}
    busy = sum(float(train_result(t).get("elapsed_s", 0.0)) for t in study.get_trials(deepcopy=False))
    driver_main, driver_other = _split(d0, d1, main)
    worker_parts = [_split(w0[pid], w1[pid], None) for pid in w1]
    return StudyRun(wall, busy, driver_main, driver_other, sum(m for m, _ in worker_parts),
                    sum(o for _, o in worker_parts), os.getloadavg()[0], sent)


def _backtests_in_a_process(configs: list[Config]) -> float:
    """Seconds for these backtests one after another in this process (after one warm-up run)."""
    market = MarketData(candles={"BTCUSD": shipped_candles("BTCUSD")}, specs={"BTCUSD": PAPER_PRODUCTS["BTCUSD"]})
    window = parse_range(TRAIN, "--train")
    evaluate(configs[0], market, window, "net_pnl")
    t0 = time.perf_counter()
    for cfg in configs:
        evaluate(cfg, market, window, "net_pnl")
    return time.perf_counter() - t0


def _plain_processes_seconds(configs: list[Config], n: int) -> float:
    """The floor without Dask: the same backtests split over n plain processes started at once;
    wall seconds until the slowest is done. What the machine itself gives two processes."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(n) as pool:
        return max(pool.map(_backtests_in_a_process, [configs[i::n] for i in range(n)]))


def main() -> list[dict[str, Any]]:
    market = MarketData(candles={"BTCUSD": shipped_candles("BTCUSD")}, specs={"BTCUSD": PAPER_PRODUCTS["BTCUSD"]})
    params = _configs()
    base = config_to_toml_dict(Config())
    window = parse_range(TRAIN, "--train")
    configs = [trial_config(base, p) for p in params]
    evaluate(configs[0], market, window, "net_pnl")  # imports and caches warm, as in a worker
    print(f"load averages at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # without the per-process reuse first: what every trial cost before the workers kept the
    # replayed bars and signal series (and what a lone `orchestrate backtest` still computes)
    c0 = time.process_time()
    for cfg in configs:
        evaluate(cfg, market, window, "net_pnl", reuse=None)
    alone_cpu = time.process_time() - c0
    c0, t0 = time.process_time(), time.perf_counter()
    for cfg in configs:
        evaluate(cfg, market, window, "net_pnl")
    direct_s, direct_cpu = time.perf_counter() - t0, time.process_time() - c0
    plain = {1: min(_plain_processes_seconds(configs, 1) for _ in range(ROUNDS)),
             2: min(_plain_processes_seconds(configs, 2) for _ in range(ROUNDS))}
    runs: dict[int, list[StudyRun]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="dgo-bench-opt-") as tmp:
        # alternated and repeated, the fastest of each kept: load from other work on the machine
        # drifts over a minute, and would otherwise land on whichever run it happened to meet
        for rnd in range(ROUNDS):
            for jobs in (1, 2):
                runs[jobs].append(_study_seconds(jobs, params, market, Path(tmp) / f"r{rnd}"))
    one = min(runs[1], key=lambda r: r.wall)
    two = min(runs[2], key=lambda r: r.wall)
    one_s, one_busy, two_s, two_busy = one.wall, one.busy, two.wall, two.busy
    n = len(params)
    tpm_direct, tpm1, tpm2 = (n / s * 60 for s in (direct_s, one_s, two_s))
    # overhead = wall time of the --jobs 1 study not spent inside backtests (scheduling, shipping,
    # the driver's storage writes): measured within one run, so load drifting between the direct
    # calls and the cluster run does not leak into it
    overhead_ms = (one_s - one_busy) / n * 1000
    # CPU per trial, which load from other work inflates far less than wall time: on a 2-core
    # machine every CPU ms the driver spends is taken from the two workers
    def per_trial(j: int, part: str) -> float:
        return min(getattr(r, part) for r in runs[j]) / n * 1000

    b_ms = direct_cpu / n * 1000
    driver_ms = {j: per_trial(j, "driver_cpu") for j in runs}
    worker_extra_ms = {j: per_trial(j, "workers_cpu") - b_ms for j in runs}
    # the quiet 2-core machine's speed-up from these CPU figures (module docstring)
    model = 2 * (b_ms + worker_extra_ms[1]) / (b_ms + worker_extra_ms[2] + driver_ms[2])
    rows = [
        row("optimize: backtest called directly (trials/min)", tpm_direct, "/min"),
        row("optimize: --jobs 1 Dask worker (trials/min)", tpm1, "/min", tpm_direct, "direct calls"),
        row("optimize: --jobs 2 Dask workers (trials/min)", tpm2, "/min", tpm1, "--jobs 1"),
        row("optimize: time a trial, --jobs 2 / --jobs 1", two_s / one_s, "x", None, "",
            target=round(1 / TARGET_SPEEDUP, 4)),
        # the floor: two plain processes (no Dask, no Optuna) on the same backtests; when this
        # machine cannot run two backtests at twice the rate of one, no scheduler can
        row("optimize: floor, 2 plain processes vs 1 (speed-up)", plain[1] / plain[2], "x", None, ""),
        row("optimize: --jobs 2 speed-up vs the floor's", (one_s / two_s) / (plain[1] / plain[2]), "x", None, ""),
        row("optimize: --jobs 2 speed-up from CPU per trial (model)", model, "x", None, ""),
        row("optimize: cluster overhead per trial, --jobs 1 (ms)", overhead_ms, "ms", one_busy / n * 1000,
            "one backtest"),
        row("optimize: backtest CPU per trial, called directly (ms)", b_ms, "ms"),
        row("optimize: same, without the worker's kept bars/series (ms)", alone_cpu / n * 1000, "ms", b_ms,
            "with them"),
        row("optimize: driver CPU per trial, --jobs 1 (ms)", driver_ms[1], "ms", b_ms, "one backtest"),
        row("optimize: driver CPU per trial, --jobs 2 (ms)", driver_ms[2], "ms", b_ms, "one backtest"),
        row("optimize: driver main thread (Optuna, storage) per trial, --jobs 2", per_trial(2, "driver_main"), "ms"),
        row("optimize: driver other threads (Dask) per trial, --jobs 2", per_trial(2, "driver_other"), "ms"),
        row("optimize: driver SQL statements per trial, --jobs 2", min(r.statements for r in runs[2]) / n, ""),
        row("optimize: worker CPU per trial beyond the backtest, --jobs 1", worker_extra_ms[1], "ms", b_ms,
            "one backtest"),
        row("optimize: worker CPU per trial beyond the backtest, --jobs 2", worker_extra_ms[2], "ms", b_ms,
            "one backtest"),
        row("optimize: worker threads besides the backtest per trial, --jobs 2", per_trial(2, "worker_other"),
            "ms"),
        # below 100%: workers waited for the driver; a backtest slower than direct: CPU contention
        row("optimize: --jobs 2 workers busy in backtests (%)", two_busy / (2 * two_s) * 100, "%"),
        row("optimize: --jobs 2 backtest time vs direct", two_busy / direct_s, "x", None, ""),
    ]
    print_table(rows)
    walls = {j: ", ".join(f"{r.wall:.1f} ({r.load:.1f})" for r in runs[j]) for j in runs}
    print("runs (wall s, load): " + "; ".join(f"--jobs {j}: {w}" for j, w in walls.items()))
    print(f"plain processes, no Dask: 1 {plain[1]:.1f} s, 2 {plain[2]:.1f} s ({plain[1] / plain[2]:.2f}x)")
    print(f"speed-up --jobs 2 vs --jobs 1: {one_s / two_s:.2f}x (target >= {TARGET_SPEEDUP}x); "
          f"{n} trials of {TRAIN}: direct {direct_s:.1f} s ({direct_cpu:.1f} CPU s), --jobs 1 {one_s:.1f} s "
          f"(in backtests {one_busy:.1f} s), --jobs 2 {two_s:.1f} s (in backtests {two_busy:.1f} s)")
    print(f"CPU per trial: backtest alone B = {b_ms:.0f} ms ({alone_cpu / n * 1000:.0f} ms without the kept "
          f"bars/series); driver D1 = {driver_ms[1]:.1f} ms, D2 = {driver_ms[2]:.1f} ms (main thread "
          f"{per_trial(2, 'driver_main'):.1f}, Dask threads {per_trial(2, 'driver_other'):.1f}); workers beyond the "
          f"backtest W1 = {worker_extra_ms[1]:.1f} ms, W2 = {worker_extra_ms[2]:.1f} ms")
    print(f"speed-up a quiet 2-core machine gives from these: 2 (B + W1) / (B + W2 + D2) = {model:.2f}x "
          f"(x floor {plain[1] / plain[2]:.2f} / 2 = {model * plain[1] / plain[2] / 2:.2f}x); "
          f"measured {one_s / two_s:.2f}x")
    print(f"load averages at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return rows


if __name__ == "__main__":
    main()
