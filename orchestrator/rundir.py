"""The run directory: one place for everything a run keeps (lock, control socket, logs, SQLite,
socket files, the list of shared-memory segments), so two runs never collide and a killed run's
leftovers can be found and removed by the next one."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from shared.ring import SHM_DIR
from shared.transport import socket_dir

DEFAULT_RUN_DIR = "run"


class RunDirBusy(RuntimeError):
    pass


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.lock_path = self.path / "supervisor.lock"
        self.control_path = self.path / "control.sock"
        self.segments_path = self.path / "segments.json"
        self.metrics_path = self.path / "metrics.url"
        self.logs = self.path / "logs"
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"another supervisor (pid {holder}) is running on run dir {self.path}; "
                             f"stop it with `orchestrate stop --run-dir {self.path}` or use another --run-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self.logs.mkdir(exist_ok=True)

    def clean_leftovers(self) -> list[str]:
        """Remove what a killed earlier run left: shm segments, socket files, control socket."""
        removed = []
        if self.segments_path.exists():
            try:
                names = json.loads(self.segments_path.read_text())
            except (OSError, ValueError):
                names = []
            for name in names:
                p = SHM_DIR / str(name)
                if p.exists() and p.name.startswith("dgo-"):
                    p.unlink()
                    removed.append(str(p))
            self.segments_path.unlink(missing_ok=True)
        sdir = socket_dir(self.path)
        if sdir.exists():
            for f in sdir.iterdir():
                f.unlink(missing_ok=True)
                removed.append(str(f))
        if self.control_path.exists():
            self.control_path.unlink()
            removed.append(str(self.control_path))
        return removed

    def record_segments(self, names: list[str]) -> None:
        self.segments_path.write_text(json.dumps(names))

    def release(self, *, keep_segments: bool = False) -> None:
        """`keep_segments`: the shared memory could not be removed, so its record stays for the
        next start's clean-up."""
        if not keep_segments:
            self.segments_path.unlink(missing_ok=True)
        self.control_path.unlink(missing_ok=True)
        self.metrics_path.unlink(missing_ok=True)
        sdir = socket_dir(self.path)
        if sdir.exists():
            for f in sdir.iterdir():
                f.unlink(missing_ok=True)
            try:
                sdir.rmdir()
            except OSError:
                pass
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
