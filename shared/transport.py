"""ZeroMQ endpoint naming and socket set-up. ipc:// on one box (tcp:// would work the same
across boxes). Socket files live in the run directory's `sock/`, or, when that path would
exceed the 107-byte unix socket limit, in a short directory under /tmp named by the run dir."""

from __future__ import annotations

import hashlib
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


def ipc_paths(ep: Endpoints) -> list[Path]:
    urls = [ep.market_data, ep.gateway, ep.supervisor, ep.control, *ep.pools]
    return [Path(u[len("ipc://"):]) for u in urls if u.startswith("ipc://")]
