"""`orchestrate optimize` end to end: a real study on a 2-worker Dask LocalCluster over the shipped
BTC data, real backtests, SQLite storage; the best trial re-run alone; interrupt and resume; a
driver on another host picking up a killed driver's trials (Optuna's RDB heartbeats)."""

from __future__ import annotations

import csv
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator.optimize_cmd import parse_range
from orchestrator.optimize_study import trial_config
from shared.config import Config, config_to_toml_dict, load_config
from shared.marketdata import read_ohlcv_csv
from shared.optimize.trial import MarketData, evaluate
from shared.products import PAPER_PRODUCTS

REPO = Path(__file__).resolve().parents[2]
BTC = REPO / "shared" / "data" / "BTCUSD-coinbase-1m.csv.gz"
# Short ranges keep a trial near a quarter second; the day before gives the indicators' warm-up.
TRAIN = "2018-04-05T00:00..2018-04-05T05:59"
TEST = "2018-04-05T06:00..2018-04-05T09:59"
# grid.min_confidence above 1 is refused by the config schema (a confidence is 0..1), so part of
# the space gives refused trials, which must be recorded as failed with the reason while the study
# goes on; the rest trades.
SPACE = ('"grid.width" = {low = 0.001, high = 0.01, log = true}\n'
         '"grid.levels" = {low = 2, high = 8}\n'
         '"grid.min_confidence" = {low = 0.2, high = 1.3}\n')

pytestmark = pytest.mark.slow


def optimize_cmd(tmp: Path, trials: int, *extra: str) -> list[str]:
    (tmp / "space.toml").write_text(SPACE)
    return [sys.executable, "-m", "orchestrator.cli", "optimize", "--data", f"BTCUSD={BTC}",
            "--space", str(tmp / "space.toml"), "--trials", str(trials), "--objective", "net_pnl",
            "--train", TRAIN, "--test", TEST, "--jobs", "2", "--seed", "7", "--top", "3",
            "--run-dir", str(tmp / "run"), "--report", str(tmp / "report"), *extra]


