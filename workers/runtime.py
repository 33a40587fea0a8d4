"""What every child process shares: its spec, logging into the run directory, the supervisor
watchdog, heartbeats and event-loop lag. Kept small: each process is a thin shell over shared/."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import logging.handlers
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import psutil
import zmq
import zmq.asyncio

from shared.config import Config
from shared.messages import GatewayFigures, Heartbeat, MessageCodec, PoolFigures, WorkerFigures
from shared.trading.checkpoint import FillCheckpoint
from shared.transport import TICK_LINK_HANDOVER, TICK_LINK_HELLO, Endpoints

_T = TypeVar("_T")


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
    # workers: the account halt standing at (re)start ("" if none) and whether the symbol is
    # paused, so a bot never trades in the moment before it hears the supervisor say so
    halted: str = ""
    paused: bool = False
    # gateway: ids of the newest funding entries the ledger holds, newest first (read back to them)
    stored_funding_ids: tuple[str, ...] = ()


LOG_MAX_BYTES = 20 * 1024 * 1024  # per file; with LOG_BACKUPS the logs of one process stay <= 80 MB
LOG_BACKUPS = 3


class _LogFile(logging.handlers.RotatingFileHandler):
    """A log file that cannot be written (disk full) says so once on stderr, in one line, instead
    of logging's traceback for every record; it writes again when it can."""

    _failing = False
    _failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # calls handleError on a failed write
        if self._failing and not self._failed_now:
            self._failing = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._failed_now = True
        if not self._failing:
            self._failing = True
            exc = sys.exc_info()[1]
            with contextlib.suppress(Exception):
                sys.stderr.write(f"orchestrate: cannot write log {self.baseFilename} ({exc}); lines are lost "
                                 "until it can\n")


def bounded_log_handler(path: Path) -> logging.Handler:
    """Logs are bounded like every other buffer: a flood of one repeated error (a 30-minute soak
    once wrote 134 MB) rotates away old lines instead of filling the disk."""
    handler = _LogFile(path, maxBytes=LOG_MAX_BYTES, backupCount=LOG_BACKUPS)
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


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
ORPHAN_GRACE_S = 1.5  # after the supervisor is gone: time for a clean SIGTERM stop, then _exit
_lifeline_fd: int | None = None
_supervisor_gone = threading.Event()


