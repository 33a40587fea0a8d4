"""LoopSocket: plain zmq sockets awaited through the event loop's reader callback (real sockets,
real loops: asyncio and uvloop). The edge-triggered ZMQ_FD is the trap each test aims at."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import zmq

from workers.runtime import LoopSocket, run_event_loop

_T = TypeVar("_T")
WAIT_S = 5.0  # a lost wake-up shows as a timeout, not a hung test


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.destroy(linger=0)


def pair(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
    router = ctx.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path}/r")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"ipc://{tmp_path}/r")
    return router, dealer


def echo(router: zmq.Socket[bytes], n: int) -> None:
    for _ in range(n):
        assert router.poll(int(WAIT_S * 1000))
        ident, payload = router.recv_multipart()
        router.send_multipart((ident, payload))


@pytest.mark.parametrize("uvloop", [False, True])
def test_messages_queued_before_the_reader_waits_are_all_read(ctx: zmq.Context[zmq.Socket[bytes]],
                                                              tmp_path: Path, uvloop: bool) -> None:
    # Several replies land while nobody awaits: the FD signalled once for all of them.
    router, dealer = pair(ctx, tmp_path)

    async def main() -> list[bytes]:
        d = LoopSocket(dealer)
        for i in range(5):
            await d.send(b"m%d" % i)
        await asyncio.sleep(0)
        await asyncio.to_thread(echo, router, 5)
        time.sleep(0.05)  # all five replies queued before the first recv
        got = [await asyncio.wait_for(d.recv(), WAIT_S) for _ in range(5)]
        d.close()
        return got

    assert _run(main(), uvloop) == [b"m%d" % i for i in range(5)]


@pytest.mark.parametrize("uvloop", [False, True])
def test_a_send_on_the_socket_a_reader_sleeps_on_does_not_lose_its_wake_up(
        ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path, uvloop: bool) -> None:
    # The worker's pool socket: one task sleeps in recv while another sends on the same socket.
    # A reply lands (zmq signals the FD), then, before the loop runs its callback, a send on the
    # socket processes zmq's command queue and swallows that signal; the reader must still wake.
    router, dealer = pair(ctx, tmp_path)

    async def main() -> bytes:
        d = LoopSocket(dealer)
        reader = asyncio.create_task(d.recv())
        await asyncio.sleep(0.01)  # the reader is asleep: ZMQ_EVENTS showed nothing to read
        await d.send(b"request")
        echo(router, 1)  # blocking, on purpose: the loop does not run until the send below
        time.sleep(0.05)  # the reply is in the DEALER's pipe and its FD signalled
        await d.send(b"next")  # no suspension point: the loop still has not seen the FD
        got = await asyncio.wait_for(reader, 1.0)
        d.close()
        return got

    assert _run(main(), uvloop) == b"request"


@pytest.mark.parametrize("uvloop", [False, True])
def test_poll_times_out_then_sees_a_message(ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path,
                                            uvloop: bool) -> None:
    router, dealer = pair(ctx, tmp_path)

    async def main() -> tuple[bool, bool, bytes]:
        d = LoopSocket(dealer)
        t0 = time.monotonic()
        before = await d.poll(100)
        assert time.monotonic() - t0 >= 0.09
        await d.send(b"x")
        await asyncio.to_thread(echo, router, 1)
        after = await d.poll(int(WAIT_S * 1000))
        msg = await d.recv()
        d.close()
        return before, after, msg

    assert _run(main(), uvloop) == (False, True, b"x")


@pytest.mark.parametrize("uvloop", [False, True])
def test_a_readable_socket_nobody_reads_does_not_spin_the_loop(ctx: zmq.Context[zmq.Socket[bytes]],
                                                               tmp_path: Path, uvloop: bool) -> None:
    # Messages arrive on a socket no task is reading: the FD turns readable and stays so unless
    # the callback re-arms it; a level-triggered loop would then call it on every iteration.
    router, dealer = pair(ctx, tmp_path)

    async def main() -> float:
        d = LoopSocket(dealer)
        assert not await d.poll(10)  # zmq now knows the reader saw an empty pipe: the reply signals
        await d.send(b"x")
        await asyncio.to_thread(echo, router, 1)
        calls = 0
        orig = d._on_fd

        def counting() -> None:
            nonlocal calls
            calls += 1
            orig()

        loop = asyncio.get_running_loop()
        loop.remove_reader(d._fd)
        loop.add_reader(d._fd, counting)
        await asyncio.sleep(0.3)
        d.close()
        return calls

    assert _run(main(), uvloop) <= 3


def _run(coro: Coroutine[Any, Any, _T], uvloop: bool) -> _T:
    if uvloop:
        pytest.importorskip("uvloop")
        return run_event_loop(coro)
    return asyncio.run(coro)