def read_trials(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_study_on_two_workers_records_failures_and_best_reruns_identically(tmp_path: Path) -> None:
    proc = subprocess.run(optimize_cmd(tmp_path, 12), cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = read_trials(tmp_path / "report" / "trials.csv")
    assert len(rows) == 12 and sorted(int(r["trial"]) for r in rows) == list(range(12))
    refused = [r for r in rows if r["state"] == "FAIL"]
    done = [r for r in rows if r["state"] == "COMPLETE"]
    assert refused, "the space reaches configs the schema refuses; none was recorded as failed"
    for r in rows:
        assert (r in refused) == (float(r["grid.min_confidence"]) > 1), r
    for r in refused:
        assert r["fail_reason"].startswith("config refused:") and "'grid.min_confidence'" in r["fail_reason"] \
            and "allowed 0 to 1" in r["fail_reason"]
        assert r["score"] == "" and r["net_pnl"] == ""
    assert len(done) >= 4
    best = max(done, key=lambda r: (float(r["score"]), -int(r["trial"])))
    busiest = max(done, key=lambda r: float(r["fills"]))
    assert float(busiest["fills"]) > 0 and float(busiest["score"]) != 0.0, "no trial traded"

    # best.toml, loaded as a live run loads its config and backtested alone in this process (not on
    # the cluster), gives the very same float the worker reported for the trial
    cfg, _ = load_config(tmp_path / "report" / "best.toml")
    assert cfg.grid.levels == int(best["grid.levels"])
    assert cfg.grid.min_confidence == float(best["grid.min_confidence"])
    assert cfg.grid.width == float(best["grid.width"])
    market = MarketData(candles={"BTCUSD": read_ohlcv_csv(BTC)}, specs={"BTCUSD": PAPER_PRODUCTS["BTCUSD"]})
    alone = evaluate(cfg, market, parse_range(TRAIN, "--train"), "net_pnl")
    assert alone.error == "" and alone.score == float(best["score"])
    # the trial that traded most, rebuilt from its values and run alone, gives its float too
    values = {"grid.width": float(busiest["grid.width"]), "grid.levels": int(busiest["grid.levels"]),
              "grid.min_confidence": float(busiest["grid.min_confidence"])}
    again = evaluate(trial_config(config_to_toml_dict(Config()), values), market, parse_range(TRAIN, "--train"),
                     "net_pnl")
    assert again.error == "" and again.score == float(busiest["score"])
    assert again.figures["fills"] == float(busiest["fills"])
    assert "reproduces trial" in proc.stderr
    # ... and so does `orchestrate backtest` with the command best.toml names in its header
    best_lines = (tmp_path / "report" / "best.toml").read_text().splitlines()
    line = next(x for x in best_lines if x.startswith("# reproduce: "))
    argv = shlex.split(line.removeprefix("# reproduce: "))
    assert argv[:2] == ["orchestrate", "backtest"]
    bt = subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv[1:], "--json"], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
    assert bt.returncode == 0, bt.stderr
    assert json.loads(bt.stdout)["summary"]["net_pnl"] == float(best["score"])

    md = (tmp_path / "report" / "best.md").read_text()
    assert f"| #{best['trial']} |" in md and "test net_pnl" in md
    assert (tmp_path / "report" / "parallel.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "importances.csv").read_text().startswith("parameter,importance")


TRIALS_STOPPED = 80


def _counted(db: Path, state: str = "COMPLETE") -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as con:
            n: int = con.execute("select count(*) from trials where state = ?", (state,)).fetchone()[0]
            return n
    except sqlite3.OperationalError:  # tables not created yet
        return 0


def _stop_mid_study(cmd: list[str], db: Path, after: int, sig: int) -> tuple[int, str]:
    # its own session, so a signal can go to the whole process group, as a terminal's Ctrl-C does
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    tree: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        # Stop once `after` trials are done AND one is in flight: a signal that lands between a
        # told result and the next asked trial would find nothing running, and the test would
        # then check nothing about trials in flight.
        while _counted(db) < after or _counted(db, "RUNNING") < 1:
            assert proc.poll() is None, f"optimize ended before it was stopped: {proc.stderr and proc.stderr.read()}"
            assert time.monotonic() < deadline, "no trials finished in 180 s"
            tree |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
            time.sleep(0.1)
        tree |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # driver and its Dask workers alike
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # the driver's Dask workers do not outlive it
    _, alive = psutil.wait_procs([psutil.Process(p) for p in tree if psutil.pid_exists(p)], timeout=30)
    for p in alive:
        p.kill()
    assert not alive, f"Dask worker processes outlived the driver: {[p.pid for p in alive]}"
    return proc.returncode, err


# make test-long (three optimize runs): a killed study resuming with each trial counted once is also
# proved by the PostgreSQL and other-host studies (long), the requeue of stale trials by
# test_stale_trials_are_failed_without_counting_and_only_whole_ones_are_queued_again here.
@pytest.mark.long
def test_interrupted_and_killed_study_resumes_counting_each_trial_once(tmp_path: Path) -> None:
    # Enough trials that the study is still running when the signals are sent: a trial takes
    # ~0.1 s here, so 16 could all finish between two polls of a loaded machine.
    # a short grace period: the resumed driver finds the SIGKILLed driver's heartbeats stale within
    # seconds (the default 60 s suits a real study, not a test)
    cmd = optimize_cmd(tmp_path, TRIALS_STOPPED, "--stale-after", "3")
    db = tmp_path / "run" / "optimize.sqlite"
    # Ctrl-C to the process group: the driver marks the trials in flight as interrupted, queues them
    # again, exits 130; the workers ignore it (no traceback from them) and close with the cluster
    rc, err = _stop_mid_study(cmd, db, after=3, sig=signal.SIGINT)
    assert rc == 130, err
    assert "run the same command to resume" in err and "Traceback" not in err
    first = _counted(db)
    # SIGKILL: no chance to clean up; the next start finds the dead driver's running trials, their
    # heartbeats going stale
    rc, err = _stop_mid_study(cmd, db, after=first + 3, sig=signal.SIGKILL)
    assert rc == -signal.SIGKILL
    with sqlite3.connect(db) as con:
        kept = dict(con.execute("select t.number, v.value from trials t join trial_values v using (trial_id) "
                                "where t.state = 'COMPLETE'").fetchall())
        running = con.execute("select count(*) from trials where state = 'RUNNING'").fetchone()[0]
    assert running >= 1, "a SIGKILLed driver leaves its trials in flight as RUNNING"

    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "left running by a stopped driver are queued again" in proc.stderr
    rows = read_trials(tmp_path / "report" / "trials.csv")
    interrupted = [r for r in rows if r["fail_reason"].startswith("interrupted")]
    counted = [r for r in rows if r not in interrupted]
    assert len(counted) == TRIALS_STOPPED, [(r["trial"], r["state"], r["fail_reason"]) for r in rows]
    assert len({int(r["trial"]) for r in rows}) == len(rows)
    assert len(interrupted) >= 1 + running  # the Ctrl-C'd ones and the SIGKILLed ones
    # every interrupted trial's values were run again, once, as a later trial
    # every interrupted trial's values were queued once more (a retry may itself be interrupted
    # and queued again), and each chain of retries ends in a trial that counts
    retried = [r for r in rows if r["retry_of"]]
    requeued = [r for r in interrupted if r["fail_reason"].endswith("queued again")]
    assert len(requeued) >= len(interrupted) - 1  # a SIGKILL mid-draw leaves one half-drawn trial at most
    assert sorted(int(r["retry_of"]) for r in retried) == sorted(int(r["trial"]) for r in requeued)
    by_number = {int(r["trial"]): r for r in rows}
    retry_of = {int(r["retry_of"]): r for r in retried}
    for r in requeued:
        nxt = retry_of[int(r["trial"])]
        while nxt in interrupted:
            nxt = retry_of[int(nxt["trial"])]
        assert nxt in counted
    for r in retried:
        old = by_number[int(r["retry_of"])]
        assert all(r[k] == old[k] for k in ("grid.width", "grid.levels", "grid.min_confidence"))
        assert int(r["trial"]) > int(old["trial"])
    # a resumed sampler does not replay the start-up draws it already made
    drawn = [(r["grid.width"], r["grid.levels"], r["grid.min_confidence"]) for r in rows if not r["retry_of"]]
    assert len(set(drawn)) == len(drawn)
    # trials finished before the stops are kept with their scores, not re-run
    for number, value in kept.items():
        assert by_number[number]["state"] == "COMPLETE" and float(by_number[number]["score"]) == value


# make test-long: the windows are unit-tested (test_optimize_pure.py), a study's run and report by
# test_study_on_two_workers_records_failures_and_best_reruns_identically.
@pytest.mark.long
def test_walk_forward_windows_each_get_a_study_and_a_test(tmp_path: Path) -> None:
    cmd = optimize_cmd(tmp_path, 3)
    cmd[cmd.index("--train") + 1] = "2018-04-05T00:00..2018-04-05T07:59"
    cmd[cmd.index("--test") + 1] = "2018-04-05T08:00..2018-04-05T11:59"
    proc = subprocess.run([*cmd, "--walk-forward", "2"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "report"
    for i in (1, 2):
        rows = read_trials(report / f"wf{i}-trials.csv")
        assert len([r for r in rows if r["state"] in ("COMPLETE", "FAIL")]) == 3
    assert (report / "best.toml").read_text() == (report / "best-wf2.toml").read_text()
    md = (report / "best.md").read_text()
    assert "## Walk-forward" in md
    # 12 h of bars in 2 windows of 6 h, each 75% train then 25% test, back to back
    assert "| 1 | 2018-04-05 00:00..2018-04-05 04:29 | 2018-04-05 04:30..2018-04-05 05:59 |" in md
    assert "| 2 | 2018-04-05 06:00..2018-04-05 10:29 | 2018-04-05 10:30..2018-04-05 11:59 |" in md


def test_an_existing_dask_cluster_runs_the_same_command(tmp_path: Path) -> None:
    """`--scheduler tcp://...`: workers started with `dask worker`, the candles shipped to them."""
    dask = Path(sys.executable).with_name("dask")
    sched_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file)], cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline and scheduler.poll() is None, "dask scheduler did not start"
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        # the worker runs in another directory: it reads no file of the driver's, only what is shipped
        worker = subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--nworkers", "1",
                                   "--no-dashboard"], cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cmd = optimize_cmd(tmp_path, 4, "--scheduler", address)
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr
        assert f"on {address}" in proc.stderr
        rows = read_trials(tmp_path / "report" / "trials.csv")
        assert len(rows) == 4 and any(r["state"] == "COMPLETE" for r in rows)
    finally:
        for p in (worker, scheduler):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def test_bad_storage_exits_2_without_the_password(tmp_path: Path) -> None:
    cmd = optimize_cmd(tmp_path, 2, "--storage", "postgresql://trader:hunter2@127.0.0.1:1/studies")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "--storage postgresql://trader:***@127.0.0.1:1/studies" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    proc = subprocess.run(optimize_cmd(tmp_path, 2, "--storage", "not a url"), cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--storage" in proc.stderr and "Traceback" not in proc.stderr


# make test-long: best.toml's symbol table is tested in process (test_optimize_best_toml.py), a
# symbol table trading as the same values given globally in tests/shared/backtest, the command's
# re-run from best.toml by test_study_on_two_workers_records_failures_and_best_reruns_identically.
@pytest.mark.long
def test_best_toml_as_a_symbol_table_reproduces_the_winner(tmp_path: Path) -> None:
    """--as-symbol-table: the winner's values go in [symbols.BTCUSD.grid], the global [grid] stays
    the base config's, and the command's own re-run from best.toml gets the trial's very float."""
    cmd = optimize_cmd(tmp_path, 4, "--as-symbol-table")
    cmd[cmd.index("--jobs") + 1] = "1"
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "reproduces trial" in proc.stderr
    cfg, _ = load_config(tmp_path / "report" / "best.toml")
    assert cfg.grid == Config().grid
    table = cfg.symbols["BTCUSD"].grid
    assert set(table) == {"width", "levels", "min_confidence"}
    text = (tmp_path / "report" / "best.toml").read_text()
    assert "[symbols.BTCUSD.grid]" in text


# --- a study shared by drivers on several hosts ---------------------------------------------------

PARAMS = ("grid.width", "grid.levels", "grid.min_confidence")


def _states(db: Path) -> dict[int, str]:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return dict(con.execute("select number, state from trials").fetchall())
    except sqlite3.OperationalError:  # tables not created yet
        return {}


def _can_unshare_uts() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname optimize-host-b && hostname"],
                           capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "optimize-host-b"


def _wait_for(what: str, cond: object, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert proc.poll() is None, f"a driver ended before {what}: {proc.stderr and proc.stderr.read()}"
        assert time.monotonic() < deadline, f"not {what} in {timeout} s"
        time.sleep(0.1)


@pytest.mark.long
@pytest.mark.skipif(not _can_unshare_uts(), reason="needs `unshare --uts` (root) to give driver B its own host name")
def test_a_driver_on_another_host_requeues_the_trials_of_a_killed_driver(tmp_path: Path) -> None:
    """What this proves: driver B runs in its own UTS namespace, so `socket.gethostname()` in it is
    another name than driver A's, as on a second machine sharing the study's storage. B therefore
    cannot learn whether A is alive from a host name or a process id (the old same-host pid check
    left A's trials RUNNING forever here); it can only go by the heartbeats A writes to the storage.
    While A beats, B leaves A's trials alone; once A is SIGKILLed mid-trial, B fails A's trials in
    flight as stale after the grace period, queues their values again, runs them, and the study ends
    with every trial counted exactly once. (Both drivers share one SQLite file on this machine: the
    storage is what a shared PostgreSQL would be to two hosts; the PostgreSQL test covers that URL.)"""
    trials = 300  # a trial takes ~0.1 s: A must still be running when it is killed
    grace = 4
    cmd_a = optimize_cmd(tmp_path, trials, "--stale-after", str(grace))
    cmd_a[cmd_a.index("--jobs") + 1] = "1"
    cmd_b = [*cmd_a]
    cmd_b[cmd_b.index("--report") + 1] = str(tmp_path / "report-b")
    db = tmp_path / "run" / "optimize.sqlite"
    host_b = "optimize-host-b"
    assert socket.gethostname() != host_b
    a = subprocess.Popen(cmd_a, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    b = None
    try:
        _wait_for("A finished 3 trials", lambda: list(_states(db).values()).count("COMPLETE") >= 3, a)
        b = subprocess.Popen(["unshare", "--uts", "sh", "-c", f'hostname {host_b} && exec "$@"', "sh", *cmd_b],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # both drivers at work for longer than the grace period: A's live trials are never taken
        started = len(_states(db))
        _wait_for("B ran trials beside A", lambda: len(_states(db)) >= started + 6, b)
        time.sleep(grace + 1)
        assert a.poll() is None, "driver A ended before it was killed: raise the trial count"
        with sqlite3.connect(db) as con:
            reasonless = con.execute("select count(*) from trials t where state = 'FAIL' and not exists (select 1 "
                                     "from trial_user_attributes u where u.trial_id = t.trial_id and "
                                     "u.key = 'fail_reason')").fetchone()[0]
        assert reasonless == 0, "a trial of a live driver was failed as stale"
        # A dies mid-trial, without a chance to clean up
        _wait_for("A had a trial in flight", lambda: "RUNNING" in _states(db).values(), a)
        tree = [psutil.Process(p.pid) for p in psutil.Process(a.pid).children(recursive=True)]
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(timeout=30)
        psutil.wait_procs(tree, timeout=30)
        _, err = b.communicate(timeout=180)
        assert b.returncode == 0, err
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert "left running by a stopped driver are queued again" in err
    rows = read_trials(tmp_path / "report-b" / "trials.csv")
    stale = [r for r in rows if "heartbeat stopped" in r["fail_reason"]]
    assert stale, "A's trials in flight when it was killed were failed as stale"
    assert all(r["state"] == "RUNNING" or r["state"] == "FAIL" for r in stale)
    counted = [r for r in rows if not r["fail_reason"].startswith("interrupted") and r["state"] != "RUNNING"]
    assert len(counted) == trials, [(r["trial"], r["state"], r["fail_reason"]) for r in rows]
    assert not [r for r in rows if r["state"] == "RUNNING"]
    by_number = {int(r["trial"]): r for r in rows}
    retries = {int(r["retry_of"]): r for r in rows if r["retry_of"]}
    for r in stale:
        if r["fail_reason"].endswith("not queued"):  # killed while its values were drawn: drawn afresh
            continue
        retry = retries[int(r["trial"])]
        assert [retry[k] for k in PARAMS] == [r[k] for k in PARAMS]
        assert retry in counted and int(retry["trial"]) > int(r["trial"])
    # every value set drawn by the sampler counted once (the retries are the stale trials' copies)
    drawn = [tuple(r[k] for k in PARAMS) for r in counted if not r["retry_of"]]
    assert len(drawn) == len(set(drawn))
    assert all(by_number[int(r["retry_of"])] in stale for r in counted if r["retry_of"])


# --- PostgreSQL storage ------------------------------------------------------------------------------

def _pg_bin() -> Path | None:
    """The Debian postgresql package's server binaries (initdb is not on PATH there)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster in a temp dir on a free port. The server refuses to run as
    root, so as root it runs as the package's `postgres` user."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and no runuser to start PostgreSQL as the postgres user")
        try:
            import pwd
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and no postgres user to run the PostgreSQL server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = Path(tempfile.mkdtemp(prefix="dgo-pg-"))  # not under pytest's root-only tmp: postgres must reach it
    if as_user:
        os.chown(data, owner.pw_uid, owner.pw_gid)
    port = _free_port()
    ctl = [*as_user, str(pg / "pg_ctl"), "-D", str(data / "db")]
    try:
        subprocess.run([*as_user, str(pg / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=60)
        subprocess.run([*ctl, "-w", "-t", "30", "-l", str(data / "log"), "-o",
                        f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=60)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def _pg_states(url: str) -> dict[int, str]:
    import sqlalchemy

    from orchestrator.optimize_study import storage_url

    engine = sqlalchemy.create_engine(storage_url(url))
    try:
        with engine.connect() as con:
            return {int(n): str(s) for n, s in con.execute(sqlalchemy.text("select number, state from trials"))}
    except sqlalchemy.exc.ProgrammingError:  # tables not created yet
        return {}
    finally:
        engine.dispose()


@pytest.mark.long
def test_a_study_on_postgresql_resumes_after_a_kill_counting_each_trial_once(tmp_path: Path,
                                                                            postgres_url: str) -> None:
    """`--storage postgresql://...` (no driver named: psycopg is used): a driver SIGKILLed mid-study
    leaves trials RUNNING in PostgreSQL; the same command with more --trials resumes the study, fails
    the dead driver's trials once their heartbeats are stale (PostgreSQL's clock), runs their values
    again and ends with every trial counted once."""
    cmd = optimize_cmd(tmp_path, 200, "--storage", postgres_url, "--stale-after", "2")
    cmd[cmd.index("--jobs") + 1] = "1"
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for("4 trials were done and one in flight",
                  lambda: list((st := _pg_states(postgres_url)).values()).count("COMPLETE") >= 4
                  and "RUNNING" in st.values(), proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    before = _pg_states(postgres_url)
    running = [n for n, s in before.items() if s == "RUNNING"]
    assert running, "the killed driver left its trials in flight RUNNING"
    target = sum(1 for s in before.values() if s in ("COMPLETE", "FAIL")) + 4
    cmd[cmd.index("--trials") + 1] = str(target)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "postgresql://postgres@127.0.0.1" in done.stderr and "left running by a stopped driver" in done.stderr
    rows = read_trials(tmp_path / "report" / "trials.csv")
    counted = [r for r in rows if not r["fail_reason"].startswith("interrupted")]
    assert len(counted) == target and all(r["state"] in ("COMPLETE", "FAIL") for r in counted)
    by_number = {int(r["trial"]): r for r in rows}
    assert len(by_number) == len(rows)
    for n in running:
        assert "heartbeat stopped" in by_number[n]["fail_reason"]
    for r in counted:
        if r["retry_of"]:
            old = by_number[int(r["retry_of"])]
            assert old["trial"] != r["trial"] and [old[k] for k in PARAMS] == [r[k] for k in PARAMS]
    for n, s in before.items():  # what finished before the kill is kept, not re-run
        if s == "COMPLETE":
            assert by_number[n]["state"] == "COMPLETE"


def test_stale_trials_are_failed_without_counting_and_only_whole_ones_are_queued_again(tmp_path: Path) -> None:
    """In one process, on real SQLite: two trials whose driver stopped beating (one with all its
    values drawn, one killed mid-draw) and one whose heartbeat is fresh. After the grace period the
    stale ones are failed, count toward nothing, and only the whole one is queued again (as Optuna's
    retry, pointing back at it); the fresh one is left running."""
    import optuna

    from orchestrator.optimize_study import (
        STALE_HALF_DRAWN,
        STALE_REASON,
        fail_reason,
        is_counted,
        open_study,
        reclaim_stale,
        retry_of,
    )

    study = open_study(f"sqlite:///{tmp_path / 's.sqlite'}", "s", "fp", 0, n_dims=2, stale_after=2)
    storage = study._storage
    whole, half, fresh = study.ask(), study.ask(), study.ask()
    whole.suggest_float("a", 0.0, 1.0)
    whole.suggest_int("b", 1, 5)
    half.suggest_float("a", 0.0, 1.0)
    for t in (whole, half, fresh):
        storage.record_heartbeat(t._trial_id)  # type: ignore[attr-defined]
    assert reclaim_stale(study) == 0  # all beating
    deadline = time.monotonic() + 10
    while True:  # the fresh one keeps beating; the others' beats get older than the 2 s grace
        storage.record_heartbeat(fresh._trial_id)  # type: ignore[attr-defined]
        if reclaim_stale(study) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert trials[whole.number].state == trials[half.number].state == optuna.trial.TrialState.FAIL
    assert trials[fresh.number].state == optuna.trial.TrialState.RUNNING
    for n in (whole.number, half.number):
        assert not is_counted(trials[n])
    assert fail_reason(trials[whole.number], 2) == STALE_REASON
    assert fail_reason(trials[half.number], 2) == STALE_HALF_DRAWN and STALE_HALF_DRAWN.endswith("not queued")
    waiting = [t for t in trials.values() if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1 and retry_of(waiting[0]) == whole.number
    assert waiting[0].params == trials[whole.number].params


def test_a_result_is_written_as_tell_would_and_refused_once_another_driver_finished_the_trial(
        tmp_path: Path) -> None:
    """The driver writes a trial's result without `study.tell` (which reads the trial back twice):
    the storage then holds what tell would have written (state, score, the train figures, the
    failure's reason), and a trial another driver has failed meanwhile (stale) is refused, so its
    result is dropped rather than counted twice."""
    import optuna

    from orchestrator.optimize_study import TRAIN, _record, fail_reason, is_counted, open_study, train_result
    from shared.optimize.trial import TrialOutcome

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    study = open_study(url, "s", "fp", 0, n_dims=1)
    ok, bad, taken = study.ask(), study.ask(), study.ask()
    for t in (ok, bad, taken):
        t.suggest_float("grid.width", 0.001, 0.01)
    _record(study, ok._cached_frozen_trial, TrialOutcome(score=12.5, figures={"net_pnl": 12.5}, days=1.0, bars=1440))
    _record(study, bad._cached_frozen_trial, TrialOutcome(error="backtest refused: no bars", bars=0))
    other = open_study(url, "s", "fp", 0, n_dims=1)  # another driver's view of the same study
    other.tell(taken.number, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _record(study, taken._cached_frozen_trial, TrialOutcome(score=1.0))
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=url).get_trials()}
    assert trials[ok.number].state == optuna.trial.TrialState.COMPLETE and trials[ok.number].value == 12.5
    assert train_result(trials[ok.number])["figures"] == {"net_pnl": 12.5} and is_counted(trials[ok.number])
    assert trials[bad.number].state == optuna.trial.TrialState.FAIL and is_counted(trials[bad.number])
    assert fail_reason(trials[bad.number]) == "backtest refused: no bars"
    assert trials[taken.number].state == optuna.trial.TrialState.FAIL and TRAIN not in trials[taken.number].user_attrs
    assert study.best_trial.number == ok.number


def test_the_driver_storage_serves_a_read_from_the_last_only_within_its_window_and_never_across_a_write(
        tmp_path: Path) -> None:
    """DriverStorage answers a read of the study's trials from the previous read only within
    FRESH_S of it and while this driver wrote nothing: another driver's trial is seen once the
    window has passed, and at once after any write of our own; the trial just created is served
    as created (its number, state and start), so Optuna's Trial sees what the database holds
    (more of the driver's storage in test_optimize_storage.py)."""
    import optuna

    from orchestrator.optimize_study import DriverStorage, open_study

    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    ours = open_study(url, "s", "fp", 0, n_dims=1)
    theirs = open_study(url, "s", "fp", 0, n_dims=1)
    assert isinstance(ours._storage, DriverStorage)
    assert ours.get_trials(deepcopy=False) == []
    theirs.enqueue_trial({"grid.width": 0.002})
    time.sleep(DriverStorage.FRESH_S * 2)  # past the window: the other driver's trial is read
    assert [t.state for t in ours.get_trials(deepcopy=False)] == [optuna.trial.TrialState.WAITING]
    theirs.enqueue_trial({"grid.width": 0.003})
    mine = ours._storage.create_new_trial(ours._study_id)  # a write of ours: the next read goes to the database
    assert len(ours.get_trials(deepcopy=False)) == 3
    served = ours._storage.get_trial(mine)
    stored = ours._storage._backend.get_trial(mine)
    assert served == stored and served is not stored
    ours._storage.set_trial_user_attr(mine, "k", 1)  # our own running trial is served as written
    assert ours._storage.get_trial(mine).user_attrs == {"k": 1}
