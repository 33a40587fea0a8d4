"""Entry point of every child process (picklable target for multiprocessing)."""

from __future__ import annotations

import os
import signal
import socket
import time
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType

from .runtime import ChildSpec, watch_supervisor


def _trace_memory(spec: ChildSpec, out_dir: str) -> None:
    """Diagnostics for memory growth (ORCHESTRATE_TRACEMALLOC_DIR, for the process kinds in
    ORCHESTRATE_TRACEMALLOC_KINDS, default gateway,venue): trace allocations and dump a snapshot
    to <dir>/<kind>-<name>-<pid>-<unix time>.tm on SIGUSR2, to diff two of them with
    tracemalloc's compare_to. Slows a process several-fold (a traced pool misses its heartbeats
    while warming up): not for production."""
    import tracemalloc
    tracemalloc.start(10)
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)

    def dump(_sig: int, _frame: FrameType | None) -> None:
        tracemalloc.take_snapshot().dump(str(path / f"{spec.kind}-{spec.name}-{os.getpid()}-{int(time.time())}.tm"))

    signal.signal(signal.SIGUSR2, dump)


def child_main(spec: ChildSpec, lifeline: Connection | None = None, inherited_fds: tuple[int, ...] = (),
               operator_stop: Connection | None = None, listener: socket.socket | None = None) -> None:
    """`lifeline`: read end of the supervisor's pipe (see watch_supervisor); first, so that a
    supervisor dying while we import or start up already stops us. `operator_stop` (the gateway):
    read end of the supervisor's OperatorStopLine (workers/gateway_deadman.py). `listener` (the
    paper venue): the socket the supervisor bound for it."""
    watch_supervisor(lifeline.fileno() if lifeline is not None else None, inherited_fds)
    trace_dir = os.environ.get("ORCHESTRATE_TRACEMALLOC_DIR")
    kinds = os.environ.get("ORCHESTRATE_TRACEMALLOC_KINDS", "gateway,venue").split(",")
    if trace_dir and spec.kind in kinds:
        _trace_memory(spec, trace_dir)
    if spec.cpu >= 0:
        try:
            os.sched_setaffinity(0, {spec.cpu})
        except OSError:
            pass  # a restricted cpuset: run unpinned rather than not at all
    if spec.kind == "worker":
        from . import worker
        worker.main(spec)
    elif spec.kind == "pool":
        from . import pool
        pool.main(spec)
    elif spec.kind == "venue":
        from . import venue_proc
        venue_proc.main(spec, listener)
    elif spec.kind == "gateway":
        from . import gateway, gateway_deadman
        gateway_deadman.hear_operator_stop_on(operator_stop)
        gateway.main(spec)
    else:
        raise ValueError(f"unknown child kind {spec.kind!r}")
