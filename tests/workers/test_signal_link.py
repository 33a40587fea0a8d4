"""The worker's signal link to its pool member (Unix SOCK_SEQPACKET, no ZeroMQ I/O thread): a
real pool member process (workers.pool.main) over a real ring answers a PacketLink; junk on the
link costs the sender its connection, not the pool; a SIGKILLed member's replacement is reached
again by the same link; a request the link cannot send is said so."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
import pytest

from shared.messages import MessageCodec, SignalReply, SignalRequest
from shared.ring import BarRing
from shared.transport import make_private_dir, packet_path
from workers import pool as pool_process
from workers.runtime import FD_RESERVE, ChildSpec, PacketLink

BARS = 40
# A member keeps FD_RESERVE descriptors for itself (ZeroMQ, the ring, logs, /proc reads): with
# this limit it takes 6 links and closes the rest.
FEW_FDS = FD_RESERVE + 6


@pytest.fixture
def pool_spec(worker_spec: Callable[..., ChildSpec]) -> ChildSpec:
    # the fixture's ring holds 64 bars; 60 symbols: the member's bound on links (2 x 60 + 16) is
    # more than its descriptors allow under FEW_FDS
    w = worker_spec({"market": {"window_bars": 64, "history_bars": 64},
                     "run": {"symbols": ["ETHUSD", *(f"SYN_{k:04d}" for k in range(1, 60))], "bot_id": "g1"}})
    make_private_dir(Path(w.endpoints.sock_dir))
    ring = BarRing.attach(w.ring_name)
    try:
        close = 2000.0 + np.arange(BARS, dtype=np.float64)
        ring.writer(0).load(np.arange(BARS, dtype=np.float64) * 60.0, close, close + 1, close - 1, close,
                            np.ones(BARS))
    finally:
        ring.close()
    # the test process plays the supervisor: the member stops when it is gone
    return ChildSpec(kind="pool", name="pool-0", run_dir=w.run_dir, ring_name=w.ring_name, config=w.config,
                     endpoints=w.endpoints, supervisor_pid=os.getpid(), pool_index=0)


def _start(spec: ChildSpec, max_fds: int = 0) -> BaseProcess:
    target = _main_with_few_fds if max_fds else pool_process.main
    args = (spec, max_fds) if max_fds else (spec,)
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def _main_with_few_fds(spec: ChildSpec, max_fds: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (max_fds, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    pool_process.main(spec)


def _request(seq: int) -> SignalRequest:
    return SignalRequest(symbol="ETHUSD", slot=0, seq=seq, bar_count=BARS, tick_recv_ns=time.perf_counter_ns(),
                         sent_ns=time.perf_counter_ns())


async def _ask(link: PacketLink, codec: MessageCodec, seq: int, within_s: float = 30.0) -> SignalReply:
    """Send until the member takes it (it may still be starting), then read its reply."""
    deadline = time.monotonic() + within_s
    while not link.send_nowait(codec.encode(_request(seq))):
        assert time.monotonic() < deadline, "the pool member never took a request"
        await asyncio.sleep(0.05)
    while True:  # a reply to an earlier request sent to the member that died may not come
        reply = codec.decode(await asyncio.wait_for(link.recv(), max(0.1, deadline - time.monotonic())))
        assert isinstance(reply, SignalReply)
        if reply.seq == seq:
            return reply


async def test_a_link_is_answered_survives_junk_and_reaches_a_restarted_member(pool_spec: ChildSpec) -> None:
    path = packet_path(pool_spec.endpoints.pools[0])
    assert path is not None
    codec = MessageCodec("test")
    link = PacketLink(path)
    assert not link.send_nowait(codec.encode(_request(1))) and link.unsent == 1  # nobody listens yet: said so
    procs = [_start(pool_spec)]
    try:
        reply = await _ask(link, codec, 2)
        assert reply.symbol == "ETHUSD" and reply.bar_count == BARS and link.connects == 1
        # Junk from another connection: that sender is dropped (an empty packet reads as its close);
        # the member and our link go on.
        junk = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        junk.connect(path)
        for j in (b"\xff\xfe garbage", b'{"t":"sig_req"}', b"\x82\xa1t\xa6sig_req\xa1v\x09", b""):
            junk.send(j)
        junk.close()
        assert (await _ask(link, codec, 3)).seq == 3 and procs[0].is_alive()
        # The member dies; its replacement binds the same path; the same link reaches it.
        assert procs[0].pid is not None
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].join(10)
        procs.append(_start(pool_spec))
        assert (await _ask(link, codec, 4)).seq == 4
        assert link.connects == 2
    finally:
        link.close()
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(10)


async def test_a_member_short_of_descriptors_keeps_answering_its_links_without_spinning(pool_spec: ChildSpec) -> None:
    path = packet_path(pool_spec.endpoints.pools[0])
    assert path is not None
    codec = MessageCodec("test")
    link = PacketLink(path)
    proc = _start(pool_spec, max_fds=FEW_FDS)
    extra: list[socket.socket] = []
    try:
        assert (await _ask(link, codec, 1)).seq == 1
        for _ in range(60):  # more links than the member has descriptors for: closed, never taken
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.connect(path)
            extra.append(s)
        await asyncio.sleep(0.5)
        assert proc.pid is not None
        cpu0 = _cpu_s(proc.pid)
        t0 = time.monotonic()
        for seq in range(2, 12):
            assert (await _ask(link, codec, seq, within_s=10.0)).seq == seq
            await asyncio.sleep(0.2)
        # a member spinning on a listener it cannot accept from would use the whole wall time
        assert _cpu_s(proc.pid) - cpu0 < 0.5 * (time.monotonic() - t0)
        assert proc.is_alive()
    finally:
        for s in extra:
            s.close()
        link.close()
        if proc.is_alive():
            proc.kill()
            proc.join(10)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
