"""The optimizer's driver: an Optuna study (ask/tell, RDB storage) whose trials run as backtests on
a Dask cluster (a LocalCluster of one worker process per core, or an existing scheduler).

Only this process touches the study's storage; workers only run `shared.optimize.trial.evaluate`
and hand back a `TrialOutcome`. A trial the driver could not finish (Ctrl-C, SIGTERM, a killed
driver) is marked failed as "interrupted" and its values are queued again, so a resumed study
counts every trial once.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from shared.config import Config, ConfigError, _deep_merge, build_config
from shared.optimize.space import Dimension, params_to_overrides
from shared.optimize.trial import MarketData, TrialOutcome, evaluate
from shared.optimize.windows import Window

FAIL_REASON = "fail_reason"
INTERRUPTED = "interrupted"
RETRY_OF = "retry_of"
DRIVER = "driver"
FINGERPRINT = "inputs_fingerprint"

log = logging.getLogger("orchestrate.optimize")


class StudyMismatch(ValueError):
    """--study names a study made from other inputs (space, base config, data, range, objective)."""


def driver_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.3f}"


def _driver_gone(identity: str) -> bool | None:
    """True if the driver that ran a trial is a dead process on this host; None if it ran elsewhere
    (another machine sharing the storage: it may still be running that trial)."""
    try:
        host, pid_text, started = identity.rsplit(":", 2)
        pid, created = int(pid_text), float(started)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(pid).create_time() - created) > 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return True


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # our own tell(FAIL) for refused configs would otherwise print one warning line per trial
    logging.getLogger("optuna").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def open_study(storage: str, name: str, fingerprint: str, seed: int) -> optuna.Study:
    """Create or resume the study; refuse one made from other inputs (its trials mean something
    else). SQLite storage gets a busy timeout so a second reader does not fail at once."""
    quiet_optuna()
    engine_kwargs = {"connect_args": {"timeout": 30}} if storage.startswith("sqlite") else {}
    rdb = optuna.storages.RDBStorage(storage, engine_kwargs=engine_kwargs)
    if storage.startswith("sqlite"):
        _sqlite_wal(rdb)
    study = optuna.create_study(storage=rdb, study_name=name, direction="maximize", load_if_exists=True)
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
    refused config, a failed backtest), not because the driver stopped."""
    if t.state == TrialState.COMPLETE:
        return True
    return t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED, False)


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


def reclaim_stale(study: optuna.Study, dims: list[Dimension]) -> int:
    """Trials left running by a driver that died on this host: failed-interrupted and re-queued.
    One killed while its values were being drawn (some missing) is not queued: the sampler draws
    afresh instead of half-copying it."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _driver_gone(str(t.user_attrs.get(DRIVER, ""))):
            whole = len(t.params) == len(dims)
            interrupt_trial(study, t.number, dict(t.params), "its driver stopped before it finished",
                            requeue=whole)
            n += 1
    return n


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


@contextmanager
def dask_client(jobs: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: a LocalCluster of `jobs` single-threaded worker processes (a backtest holds the
    GIL, so threads would not run two at once), or the cluster behind `scheduler`."""
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, timeout="20s")
        try:
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
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    client = Client(cluster)
    try:
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

    def update(self, best: FrozenTrial | None) -> None:
        self.done += 1
        if best is not None:
            self.best = f"{best.value:.6g} (#{best.number})"
        if self.bar is not None:
            self.bar.set_postfix_str(f"best {self.best}", refresh=False)
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last_line >= 5.0 or self.done >= self.total:
            self.last_line = now
            rate = (self.done - self.first_done) / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            eta_text = f"{eta:.0f}s" if math.isfinite(eta) else "?"
            print(f"optimize {self.label}: {self.done}/{self.total} trials, best {self.best}, ETA {eta_text}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


TRAIN = "train"  # one user attr per trial: every write is a storage transaction (an fsync on SQLite)


def train_result(t: FrozenTrial) -> dict[str, Any]:
    """What the train backtest of a trial reported: figures, days, bars, elapsed_s, halted."""
    return dict(t.user_attrs.get(TRAIN) or {})


def _record(study: optuna.Study, number: int, outcome: TrialOutcome) -> None:
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    study._storage.set_trial_user_attr(trial_id, TRAIN, {
        "figures": outcome.figures, "days": outcome.days, "bars": outcome.bars,
        "elapsed_s": round(outcome.elapsed_s, 4), "halted": outcome.halted})
    if outcome.score is None:
        study._storage.set_trial_user_attr(trial_id, FAIL_REASON, outcome.error)
        study.tell(number, state=TrialState.FAIL)
    else:
        study.tell(number, outcome.score)


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
    """Run trials until `n_trials` count (resumed trials included); returns how many this call ran.
    `market` is the scattered MarketData future. On Ctrl-C/SIGTERM the trials in flight are marked
    interrupted (queued again) and KeyboardInterrupt propagates."""
    from distributed import wait

    identity = driver_identity()
    done = sum(1 for t in study.get_trials(deepcopy=False) if is_counted(t))
    progress = Progress(n_trials, min(done, n_trials), label or study.study_name)
    # as many trials queued at the scheduler as are running, so a worker finishing a trial starts
    # the next at once instead of idling while the driver writes the result and asks for more
    # (the scheduler hands queued tasks to whichever worker frees up first)
    slots = 2 * worker_slots(client)
    pending: dict[Any, tuple[int, dict[str, Any]]] = {}
    ran = 0

    def refill() -> None:
        nonlocal done, ran
        while done + len(pending) < n_trials and len(pending) < slots:
            trial = study.ask()
            trial.set_user_attr(DRIVER, identity)
            params = suggest(trial, dims)
            try:
                cfg = trial_config(base, params)
            except ConfigError as exc:
                trial.set_user_attr(FAIL_REASON, f"config refused: {exc}")
                study.tell(trial, state=TrialState.FAIL)
                done += 1
                ran += 1
                progress.update(_best(study))
                continue
            fut = client.submit(evaluate, cfg, market, window, objective, warmup_bars, pure=False,
                                key=f"trial-{study.study_name}-{trial.number}-{identity}")
            pending[fut] = (trial.number, params)

    with stop_requests() as stop:
        try:
            refill()
            while pending:
                if stop.is_set():
                    raise KeyboardInterrupt
                try:
                    wait(list(pending), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    continue
                if stop.is_set():  # a Ctrl-C in a terminal reaches the local workers too: their
                    raise KeyboardInterrupt  # trials are interrupted, not failed
                for fut in [f for f in pending if f.done()]:
                    number, _ = pending[fut]
                    try:
                        outcome: TrialOutcome = fut.result()
                    except Exception as exc:  # a worker died under the trial (KilledWorker, lost connection)
                        outcome = TrialOutcome(error=f"worker failed: {type(exc).__name__}: {exc}")
                    _record(study, number, outcome)
                    del pending[fut]
                    done += 1
                    ran += 1
                    progress.update(_best(study))
                if not stop.is_set():
                    refill()
            if stop.is_set():
                raise KeyboardInterrupt
        except BaseException:
            for fut, (number, params) in pending.items():
                fut.cancel()
                interrupt_trial(study, number, params, "the optimize command stopped")
            raise
        finally:
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
