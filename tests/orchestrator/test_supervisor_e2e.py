"""The whole spine as real processes: supervisor, gateway, pool and workers on the replayed market."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from shared.transport import socket_dir

pytestmark = pytest.mark.slow

FAST = ["--bar-seconds", "0.4", "--pool-size", "1"]


def all_signalled(doc: dict) -> bool:
    return bool(doc["workers"]) and all(w["first_signal_after_launch_s"] is not None for w in doc["workers"])


def test_three_symbols_signal_survive_sigkill_and_shut_down_clean(start_run, tmp_path: Path) -> None:
    run = start_run(["--symbols", "BTCUSD,ETHUSD,SYN_0001", *FAST])
    doc = run.wait_for(all_signalled, 60, "a signal on every symbol")
    assert {w["symbol"] for w in doc["workers"]} == {"BTCUSD", "ETHUSD", "SYN_0001"}
    for w in doc["workers"]:
        assert w["signal"] in ("UP", "DOWN", "NONE") and w["bar_count"] >= 1000
        assert w["tick_to_signal_p50_us"] is not None and w["tick_to_signal_p50_us"] > 0
    sup_pid = doc["supervisor_pid"]
    # Prometheus: the same figures, labelled by symbol, on 127.0.0.1.
    import urllib.request
    assert doc["metrics_url"].startswith("http://127.0.0.1:")
    body = urllib.request.urlopen(doc["metrics_url"], timeout=5).read().decode()
    assert 'orchestrate_worker_tick_to_signal_p50_us{symbol="SYN_0001"}' in body
    assert 'orchestrate_process_rss_mb{kind="pool",name="pool-0"}' in body

    victim = next(w for w in doc["workers"] if w["symbol"] == "ETHUSD")
    others = {w["symbol"]: w["pid"] for w in doc["workers"] if w["symbol"] != "ETHUSD"}
    os.kill(victim["pid"], signal.SIGKILL)

    def back(d: dict) -> bool:
        w = next(x for x in d["workers"] if x["symbol"] == "ETHUSD")
        return w["restarts"] == 1 and w["pid"] not in (0, victim["pid"]) and w["state"] == "running"

    doc = run.wait_for(back, 30, "ETHUSD restarted after SIGKILL")
    assert {w["symbol"]: w["pid"] for w in doc["workers"] if w["symbol"] != "ETHUSD"} == others
    assert doc["restarts_by_cause"] == {"worker: exited with code -N": 1}  # the process table's typed tally

    # A second supervisor on the same run dir refuses, clearly.
    second = run.cli("run", "--symbols", "BTCUSD", "--no-display")
    assert second.returncode == 2 and "another supervisor" in second.stderr

    pids = set(run.seen_pids)
    elapsed = run.terminate()
    assert run.proc.returncode == 0
    assert elapsed < 10.0, f"shutdown took {elapsed:.1f}s"
    time.sleep(0.2)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"orphan processes: {alive}"
    assert not [p for p in psutil.process_iter(["ppid"]) if p.info["ppid"] == sup_pid]
    assert not list(Path("/dev/shm").glob(f"dgo-{sup_pid}-*")), "shared memory left behind"
    sdir = socket_dir(run.run_dir)
    assert not sdir.exists() or not list(sdir.iterdir()), "socket files left behind"
    assert not (run.run_dir / "control.sock").exists()
    for log in (run.run_dir / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), f"unexpected exception in {log.name}"


def test_leaking_worker_is_restarted_and_others_keep_running(start_run, tmp_path: Path) -> None:
    cfg = tmp_path / "leak.toml"
    cfg.write_text(
        "[testing]\nleak_mb_per_s = 40.0\nleak_symbol = \"SYN_0002\"\n"
        "[budgets]\nrss_mb = 0\nuss_mb = 150.0\naction = \"restart\"\n"
        "[supervision]\nbreach_grace_s = 1.0\nuss_sample_interval_s = 0.5\nmax_restarts = 50\n")
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD,SYN_0002", *FAST],
                    env={"ORCHESTRATE_TEST_FAULTS": "1"})
    doc = run.wait_for(all_signalled, 60, "a signal on every symbol")
    steady = next(w["pid"] for w in doc["workers"] if w["symbol"] == "BTCUSD")

    def leaker_restarted(d: dict) -> bool:
        return next(w for w in d["workers"] if w["symbol"] == "SYN_0002")["restarts"] >= 1

    doc = run.wait_for(leaker_restarted, 60, "the leaking worker to be restarted")
    btc = next(w for w in doc["workers"] if w["symbol"] == "BTCUSD")
    assert btc["pid"] == steady and btc["restarts"] == 0 and btc["state"] == "running"
    run.terminate()


def test_leftovers_of_a_killed_run_are_cleaned_at_start(start_run, tmp_path: Path) -> None:
    run = start_run(["--symbols", "BTCUSD", *FAST])
    doc = run.wait_for(all_signalled, 60, "a signal")
    sup_pid = doc["supervisor_pid"]
    run.kill_all(clean_shm=False)  # SIGKILL the whole tree: nothing gets to clean up
    assert list(Path("/dev/shm").glob(f"dgo-{sup_pid}-*")), "expected a leftover segment to clean"
    again = start_run(["--symbols", "BTCUSD", *FAST], run_dir=run.run_dir)
    again.wait_for(all_signalled, 60, "a signal after restart on the same run dir")
    assert not list(Path("/dev/shm").glob(f"dgo-{sup_pid}-*"))
    again.terminate()


def test_malformed_messages_are_dropped_and_nothing_crashes(start_run) -> None:
    import zmq

    run = start_run(["--symbols", "BTCUSD,ETHUSD", *FAST])
    doc = run.wait_for(all_signalled, 60, "a signal on every symbol")
    pids = {w["symbol"]: w["pid"] for w in doc["workers"]} | {p["name"]: p["pid"] for p in doc["processes"]}
    sdir = socket_dir(run.run_dir)
    ctx = zmq.Context()
    try:
        junk = [b"", b"\xff\xfe garbage", b"\x93\x01\x02\x03", b'{"t":"sig_req"}', b"\x82\xa1t\xa6sig_req\xa1v\x09"]
        push = ctx.socket(zmq.PUSH)
        push.connect(f"ipc://{sdir}/sup")
        for j in junk:
            push.send(j)
        for name in ("pool0", "gw"):
            dealer = ctx.socket(zmq.DEALER)
            dealer.connect(f"ipc://{sdir}/{name}")
            for j in junk:
                dealer.send(j)
            dealer.send_multipart([b"a", b"b", b"c"])
        time.sleep(2.0)
    finally:
        ctx.destroy(linger=0)
    before = {w["symbol"]: w["signals"] for w in doc["workers"]}
    doc = run.wait_for(lambda d: all(w["signals"] > before[w["symbol"]] for w in d["workers"]), 30,
                       "signals still flowing after the junk")
    after = {w["symbol"]: w["pid"] for w in doc["workers"]} | {p["name"]: p["pid"] for p in doc["processes"]}
    assert after == pids, "a process restarted after malformed input"
    assert all(p["restarts"] == 0 for p in doc["processes"])
    run.terminate()
    for log in (run.run_dir / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), f"unexpected exception in {log.name}"


def test_a_flood_on_the_supervisor_socket_and_junk_control_lines_leave_it_answering(start_run) -> None:
    import socket as socketlib
    import subprocess
    import sys

    from orchestrator.rundir import control_socket_path

    run = start_run(["--symbols", "BTCUSD", *FAST])
    run.wait_for(all_signalled, 60, "a signal")
    ctl = control_socket_path(run.run_dir.resolve())
    with socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(ctl))
        s.sendall(b'{"cmd": "' + b"x" * (1 << 20) + b'"}\n')
        reply = s.recv(65536)
    assert b'"ok":false' in reply and b"request too long" in reply, reply[:300]

    # Someone floods the supervisor's message socket without a pause.
    flood = subprocess.Popen([sys.executable, "-c", (
        "import sys, zmq\n"
        "s = zmq.Context().socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 0); s.connect(sys.argv[1])\n"
        "while True: s.send(b'\\xff junk')\n"), f"ipc://{socket_dir(run.run_dir)}/sup"])
    try:
        time.sleep(2.0)  # its queue is full from here on
        t0 = time.monotonic()
        r = run.cli("status", "--json")
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 5.0
        elapsed = run.terminate(timeout_s=20)
        assert run.proc.returncode == 0 and elapsed < 15.0, elapsed
    finally:
        flood.kill()
        flood.wait()
    out = run.proc.stdout.read() if run.proc.stdout else ""
    assert "Traceback" not in out
    for log in (run.run_dir / "logs").glob("*.log"):
        assert "Traceback" not in log.read_text(), log.name
