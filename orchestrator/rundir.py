"""The run directory: one place for everything a run keeps (lock, control socket, logs, SQLite,
socket files, the list of shared-memory segments), so two runs never collide and a killed run's
leftovers can be found and removed by the next one."""

from __future__ import annotations

import fcntl
import json
import os
import stat
from pathlib import Path

from shared.ring import SHM_DIR
from shared.transport import UnsafeSocketDir, make_private_dir, socket_dir

DEFAULT_RUN_DIR = "run"
_MAX_UNIX_PATH = 100  # sun_path is 108 bytes with the terminating NUL; keep a margin


class RunDirBusy(RuntimeError):
    """The run dir cannot be used now (another supervisor holds it, or it is not safe); the
    message says why and what to do."""


class RunDirUnsafe(RunDirBusy):
    pass


def control_socket_path(run_dir: Path) -> Path:
    """<run dir>/control.sock, or, when that is too long for a unix socket, `control` in the
    short socket directory (the same rule as the ZeroMQ sockets)."""
    path = run_dir / "control.sock"
    if len(str(path)) <= _MAX_UNIX_PATH:
        return path
    return socket_dir(run_dir) / "control"


class RunDirError(ValueError):
    """The run dir cannot be used (a file, under a file, not writable): bad input, exit 2."""


def ensure_run_dir(path: Path) -> None:
    """Create the run dir if needed and check that we can write in it, before anything starts
    (so a bad --run-dir leaves no shared memory or process behind)."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise RunDirError(f"run dir {path} is a file, not a directory") from None
    except NotADirectoryError:
        raise RunDirError(f"run dir {path}: part of the path is a file, not a directory") from None
    except OSError as exc:
        raise RunDirError(f"cannot create run dir {path}: {exc.strerror or exc}") from None
    probe = path / f".write-test-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"run dir {path} is not writable ({exc.strerror or exc})") from None


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.lock_path = self.path / "supervisor.lock"
        self.control_path = control_socket_path(self.path)
        self.segments_path = self.path / "segments.json"
        self.metrics_path = self.path / "metrics.url"
        self.dashboard_url_path = self.path / "dashboard.url"
        self.dashboard_token_path = self.path / "dashboard.token"  # 0600: the dashboard's actions and remote reads
        self.logs = self.path / "logs"
        self._lock_fd: int | None = None

    def acquire(self) -> None:
        ensure_run_dir(self.path)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirBusy(f"another supervisor (pid {holder}) is running on run dir {self.path}; "
                             f"stop it with `orchestrate stop --run-dir {self.path}` or use another --run-dir"
                             ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self.logs.mkdir(exist_ok=True, mode=0o700)
        self._make_private()
        try:
            make_private_dir(socket_dir(self.path))
        except UnsafeSocketDir as exc:
            self._unlock()  # and touch nothing in a directory that is not ours
            raise RunDirUnsafe(str(exc)) from None

    def _make_private(self) -> None:
        """Trading data is the owner's alone: run dir and logs 0700, the files in them 0600,
        including those an older version left readable to all."""
        for d in (self.path, self.logs):
            if stat.S_IMODE(os.stat(d).st_mode) & 0o077:
                os.chmod(d, 0o700)
        for d in (self.path, self.logs):
            for f in d.iterdir():
                st = f.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                    os.chmod(f, 0o600)

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

    def _recorded_segments(self) -> list[str]:
        try:
            return [str(n) for n in json.loads(self.segments_path.read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def release(self) -> None:
        """Remove what this run kept here and unlock. The list of shared-memory segments stays
        while any of them still exists (a shutdown that could not remove one), for the next
        start to clean. Only the holder of the lock releases (a second call is a no-op)."""
        if self._lock_fd is None:
            return
        if not any((SHM_DIR / n).exists() for n in self._recorded_segments()):
            self.segments_path.unlink(missing_ok=True)
        self.control_path.unlink(missing_ok=True)
        self.metrics_path.unlink(missing_ok=True)
        self.dashboard_url_path.unlink(missing_ok=True)
        self.dashboard_token_path.unlink(missing_ok=True)
        sdir = socket_dir(self.path)
        if sdir.exists():
            for f in sdir.iterdir():
                f.unlink(missing_ok=True)
            try:
                sdir.rmdir()
            except OSError:
                pass
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None
