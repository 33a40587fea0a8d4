"""Client side of the supervisor's control socket (a unix socket in the run directory)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import msgspec

from shared.status import StatusSnapshot


class NotRunning(RuntimeError):
    pass


def request(run_dir: Path, payload: dict[str, Any], timeout_s: float = 5.0) -> bytes:
    from .rundir import control_socket_path
    path = control_socket_path(Path(run_dir).resolve())
    if not path.exists():
        raise NotRunning(f"no supervisor is running on run dir {Path(run_dir).resolve()} "
                         f"(no {path.name}); start one with `orchestrate --run-dir {run_dir}`")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            raise NotRunning(f"the supervisor on {Path(run_dir).resolve()} is not answering "
                             "(it may have been killed; the next start cleans up)") from None
        s.sendall(msgspec.json.encode(payload) + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def get_status(run_dir: Path) -> StatusSnapshot:
    return msgspec.json.decode(request(run_dir, {"cmd": "status"}), type=StatusSnapshot)


def command(run_dir: Path, cmd: str, **kw: Any) -> dict[str, Any]:
    return msgspec.json.decode(request(run_dir, {"cmd": cmd, **kw}))
