"""What every child process shares: its spec, logging into the run directory, the supervisor
watchdog, heartbeats and event-loop lag. Kept small: each process is a thin shell over shared/."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import signal
import time
from pathlib import Path
from typing import Awaitable, Callable

import msgspec
import zmq
import zmq.asyncio

from shared.config import Config
from shared.messages import Heartbeat, MessageCodec
from shared.trading.checkpoint import FillCheckpoint
from shared.transport import Endpoints


class VenueAccess(msgspec.Struct, frozen=True):
    """Paper venue address and per-run key, fixed by the supervisor so restarts keep them."""
    port: int
    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return f"VenueAccess(port={self.port}, api_key={self.api_key[:4]}…, api_secret=<hidden>)"


class ChildSpec(msgspec.Struct, frozen=True):
    kind: str  # gateway | pool | worker
    name: str
    run_dir: str
    ring_name: str
    config: Config
    endpoints: Endpoints
    supervisor_pid: int
    slot: int = -1  # workers: ring slot of their symbol
    pool_index: int = -1
    symbols: tuple[str, ...] = ()  # gateway: every symbol; pool: none needed
    slots: dict[str, int] = msgspec.field(default_factory=dict)
    venue_access: VenueAccess | None = None  # the paper venue child only
    rl_tables: dict[str, bytes] = msgspec.field(default_factory=dict)  # pool: learned tables from SQLite
    run_start_wall: float = 0.0  # epoch seconds the run started: the replay market's clock origin
    cpu: int = -1  # pin to this core (-1: let the scheduler place it)
    # workers: client order ids the store recorded as sent (newest first), read at every (re)start
    sent_client_order_ids: tuple[str, ...] = ()
    # workers: read fills only since the bot last held nothing (from the store at every start)
    fill_checkpoint: FillCheckpoint | None = None
    # gateway: ids of the newest fills the store has (newest first): the fill reader's known set
    stored_fill_ids: tuple[str, ...] = ()


LOG_MAX_BYTES = 20 * 1024 * 1024  # per file; with LOG_BACKUPS the logs of one process stay <= 80 MB
LOG_BACKUPS = 3


def bounded_log_handler(path: Path) -> logging.Handler:
    """Logs are bounded like every other buffer: a flood of one repeated error (a 30-minute soak
    once wrote 134 MB) rotates away old lines instead of filling the disk."""
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(run_dir: str, name: str) -> logging.Logger:
    logs = Path(run_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(bounded_log_handler(logs / f"{name}.log"))
    root.setLevel(logging.INFO)
    return logging.getLogger(name)


def supervisor_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LoopLagMonitor:
    """Max oversleep of a 250 ms timer since the last read: how late this loop serves callbacks.
    (Every wake-up of hundreds of idle workers costs CPU, so the probe is not faster.)"""

    def __init__(self, period_s: float = 0.25) -> None:
        self._period = period_s
        self._max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self._period)
            lag = (time.perf_counter() - t0 - self._period) * 1000.0
            if lag > self._max_ms:
                self._max_ms = lag

    def take_max_ms(self) -> float:
        v, self._max_ms = self._max_ms, 0.0
        return max(v, 0.0)


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run_until_stopped(loops: list[Callable[[], Awaitable[None]]], stop: asyncio.Event) -> None:
    """Run a process's loops until SIGTERM/SIGINT, or until one of them ends: a loop that dies
    takes the process down with its exception (the supervisor restarts it), never silently."""
    tasks = [asyncio.create_task(loop()) for loop in loops]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for t in (*tasks, waiter):
        t.cancel()
    await asyncio.gather(*tasks, waiter, return_exceptions=True)
    for t in done:
        if t is not waiter and not t.cancelled() and t.exception() is not None:
            raise t.exception()  # type: ignore[misc]


def gateway_sockets(ctx: zmq.asyncio.Context, spec: ChildSpec, sndhwm: int) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
    """The gateway's market-data PUB (by symbol topic) and its request ROUTER."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, sndhwm)
    pub.bind(spec.endpoints.market_data)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(spec.endpoints.gateway)
    return pub, router


def heartbeat_socket(ctx: zmq.Context, spec: ChildSpec) -> zmq.Socket:
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100)  # heartbeats are droppable; never block a worker on them
    sock.connect(spec.endpoints.supervisor)
    return sock


def send_nowait(sock: zmq.Socket, data: bytes) -> bool:
    """Send without waiting; False when the peer's queue is full (the caller counts or logs it).
    An asyncio socket does not raise zmq.Again: it returns a finished future holding it, which
    must be read here or asyncio logs "exception was never retrieved" for every dropped send."""
    try:
        result = sock.send(data, zmq.NOBLOCK)
    except zmq.Again:
        return False
    if isinstance(result, asyncio.Future) and result.done():
        exc = result.exception()
        if isinstance(exc, zmq.Again):
            return False
        if exc is not None:
            raise exc
    return True


def send_heartbeat(sock: zmq.Socket, codec: MessageCodec, spec: ChildSpec, figures: object) -> None:
    hb = Heartbeat(kind=spec.kind, name=spec.name, pid=os.getpid(), sent_ns=time.perf_counter_ns(),
                   figures=figures)  # type: ignore[arg-type]
    send_nowait(sock, codec.encode(hb))  # droppable: the next one follows in a second