def _set_parent_death_signal(sig: int) -> None:
    """Linux: the kernel sends `sig` when our parent dies. The parent of a forkserver child is the
    forkserver (which exits once the supervisor's end of its own pipe closes), so this is the
    fast path only; the lifeline pipe below is what names the supervisor itself."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the lifeline alone watches the supervisor


def _lifeline_closed(fd: int, timeout_ms: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(timeout_ms))  # nobody ever writes: readable means EOF


def _watch_lifeline(fd: int) -> None:
    while not _lifeline_closed(fd, -1):
        pass
    _supervisor_gone.set()
    logging.getLogger("runtime").warning("supervisor gone (lifeline closed); stopping now")
    os.kill(os.getpid(), signal.SIGTERM)  # the process's own clean stop path
    time.sleep(ORPHAN_GRACE_S)
    os._exit(70)  # a stop that hangs must not leave an orphan trading on


def watch_supervisor(lifeline_fd: int | None, inherited_fds: tuple[int, ...] = ()) -> None:
    """Tie this child's life to the supervisor's, zombie or not. The supervisor holds the write
    end of a pipe nobody writes to; the kernel closes it when the supervisor dies however it dies
    (a SIGKILLed supervisor nobody reaps stays a zombie, and kill(pid, 0) still succeeds on it).
    A thread blocked on the read end sees EOF at once and stops the process. `inherited_fds` are
    supervisor fds a fork child got by copy (the write end itself): closed, or the pipe could
    never close while we live."""
    global _lifeline_fd
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    _set_parent_death_signal(signal.SIGTERM)
    if lifeline_fd is None:
        return
    _lifeline_fd = lifeline_fd
    if _lifeline_closed(lifeline_fd, 0):  # died between our fork and the prctl above
        os._exit(70)
    threading.Thread(target=_watch_lifeline, args=(lifeline_fd,), name="lifeline", daemon=True).start()


def supervisor_alive(pid: int) -> bool:
    """False once the supervisor is gone. With a lifeline (every child the supervisor starts),
    its closure is the answer; without one, a zombie counts as gone."""
    if _lifeline_fd is not None:
        return not (_supervisor_gone.is_set() or _lifeline_closed(_lifeline_fd, 0))
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


class LoopLagMonitor:
    """Max oversleep of a 250 ms timer since the last read: how late this loop serves callbacks.
    (Every wake-up of hundreds of idle workers costs CPU, so the probe is not faster.) A process
    that already sleeps on a period (a worker's housekeeping) measures that sleep instead with
    `sleep()` and starts no timer of its own: one wake-up a second instead of five."""

    def __init__(self, period_s: float = 0.25) -> None:
        self._period = period_s
        self._max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.sleep(self._period)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep that records how late the loop woke us."""
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        lag = (time.perf_counter() - t0 - seconds) * 1000.0
        if lag > self._max_ms:
            self._max_ms = lag

    def note(self, lag_ms: float) -> None:
        """A lateness seen elsewhere (a tick read this long after its publish, a timer's oversleep)."""
        if lag_ms > self._max_ms:
            self._max_ms = lag_ms

    def take_max_ms(self) -> float:
        v, self._max_ms = self._max_ms, 0.0
        return max(v, 0.0)


class DutyOnWake:
    """A periodic duty (a worker's housekeeping and heartbeat) done in a wake-up the process has
    anyway, instead of on a timer of its own: every wake-up of a worker costs ~100-200 us of CPU
    on this VM (a cold cache, its ZeroMQ I/O thread), far more than the duty's own work. The
    caller asks `due()` when it wakes for something else (a tick) and runs the duty, which starts
    with `begin()`. A fallback timer fires `grace_s` past due when nothing woke the process (a
    quiet market); each `begin()` pushes it back, so while ticks come it never fires.

    Loop lag without a timer of its own: when the fallback timer fires, its oversleep (as a sleep
    probe measures: waiting behind other callbacks and for a core); when the duty rides on a
    wake-up, how long a callback queued by `begin()` waits behind the rest of the loop's work.
    The latter cannot see the process waiting for a core (it was already running); a tick's wait
    for one is its gateway hop (tick_hops)."""

    def __init__(self, period_s: float, grace_s: float, lag: LoopLagMonitor) -> None:
        self.period_s = period_s
        self.grace_s = grace_s
        self._lag = lag
        self._loop = asyncio.get_running_loop()
        self._due = time.monotonic() + period_s
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._fired: asyncio.Future[None] | None = None
        self._fired_unseen = False  # fired while nobody waited (the duty itself was running)
        self.on_timer = 0  # duties the fallback timer ran (the rest rode on other wake-ups)
        self.on_wake = 0
        self._arm(period_s + grace_s)

    def due(self, now: float) -> bool:
        return now >= self._due

    def begin(self, now: float, *, on_timer: bool = False) -> None:
        """The duty runs now: next due one period on, fallback timer moved past that."""
        self._due = now + self.period_s
        self._fired_unseen = False
        if on_timer:
            self.on_timer += 1
        else:
            self.on_wake += 1
            queued = time.perf_counter()
            self._loop.call_soon(self._note_since, queued)
        self._arm(self.period_s + self.grace_s)

    def _note_since(self, queued: float) -> None:
        self._lag.note((time.perf_counter() - queued) * 1000.0)

    def _arm(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = time.perf_counter() + delay_s
        self._timer = self._loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._lag.note((time.perf_counter() - self._timer_at) * 1000.0)
        if self._fired is not None and not self._fired.done():
            self._fired.set_result(None)
        else:
            self._fired_unseen = True

    async def wait_timer(self) -> None:
        """Until the fallback timer fires (then the caller runs the duty with on_timer=True)."""
        if self._fired_unseen:
            self._fired_unseen = False
            return
        self._fired = self._loop.create_future()
        try:
            await self._fired
        finally:
            self._fired = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


def leave_interrupt_to_supervisor() -> None:
    """After install_stop_signals, for the account's order management (the gateway and the paper
    venue): a terminal's Ctrl-C reaches every process of the tree at once; these two wait for the
    supervisor's operator stop, which stops them in order (the gateway switches the dead-man off
    while the venue still serves) instead of racing it."""
    asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


async def run_until_stopped(loops: list[Callable[[], Coroutine[Any, Any, None]]], stop: asyncio.Event) -> None:
    """Run a process's loops until SIGTERM/SIGINT, or until one of them ends: a loop that dies
    takes the process down with its exception (the supervisor restarts it), never silently."""
    tasks = [asyncio.create_task(loop()) for loop in loops]
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*tasks, waiter], return_when=asyncio.FIRST_COMPLETED)
    for t in (*tasks, waiter):
        t.cancel()
    await asyncio.gather(*tasks, waiter, return_exceptions=True)
    for t in done:
        if t is not waiter and not t.cancelled() and (exc := t.exception()) is not None:
            raise exc


