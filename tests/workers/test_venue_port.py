"""The supervised paper venue's port. Without a socket handed over, a venue child whose port
another program took says so in one clear line naming the address and exits 2, no traceback; the
supervisor hands its venue a socket it bound and holds for the run, so that cannot happen there.
A real venue child process on a real socket."""

from __future__ import annotations

import errno
import multiprocessing as mp
import socket
from pathlib import Path

import aiohttp
import pytest

from shared.config import load_config
from shared.transport import make_endpoints
from workers import venue_proc
from workers.runtime import ChildSpec, VenueAccess
from workers.venue import PaperVenue, VenueSettings


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


async def test_a_venue_handed_a_bound_socket_serves_on_it_and_again_after_going_down() -> None:
    """The supervisor's way (orchestrator/supervisor.py _bind_venue_port): the venue serves on the
    socket it is given, never binding a port of its own, and a second serve (come_back, as a
    restarted venue process does) reuses the same socket, whose port stayed taken meanwhile."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    venue = PaperVenue(VenueSettings(bar_seconds=0.04, history_bars=50, port=1), ["BTCUSD"], listener=held)
    await venue.start()
    try:
        assert venue.rest_url == f"http://127.0.0.1:{port}"  # not settings.port
        async with aiohttp.ClientSession() as session:
            async with session.get(venue.rest_url + "/v2/products/BTCUSD") as r:
                assert r.status == 200
            await venue.go_down()
            with socket.socket() as other, pytest.raises(OSError) as taken:
                other.bind(("127.0.0.1", port))
            assert taken.value.errno == errno.EADDRINUSE
            await venue.come_back()
            async with session.get(venue.rest_url + "/v2/products/BTCUSD") as r:
                assert r.status == 200
    finally:
        await venue.stop()
        held.close()
