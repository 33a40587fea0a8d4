"""The optimizer's driver: an Optuna study (ask/tell, RDB storage) whose trials run as backtests on
a Dask cluster (a LocalCluster of one worker process per core, or an existing scheduler).

Only the drivers touch the study's storage; workers only run `shared.optimize.trial.evaluate`
and hand back a `TrialOutcome`. A trial the driver could not finish on Ctrl-C or SIGTERM is marked
failed as "interrupted" and its values are queued again. A driver that cannot clean up (SIGKILL, a
lost machine) is caught by Optuna's RDB heartbeats: each driver records a heartbeat for its trials in
flight, and any driver on the same storage, on any host, fails a trial whose heartbeat is older than
the grace period and queues its values again (`RetryHeartbeatStaleTrialCallback`). So a resumed or
shared study counts every trial once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from orchestrator.optimize_storage import DriverStorage
from shared.config import Config, ConfigError, _deep_merge, build_config
from shared.optimize.space import Dimension, params_to_overrides
from shared.optimize.trial import MarketData, TrialOutcome, evaluate, warm_up
from shared.optimize.windows import Window

FAIL_REASON = "fail_reason"
INTERRUPTED = "interrupted"
RETRY_OF = "retry_of"
FINGERPRINT = "inputs_fingerprint"

log = logging.getLogger("orchestrate.optimize")


class StudyMismatch(ValueError):
    """--study names a study made from other inputs (space, base config, data, range, objective)."""


def driver_identity() -> str:
    """Names this driver's Dask tasks: unique among drivers sharing one scheduler (not used to
    judge whether a driver is alive: that is the storage's heartbeats)."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.3f}"


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # our own tell(FAIL) for refused configs would otherwise print one warning line per trial
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # ask/tell with heartbeats: Optuna warns its heartbeat thread is only in Study.optimize; ours is
    # `Heartbeats` below
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


STALE_AFTER_S = 60  # default grace period: a trial whose driver sent no heartbeat for this long is stale


def heartbeat_interval(stale_after: int) -> int:
    """Seconds between a driver's heartbeats: four to a grace period, so one late beat on a busy
    machine does not make a live driver's trials look stale."""
    return max(1, stale_after // 4)


class RequeueStale:
    """Optuna's stale-trial callback (RetryHeartbeatStaleTrialCallback: the trial's values queued
    again as a WAITING trial), except for a trial whose driver died while its values were being
    drawn (some missing): the sampler draws afresh instead of half-copying it. Counts what it saw."""

    def __init__(self, n_dims: int) -> None:
        self.n_dims = n_dims
        self.seen = 0
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.seen += 1
        if len(trial.params) == self.n_dims:
            self.retry(study, trial)


def storage_url(url: str) -> str:
    """`postgresql://` means SQLAlchemy's default driver, psycopg2; where only psycopg (3) is
    installed, use it rather than fail on a missing module."""
    import importlib.util

    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return url  # RDBStorage reports the bad URL
    if (parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None
            and importlib.util.find_spec("psycopg") is not None):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def open_study(storage: str, name: str, fingerprint: str, seed: int, n_dims: int = 0,
               stale_after: int = STALE_AFTER_S) -> optuna.Study:
    """Create or resume the study; refuse one made from other inputs (its trials mean something
    else). SQLite storage gets a busy timeout so a second reader does not fail at once. Heartbeats
    on: drivers on other hosts sharing this storage re-queue our trials only once we stop beating."""
    quiet_optuna()
    engine_kwargs = {"connect_args": {"timeout": 30}} if storage.startswith("sqlite") else {}
    rdb = optuna.storages.RDBStorage(storage_url(storage), engine_kwargs=engine_kwargs,
                                     heartbeat_interval=heartbeat_interval(stale_after), grace_period=stale_after,
                                     heartbeat_stale_trial_callback=RequeueStale(n_dims))
    if storage.startswith("sqlite"):
        _sqlite_wal(rdb)
    study = optuna.create_study(storage=DriverStorage(rdb), study_name=name, direction="maximize",
                                load_if_exists=True)
    # A resumed study must not replay the random start-up draws it already made: the sampler's
    # seed moves on by the trials the study holds (a fresh study uses the seed as given).
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)))
    made_with = study.user_attrs.get(FINGERPRINT)
    if made_with is None:
        study.set_user_attr(FINGERPRINT, fingerprint)
    elif made_with != fingerprint:
        raise StudyMismatch(f"study '{name}' in {storage} was made from other inputs (space, base "
                            f"config, data, range or objective); give another --study or --run-dir")
    return study