# Per subscriber: a PUB keeps up to SNDHWM messages for each connected SUB that does not read.
# A worker only gets its own symbol's topic, so 10,000 is minutes of its ticks; at 100,000,
# 8 idle subscribers to everything held 66 MB of the gateway (7 MB at 10,000).
MAX_QUEUED_PER_SUBSCRIBER = 10_000


def gateway_sockets(ctx: zmq.asyncio.Context, spec: ChildSpec,
                    sndhwm: int) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
    """The gateway's market-data PUB (by symbol topic) and its request ROUTER."""
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, min(sndhwm, MAX_QUEUED_PER_SUBSCRIBER))
    pub.bind(spec.endpoints.market_data)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(spec.endpoints.gateway)
    return pub, router


# Socket[Any]: the processes pass both plain and zmq.asyncio contexts (their send() returns differ).
def heartbeat_socket(ctx: zmq.Context[Any], spec: ChildSpec) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100)  # heartbeats are droppable; never block a worker on them
    sock.connect(spec.endpoints.supervisor)
    return sock


def send_nowait(sock: zmq.Socket[Any], data: bytes) -> bool:
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


def send_heartbeat(sock: zmq.Socket[Any], codec: MessageCodec, spec: ChildSpec,
                   figures: WorkerFigures | PoolFigures | GatewayFigures) -> None:
    hb = Heartbeat(kind=spec.kind, name=spec.name, pid=os.getpid(), sent_ns=time.perf_counter_ns(),
                   figures=figures)
    send_nowait(sock, codec.encode(hb))  # droppable: the next one follows in a second


