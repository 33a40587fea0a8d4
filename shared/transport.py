"""ZeroMQ endpoint naming and socket set-up. ipc:// on one box (tcp:// would work the same
across boxes). Socket files live in the run directory's `sock/`, or, when that path would
exceed the 107-byte unix socket limit, in a short directory under /tmp named by the run dir.
Either directory is ours alone (0700): anyone who can write there can replace a socket."""

from __future__ import annotations

import hashlib
import os
import stat
import zlib
from pathlib import Path

import msgspec

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
    """Where a pool member's signal link listens beside its ipc:// endpoint: a Unix SOCK_SEQPACKET
    socket (workers/runtime.PacketLink), which skips ZeroMQ's I/O thread on both sides. None for
    an endpoint that is not ipc:// (tcp:// across boxes): the ZeroMQ socket serves it."""
    if not url.startswith("ipc://"):
        return None
    return url[len("ipc://"):] + ".sp"


def ipc_paths(ep: Endpoints) -> list[Path]:
    urls = [ep.market_data, ep.gateway, ep.supervisor, ep.control, *ep.pools]
    return [Path(u[len("ipc://"):]) for u in urls if u.startswith("ipc://")]
