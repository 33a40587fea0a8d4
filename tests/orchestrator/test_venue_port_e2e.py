"""The embedded paper venue's port is the supervisor's for the whole run: it binds the socket and
hands it to each venue process, so no other program can take the port between its choosing and
the venue serving, nor while a crashed venue restarts (the old code picked a free port, released
it, and left the venue to bind it; a program taking it then sent the venue into a restart loop).
The real tree, a real SIGKILL of the venue, real sockets."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import urllib.parse
from pathlib import Path

import psutil
import pytest
from test_deadman_stop_e2e import supervisor_frozen  # type: ignore[import-not-found]  # same dir
from test_restart_ledger_e2e import gone, pid_of, wait_until  # type: ignore[import-not-found]  # same dir

pytestmark = pytest.mark.slow

CONFIG = "[market]\nbar_seconds = 0.25\n[supervision]\nbackoff_initial_s = 0.2\nbackoff_max_s = 0.5\n"


def venue_port(run_dir: Path) -> int:
    port = urllib.parse.urlsplit(json.loads((run_dir / "venue.json").read_text())["rest_url"]).port
    assert port is not None
    return port


def bind_refused(port: int) -> bool:
    """Can another program take the port? With SO_REUSEADDR, as a server would (and so past the
    closed connections' TIME_WAIT): only a socket listening there refuses it."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", port))
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE, exc
            return True
    return False


def http_get(client: socket.socket, path: str, timeout_s: float) -> str:
    client.settimeout(timeout_s)
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    reply = b""
    while chunk := client.recv(65536):
        reply += chunk
    return reply.decode(errors="replace")


def running(doc: dict, name: str) -> bool:
    return any(p["name"] == name and p["state"] == "running" and p["pid"] for p in doc["processes"])


def test_the_supervisor_holds_the_venue_port_through_a_venue_restart(start_run, tmp_path: Path) -> None:
    cfg = tmp_path / "venue.toml"
    cfg.write_text(CONFIG)
    run = start_run(["--config", str(cfg), "--symbols", "BTCUSD", "--pool-size", "1"])
    doc = run.wait_for(lambda d: running(d, "venue") and running(d, "gateway"), 60, "venue and gateway running")
    port = venue_port(run.run_dir)
    supervisor = psutil.Process(run.proc.pid)
    assert any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in supervisor.net_connections("tcp")), \
        "the supervisor does not hold the venue's listening socket"

    venue = pid_of(doc, "venue")
    with supervisor_frozen(run.proc.pid):  # no restart yet: the gap is as long as we look
        os.kill(venue, signal.SIGKILL)
        wait_until(lambda: gone(venue), 10, "the venue gone")
        assert bind_refused(port), "the venue's port was free while the venue was down"
        # A client that comes in the gap is queued for the next venue, not refused.
        waiting = socket.create_connection(("127.0.0.1", port), timeout=5)
    with waiting:
        reply = http_get(waiting, "/v2/products/BTCUSD", timeout_s=60)
    assert reply.startswith("HTTP/1.1 200"), reply[:300]
    doc = run.wait_for(lambda d: pid_of(d, "venue") not in (0, venue) and running(d, "venue"), 30, "a new venue")
    assert venue_port(run.run_dir) == port
    run.wait_for(lambda d: running(d, "gateway") and all(w["state"] == "running" for w in d["workers"]), 30,
                 "the gateway and the bot running on the restarted venue")

    assert run.cli("stop").returncode == 0
    assert run.proc.wait(timeout=30) == 0
    assert not bind_refused(port), "the venue's port still taken after the run stopped"
