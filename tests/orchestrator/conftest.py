"""Helpers that run the real `orchestrate` command as a separate process tree."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


class Run:
    def __init__(self, run_dir: Path, args: list[str], env: dict[str, str] | None = None,
                 new_session: bool = False) -> None:
        """`new_session`: the tree in a session (and process group) of its own, as a terminal's
        foreground job is, so a test can send it a Ctrl-C (os.killpg(proc.pid, SIGINT))."""
        self.run_dir = run_dir
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "--run-dir", str(run_dir), "--no-display", *args],
            cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=new_session)
        self.seen_pids: set[int] = set()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args, "--run-dir", str(self.run_dir)],
                              cwd=REPO, capture_output=True, text=True, timeout=30)

    def status(self) -> dict[str, Any] | None:
        r = self.cli("status", "--json")
        if r.returncode != 0:
            return None
        doc = json.loads(r.stdout)
        for w in doc["workers"]:
            if w["pid"]:
                self.seen_pids.add(w["pid"])
        for p in doc["processes"]:
            if p["pid"]:
                self.seen_pids.add(p["pid"])
        return doc

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"orchestrate exited with {self.proc.returncode} while waiting for {what}:\n{out}")
            doc = self.status()
            if doc is not None:
                last = doc
                if pred(doc):
                    return doc
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last status: {json.dumps(last, indent=1)[:4000]}")

    def terminate(self, timeout_s: float = 15.0) -> float:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)
        return time.monotonic() - t0

    def kill_all(self, clean_shm: bool = True) -> None:
        if self.proc.poll() is None:
            # Freeze the whole tree first, then kill it: killed one by one, a child could see its
            # parent (the forkserver) die first and run its stop while the supervisor still lives
            # (and the supervisor restart it). A SIGKILLed tree gets no say; SIGKILL ends a stopped
            # process too.
            tree = [*psutil.Process(self.proc.pid).children(recursive=True), psutil.Process(self.proc.pid)]
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.suspend()
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            self.proc.wait(timeout=10)
        # A SIGKILLed tree cannot clean up: remove its shared memory so tests leave /dev/shm as found.
        seg_list = self.run_dir / "segments.json"
        if clean_shm and seg_list.exists():
            for name in json.loads(seg_list.read_text()):
                Path("/dev/shm", str(name)).unlink(missing_ok=True)


@pytest.fixture
def start_run(tmp_path: Path):
    runs: list[Run] = []

    def _start(args: list[str], env: dict[str, str] | None = None, run_dir: Path | None = None,
               new_session: bool = False) -> Run:
        r = Run(run_dir or tmp_path / "run", args, env, new_session)
        runs.append(r)
        return r

    yield _start
    for r in runs:
        r.kill_all()
