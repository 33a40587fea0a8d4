"""ZeroMQ endpoint naming and socket set-up. ipc:// on one box (tcp:// would work the same
across boxes). Socket files live in the run directory's `sock/`, or, when that path would
exceed the 107-byte unix socket limit, in a short directory under /tmp named by the run dir.
Either directory is ours alone (0700): anyone who can write there can replace a socket."""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
from collections import deque
from pathlib import Path

import msgspec

from .messages import Tick

_MAX_UNIX_PATH = 100


class Endpoints(msgspec.Struct, frozen=True):
    sock_dir: str
    market_data: str  # gateway PUB -> workers SUB
    gateway: str  # gateway ROUTER <- workers DEALER (history, order intents)
    supervisor: str  # supervisor PULL <- every process PUSH (heartbeats)
    control: str  # supervisor PUB -> processes SUB (pause/resume/stop)
    pools: tuple[str, ...]  # pool member k ROUTER <- workers DEALER

    def pool_for(self, symbol: str) -> int:
        return pool_member(symbol, len(self.pools))


def pool_member(symbol: str, pool_size: int) -> int:
    # crc32, not hash(): stable across processes and runs (PYTHONHASHSEED varies).
    return zlib.crc32(symbol.encode()) % pool_size


def socket_dir(run_dir: Path) -> Path:
    candidate = run_dir.resolve() / "sock"
    if len(str(candidate)) + 16 <= _MAX_UNIX_PATH:
        return candidate
    digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/tmp") / f"dgo-{digest}"


class UnsafeSocketDir(RuntimeError):
    """The socket directory exists and is not ours alone: refuse rather than use it."""


def make_private_dir(path: Path) -> None:
    """Create `path` as a directory only we may use (0700), or check that the existing one is
    exactly that: a directory (not a symlink), owned by us, with no access for group or others.
    Raises UnsafeSocketDir naming what is wrong and what to do."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeSocketDir(f"{path} exists and is not a directory; remove it")
    if st.st_uid != os.getuid():
        raise UnsafeSocketDir(f"socket directory {path} belongs to uid {st.st_uid}, not to us (uid {os.getuid()}): "
                              "another user could replace our sockets; remove it or use a shorter --run-dir")
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise UnsafeSocketDir(f"socket directory {path} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700: "
                              "others could replace our sockets; remove it (or chmod 700 it) and start again")


def make_endpoints(run_dir: Path, pool_size: int) -> Endpoints:
    d = socket_dir(run_dir)
    return Endpoints(
        sock_dir=str(d),
        market_data=f"ipc://{d}/md",
        gateway=f"ipc://{d}/gw",
        supervisor=f"ipc://{d}/sup",
        control=f"ipc://{d}/ctl",
        pools=tuple(f"ipc://{d}/pool{k}" for k in range(pool_size)),
    )


def packet_path(url: str) -> str | None:
    """Where a direct link listens beside its ipc:// endpoint (a pool member's signal link, the
    gateway's tick links): a Unix SOCK_SEQPACKET socket (workers/runtime.PacketLink), which skips
    ZeroMQ's I/O thread on both sides. None for an endpoint that is not ipc:// (tcp:// across
    boxes): the ZeroMQ socket serves it."""
    if not url.startswith("ipc://"):
        return None
    return url[len("ipc://"):] + ".sp"


def ipc_paths(ep: Endpoints) -> list[Path]:
    urls = [ep.market_data, ep.gateway, ep.supervisor, ep.control, *ep.pools]
    return [Path(u[len("ipc://"):]) for u in urls if u.startswith("ipc://")]


# --- a symbol's ticks moving from the PUB to its direct link ----------------------------------

TICK_LINK_HELLO = b"T"  # worker -> gateway, first packet on a tick link: b"T" + the symbol's topic
TICK_LINK_HANDOVER = b"H"  # gateway -> worker, first packet: b"H" + the last tick it put on the PUB (or nothing)
HANDOVER_HOLD_S = 1.0  # how long link ticks wait for the PUB's last ones before they go regardless
HANDOVER_MAX_HELD = 64


class TickHandover:
    """A worker's ticks move from the PUB to its direct link (and back, after a gateway restart)
    without reading one out of order: the gateway's first packet on a link is the last tick it
    published for the symbol on the PUB; ticks from the link wait until the worker has read that
    one from its SUB (the ones before it may still be in ZeroMQ's queues), at most HANDOVER_HOLD_S
    (a PUB tick dropped at its high-water mark never comes) and HANDOVER_MAX_HELD ticks; a hold
    that runs out applies the handed-over tick first (the SUB lost it or it is still coming: the
    worker's seq check drops a late copy). Pure: the worker says what it has read, (epoch, last
    seq), and gets the ticks to apply, in order, each with the time it was received."""

    def __init__(self, hold_s: float = HANDOVER_HOLD_S, max_held: int = HANDOVER_MAX_HELD) -> None:
        self.hold_s = hold_s
        self.max_held = max_held
        self._upto: tuple[int, int] | None = None  # (epoch, seq) the SUB must reach first
        self._until = 0.0
        self._held: deque[tuple[Tick, int]] = deque()
        self._last_on_pub: tuple[Tick, int] | None = None
        self.handovers = 0
        self.released_late = 0  # holds that ended by time or size, not by the SUB catching up

    @property
    def holding(self) -> bool:
        return self._upto is not None

    def start(self, last_on_pub: Tick | None, recv_ns: int, read: tuple[int, int], now: float) -> None:
        """A new link's handover packet (the gateway's last tick on the PUB, None if it put none there)."""
        self.handovers += 1
        if last_on_pub is None or (read[0] == last_on_pub.epoch and read[1] >= last_on_pub.seq):
            return  # the SUB has brought everything before the link already
        self._upto = (last_on_pub.epoch, last_on_pub.seq)
        self._until = now + self.hold_s
        self._last_on_pub = (last_on_pub, recv_ns)

    def on_link(self, tick: Tick, recv_ns: int, read: tuple[int, int], now: float) -> list[tuple[Tick, int]]:
        """A tick from the link."""
        if self._upto is None:
            return [(tick, recv_ns)]
        self._held.append((tick, recv_ns))
        return self.release(read, now)

    def release(self, read: tuple[int, int], now: float) -> list[tuple[Tick, int]]:
        """After a SUB tick (or at any wake-up): the held ticks once the SUB has caught up, the
        hold has run out or is full; else nothing."""
        upto = self._upto
        if upto is None:
            return []
        caught_up = read[0] == upto[0] and read[1] >= upto[1]
        if not caught_up and now < self._until and len(self._held) < self.max_held:
            return []
        out = list(self._held)
        self._held.clear()
        if not caught_up:  # the SUB lost some: the handed-over tick may fill the last of the gap
            self.released_late += 1
            if self._last_on_pub is not None:
                out.insert(0, self._last_on_pub)
        self._upto, self._last_on_pub = None, None
        return out
