"""The supervised paper venue whose port another program took: one clear line in its log naming
the address, exit 2 (the supervisor restarts it with backoff on the run's port), no traceback.
A real venue child process on a real socket."""

from __future__ import annotations

import multiprocessing as mp
import socket
from pathlib import Path

from shared.config import load_config
from shared.transport import make_endpoints
from workers import venue_proc
from workers.runtime import ChildSpec, VenueAccess


def test_the_venue_child_exits_2_saying_its_port_is_taken(tmp_path: Path) -> None:
    cfg, _ = load_config(None, {"run": {"symbols": ["BTCUSD"]}})
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        spec = ChildSpec(kind="venue", name="venue", run_dir=str(tmp_path), ring_name="unused", config=cfg,
                         endpoints=make_endpoints(tmp_path, 1), supervisor_pid=0, symbols=("BTCUSD",),
                         venue_access=VenueAccess(port=port, api_key="k" * 32, api_secret="s" * 64))
        child = mp.get_context("spawn").Process(target=venue_proc.main, args=(spec,))
        child.start()
        child.join(60)
    assert child.exitcode == 2  # the old code: 1, with a traceback in the log
    log = (tmp_path / "logs" / "venue.log").read_text()
    assert f"127.0.0.1:{port} is already in use" in log and "Traceback" not in log, log
    assert "s" * 64 not in log  # the paper secret never reaches a log
