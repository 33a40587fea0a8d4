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


def test_a_log_file_on_a_full_disk_says_so_once_without_a_traceback(small_disk, capsys) -> None:
    import logging

    from workers.runtime import bounded_log_handler

    handler = bounded_log_handler(small_disk.path / "x.log")
    logger = logging.getLogger("full-disk-test")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("before")
        small_disk.fill()
        for _ in range(2000):  # past the last page the file had
            logger.warning("a line that needs room " * 4)
        err = capsys.readouterr().err
        assert err.count("cannot write log") == 1 and "Traceback" not in err, err
        small_disk.free()
        logger.warning("after")
        handler.flush()
        assert "after" in (small_disk.path / "x.log").read_text()
    finally:
        logger.removeHandler(handler)
        handler.close()
