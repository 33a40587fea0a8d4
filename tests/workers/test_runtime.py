"""Process-runtime helpers that every child uses."""

from __future__ import annotations

import zmq
import zmq.asyncio

from workers.runtime import send_nowait


async def test_send_nowait_reports_a_full_queue_on_an_asyncio_socket() -> None:
    # An asyncio socket hands back a finished future holding zmq.Again instead of raising: the
    # helper must read it (else asyncio logs "exception was never retrieved" per dropped send).
    ctx = zmq.asyncio.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 1)
        push.setsockopt(zmq.LINGER, 0)
        push.connect("tcp://127.0.0.1:9")  # nobody listening: at most the HWM is queued
        outcomes = [send_nowait(push, b"x") for _ in range(5)]
        assert outcomes[0] is True and outcomes[-1] is False
    finally:
        ctx.destroy(linger=0)


def test_send_nowait_on_a_plain_socket() -> None:
    ctx = zmq.Context()
    try:
        pull = ctx.socket(zmq.PULL)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"tcp://127.0.0.1:{port}")
        assert send_nowait(push, b"hello")
        assert pull.poll(2000) and pull.recv() == b"hello"
    finally:
        ctx.destroy(linger=0)