def run_event_loop(main: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run on uvloop when it is installed: a loop iteration costs about 0.5 us instead
    of 1.4 us and a task step 0.8 us instead of 1.7 us (perf-floors §6), which every tick of
    every asyncio process pays several times. Its timers have 1 ms granularity, which nothing
    here relies on being finer."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


SEND_RETRY_S = 0.01  # a send to a full queue is tried again this often
_backend_get = zmq.backend.Socket.get
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class LoopSocket:
    """A plain zmq socket served by the running loop's reader callback on its file descriptor,
    instead of zmq.asyncio, whose futures cost a zero-delay timer and an extra loop iteration
    per event (20-30 us a round trip, perf-floors §1).

    The trap: zmq's FD is edge-triggered. It signals that ZMQ_EVENTS may have changed, and any
    send, recv or ZMQ_EVENTS read on the socket can consume that signal while a message is
    already queued. So a reader reads ZMQ_EVENTS before every recv and sleeps only while it
    shows nothing to read, a send re-reads it for a reader asleep on the same socket, and the
    callback reads it when nobody waits, so a readable FD nobody serves cannot spin the loop.
    One reader per socket at a time (each process has one loop per socket)."""

    def __init__(self, sock: zmq.Socket[bytes]) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._fd = int(sock.getsockopt(zmq.FD))
        self._waiter: asyncio.Future[None] | None = None
        self._loop.add_reader(self._fd, self._on_fd)

    def _events(self) -> int:
        # The backend's getter and a plain int `&`: 1.6 us a read against 3.1 us through the sugar
        # layer's getsockopt and its PollEvent flags (timeit); a worker reads it on every recv.
        return int(_backend_get(self.sock, _EVENTS))

    def _on_fd(self) -> None:
        w = self._waiter
        if w is not None:
            if not w.done():
                w.set_result(None)  # the woken reader reads ZMQ_EVENTS itself
        else:
            self._events()  # nobody waits: re-arm the FD, or a level-triggered loop would spin

    async def _readable(self) -> None:
        while not self._events() & _POLLIN:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def recv(self) -> bytes:
        while True:
            await self._readable()
            try:
                return self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:  # ZMQ_EVENTS said readable; only a race with another reader gets here
                continue

    async def recv_multipart(self) -> list[bytes]:
        while True:
            await self._readable()
            try:
                return self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue

    async def poll(self, timeout_ms: int) -> bool:
        """True when a message can be received within timeout_ms."""
        try:
            await asyncio.wait_for(self._readable(), timeout_ms / 1000.0)
        except TimeoutError:
            return False
        return True

    def _after_send(self) -> None:
        w = self._waiter
        if w is not None and not w.done() and self._events() & _POLLIN:
            w.set_result(None)

    async def send(self, data: bytes) -> None:
        await self.send_multipart((data,))

    async def send_multipart(self, frames: Sequence[bytes]) -> None:
        """Waits only while the peer's queue is full (its high-water mark), like zmq.asyncio;
        the sockets here carry one request in flight or a few, so that is a peer gone away."""
        while True:
            try:
                self.sock.send_multipart(frames, zmq.NOBLOCK)
                break
            except zmq.Again:
                await asyncio.sleep(SEND_RETRY_S)
        self._after_send()

    def close(self) -> None:
        self._loop.remove_reader(self._fd)
        self.sock.close(linger=0)


MAX_PACKET = 65_536  # a signal request or reply is a few hundred bytes
_PACKET_INBOX = 64  # replies waiting to be read (one request is in flight at a time)


class PacketLink:
    """A worker's signal link to its pool member: one Unix SOCK_SEQPACKET connection (a message is
    a packet; the kernel keeps the boundaries), read by the loop's reader callback. ZeroMQ puts
    its I/O thread between the loop and the kernel on both sides, so a request and its reply
    woke the worker three times (its I/O thread to send the request and to take the reply, then
    the loop) and the pool member likewise; here the worker wakes once, for the reply.

    Requests are droppable: one that cannot be sent (the pool member not listening yet or
    restarting, its connection's buffer full) returns False, and the worker asks again. A closed
    connection (the pool member restarted) is dropped and made again at the next send."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = None
        self._inbox: collections.deque[bytes] = collections.deque(maxlen=_PACKET_INBOX)
        self._waiter: asyncio.Future[None] | None = None
        self.connects = 0
        self.unsent = 0

    def _connect(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.connect(self.path)  # a Unix connect completes at once, or fails (EAGAIN: backlog full)
        except OSError:
            sock.close()
            return False
        self._sock = sock
        self.connects += 1
        self._loop.add_reader(sock.fileno(), self._on_readable)
        return True

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                data = sock.recv(MAX_PACKET)
            except BlockingIOError:
                break
            except OSError:
                self._disconnect()
                break
            if not data:  # the pool member closed its end (it stopped or restarted)
                self._disconnect()
                break
            self._inbox.append(data)
        w = self._waiter
        if self._inbox and w is not None and not w.done():
            w.set_result(None)

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def send_nowait(self, data: bytes) -> bool:
        if self._sock is None and not self._connect():
            self.unsent += 1
            return False
        assert self._sock is not None
        try:
            self._sock.send(data, socket.MSG_NOSIGNAL)
        except BlockingIOError:
            self.unsent += 1
            return False
        except OSError:
            self._disconnect()
            self.unsent += 1
            return False
        return True

    async def recv(self) -> bytes:
        while not self._inbox:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._inbox.popleft()

    def close(self) -> None:
        self._disconnect()


FD_RESERVE = 64  # descriptors a pool member keeps for everything but links (ZeroMQ, logs, /proc)


class PacketListener:
    """A pool member's end of the workers' PacketLinks: a listening SOCK_SEQPACKET socket and one
    accepted connection per worker, all non-blocking, for the member's epoll loop. Bounded: at
    most `max_links` connections (from the run's symbols), and never so many that the process
    runs out of descriptors (FD_RESERVE kept); a connection beyond it is closed."""

    def __init__(self, path: str, max_links: int, reserve: int = FD_RESERVE, owner: str = "pool") -> None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            max_links = min(max_links, max(1, soft - reserve))
        self._log = logging.getLogger(owner)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a dead member's socket file: binding needs the name free
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.path = path
        self.sock.listen(min(max(max_links, 16), 4096))
        self.max_links = max_links
        self.links: dict[int, socket.socket] = {}
        self.unsent = 0  # replies dropped: a worker's connection full or gone (it asks again)
        self.refused = 0  # accepts that failed for want of a descriptor
        self.over_bound = 0  # links closed at once: max_links reached

    def accept(self) -> list[socket.socket]:
        """Every connection waiting; the caller registers each for reading."""
        out: list[socket.socket] = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return out
            except ConnectionAbortedError:  # a worker that went away while queued: the next one
                continue
            except OSError as exc:  # out of descriptors (EMFILE...): the rest wait in the backlog
                self.refused += 1
                if self.refused == 1:
                    self._log.warning("cannot take a worker's link: %s", exc)
                return out
            if len(self.links) >= self.max_links:
                conn.close()
                self.over_bound += 1
                if self.over_bound == 1:
                    self._log.warning("more links than the bound (%d): closed", self.max_links)
                continue
            conn.setblocking(False)
            self.links[conn.fileno()] = conn
            out.append(conn)

    def read(self, conn: socket.socket, limit: int) -> tuple[list[bytes], bool]:
        """Up to `limit` packets waiting on `conn`, and False once it is closed (then forgotten:
        the caller unregisters it first)."""
        out: list[bytes] = []
        while len(out) < limit:
            try:
                data = conn.recv(MAX_PACKET)
            except BlockingIOError:
                return out, True
            except OSError:
                data = b""
            if not data:
                self.drop(conn)
                return out, False
            out.append(data)
        return out, True

    def send(self, conn: socket.socket, data: bytes) -> None:
        if conn.fileno() < 0:
            self.unsent += 1
            return
        try:
            conn.send(data, socket.MSG_NOSIGNAL)
        except OSError:  # full (the worker is not reading) or gone: it asks again after its timeout
            self.unsent += 1

    def drop(self, conn: socket.socket) -> None:
        self.links.pop(conn.fileno(), None)
        conn.close()

    def close(self) -> None:
        for conn in self.links.values():
            conn.close()
        self.links.clear()
        self.sock.close()


GATEWAY_FD_RESERVE = 512  # the gateway's descriptors for all but tick links (REST pool, websockets, ZeroMQ, logs)


class TickLinks:
    """The gateway's end of the workers' tick links (a worker on this box connects one, after its
    history, and says its symbol's topic): each tick of a linked symbol is written to its link
    from the loop, with no ZeroMQ I/O thread between the loop and the kernel on either side.

    Bounded and never blocking: the link's socket buffer is the queue; a tick that does not fit
    (the worker is not reading) is dropped and counted, as the PUB drops at its high-water mark,
    and the worker counts the gap by seq. A link that fails is forgotten and the symbol's ticks
    go on the PUB again (the caller's fallback); a worker that restarts links again and replaces
    its old link. The first packet on a link is the handover (shared/transport.TickHandover)."""

    def __init__(self, path: str, max_links: int, reserve: int = GATEWAY_FD_RESERVE) -> None:
        self._loop = asyncio.get_running_loop()
        self.listener = PacketListener(path, max_links, reserve, owner="gateway")
        self.by_topic: dict[bytes, socket.socket] = {}
        self._topic_of: dict[int, bytes] = {}
        self.last_on_pub: dict[bytes, bytes] = {}  # topic -> the last tick frame that went on the PUB
        self.dropped = 0  # ticks not written: the worker's link full
        self.linked = 0  # links that said their topic, since start
        self._listening = True
        self._loop.add_reader(self.listener.sock.fileno(), self._on_accept)

    def _on_accept(self) -> None:
        refused = self.listener.refused
        for conn in self.listener.accept():
            self._loop.add_reader(conn.fileno(), self._on_readable, conn)
        if self.listener.refused > refused and self._listening:  # out of descriptors: listen again in 1 s
            self._loop.remove_reader(self.listener.sock.fileno())
            self._listening = False
            self._loop.call_later(1.0, self._listen_again)

    def _listen_again(self) -> None:
        if not self._listening and self.listener.sock.fileno() >= 0:
            self._listening = True
            self._loop.add_reader(self.listener.sock.fileno(), self._on_accept)

    def _on_readable(self, conn: socket.socket) -> None:
        while True:
            try:
                data = conn.recv(512)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            fd = conn.fileno()
            if data.startswith(TICK_LINK_HELLO) and fd not in self._topic_of and len(data) > 1:
                topic_ = data[len(TICK_LINK_HELLO):]
                self._topic_of[fd] = topic_
                old = self.by_topic.get(topic_)
                self.by_topic[topic_] = conn
                if old is not None:  # the worker restarted: its old link goes
                    self._forget(old)
                self.linked += 1
                try:
                    conn.send(TICK_LINK_HANDOVER + self.last_on_pub.get(topic_, b""), socket.MSG_NOSIGNAL)
                except OSError:
                    self._forget(conn)
                    return
                continue
            self._forget(conn)  # closed, or not our protocol: the worker links again if it is ours
            return

    def _forget(self, conn: socket.socket) -> None:
        fd = conn.fileno()
        if fd < 0:
            return
        self._loop.remove_reader(fd)
        topic_ = self._topic_of.pop(fd, None)
        if topic_ is not None and self.by_topic.get(topic_) is conn:
            del self.by_topic[topic_]
        self.listener.drop(conn)

    def send(self, topic_: bytes, frame: bytes) -> bool:
        """Write a tick to its symbol's link: True when the link took it or dropped it (full),
        False when the symbol has no link (send it on the PUB)."""
        conn = self.by_topic.get(topic_)
        if conn is None:
            return False
        try:
            conn.send(frame, socket.MSG_NOSIGNAL | socket.MSG_DONTWAIT)
        except BlockingIOError:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8...: a slow worker cannot flood the log
                logging.getLogger("gateway").warning(
                    "ticks dropped on full tick links (a worker not reading): %d so far", self.dropped)
            return True
        except OSError:  # the worker went away: the PUB carries the symbol until it links again
            self._forget(conn)
            return False
        return True

    def close(self) -> None:
        for conn in list(self.listener.links.values()):
            self._forget(conn)
        if self._listening and self.listener.sock.fileno() >= 0:
            self._loop.remove_reader(self.listener.sock.fileno())
        self._listening = False
        self.listener.close()