def _sqlite_wal(rdb: optuna.storages.RDBStorage) -> None:
    """WAL journal, synchronous=NORMAL: a commit no longer waits for its own fsync (~10 ms each
    here, and a trial makes about ten), so the driver keeps pace with the workers. A killed driver
    still loses nothing committed; a power cut may lose the last trials, never corrupt the file."""
    import sqlalchemy

    def pragmas(conn: Any, record: Any) -> None:
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    sqlalchemy.event.listen(rdb.engine, "connect", pragmas)
    rdb.engine.dispose()  # connections made while creating the tables predate the listener


def is_counted(t: FrozenTrial) -> bool:
    """A trial that counts toward --trials: finished with a score, or failed for its own reason (a
    refused config, a failed backtest), not because the driver stopped (interrupted, or failed by
    the heartbeat check: Optuna sets no reason then)."""
    if t.state == TrialState.COMPLETE:
        return True
    return (t.state == TrialState.FAIL and FAIL_REASON in t.user_attrs
            and not t.user_attrs.get(INTERRUPTED, False))


def retry_of(t: FrozenTrial) -> int | None:
    """The trial whose values this one runs again: after a Ctrl-C (our attr) or a stale heartbeat
    (Optuna's retry history, which also copied the stale trial's user attrs, so it comes first)."""
    history = optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(t)
    if history:
        return int(history[-1])
    value = t.user_attrs.get(RETRY_OF)
    return None if value is None else int(value)


STALE_REASON = "interrupted: its driver's heartbeat stopped (killed or lost); queued again"
STALE_HALF_DRAWN = ("interrupted: its driver's heartbeat stopped (killed or lost) while its values were "
                    "drawn; not queued")


def fail_reason(t: FrozenTrial, n_dims: int | None = None) -> str:
    """Why a trial failed; for one failed by the heartbeat check (Optuna records no reason), whether
    its values were queued again (RequeueStale: only when all `n_dims` were drawn)."""
    if t.state == TrialState.FAIL and FAIL_REASON not in t.user_attrs:
        return STALE_HALF_DRAWN if n_dims is not None and len(t.params) < n_dims else STALE_REASON
    return str(t.user_attrs.get(FAIL_REASON, ""))


def interrupt_trial(study: optuna.Study, number: int, params: dict[str, Any], why: str,
                    requeue: bool = True) -> None:
    """Mark a trial the driver could not finish as failed-interrupted and queue its values again."""
    if requeue:
        study.enqueue_trial(params, user_attrs={RETRY_OF: number})
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, FAIL_REASON,
                                       f"interrupted: {why}; {'queued again' if requeue else 'not queued'}")
    study._storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
    study.tell(number, state=TrialState.FAIL, skip_if_finished=True)


def reclaim_stale(study: optuna.Study) -> int:
    """Fail the study's trials whose driver stopped beating (on any host) and queue their values
    again: Optuna's `fail_stale_trials` with our RequeueStale callback. Returns how many."""
    # Only heartbeat storages (RDB, gRPC) have this getter; Optuna types `_storage` as the base
    # class and exports the heartbeat base only from a private module.
    callback = study._storage.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]
    before = callback.seen if isinstance(callback, RequeueStale) else 0
    optuna.storages.fail_stale_trials(study)
    return (callback.seen - before) if isinstance(callback, RequeueStale) else 0


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> Config:
    """The base config plus a trial's values, through the live run's schema (ConfigError if refused)."""
    return build_config(_deep_merge(base, params_to_overrides(params)), "trial values")


def suggest(trial: optuna.Trial, dims: list[Dimension]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for d in dims:
        if d.kind == "int":
            params[d.key] = trial.suggest_int(d.key, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
        elif d.kind == "float":
            params[d.key] = trial.suggest_float(d.key, d.low, d.high, step=d.step, log=d.log)
        else:
            params[d.key] = trial.suggest_categorical(d.key, list(d.choices))
    return params


# A local cluster shares the machine's cores with its own trials: Dask's housekeeping at its
# defaults (event-loop tick every 20 ms, system monitor every 0.5 s, worker memory check every
# 0.1 s) cost the driver 23-26 ms of CPU a second with 2 idle workers, 6 ms with these (measured
# here). They feed the dashboard (off) and the blocked-loop and memory-limit checks, which stay on.
# The workers' statistical profiler (a thread sampling every thread's stack every 10 ms, for the
# dashboard's profile page) took 20-27 ms of CPU a second from 2 busy workers and the GIL from the
# backtest 100 times a second; off, their threads besides the backtest take 5-6 ms a second.
QUIET_LOCAL_CLUSTER = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.worker.profile.enabled": False,
}


@contextmanager
def dask_client(jobs: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: a LocalCluster of `jobs` single-threaded worker processes (a backtest holds the
    GIL, so threads would not run two at once), or the cluster behind `scheduler`."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="20s")
        try:
            # a worker that cannot import the trial fails each trial with the reason instead
            with contextlib.suppress(Exception):
                client.run(warm_up)
            yield client
        finally:
            client.close()
        return
    # Ctrl-C in a terminal goes to the whole process group: the workers are spawned with SIGINT
    # ignored (an ignored signal survives exec), so only the driver hears it, marks the trials in
    # flight as interrupted and closes the cluster, instead of every worker dying with a traceback.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
    try:
        with dask.config.set(QUIET_LOCAL_CLUSTER):  # read when the scheduler, nannies and workers start
            cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    # results straight from the local workers instead of relayed by the scheduler: one hop fewer
    # through the driver's event loop per trial (a remote cluster's workers may not be reachable)
    client = Client(cluster, direct_to_workers=True)
    try:
        client.run(warm_up)  # each worker imports the backtest now, not in its first trial
        # What is alive now (modules, the cluster, the client) lives as long as the command: frozen,
        # it is out of the cyclic collector's walks (a full collection of the driver's ~140,000
        # objects took ~100 ms, ~2 ms a trial of a 48-trial study). Collected first, once, at
        # start-up, so that garbage is freed rather than frozen.
        gc.collect()
        gc.freeze()
        yield client
    finally:
        client.close()
        cluster.close()


def worker_slots(client: Any) -> int:
    return max(1, sum(client.nthreads().values()))


class Progress:
    """Trials done, best so far and ETA on stderr: tqdm's bar on a terminal, a plain line every few
    seconds otherwise (a log file gets no carriage-return soup)."""

    def __init__(self, total: int, done: int, label: str) -> None:
        from tqdm import tqdm

        self.tty = sys.stderr.isatty()
        self.total, self.done, self.label = total, done, label
        self.best: str = "-"
        self.started, self.last_line = time.monotonic(), 0.0
        self.first_done = done
        self.bar = tqdm(total=total, initial=done, desc=label, unit="trial", file=sys.stderr,
                        dynamic_ncols=True) if self.tty else None

    def update(self, best: Callable[[], FrozenTrial | None]) -> None:
        """One more trial done; `best` (a storage query) is only asked when a line is shown."""
        self.done += 1
        now = time.monotonic()
        if self.bar is not None:
            if now - self.last_line >= 0.5 or self.done >= self.total:
                self.last_line = now
                self._set_best(best())
                self.bar.set_postfix_str(f"best {self.best}", refresh=False)
            self.bar.update(1)
            return
        if now - self.last_line >= 5.0 or self.done >= self.total:
            self.last_line = now
            self._set_best(best())
            rate = (self.done - self.first_done) / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            eta_text = f"{eta:.0f}s" if math.isfinite(eta) else "?"
            print(f"optimize {self.label}: {self.done}/{self.total} trials, best {self.best}, ETA {eta_text}",
                  file=sys.stderr, flush=True)

    def _set_best(self, best: FrozenTrial | None) -> None:
        if best is not None:
            self.best = f"{best.value:.6g} (#{best.number})"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


TRAIN = "train"  # one user attr per trial: every write is a storage transaction (an fsync on SQLite)


def train_result(t: FrozenTrial) -> dict[str, Any]:
    """What the train backtest of a trial reported: figures, days, bars, elapsed_s, halted."""
    return dict(t.user_attrs.get(TRAIN) or {})


def finish_trial(study: optuna.Study, trial: FrozenTrial, state: TrialState, value: float | None = None) -> None:
    """`study.tell` without its two reads of the trial back from the storage (~7 SQL statements
    each; with the TRAIN attr write, most of a trial's `_record`): the driver holds the trial it
    asked for. What tell does besides is kept: the sampler's `after_trial` and one state write,
    which refuses a trial another driver finished meanwhile (UpdateFinishedTrialError)."""
    values = None if value is None else [float(value)]
    study._thread_local.cached_all_trials = None  # as tell: the next sampling re-reads the trials
    try:
        study.sampler.after_trial(study, trial, state, values)
    finally:
        study._storage.set_trial_state_values(trial._trial_id, state, values)


def _record(study: optuna.Study, trial: FrozenTrial, outcome: TrialOutcome) -> None:
    """The trial's result into the storage: raises UpdateFinishedTrialError when another driver
    failed it as stale (see run_trials)."""
    study._storage.set_trial_user_attr(trial._trial_id, TRAIN, {
        "figures": outcome.figures, "days": outcome.days, "bars": outcome.bars,
        "elapsed_s": round(outcome.elapsed_s, 4), "halted": outcome.halted})
    if outcome.score is None:
        study._storage.set_trial_user_attr(trial._trial_id, FAIL_REASON, outcome.error)
        finish_trial(study, trial, TrialState.FAIL)
    else:
        finish_trial(study, trial, TrialState.COMPLETE, outcome.score)


class Heartbeats:
    """Beats for every trial this driver has in flight. Optuna's own heartbeat thread covers the one
    trial `study.optimize` runs at a time; ask/tell with many trials in flight beats for all of them
    from one thread, through the storage's own `record_heartbeat`."""

    def __init__(self, study: optuna.Study) -> None:
        self.storage: Any = study._storage  # an RDBStorage (BaseHeartbeat) or one without heartbeats
        interval = self.storage.get_heartbeat_interval() if hasattr(self.storage, "get_heartbeat_interval") else None
        self.interval: float | None = float(interval) if interval else None
        self.ids: set[int] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="optimize-heartbeats", daemon=True)
        if self.interval:
            self.thread.start()

    def add(self, trial_id: int) -> None:
        """Beat at once: a RUNNING trial without a heartbeat row is never judged stale (DriverStorage
        writes this first beat in the transaction that creates or takes the trial)."""
        if self.interval and not getattr(self.storage, "first_beat_with_trial", False):
            self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self.lock:
            self.ids.discard(trial_id)

    def _run(self) -> None:
        assert self.interval
        while not self.stop.wait(self.interval):
            with self.lock:
                ids = list(self.ids)
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # a busy database: the next beat is in one interval
                    log.warning("heartbeat for trial id %s not recorded: %s", trial_id, exc)

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)


def _best(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


@contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Ctrl-C and SIGTERM set an event the trial loop reads between steps, instead of raising in the
    middle of an ask or a tell: a trial is then either fully drawn and in flight, or not started."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_trials(study: optuna.Study, client: Any, market: Any, base: dict[str, Any], dims: list[Dimension],
               window: Window, objective: str, n_trials: int, *, warmup_bars: int | None = None,
               label: str = "") -> int:
    """Run trials until `n_trials` count in the study (resumed trials and other drivers' included);
    returns how many this call ran. `market` is the scattered MarketData future. Trials other
    drivers have in flight count as under way: this one waits for them to finish or, if their
    driver stops beating, re-queues and runs them. On Ctrl-C/SIGTERM the trials in flight here are
    marked interrupted (queued again) and KeyboardInterrupt propagates."""
    from distributed import wait

    identity = driver_identity()
    heartbeats = Heartbeats(study)
    sync_every = heartbeats.interval or 5.0
    # as many trials queued at the scheduler as are running, so a worker finishing a trial starts
    # the next at once instead of idling while the driver writes the result and asks for more
    # (the scheduler hands queued tasks to whichever worker frees up first)
    slots = 2 * worker_slots(client)
    pending: dict[Any, tuple[FrozenTrial, dict[str, Any]]] = {}
    ran = 0
    done = others = 0
    synced_at = -math.inf

    def sync() -> None:
        """Counted trials and other drivers' trials in flight, from the storage (one query), after
        failing the trials of drivers that stopped beating. Not per trial: on a long study that
        query grows with the trials, so it runs every heartbeat interval and near the end."""
        nonlocal done, others, synced_at
        stale = reclaim_stale(study)
        if stale:
            print(f"optimize {label or study.study_name}: {stale} trial(s) left running by a stopped driver "
                  f"are queued again", file=sys.stderr, flush=True)
        trials = study.get_trials(deepcopy=False)
        done = sum(1 for t in trials if is_counted(t))
        mine = {frozen.number for frozen, _ in pending.values()}
        others = sum(1 for t in trials if t.state == TrialState.RUNNING and t.number not in mine)
        synced_at = time.monotonic()

    sync()
    progress = Progress(n_trials, min(done, n_trials), label or study.study_name)

    def finished() -> None:
        nonlocal done, ran
        done += 1
        ran += 1
        progress.update(lambda: _best(study))

    def refill() -> None:
        while done + len(pending) + others < n_trials and len(pending) < slots:
            trial = study.ask()
            heartbeats.add(trial._trial_id)
            params = suggest(trial, dims)
            try:
                cfg = trial_config(base, params)
            except ConfigError as exc:
                trial.set_user_attr(FAIL_REASON, f"config refused: {exc}")
                study.tell(trial, state=TrialState.FAIL)
                heartbeats.discard(trial._trial_id)
                finished()
                continue
            if isinstance(study._storage, DriverStorage):
                study._storage.flush(trial._trial_id)  # the values drawn, in one transaction
            fut = client.submit(evaluate, cfg, market, window, objective, warmup_bars, pure=False,
                                key=f"trial-{study.study_name}-{trial.number}-{identity}")
            pending[fut] = (trial._cached_frozen_trial, params)

    with stop_requests() as stop:
        try:
            refill()
            while True:
                if stop.is_set():
                    raise KeyboardInterrupt
                # near the end, other drivers' results decide whether to ask for more: sync each turn
                near_end = n_trials - done - len(pending) - others <= slots
                if near_end or time.monotonic() - synced_at >= sync_every:
                    sync()
                    refill()
                if not pending:
                    if done >= n_trials or others == 0:
                        break
                    time.sleep(min(0.5, sync_every))  # other drivers' trials: wait for them or their staleness
                    continue
                try:
                    wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                if stop.is_set():  # a Ctrl-C in a terminal reaches the local workers too: their
                    raise KeyboardInterrupt  # trials are interrupted, not failed
                for fut in [f for f in pending if f.done()]:
                    frozen, _ = pending.pop(fut)
                    try:
                        outcome: TrialOutcome = fut.result()
                    except Exception as exc:  # a worker died under the trial (KilledWorker, lost connection)
                        outcome = TrialOutcome(error=f"worker failed: {type(exc).__name__}: {exc}")
                    heartbeats.discard(frozen._trial_id)
                    try:
                        _record(study, frozen, outcome)
                    except optuna.exceptions.UpdateFinishedTrialError:
                        # another driver judged this trial stale (our beats were late past the
                        # grace period) and queued its values again: that retry counts, not this
                        log.warning("trial #%s was failed as stale by another driver; its result is dropped",
                                    frozen.number)
                        continue
                    finished()
                if not stop.is_set():
                    refill()
        except BaseException:
            for fut, (frozen, params) in pending.items():
                fut.cancel()
                with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # failed as stale meanwhile
                    interrupt_trial(study, frozen.number, params, "the optimize command stopped")
            raise
        finally:
            heartbeats.close()
            progress.close()
    return ran


def evaluate_many(client: Any, market: Any, configs: list[Config], window: Window, objective: str,
                  warmup_bars: int | None = None) -> list[TrialOutcome]:
    """Backtest several configs on one range on the cluster (the test range of the best trials)."""
    futures = [client.submit(evaluate, cfg, market, window, objective, warmup_bars, pure=False)
               for cfg in configs]
    out = []
    for fut in futures:
        try:
            out.append(fut.result())
        except Exception as exc:
            out.append(TrialOutcome(error=f"worker failed: {type(exc).__name__}: {exc}"))
    return out


def scatter_market(client: Any, market: MarketData) -> Any:
    """Ship the candles to every worker once; trials then refer to them by key (a cluster of other
    machines needs no shared file system)."""
    return client.scatter(market, broadcast=True, hash=False)


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if is_counted(t)]
